/*
 * typediff.h - how a value of one version's type becomes a value of the other
 * version's type (issue 5: mutable state transfer).
 *
 * Given a type in the old program's type table and the type the new program
 * gives the same thing (a global of the same symbol, an allocation site of the
 * same key), mcr_xplan_build() compares them and produces a plan: a list of
 * operations that read an old object and write the new one. The rules:
 *
 *  - typedefs are looked through (a typedef rename changes nothing);
 *  - struct fields are matched by name (anonymous members by their order among
 *    the anonymous ones): reordered and moved fields are copied to their new
 *    place, removed fields are dropped, added fields are not written (a heap
 *    object's start zeroed, a global's keep the new version's initial value);
 *    a field moved under another name or into a nested struct is matched only
 *    when the user declares it (mcr-ctl update --move-field TYPE.OLD=NEW);
 *  - integers (char, _Bool, enums treated as integers when only one side is an
 *    enum) convert to any width and signedness; a value that does not fit is
 *    detected when the plan is applied, never truncated;
 *  - enums convert by enumerator name;
 *  - float, double and long double convert among themselves;
 *  - bitfields convert to bitfields or plain integers of any width, range-checked;
 *  - arrays: element by element, the shorter count; a shrunk array's dropped
 *    elements must be zero when applied;
 *  - unions: only when every old member is in the new union with the same type
 *    (the live member is unknown, so the old bytes must mean the same);
 *  - pointers are copied (what they point to is transformed as an object of its
 *    own, and the pointer remapped by the caller); function pointers too;
 *  - anything else (an integer that became a pointer or a struct, a struct that
 *    became an array...) cannot be inferred: the build fails with a reason that
 *    names the field, both types and what to do (a user transformation).
 *
 * Plans live in an arena (arena.h): usable inside a process whose heap is being
 * replaced, and by mcr-ctl. Nothing here allocates with malloc, prints or exits.
 */
#ifndef MCR_TYPEDIFF_H
#define MCR_TYPEDIFF_H

#include <stddef.h>
#include <stdint.h>

#include "typetab.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mcr_arena;

enum mcr_xop_kind {
  MCR_XOP_COPY = 1,  /* len bytes as they are */
  MCR_XOP_INT = 2,   /* an integer of old_size bytes to new_size bytes, range-checked */
  MCR_XOP_FLOAT = 3, /* a floating-point value of old_size to new_size bytes */
  MCR_XOP_ENUM = 4,  /* an enum by enumerator name (map) */
  MCR_XOP_BITS = 5,  /* an integer bitfield (offsets in bits): old_bits to new_bits */
  MCR_XOP_ZERO = 6,  /* old bytes that are dropped: must be zero (a shrunk array) */
};

enum mcr_xop_flags {
  MCR_XF_OLD_SIGNED = 1 << 0,
  MCR_XF_NEW_SIGNED = 1 << 1,
  MCR_XF_POINTER = 1 << 2, /* COPY of one pointer (data or function) */
  MCR_XF_NEW_BOOL = 1 << 3,
};

/* One operation, repeated count times with the strides (an array's elements). */
struct mcr_xop {
  uint8_t kind;
  uint8_t flags;
  uint8_t old_size, new_size; /* INT, FLOAT, ENUM, BITS: bytes of the storage unit */
  uint32_t count;             /* repetitions, >= 1 */
  uint64_t old_off, new_off;  /* bytes; bits for BITS */
  uint64_t len;               /* COPY, ZERO: bytes */
  uint32_t old_bits, new_bits; /* BITS: widths (new_bits 0: a plain integer of new_size) */
  uint64_t old_stride, new_stride;
  const int64_t *map; /* ENUM: nmap pairs old value, new value */
  uint32_t nmap;
  const char *path; /* the field, for messages: "stats.hits", "[3].name" */
};

/* A difference found while comparing, for mcr-ctl check and update notes. */
enum mcr_xchange_kind {
  MCR_XC_ADDED = 1,   /* a field only the new type has */
  MCR_XC_REMOVED = 2, /* a field only the old type has: its value is dropped */
  MCR_XC_MOVED = 3,   /* same type, another offset */
  MCR_XC_RETYPED = 4, /* converted: widening, narrowing, signedness, enum, float */
  MCR_XC_RESIZED = 5, /* an array with another element count */
};

