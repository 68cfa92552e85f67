/* typeof.h - what the runtime says a heap pointer is: the type of its
 * allocation site as C spells it, "<untyped>", "<released>" (on the program's
 * own free list) or "<not found>". */
#ifndef MCR_E2E_TYPEOF_H
#define MCR_E2E_TYPEOF_H
#include "heap.h"
#include "typetab.h"
#include "types.h"

static const char *type_of(const void *p, char *buf, size_t len) {
  struct mcr_object o;
  if (mcr_heap_find(p, &o) != 0)
    return "<not found>";
  if (o.tag == MCR_TAG_UNTYPED)
    return "<untyped>";
  if (o.tag == MCR_TAG_RELEASED)
    return "<released>";
  struct mcr_typetab tt;
  struct mcr_site_rec r;
  if (mcr_site_record(o.tag, &tt, &r) != 0)
    return "<no site>";
  if (r.type == MCR_NO_TYPE)
    return "<no type>";
  if (mcr_type_render_shape(&tt, r.type, r.shape, buf, len) < 0)
    return "<bad type>";
  return buf;
}
#endif
