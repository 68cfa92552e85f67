/*
 * xform_int.h - what xform.c (plans, globals, sites) and xform_heap.c (heap
 * objects) share inside the runtime.
 */
#ifndef MCR_XFORM_INT_H
#define MCR_XFORM_INT_H

#include <stddef.h>
#include <stdint.h>

#include "typediff.h"
#include "typetab.h"

struct mcr_arena;

typedef int (*hook_fn)(void *new, size_t new_size, const void *old, size_t old_size);

/* What is known of the objects of one new tag whose type changed. */
struct tinfo {
  const char *key;
  const struct mcr_xplan *plan; /* NULL: the change could not be planned (error) */
  const char *error;            /* why not, structured conflict fields after the kind */
  const struct mcr_typetab *otab, *ntab;
  uint32_t otype, ntype, shape;
  const char *old_loc, *new_loc, *old_name, *new_name;
  hook_fn hook; /* the user's transformation, run after the plan */
  const char *hook_name;
};

#define FIX_HOOK                                                                          \
  "register a transformation for the type with MCR_TRANSFORM (docs/update.md, \"User "   \
  "transformations\"), or keep the old field's type"

/* The arena every plan and table lives in (the transfer's). */
struct mcr_arena *mcr_xform_arena(void);

/* What is known of new tag tag's objects when its type changed, else NULL. */
const struct tinfo *mcr_xform_tinfo(uint32_t tag);

/* Word classes of a typed object: not a pointer, a precise pointer, a word of
 * unknown meaning (scanned conservatively). */
enum { W_NONE = 0, W_PTR = 1, W_CONS = 2 };

/* Marks the words of type t at byte off in cls[] (nwords): pointers precise,
 * unions, character arrays and pointer-sized integers conservative. */
void mcr_xform_classify(const struct mcr_typetab *tt, uint32_t t, uint64_t off, uint8_t *cls,
                        size_t nwords, int depth);

#endif /* MCR_XFORM_INT_H */
