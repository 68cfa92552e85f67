/*
 * xform.h - the type transformation of a live update (issue 5), in the new process.
 *
 * transfer.c copies the old heap to the same addresses and the globals by name;
 * this adds what changes when the new version changed its types:
 *
 *   - the old program's type tables (the mcr_types section of /proc/OLD/exe),
 *     indexed by global symbol and by allocation-site key;
 *   - a plan (typediff.h) for every global and every allocation site whose type
 *     differs between the versions, built before the pause;
 *   - pointers into changed globals (from anywhere: the image translation asks
 *     here first) remapped field by field; an array global whose element count
 *     changed and whose elements are all found unchanged in the new array (a
 *     static table with an entry inserted) is matched element by element by
 *     content, not by index;
 *   - every live object of a changed type converted (in place when the new
 *     layout fits its slot, else into a new object), and every pointer to it
 *     rewritten: precisely where the holder's type says the word is a pointer,
 *     while a word of unknown meaning (untyped objects, char arrays, integers,
 *     unions, stacks) that points into it pins it: a conflict, never a guess.
 *     Done on the pre-copy's copy of the old heap before the pause
 *     (xform_heap.c), and in the pause for what was written since.
 *
 * Everything lives in the caller's arena; nothing here calls the program's malloc
 * except to allocate the moved objects.
 */
#ifndef MCR_XFORM_H
#define MCR_XFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "heap.h"
#include "typediff.h"

struct mcr_arena;
struct mcr_buf;
struct mcr_image_map;
struct mcr_site;

/* Before the pause: reads the old executable's type tables. 0, or -1 with err
 * (then changed types cannot be transferred: every change is a conflict). */
int mcr_xform_open(pid_t old_pid, struct mcr_arena *a, char *err, size_t errlen);

/* The plan for a global of the new version (its record in ntab) whose old
 * counterpart is osize bytes: 1 and *plan (changed), 0 (same type: copy), or -1
 * with a conflict line (structured, without the "conflict " prefix) in why. */
int mcr_xform_global(const struct mcr_typetab *ntab, const struct mcr_global_rec *ngr,
                     size_t osize, size_t nsize, const struct mcr_xplan **plan, char *why,
                     size_t whylen);

/* Registers a changed global (old and new address and size) for pointer
 * remapping. */
int mcr_xform_add_global(const char *name, uintptr_t oa, size_t os, uintptr_t na, size_t ns,
                         const struct mcr_xplan *plan);

/* Before the pause, once every changed global is registered: array globals whose
 * element count changed are matched by content where possible (reads the old
 * process; image words translated with im). Returns how many were. */
size_t mcr_xform_match_content(pid_t old_pid, struct mcr_image_map *im);

/* Tells the element size of a registered changed global of array type (for content
 * matching). */
void mcr_xform_global_shape(uintptr_t na, const struct mcr_typetab *ntab, uint32_t ntype);

/* Whether global i (as registered) was matched by content: the new version's
 * initial value stays, nothing is copied. */
int mcr_xform_global_kept(uintptr_t na);

/* v points into the old image. 1: it is inside a changed global, *nv is the new
 * address (or, returning -1, why says it has none: a removed field, an element
 * without a counterpart); 0: not in a changed global. Thread-safe (read-only). */
int mcr_xform_translate(uintptr_t v, uintptr_t *nv, char *why, size_t whylen);

/* Before the pause, for every allocation site of the new version (s) with its key
 * (transfer.c's site key): builds the plan when the old site of the same key had
 * another type. A change that cannot be converted is remembered and becomes a
 * conflict only if objects of the site are alive. Returns 1 changed, 0 not, -1 out
 * of memory. */
int mcr_xform_site(const char *key, struct mcr_site *s);

/* In the pause, while the tags are renumbered: objects of new tag `tag` came from
 * the old site `key`. */
void mcr_xform_tag(uint32_t tag, const char *key);

/* Right after the pre-copy, before the pause, on the copy of the old heap (old:
 * its state as the pre-copy listed it; tagmap: old site id -> new, limit
 * entries): converts the live objects of changed types it shows (into their new
 * objects, or aside when they convert in place) and rewrites the pointers to them
 * it finds, so that the pause redoes only what the pages written since touch.
 * Nothing is decided here: a conversion that fails is tried again in the pause.
 * Appends a note line to report. */
void mcr_xform_precopy(const struct mcr_heap_state *old, const uint32_t *tagmap, uint32_t limit,
                       struct mcr_buf *report);

/* In the pause, after the heap adoption and the globals: converts every object of
 * a changed type and rewrites the pointers to it. fresh[0..nfresh): what the pause
 * copied (pages written since the pre-copy, or not pre-copied), sorted; final: the
 * old heap's state now. With both and a pre-copy conversion, only what fresh
 * touches is done again; fresh NULL: everything. Appends phase/note/conflict lines
 * to report. Returns 0, or -1 with conflicts. regions: [lo, hi) ranges of this
 * process's writable globals with their types (scanned precisely), the parked
 * stacks and the epoll data (conservatively). */
struct mcr_xform_region {
  uintptr_t lo, hi;
  const struct mcr_typetab *tt; /* NULL: scan conservatively */
  uint32_t type;
  const char *name;
  int pointers; /* every word is a pointer (declared: mcr-ctl update --epoll-data-pointers) */
};
/* When the objects of (new) tag tag change type: the new type's name (its
 * site's key in *key), else NULL. */
