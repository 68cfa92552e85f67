/*
 * rename.h - renamed functions of a live update (docs/update.md, "Renamed
 * functions").
 *
 * A function the new version removed has no counterpart for the pointers to it
 * (callbacks kept in the heap, dispatch tables): an image conflict. When the new
 * version renamed it, or replaced it by another function of the same meaning, the
 * user names the pair (mcr-ctl update --rename OLD=NEW, --rename-file FILE), and
 * runtime/image.c translates an address inside OLD as one inside NEW.
 *
 * The map travels as one string, "OLD=NEW" pairs separated by spaces, from mcr-ctl
 * through the control request and the new process's environment
 * (MCR_UPDATE_RENAMES). mcr-ctl and the new process check it against both
 * executables with the same rule (mcr_rename_check): each name must be exactly one
 * function of its executable.
 *
 * Used by the runtime and by mcr-ctl: no allocation, fixed storage.
 */
#ifndef MCR_RENAME_H
#define MCR_RENAME_H

#include <stddef.h>

struct mcr_elfsym;

#define MCR_RENAME_MAX 64        /* pairs per update */
#define MCR_RENAME_SPEC_MAX 8192 /* the whole map as a string, NUL included */

struct mcr_renames {
  size_t n;
  const char *old_name[MCR_RENAME_MAX]; /* into buf */
  const char *new_name[MCR_RENAME_MAX];
  /* "+NAME" tokens (mcr-ctl update --keep-new NAME): new globals whose value
   * the new version's startup set is kept (runtime/transfer.c) */
  size_t nkeep;
  const char *keep_name[MCR_RENAME_MAX];
  /* "@TYPE.OLD=NEW" tokens (mcr-ctl update --move-field TYPE.OLD=NEW): struct
   * TYPE's field OLD is at the member path NEW of the new version's TYPE (for
   * a field moved into a nested struct: "n.notify_event"); used by the
   * conversion plans (runtime/typediff.c), for values and for pointers into
   * the field */
  size_t nmove;
  const char *move_type[MCR_RENAME_MAX];
  const char *move_old[MCR_RENAME_MAX];
  const char *move_new[MCR_RENAME_MAX];
  /* "!reinit" (mcr-ctl update --reinit): state the old process built in its
   * startup and never changed since comes from the new version's startup
   * (runtime/transfer.c; docs/update.md, "Reinitialized startup state") */
  int reinit;
  /* "!epoll-pointers" (mcr-ctl update --epoll-data-pointers): the data of the
   * program's epoll registrations are pointers (nginx: a connection, its low
   * bit a flag), rewritten when what they point to moves (runtime/transfer.c) */
  int epoll_pointers;
  char buf[MCR_RENAME_SPEC_MAX];
};

/* Parses spec ("OLD=NEW" pairs, "+NAME" keeps, "@TYPE.OLD=NEW" field moves and
 * "!reinit", "!epoll-pointers", separated by white space; NULL or "" is none) into r. A pair must have both names, of symbol characters (no white space,
 * '=' or control characters); an OLD may appear once. Returns 0, or -1 with a
 * message naming the pair in err (r is then empty). */
int mcr_renames_parse(struct mcr_renames *r, const char *spec, char *err, size_t errlen);

/* Appends pair ("OLD=NEW") to spec (cap bytes, NUL-terminated), after a space
 * if spec is not empty: 0, or -1 when it does not fit (spec unchanged). */
int mcr_renames_append(char *spec, size_t cap, const char *pair);

/* Checks a pair against the old and the new executable's symbol tables: old_name
 * must be one function of old (one address: statics of several files with that
 * name are ambiguous), new_name one function of new. Returns 0, or -1 with why
 * ("'f' is not a function of the new executable"). */
int mcr_rename_check(const struct mcr_elfsym *old, const struct mcr_elfsym *new,
                     const char *old_name, const char *new_name, char *why, size_t whylen);

/* Whether r keeps the new global name (a "+NAME" token). */
int mcr_renames_keeps(const struct mcr_renames *r, const char *name);

/* The new member path of struct type's field old_field in r, or NULL. */
const char *mcr_renames_move(const struct mcr_renames *r, const char *type,
                             const char *old_field);

/* The new name of old_name in r, or NULL. */
const char *mcr_renames_find(const struct mcr_renames *r, const char *old_name);

#endif /* MCR_RENAME_H */
