/*
 * mcr/transform.h - user transformations: what a live update cannot infer.
 *
 * mcr converts a changed type by itself (fields by name, widening, enums by
 * enumerator name, ...). A semantic change (a renamed field, a value whose meaning
 * changed, a struct that became a union) needs a line of code in the NEW version:
 *
 *   #include <mcr/transform.h>      // or copy these two macros: the names are the contract
 *
 *   struct stats_v1 { unsigned long keys, conns, commands; };   // the old layout
 *
 *   MCR_TRANSFORM_GLOBAL(stats) {                // global `stats`
 *     const struct stats_v1 *o = old;
 *     ((struct stats *)new)->connections = o->conns;   // renamed field
 *     return 0;
 *   }
 *
 *   MCR_TRANSFORM_TYPE(entry) {                  // every heap object of struct entry
 *     ...
 *   }
 *
 * The function runs in the new process during the update, after mcr's own
 * conversion has filled `new` (everything it could match; the rest zeroed for heap
 * objects, the new version's initial value for globals), with `old` the object's
 * old bytes (pointers into the old program already translated). It returns 0, or
 * nonzero to refuse the update (a conflict naming the function). It must not
 * allocate, lock or block: the program's heap is being handed over.
 *
 * TYPE names the struct, union or typedef name of the new allocation site's type
 * (`struct entry` -> entry). A transformation also makes a change that mcr cannot
 * convert by itself (e.g. an int that became a struct) acceptable: then `new`
 * holds only the zeroed or initial value.
 */
#ifndef MCR_TRANSFORM_H
#define MCR_TRANSFORM_H

#include <stddef.h>

#define MCR_TRANSFORM_GLOBAL(sym)                                                          \
  __attribute__((used, noinline)) int mcr_transform_global_##sym(                           \
      void *new, size_t new_size, const void *old, size_t old_size)

#define MCR_TRANSFORM_TYPE(name)                                                           \
  __attribute__((used, noinline)) int mcr_transform_type_##name(                            \
      void *new, size_t new_size, const void *old, size_t old_size)

#endif /* MCR_TRANSFORM_H */