const char *mcr_xform_changed_type(uint32_t tag, const char **key);

/* In the pause, after the transform (--reinit): the struct a pointer at byte
 * off of an object of (new) tag tag points to, by the tag's type in the new
 * layout, and the plan from that struct's old layout to its new one (same
 * name in the old version), or NULL (not a pointer to a defined struct, no
 * such struct in the old version, or no plan). *name: the struct's name.
 * What a typed pointer into an untyped pool piece says of its elements. */
const struct mcr_xplan *mcr_xform_pointee_plan(uint32_t tag, uint64_t off, const char **name);

/* The old threads' wait output buffers (n ranges, lo/hi pairs; quiesce.h):
 * their words pin nothing. */
void mcr_xform_set_dead(const uint64_t *ranges, size_t n);
int mcr_xform_heap(const struct mcr_xform_region *regions, size_t nregions,
                   const struct mcr_heap_range *fresh, size_t nfresh,
                   const struct mcr_heap_state *final, struct mcr_buf *report, int *conflicts);

/* In the pause, after the tags are renumbered: whether the object at base is
 * of a changed type (mcr_xform_heap converts it, unless it is this process's
 * own: only objects in the old heap's ranges are converted). */
int mcr_xform_changes(uintptr_t base);

/* After mcr_xform_heap: where the converted object that was at base is now
 * (base itself when it converted in place, or was not converted). */
uintptr_t mcr_xform_where(uintptr_t base);

/* Startup pool pieces of changed types (transfer.c, --reinit): a piece of
 * new tag tag whose old counterpart is osize bytes and whose new one nsize.
 * mcr_xform_piece_fits: 1 when the type changed and its plan maps those
 * sizes, 0 when the type did not change; when it cannot be converted, -1 if
 * the site hands out one object of the type (one T), -2 if not. */
int mcr_xform_piece_fits(uint32_t tag, size_t osize, size_t nsize);

/* Where old offset off of such a piece is in the new one, as a pointer
 * target. 0, or -1 (a removed field, or the piece does not fit). */
int mcr_xform_piece_offset(uint32_t tag, size_t osize, size_t nsize, uint64_t off,
                           uint64_t *noff);

/* Converts the old piece's bytes old into dst, the new piece: the fields the
 * new version added keep dst's values. 0, or -1 with why (dst untouched). */
int mcr_xform_piece_convert(uint32_t tag, const unsigned char *old, size_t osize,
                            unsigned char *dst, size_t nsize, char *why, size_t whylen);

/* In the pause, before mcr_xform_heap: the pool pieces of the old heap the
 * transfer knows (the startup's that stay the old process's, and the ones
 * recorded after it: pieces.h), tag the new one (0: a dead piece, whose
 * words are not scanned: an old one the new startup's replaces). Their words are scanned by
 * their types, and the ones of changed types are converted: in place when
 * the new layout fits, else into an object of their own (which their pool
 * never frees). mcr_xform_clear_pieces forgets them (each update's start).
 * 0, or -1 out of memory. */
int mcr_xform_add_piece(uintptr_t addr, size_t size, uint32_t tag);
/* The same for a piece of this process's own startup that stays (--reinit):
 * in the new layout already, never converted, its words scanned by it. */
int mcr_xform_add_new_piece(uintptr_t addr, size_t size, uint32_t tag);
void mcr_xform_clear_pieces(void);
size_t mcr_xform_npieces(void);

/* After the commit: fn on each piece told that is still a piece (not dead, not
 * moved out of its pool), with its tag. Returns how many. */
size_t mcr_xform_pieces_kept(void (*fn)(uintptr_t addr, size_t size, uint32_t tag, void *arg),
                             void *arg);

/* After the commit, the program running: frees the old copies of the objects
 * that moved (nothing points to them any more). */
void mcr_xform_committed(void);

/* Counts for the report. */
size_t mcr_xform_changed_globals(void);
size_t mcr_xform_changed_sites(void);

/* The initial value of the old process's global sym (at oa, os bytes) as the old
 * executable's file holds it (.data; .bss reads as zeros), or NULL if not found. */
const unsigned char *mcr_xform_initial(const char *sym, uintptr_t oa, size_t os);

/* Whether val, the old global's value now, is still its initial value init (the
 * program never wrote it: a static table, no state): words that are pointers into
 * the old image compare by their link-time address. */
int mcr_xform_unmodified(const unsigned char *init, uintptr_t oa, const unsigned char *val,
                        size_t os, struct mcr_image_map *im);

/* Whether this process's global sym (at na, ns bytes: one the old version does
 * not have) differs from its initial value in this executable's file, i.e. the
 * new startup set it (same comparison as mcr_xform_unmodified). 0 also when
 * that cannot be told (no symbol table). */
int mcr_xform_new_written(const char *sym, uintptr_t na, size_t ns);

/* The user's transformation for global sym (mcr/transform.h), or NULL. */
void *mcr_xform_global_hook(const char *sym);

/* Releases the old executable's mapping. */
void mcr_xform_close(void);

#endif /* MCR_XFORM_H */