struct mcr_xchange {
  uint8_t kind;
  const char *path;     /* field path */
  const char *old_type; /* rendered; "" when none */
  const char *new_type;
  uint64_t old_off, new_off; /* bytes */
  uint64_t old_size;         /* the old field's bytes (0: none or unknown) */
  /* a removed field the new struct has exactly one field of that name and type
   * nested in: the --move-field that would say so ("slot.served=counters.served"),
   * else NULL */
  const char *move_hint;
  int risky;            /* narrowing, signedness or shrinking: applying may refuse */
};

struct mcr_xplan {
  uint64_t old_size, new_size; /* of one object of the type (one element for arrays) */
  int identical;               /* same layout and meaning: copy the bytes */
  const struct mcr_xop *ops;
  size_t nops;
  const struct mcr_xchange *changes;
  size_t nchanges;
  /* a struct ending in a flexible array member T x[]: the elements after the fixed
   * part are converted with tail (NULL if none or if identical elements) */
  const struct mcr_xplan *tail;
  uint64_t old_tail_off, new_tail_off;
  int has_tail;
};

/* Why a build or an application failed: one line naming the field and both types. */
struct mcr_xerror {
  char path[256];
  char msg[512];
};

/*
 * Compares old type ot (in table otab) with new type nt (in ntab) and builds the
 * plan into *out (allocated in a). moves (NULL: none) declares fields moved to
 * another member path (rename.h, "@TYPE.OLD=NEW"): an old field the new struct
 * has no field of that name for goes there, instead of being dropped. Returns 0,
 * or -1 with err filled when the change cannot be inferred (err->msg says what
 * and suggests a user transformation), or when memory runs out. MCR_NO_TYPE on
 * either side fails.
 */
struct mcr_renames;
int mcr_xplan_build(struct mcr_arena *a, const struct mcr_typetab *otab, uint32_t ot,
                    const struct mcr_typetab *ntab, uint32_t nt,
                    const struct mcr_renames *moves, const struct mcr_xplan **out,
                    struct mcr_xerror *err);

/*
 * Checks a declared field move (rename.h: "@TYPE.OLD=NEW") against both versions'
 * type tables (nold tables otabs, nnew ntabs): the old version has a struct TYPE
 * (tag or typedef name) with a field OLD; the new one has a struct TYPE without
 * such a field, in which the member path NEW leads to a field. 0, or -1 with why.
 */
int mcr_xmove_check(const struct mcr_typetab *otabs, size_t nold, const struct mcr_typetab *ntabs,
                    size_t nnew, const char *type, const char *old_field, const char *new_path,
                    char *why, size_t len);

/*
 * Converts one old object at old (old_len bytes: the type's size, or more for a
 * flexible tail) into new (new_len bytes, already holding what unmatched parts keep:
 * zeros, or the new global's initial value). Returns 0, or -1 with err naming the
 * field and the value that does not fit (nothing sensible is left in new then).
 */
int mcr_xplan_apply(const struct mcr_xplan *p, const unsigned char *old, size_t old_len,
                    unsigned char *new, size_t new_len, struct mcr_xerror *err);

/* Bytes the new object needs for an old object of old_len bytes (more than
 * new_size only with a flexible tail). */
size_t mcr_xplan_new_len(const struct mcr_xplan *p, size_t old_len);

/*
 * Where an old interior offset is in the new layout: 0 and *new_off, or -1 when the
 * byte at old_off was dropped or converted (a pointer into a removed field, or into
 * the middle of a widened integer). Offset 0 (the object itself) maps to 0, and
 * old_off == old object size to the new size.
 */
int mcr_xplan_map_offset(const struct mcr_xplan *p, uint64_t old_off, size_t old_len,
                         uint64_t *new_off);

/* The same for the byte at old_off as a field (where a value stored there went):
 * offset 0 is the first field, wherever it moved. */
int mcr_xplan_map_field(const struct mcr_xplan *p, uint64_t old_off, size_t old_len,
                        uint64_t *new_off);

/* For a pointer to old_off (inside one object of the old type) that cannot be
 * mapped: what it points into ("field 'served' (long), which the new version does
 * not have") and what the user can do (a --move-field for a removed field). */
void mcr_xplan_describe_lost(const struct mcr_xplan *p, uint64_t old_off, char *what,
                             size_t whatlen, char *fix, size_t fixlen);

/* "added", "removed", "moved", "retyped", "resized". */
const char *mcr_xchange_name(int kind);

#ifdef __cplusplus
}
#endif

#endif /* MCR_TYPEDIFF_H */
