/*
 * typediff.c - plans that turn an old type's value into the new type's; see typediff.h.
 *
 * The build walks both types together, emitting operations at absolute offsets of
 * the object. Identical subtrees become one COPY (merged with a contiguous COPY
 * before it), so an unchanged struct with one added field is a handful of copies.
 * Arrays of a changed element type repeat the element's operation when it has one,
 * and are unrolled otherwise (bounded by MAX_OPS).
 */
#include "typediff.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "rename.h"

#define MAX_OPS (1u << 20)
#define MAX_DEPTH 48

struct builder {
  struct mcr_arena *a;
  const struct mcr_typetab *ot, *nt;
  struct mcr_xop *ops;
  size_t nops, cap;
  struct mcr_xchange *ch;
  size_t nch, chcap;
  struct mcr_xerror *err;
  const struct mcr_renames *moves; /* declared field moves, or NULL */
};

static void fail(struct builder *b, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct builder *b, const char *path, const char *fmt, ...)
{
  va_list ap;
  if (!b->err)
    return;
  snprintf(b->err->path, sizeof(b->err->path), "%s", path && *path ? path : "(whole object)");
  va_start(ap, fmt);
  vsnprintf(b->err->msg, sizeof(b->err->msg), fmt, ap);
  va_end(ap);
}

static const char *render(struct builder *b, const struct mcr_typetab *tt, uint32_t t)
{
  char buf[256];
  if (mcr_type_render(tt, t, buf, sizeof(buf)) < 0)
    snprintf(buf, sizeof(buf), "?");
  return mcr_arena_strdup(b->a, buf);
}

static const char *join(struct builder *b, const char *path, const char *name, long index)
{
  char buf[256];
  if (index >= 0)
    snprintf(buf, sizeof(buf), "%s[%ld]", path, index);
  else if (name[0] == '[')
    snprintf(buf, sizeof(buf), "%s%s", path, name); /* an element: "a[i]" */
  else
    snprintf(buf, sizeof(buf), "%s%s%s", path, *path ? "." : "", name);
  return mcr_arena_strdup(b->a, buf);
}

static int push(struct builder *b, const struct mcr_xop *op)
{
  if (op->kind == MCR_XOP_COPY && op->count == 1 && b->nops) {
    struct mcr_xop *p = &b->ops[b->nops - 1];
    if (p->kind == MCR_XOP_COPY && p->count == 1 && !(p->flags & MCR_XF_POINTER) &&
        !(op->flags & MCR_XF_POINTER) && p->old_off + p->len == op->old_off &&
        p->new_off + p->len == op->new_off) {
      p->len += op->len;
      return 0;
    }
  }
  if (b->nops == b->cap) {
    size_t nc = b->cap ? 2 * b->cap : 16;
    if (nc > MAX_OPS) {
      fail(b, op->path, "the conversion needs more than %u operations", MAX_OPS);
      return -1;
    }
    struct mcr_xop *n = mcr_arena_alloc(b->a, nc * sizeof(*n), 8);
    if (!n) {
      fail(b, op->path, "out of memory");
      return -1;
    }
    if (b->nops)
      memcpy(n, b->ops, b->nops * sizeof(*n));
    b->ops = n;
    b->cap = nc;
  }
  b->ops[b->nops++] = *op;
  return 0;
}

static void change(struct builder *b, int kind, const char *path, uint32_t ot, uint32_t nt,
                   uint64_t ooff, uint64_t noff, int risky)
{
  if (b->nch == b->chcap) {
    size_t nc = b->chcap ? 2 * b->chcap : 8;
    struct mcr_xchange *n = mcr_arena_alloc(b->a, nc * sizeof(*n), 8);
    if (!n)
      return; /* changes are only for reports */
    if (b->nch)
      memcpy(n, b->ch, b->nch * sizeof(*n));
    b->ch = n;
    b->chcap = nc;
  }
  struct mcr_xchange *c = &b->ch[b->nch++];
  c->kind = (uint8_t)kind;
  c->path = mcr_arena_strdup(b->a, path && *path ? path : "(whole object)");
  c->old_type = ot == MCR_NO_TYPE ? "" : render(b, b->ot, ot);
  c->new_type = nt == MCR_NO_TYPE ? "" : render(b, b->nt, nt);
  c->old_off = ooff;
  struct mcr_type_rec r;
  c->old_size = ot != MCR_NO_TYPE && mcr_typetab_strip(b->ot, ot, &r, NULL) == 0 ? r.size : 0;
  c->new_off = noff;
  c->risky = risky;
  c->move_hint = NULL;
}

/* ---- structural equality: same layout and same meaning ---- */

static int same(struct builder *b, uint32_t ot, uint32_t nt, int depth);

static int same_members(struct builder *b, const struct mcr_type_rec *o,
                        const struct mcr_type_rec *n, int depth)
{
  if (o->count != n->count)
    return 0;
  for (uint32_t i = 0; i < o->count; i++) {
    struct mcr_member_rec om, nm;
    if (mcr_typetab_member(b->ot, o->first_member + i, &om) != 0 ||
        mcr_typetab_member(b->nt, n->first_member + i, &nm) != 0)
      return 0;
    if (om.offset_bits != nm.offset_bits || om.bit_size != nm.bit_size ||
        strcmp(mcr_typetab_str(b->ot, om.name), mcr_typetab_str(b->nt, nm.name)))
      return 0;
    if (o->kind == MCR_TYPE_ENUM)
      continue;
    if (!same(b, om.type, nm.type, depth + 1))
      return 0;
  }
  return 1;
}

static int same(struct builder *b, uint32_t ot, uint32_t nt, int depth)
{
  struct mcr_type_rec o, n;
  if (depth > MAX_DEPTH || mcr_typetab_strip(b->ot, ot, &o, NULL) != 0 ||
      mcr_typetab_strip(b->nt, nt, &n, NULL) != 0)
    return 0;
  if (o.kind != n.kind || o.size != n.size)
    return 0;
  switch (o.kind) {
  case MCR_TYPE_VOID:
  case MCR_TYPE_FUNCTION:
    return 1;
  case MCR_TYPE_INT:
    return (o.flags & (MCR_TF_SIGNED | MCR_TF_BOOL)) == (n.flags & (MCR_TF_SIGNED | MCR_TF_BOOL));
  case MCR_TYPE_FLOAT:
  case MCR_TYPE_POINTER: /* a pointer is a pointer: the pointee is an object of its own */
    return 1;
  case MCR_TYPE_ARRAY:
    return o.count == n.count && (o.flags & MCR_TF_FLEXIBLE) == (n.flags & MCR_TF_FLEXIBLE) &&
           same(b, o.target, n.target, depth + 1);
  case MCR_TYPE_ENUM:
    /* an incomplete enum compares by size */
    if ((o.flags | n.flags) & MCR_TF_INCOMPLETE)
      return 1;
    return same_members(b, &o, &n, depth);
  case MCR_TYPE_STRUCT:
  case MCR_TYPE_UNION:
    if ((o.flags | n.flags) & MCR_TF_INCOMPLETE)
      return (o.flags & n.flags & MCR_TF_INCOMPLETE) &&
             !strcmp(mcr_typetab_str(b->ot, o.name), mcr_typetab_str(b->nt, n.name));
    return same_members(b, &o, &n, depth);
  default:
    return 0;
  }
}

/* ---- the plan ---- */

static int is_intlike(const struct mcr_type_rec *r)
{
  return r->kind == MCR_TYPE_INT || r->kind == MCR_TYPE_ENUM;
}

/* Signedness of an int or enum (an enum: of its underlying type). */
static int is_signed(const struct mcr_typetab *tt, const struct mcr_type_rec *r)
{
  if (r->kind == MCR_TYPE_INT)
    return !!(r->flags & MCR_TF_SIGNED);
  struct mcr_type_rec u;
  if (r->kind == MCR_TYPE_ENUM && mcr_typetab_strip(tt, r->target, &u, NULL) == 0)
    return !!(u.flags & MCR_TF_SIGNED);
  return 0;
}

static int build(struct builder *b, uint32_t ot, uint64_t ooff, uint32_t nt, uint64_t noff,
                 const char *path, int depth);

static int build_enum(struct builder *b, const struct mcr_type_rec *o, const struct mcr_type_rec *n,
                      uint32_t ot, uint32_t nt, uint64_t ooff, uint64_t noff, const char *path)
{
  int64_t *map = mcr_arena_alloc(b->a, (o->count + 1) * 2 * sizeof(int64_t), 8);
  uint32_t k = 0;
  int ident = o->size == n->size;
  if (!map) {
    fail(b, path, "out of memory");
    return -1;
  }
  for (uint32_t i = 0; i < o->count; i++) {
    struct mcr_member_rec om, nm;
    if (mcr_typetab_member(b->ot, o->first_member + i, &om) != 0)
      continue;
    const char *name = mcr_typetab_str(b->ot, om.name);
    int found = 0;
    for (uint32_t j = 0; j < n->count; j++)
      if (mcr_typetab_member(b->nt, n->first_member + j, &nm) == 0 &&
          !strcmp(name, mcr_typetab_str(b->nt, nm.name))) {
        map[2 * k] = (int64_t)om.offset_bits;
        map[2 * k + 1] = (int64_t)nm.offset_bits;
        if (om.offset_bits != nm.offset_bits)
          ident = 0;
        k++;
        found = 1;
        break;
      }
    if (!found)
      ident = 0; /* a removed enumerator: a value holding it cannot convert */
  }
  if (ident) {
    struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                         .len = o->size, .path = path};
    return push(b, &op);
  }
  change(b, MCR_XC_RETYPED, path, ot, nt, ooff, noff, 1);
  struct mcr_xop op = {.kind = MCR_XOP_ENUM, .count = 1, .old_off = ooff, .new_off = noff,
                       .old_size = (uint8_t)o->size, .new_size = (uint8_t)n->size, .map = map,
                       .nmap = k, .path = path};
  if (is_signed(b->ot, o))
    op.flags |= MCR_XF_OLD_SIGNED;
  if (is_signed(b->nt, n))
    op.flags |= MCR_XF_NEW_SIGNED;
  return push(b, &op);
}

static int build_int(struct builder *b, const struct mcr_type_rec *o, const struct mcr_type_rec *n,
                     uint32_t ot, uint32_t nt, uint64_t ooff, uint64_t noff, const char *path)
{
  int os = is_signed(b->ot, o), ns = is_signed(b->nt, n);
  if (o->size == n->size && os == ns && !((o->flags ^ n->flags) & MCR_TF_BOOL)) {
    struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                         .len = o->size, .path = path};
    return push(b, &op);
  }
  if (!o->size || o->size > 8 || !n->size || n->size > 8) {
    fail(b, path, "%s to %s: integers wider than 64 bits are not converted", render(b, b->ot, ot),
         render(b, b->nt, nt));
    return -1;
  }
  int risky = n->size < o->size || os != ns || (n->flags & MCR_TF_BOOL);
  change(b, MCR_XC_RETYPED, path, ot, nt, ooff, noff, risky);
  struct mcr_xop op = {.kind = MCR_XOP_INT, .count = 1, .old_off = ooff, .new_off = noff,
                       .old_size = (uint8_t)o->size, .new_size = (uint8_t)n->size, .path = path};
  op.flags = (uint8_t)((os ? MCR_XF_OLD_SIGNED : 0) | (ns ? MCR_XF_NEW_SIGNED : 0) |
                       (n->flags & MCR_TF_BOOL ? MCR_XF_NEW_BOOL : 0));
  return push(b, &op);
}

static int build_array(struct builder *b, const struct mcr_type_rec *o, const struct mcr_type_rec *n,
                       uint32_t ot, uint32_t nt, uint64_t ooff, uint64_t noff, const char *path,
                       int depth)
{
  struct mcr_type_rec oe, ne;
  if (mcr_typetab_strip(b->ot, o->target, &oe, NULL) != 0 ||
      mcr_typetab_strip(b->nt, n->target, &ne, NULL) != 0) {
    fail(b, path, "array element type unreadable");
    return -1;
  }
  if ((o->flags | n->flags) & MCR_TF_FLEXIBLE) {
    /* a flexible member: the caller converts the tail (a top-level struct's
     * last member); elsewhere it has no storage */
    return 0;
  }
  uint64_t oc = o->count, nc = n->count, m = oc < nc ? oc : nc;
  if (oc != nc)
    change(b, MCR_XC_RESIZED, path, ot, nt, ooff, noff, oc > nc);
  if (same(b, o->target, n->target, depth + 1)) {
    if (m) {
      struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                           .len = m * oe.size, .path = path};
      if (push(b, &op) != 0)
        return -1;
    }
  } else if (m) {
    /* the first element's operations; one operation repeats, more unroll */
    size_t first = b->nops;
    if (build(b, o->target, ooff, n->target, noff, join(b, path, "[i]", -1), depth + 1) != 0)
      return -1;
    size_t per = b->nops - first;
    if (per == 1) {
      b->ops[first].count = (uint32_t)m;
      b->ops[first].old_stride = oe.size;
      b->ops[first].new_stride = ne.size;
      b->ops[first].path = path;
    } else {
      if (per * m > MAX_OPS) {
        fail(b, path, "an array of %llu changed elements needs too many operations",
             (unsigned long long)m);
        return -1;
      }
      for (uint64_t i = 1; i < m; i++)
        for (size_t k = 0; k < per; k++) {
          struct mcr_xop op = b->ops[first + k];
          op.old_off += i * oe.size;
          op.new_off += i * ne.size;
          if (push(b, &op) != 0)
            return -1;
        }
    }
  }
  if (oc > nc) {
    struct mcr_xop op = {.kind = MCR_XOP_ZERO, .count = 1, .old_off = ooff + nc * oe.size,
                         .len = (oc - nc) * oe.size, .path = path};
    return push(b, &op);
  }
  return 0;
}

/* Member i of record r in table tt, with its name; anonymous members get
 * "#k" (their order among the anonymous ones). */
static const char *member_name(const struct mcr_typetab *tt, const struct mcr_type_rec *r,
                               uint32_t i, struct mcr_member_rec *m, char *buf, size_t len)
{
  if (mcr_typetab_member(tt, r->first_member + i, m) != 0)
    return NULL;
  const char *name = mcr_typetab_str(tt, m->name);
  if (name && *name)
    return name;
  unsigned k = 0;
  for (uint32_t j = 0; j < i; j++) {
    struct mcr_member_rec x;
    if (mcr_typetab_member(tt, r->first_member + j, &x) == 0 && !*mcr_typetab_str(tt, x.name))
      k++;
  }
  snprintf(buf, len, "#%u", k);
  return buf;
}

static int build_bits(struct builder *b, const struct mcr_member_rec *om,
                      const struct mcr_member_rec *nm, uint64_t ooff, uint64_t noff,
                      const char *path)
{
  struct mcr_type_rec o, n;
  if (mcr_typetab_strip(b->ot, om->type, &o, NULL) != 0 ||
      mcr_typetab_strip(b->nt, nm->type, &n, NULL) != 0 ||
      !is_intlike(&o) || !is_intlike(&n) || o.size > 8 || n.size > 8) {
    fail(b, path, "a bitfield changed to or from a non-integer type");
    return -1;
  }
  uint32_t obits = om->bit_size ? om->bit_size : (uint32_t)o.size * 8;
  uint32_t nbits = nm->bit_size ? nm->bit_size : (uint32_t)n.size * 8;
  int os = is_signed(b->ot, &o), ns = is_signed(b->nt, &n);
  if (obits != nbits || os != ns)
    change(b, MCR_XC_RETYPED, path, om->type, nm->type, ooff + om->offset_bits / 8,
           noff + nm->offset_bits / 8, nbits < obits || os != ns);
  else if (ooff * 8 + om->offset_bits != noff * 8 + nm->offset_bits)
    change(b, MCR_XC_MOVED, path, om->type, nm->type, ooff + om->offset_bits / 8,
           noff + nm->offset_bits / 8, 0); /* offsets in bytes: the bit is in the type's unit */
  struct mcr_xop op = {.kind = MCR_XOP_BITS, .count = 1, .old_off = ooff * 8 + om->offset_bits,
                       .new_off = noff * 8 + nm->offset_bits, .old_bits = obits,
                       .new_bits = nbits, .path = path};
  op.flags = (uint8_t)((os ? MCR_XF_OLD_SIGNED : 0) | (ns ? MCR_XF_NEW_SIGNED : 0) |
                       (n.flags & MCR_TF_BOOL ? MCR_XF_NEW_BOOL : 0));
  return push(b, &op);
}

/* Whether type t of tt, typedefs included, is named name: its tag or one of the
 * typedef names on the way to it. */
static int named(const struct mcr_typetab *tt, uint32_t t, const char *name)
{
  struct mcr_type_rec r;
  for (int i = 0; i < MCR_TYPE_MAX_DEPTH; i++) {
    if (t == MCR_NO_TYPE || mcr_typetab_type(tt, t, &r) != 0)
      return 0;
    const char *n = mcr_typetab_str(tt, r.name);
    if (n && !strcmp(n, name))
      return 1;
    if (r.kind != MCR_TYPE_TYPEDEF)
      return 0;
    t = r.target;
  }
  return 0;
}

/* The member path mpath ("n.notify_event") in struct or union r of table tt: its
 * type and byte offset. 0, or -1 with why. */
static int resolve_path(const struct mcr_typetab *tt, const struct mcr_type_rec *r,
                        const char *mpath, uint32_t *type, uint64_t *off, char *why, size_t len)
{
  struct mcr_type_rec in = *r;
  uint64_t at = 0;
  const char *p = mpath;
  for (;;) {
    const char *dot = strchr(p, '.');
    int l = (int)(dot ? (size_t)(dot - p) : strlen(p));
    struct mcr_member_rec m;
    int found = 0;
    if (in.kind != MCR_TYPE_STRUCT && in.kind != MCR_TYPE_UNION) {
      snprintf(why, len, "'%.*s' would be a field of something that is not a struct", l, p);
      return -1;
    }
    for (uint32_t j = 0; j < in.count && !found; j++) {
      const char *nm;
      if (mcr_typetab_member(tt, in.first_member + j, &m) != 0)
        continue;
      nm = mcr_typetab_str(tt, m.name);
      found = nm && (int)strlen(nm) == l && !strncmp(nm, p, (size_t)l);
    }
    if (!found) {
      snprintf(why, len, "no field '%.*s' where the path %s leads", l, p, mpath);
      return -1;
    }
    if (m.bit_size || m.offset_bits % 8) {
      snprintf(why, len, "'%.*s' is a bit-field", l, p);
      return -1;
    }
    at += m.offset_bits / 8;
    if (!dot) {
      *type = m.type;
      *off = at;
      return 0;
    }
    if (mcr_typetab_strip(tt, m.type, &in, NULL) != 0) {
      snprintf(why, len, "'%.*s' has no type information", l, p);
      return -1;
    }
    p = dot + 1;
  }
}

/* Fields named name of the old type ot's meaning nested in struct or union r of
 * the new table (through structs and unions, at most 3 levels): how many, and the
 * path of the first in path (prefix: the path so far). */
static int find_nested(struct builder *b, const struct mcr_type_rec *r, const char *name,
                       uint32_t ot, const char *prefix, char *path, size_t len, int depth)
{
  int hits = 0;
  for (uint32_t j = 0; j < r->count && depth < 3; j++) {
    struct mcr_member_rec m;
    struct mcr_type_rec in;
    char here[256];
    if (mcr_typetab_member(b->nt, r->first_member + j, &m) != 0 ||
        mcr_typetab_strip(b->nt, m.type, &in, NULL) != 0)
      continue;
    const char *mn = mcr_typetab_str(b->nt, m.name);
    snprintf(here, sizeof(here), "%s%s%s", prefix, *prefix ? "." : "", mn ? mn : "");
    if (depth > 0 && mn && !strcmp(mn, name) && same(b, ot, m.type, 0)) {
      if (!hits++)
        snprintf(path, len, "%s", here);
    } else if (mn && *mn && (in.kind == MCR_TYPE_STRUCT || in.kind == MCR_TYPE_UNION)) {
      char sub[256];
      int k = find_nested(b, &in, name, ot, here, sub, sizeof(sub), depth + 1);
      if (k && !hits)
        snprintf(path, len, "%s", sub);
      hits += k;
    }
  }
  return hits;
}

/* Old member om (named oname) of struct ot, which the new struct has no field of
 * that name for: when a --move-field names it, converted to its new place. 1 done,
 * 0 no move declared, -1 failed. */
static int build_moved(struct builder *b, uint32_t ot, const struct mcr_member_rec *om,
                       const char *oname, const struct mcr_type_rec *n, uint64_t ooff,
                       uint64_t noff, const char *path, int depth)
{
  const char *to = NULL;
  char why[256];
  uint32_t mt;
  uint64_t moff;

  for (size_t k = 0; b->moves && k < b->moves->nmove && !to; k++)
    if (!strcmp(b->moves->move_old[k], oname) && named(b->ot, ot, b->moves->move_type[k]))
      to = b->moves->move_new[k];
  if (!to)
    return 0;
  const char *p = join(b, path, oname, -1);
  if (om->bit_size || om->offset_bits % 8) {
    fail(b, p, "a moved bit-field is not supported (--move-field %s)", to);
    return -1;
  }
  if (resolve_path(b->nt, n, to, &mt, &moff, why, sizeof(why)) != 0) {
    fail(b, p, "--move-field to %s: %s", to, why);
    return -1;
  }
  char shown[256]; /* the change names both places: "served -> counters.served" */
  snprintf(shown, sizeof(shown), "%s -> %s", p, join(b, path, to, -1));
  change(b, MCR_XC_MOVED, shown, om->type, mt, ooff + om->offset_bits / 8, noff + moff, 0);
  return build(b, om->type, ooff + om->offset_bits / 8, mt, noff + moff, p, depth + 1) != 0
             ? -1
             : 1;
}

static int build_struct(struct builder *b, uint32_t ot, const struct mcr_type_rec *o,
                        const struct mcr_type_rec *n, uint64_t ooff, uint64_t noff,
                        const char *path, int depth)
{
  char ob[16], nb[16];
  /* new members in order, each from the old member of the same name */
  for (uint32_t j = 0; j < n->count; j++) {
    struct mcr_member_rec nm, om;
    const char *nname = member_name(b->nt, n, j, &nm, nb, sizeof(nb));
    int found = 0;
    if (!nname)
      continue;
    for (uint32_t i = 0; i < o->count; i++) {
      const char *oname = member_name(b->ot, o, i, &om, ob, sizeof(ob));
      if (!oname || strcmp(oname, nname))
        continue;
      found = 1;
      const char *p = join(b, path, nname, -1);
      if (om.bit_size || nm.bit_size || om.offset_bits % 8 || nm.offset_bits % 8) {
        if (build_bits(b, &om, &nm, ooff, noff, p) != 0)
          return -1;
        break;
      }
      if (om.offset_bits != nm.offset_bits && same(b, om.type, nm.type, depth + 1))
        change(b, MCR_XC_MOVED, p, om.type, nm.type, ooff + om.offset_bits / 8,
               noff + nm.offset_bits / 8, 0);
      if (build(b, om.type, ooff + om.offset_bits / 8, nm.type, noff + nm.offset_bits / 8, p,
                depth + 1) != 0)
        return -1;
      break;
    }
    if (!found)
      change(b, MCR_XC_ADDED, join(b, path, nname, -1), MCR_NO_TYPE, nm.type, 0,
             noff + nm.offset_bits / 8, 0);
  }
  for (uint32_t i = 0; i < o->count; i++) {
    struct mcr_member_rec om, nm;
    const char *oname = member_name(b->ot, o, i, &om, ob, sizeof(ob));
    int found = 0;
    if (!oname)
      continue;
    for (uint32_t j = 0; j < n->count && !found; j++) {
      const char *nname = member_name(b->nt, n, j, &nm, nb, sizeof(nb));
      found = nname && !strcmp(oname, nname);
    }
    if (found)
      continue;
    /* after every field matched by name: a field moved into one of them writes last */
    int moved = build_moved(b, ot, &om, oname, n, ooff, noff, path, depth);
    if (moved < 0)
      return -1;
    if (!moved) {
      change(b, MCR_XC_REMOVED, join(b, path, oname, -1), om.type, MCR_NO_TYPE,
             ooff + om.offset_bits / 8, 0, 0);
      char to[256], hint[600];
      const char *label = mcr_type_name(b->ot, ot); /* what a --move-field names */
      if (label && b->nch && find_nested(b, n, oname, om.type, "", to, sizeof(to), 0) == 1) {
        snprintf(hint, sizeof(hint), "%s.%s=%s", label, oname, to);
        b->ch[b->nch - 1].move_hint = mcr_arena_strdup(b->a, hint);
      }
    }
  }
  return 0;
}

static int build_union(struct builder *b, const struct mcr_type_rec *o,
                       const struct mcr_type_rec *n, uint32_t ot, uint32_t nt, uint64_t ooff,
                       uint64_t noff, const char *path, int depth)
{
  char ob[16], nb[16];
  for (uint32_t i = 0; i < o->count; i++) {
    struct mcr_member_rec om, nm;
    const char *oname = member_name(b->ot, o, i, &om, ob, sizeof(ob));
    int ok = 0;
    for (uint32_t j = 0; oname && j < n->count && !ok; j++) {
      const char *nname = member_name(b->nt, n, j, &nm, nb, sizeof(nb));
      ok = nname && !strcmp(oname, nname) && om.offset_bits == nm.offset_bits &&
           om.bit_size == nm.bit_size && same(b, om.type, nm.type, depth + 1);
    }
    if (!ok || n->size < o->size) {
      fail(b, path,
           "union %s changed (member '%s' %s): which member holds the value is unknown, so the "
           "old bytes cannot be converted; register a transformation for it",
           render(b, b->nt, nt), oname ? oname : "?", !ok ? "changed or removed" : "shrank");
      return -1;
    }
  }
  change(b, MCR_XC_RETYPED, path, ot, nt, ooff, noff, 0);
  struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                       .len = o->size, .path = path};
  return push(b, &op);
}

static const char *kind_word(int k)
{
  static const char *const w[] = {"void",  "an integer", "a floating-point number", "a pointer",
                                  "an array", "a struct", "a union", "an enum", "a function",
                                  "a typedef"};
  return k >= 0 && k < 10 ? w[k] : "?";
}

static int build(struct builder *b, uint32_t ot, uint64_t ooff, uint32_t nt, uint64_t noff,
                 const char *path, int depth)
{
  struct mcr_type_rec o, n;
  if (depth > MAX_DEPTH) {
    fail(b, path, "types nested too deeply");
    return -1;
  }
  if (mcr_typetab_strip(b->ot, ot, &o, NULL) != 0 || mcr_typetab_strip(b->nt, nt, &n, NULL) != 0) {
    fail(b, path, "no type information");
    return -1;
  }
  if (same(b, ot, nt, depth)) {
    if (!o.size)
      return 0;
    struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                         .len = o.size, .path = path};
    if (o.kind == MCR_TYPE_POINTER)
      op.flags = MCR_XF_POINTER;
    return push(b, &op);
  }
  if (o.kind == MCR_TYPE_ENUM && n.kind == MCR_TYPE_ENUM)
    return build_enum(b, &o, &n, ot, nt, ooff, noff, path);
  if (is_intlike(&o) && is_intlike(&n))
    return build_int(b, &o, &n, ot, nt, ooff, noff, path);
  if (o.kind != n.kind) {
    fail(b, path,
         "changed from %s (%s) to %s (%s): the conversion cannot be inferred; register a "
         "transformation (MCR_TRANSFORM_TYPE or MCR_TRANSFORM_GLOBAL, mcr/transform.h) for the "
         "enclosing type or global",
         kind_word(o.kind), render(b, b->ot, ot), kind_word(n.kind), render(b, b->nt, nt));
    return -1;
  }
  switch (o.kind) {
  case MCR_TYPE_FLOAT: {
    change(b, MCR_XC_RETYPED, path, ot, nt, ooff, noff, n.size < o.size);
    struct mcr_xop op = {.kind = MCR_XOP_FLOAT, .count = 1, .old_off = ooff, .new_off = noff,
                         .old_size = (uint8_t)o.size, .new_size = (uint8_t)n.size, .path = path};
    return push(b, &op);
  }
  case MCR_TYPE_POINTER: {
    struct mcr_xop op = {.kind = MCR_XOP_COPY, .count = 1, .old_off = ooff, .new_off = noff,
                         .len = o.size, .flags = MCR_XF_POINTER, .path = path};
    return push(b, &op);
  }
  case MCR_TYPE_ARRAY:
    return build_array(b, &o, &n, ot, nt, ooff, noff, path, depth);
  case MCR_TYPE_STRUCT:
    if ((o.flags | n.flags) & MCR_TF_INCOMPLETE) {
      fail(b, path, "%s is incomplete in one version: its layout is unknown",
           render(b, b->nt, nt));
      return -1;
    }
    return build_struct(b, ot, &o, &n, ooff, noff, path, depth);
  case MCR_TYPE_UNION:
    return build_union(b, &o, &n, ot, nt, ooff, noff, path, depth);
  default:
    fail(b, path, "%s cannot be converted", render(b, b->ot, ot));
    return -1;
  }
}

/* The flexible array member ending struct t, if any: its element type and offset. */
static int flex_member(const struct mcr_typetab *tt, uint32_t t, uint32_t *elem, uint64_t *off)
{
  struct mcr_type_rec r, a;
  struct mcr_member_rec m;
  if (mcr_typetab_strip(tt, t, &r, NULL) != 0 || r.kind != MCR_TYPE_STRUCT || !r.count ||
      mcr_typetab_member(tt, r.first_member + r.count - 1, &m) != 0 ||
      mcr_typetab_strip(tt, m.type, &a, NULL) != 0 || a.kind != MCR_TYPE_ARRAY ||
      !(a.flags & MCR_TF_FLEXIBLE))
    return 0;
  *elem = a.target;
  *off = m.offset_bits / 8;
  return 1;
}

static int build_plan(struct mcr_arena *a, const struct mcr_typetab *otab, uint32_t ot,
                      const struct mcr_typetab *ntab, uint32_t nt,
                      const struct mcr_renames *moves, struct mcr_xplan **out,
                      struct mcr_xerror *err, int depth)
{
  struct builder b = {.a = a, .ot = otab, .nt = ntab, .err = err, .moves = moves};
  struct mcr_type_rec o, n;
  struct mcr_xplan *p;

  if (err)
    err->path[0] = err->msg[0] = 0;
  if (mcr_typetab_strip(otab, ot, &o, NULL) != 0 || mcr_typetab_strip(ntab, nt, &n, NULL) != 0) {
    fail(&b, "", "no type information on %s side", ot == MCR_NO_TYPE ? "the old" : "the new");
    return -1;
  }
  if (!(p = mcr_arena_alloc(a, sizeof(*p), 8))) {
    fail(&b, "", "out of memory");
    return -1;
  }
  p->old_size = o.size;
  p->new_size = n.size;
  if (same(&b, ot, nt, 0)) {
    p->identical = 1;
    *out = p;
    return 0;
  }
  if (build(&b, ot, 0, nt, 0, "", 0) != 0)
    return -1;
  uint32_t oe, ne;
  uint64_t oo, no;
  int of = flex_member(otab, ot, &oe, &oo), nf = flex_member(ntab, nt, &ne, &no);
  if (of != nf) {
    fail(&b, "", "a flexible array member was %s", of ? "removed" : "added");
    return -1;
  }
  if (of && depth < 4) {
    struct mcr_xplan *tail;
    if (build_plan(a, otab, oe, ntab, ne, moves, &tail, err, depth + 1) != 0)
      return -1;
    p->tail = tail;
    p->has_tail = 1;
    p->old_tail_off = oo;
    p->new_tail_off = no;
  }
  p->ops = b.ops;
  p->nops = b.nops;
  p->changes = b.ch;
  p->nchanges = b.nch;
  /* a plan that is one copy of everything is identical after all (e.g. only
   * typedef names or struct tags changed) */
  if (p->nops == 1 && p->ops[0].kind == MCR_XOP_COPY && p->ops[0].count == 1 &&
      p->ops[0].old_off == 0 && p->ops[0].new_off == 0 && p->ops[0].len == o.size &&
      o.size == n.size && !p->nchanges && (!p->has_tail || p->tail->identical))
    p->identical = 1;
  *out = p;
  return 0;
}

int mcr_xplan_build(struct mcr_arena *a, const struct mcr_typetab *otab, uint32_t ot,
                    const struct mcr_typetab *ntab, uint32_t nt,
                    const struct mcr_renames *moves, const struct mcr_xplan **out,
                    struct mcr_xerror *err)
{
  struct mcr_xplan *p;
  if (build_plan(a, otab, ot, ntab, nt, moves, &p, err, 0) != 0)
    return -1;
  *out = p;
  return 0;
}

/* The struct or union named name (tag or typedef) in one of the n tables tabs:
 * its record and table, or NULL. */
static const struct mcr_typetab *find_struct(const struct mcr_typetab *tabs, size_t n,
                                             const char *name, struct mcr_type_rec *out)
{
  for (size_t i = 0; i < n; i++)
    for (uint32_t t = 0; t < mcr_typetab_ntypes(&tabs[i]); t++) {
      struct mcr_type_rec r;
      if (mcr_typetab_type(&tabs[i], t, &r) != 0 || !*mcr_typetab_str(&tabs[i], r.name) ||
          strcmp(mcr_typetab_str(&tabs[i], r.name), name) ||
          mcr_typetab_strip(&tabs[i], t, out, NULL) != 0)
        continue;
      if ((out->kind == MCR_TYPE_STRUCT || out->kind == MCR_TYPE_UNION) &&
          !(out->flags & MCR_TF_INCOMPLETE))
        return &tabs[i];
    }
  return NULL;
}

static int has_member(const struct mcr_typetab *tt, const struct mcr_type_rec *r,
                      const char *name)
{
  for (uint32_t j = 0; j < r->count; j++) {
    struct mcr_member_rec m;
    if (mcr_typetab_member(tt, r->first_member + j, &m) == 0 &&
        !strcmp(mcr_typetab_str(tt, m.name), name))
      return 1;
  }
  return 0;
}

int mcr_xmove_check(const struct mcr_typetab *otabs, size_t nold, const struct mcr_typetab *ntabs,
                    size_t nnew, const char *type, const char *old_field, const char *new_path,
                    char *why, size_t len)
{
  struct mcr_type_rec o, n;
  const struct mcr_typetab *ot = find_struct(otabs, nold, type, &o), *nt;
  uint32_t mt;
  uint64_t off;
  char w[256];

  if (!ot) {
    snprintf(why, len, "the old version has no struct named '%s' (its tag or typedef name)",
             type);
    return -1;
  }
  if (!has_member(ot, &o, old_field)) {
    snprintf(why, len, "the old version's %s has no field '%s'", type, old_field);
    return -1;
  }
  if (!(nt = find_struct(ntabs, nnew, type, &n))) {
    snprintf(why, len, "the new version has no struct named '%s'", type);
    return -1;
  }
  if (has_member(nt, &n, old_field)) {
    snprintf(why, len, "the new version's %s still has a field '%s': it is matched by name, "
                       "nothing to declare", type, old_field);
    return -1;
  }
  if (resolve_path(nt, &n, new_path, &mt, &off, w, sizeof(w)) != 0) {
    snprintf(why, len, "in the new version's %s: %s", type, w);
    return -1;
  }
  return 0;
}

/* ---- applying ---- */

static uint64_t get_uint(const unsigned char *p, unsigned size)
{
  uint64_t v = 0;
  memcpy(&v, p, size); /* little-endian */
  return v;
}

static int64_t sign_extend(uint64_t v, unsigned bits)
{
  if (bits >= 64)
    return (int64_t)v;
  uint64_t m = 1ull << (bits - 1);
  v &= (m << 1) - 1;
  return (int64_t)((v ^ m) - m);
}

/* Whether value (signed if sv) fits bits bits (signed if sn). */
static int fits(uint64_t raw, int sv, unsigned bits, int sn)
{
  if (sv) {
    int64_t v = (int64_t)raw;
    if (sn)
      return bits >= 64 || (v >= -(1ll << (bits - 1)) && v < (1ll << (bits - 1)));
    return v >= 0 && (bits >= 64 || (uint64_t)v < (1ull << bits));
  }
  if (sn)
    return bits > 64 || raw < (1ull << (bits - 1));
  return bits >= 64 || raw < (1ull << bits);
}

static void put_bits(unsigned char *base, uint64_t bitoff, unsigned bits, uint64_t v)
{
  for (unsigned i = 0; i < bits; i++) {
    uint64_t at = bitoff + i;
    unsigned char m = (unsigned char)(1u << (at % 8));
    if ((v >> i) & 1)
      base[at / 8] |= m;
    else
      base[at / 8] &= (unsigned char)~m;
  }
}

static uint64_t get_bits(const unsigned char *base, uint64_t bitoff, unsigned bits)
{
  uint64_t v = 0;
  for (unsigned i = 0; i < bits; i++) {
    uint64_t at = bitoff + i;
    if ((base[at / 8] >> (at % 8)) & 1)
      v |= 1ull << i;
  }
  return v;
}

static void value_fail(struct mcr_xerror *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void value_fail(struct mcr_xerror *err, const char *path, const char *fmt, ...)
{
  va_list ap;
  if (!err)
    return;
  snprintf(err->path, sizeof(err->path), "%s", path && *path ? path : "(whole object)");
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
}

static int apply_op(const struct mcr_xop *op, const unsigned char *old, size_t old_len,
                    unsigned char *new, size_t new_len, uint64_t i, struct mcr_xerror *err)
{
  uint64_t oo = op->old_off + i * op->old_stride, no = op->new_off + i * op->new_stride;
  switch (op->kind) {
  case MCR_XOP_COPY:
    if (oo + op->len > old_len || no + op->len > new_len)
      return 0; /* past a short object's end: nothing to copy */
    memcpy(new + no, old + oo, op->len);
    return 0;
  case MCR_XOP_ZERO:
    for (uint64_t k = 0; k < op->len && oo + k < old_len; k++)
      if (old[oo + k]) {
        value_fail(err, op->path,
                   "the array shrank and a dropped element holds data (byte %llu is 0x%02x)",
                   (unsigned long long)(oo + k), old[oo + k]);
        return -1;
      }
    return 0;
  case MCR_XOP_INT:
  case MCR_XOP_ENUM: {
    if (oo + op->old_size > old_len || no + op->new_size > new_len)
      return 0;
    uint64_t raw = get_uint(old + oo, op->old_size);
    int sv = !!(op->flags & MCR_XF_OLD_SIGNED);
    if (sv)
      raw = (uint64_t)sign_extend(raw, op->old_size * 8u);
    if (op->kind == MCR_XOP_ENUM) {
      uint32_t k;
      for (k = 0; k < op->nmap; k++)
        if ((uint64_t)op->map[2 * k] == raw ||
            (!sv && (uint64_t)op->map[2 * k] == (raw & ((op->old_size < 8)
                                                            ? (1ull << (op->old_size * 8)) - 1
                                                            : ~0ull))))
          break;
      if (k == op->nmap) {
        value_fail(err, op->path, "value %lld is not an enumerator the new version still has",
                   (long long)raw);
        return -1;
      }
      raw = (uint64_t)op->map[2 * k + 1];
      sv = op->map[2 * k + 1] < 0;
    }
    if (op->flags & MCR_XF_NEW_BOOL) {
      if (raw > 1 && !(sv && (int64_t)raw < 0)) {
        value_fail(err, op->path, "value %llu does not fit a _Bool", (unsigned long long)raw);
        return -1;
      }
    }
    if (!fits(raw, sv, op->new_size * 8u, !!(op->flags & MCR_XF_NEW_SIGNED))) {
      if (sv)
        value_fail(err, op->path, "value %lld does not fit %u-byte %s", (long long)raw,
                   op->new_size, op->flags & MCR_XF_NEW_SIGNED ? "signed" : "unsigned");
      else
        value_fail(err, op->path, "value %llu does not fit %u-byte %s", (unsigned long long)raw,
                   op->new_size, op->flags & MCR_XF_NEW_SIGNED ? "signed" : "unsigned");
      return -1;
    }
    memcpy(new + no, &raw, op->new_size);
    return 0;
  }
  case MCR_XOP_BITS: {
    uint64_t ob = oo, nb = no; /* bits */
    if ((ob + op->old_bits + 7) / 8 > old_len || (nb + op->new_bits + 7) / 8 > new_len)
      return 0;
    uint64_t raw = get_bits(old, ob, op->old_bits);
    int sv = !!(op->flags & MCR_XF_OLD_SIGNED);
    if (sv)
      raw = (uint64_t)sign_extend(raw, op->old_bits);
    if (!fits(raw, sv, op->new_bits, !!(op->flags & MCR_XF_NEW_SIGNED))) {
      value_fail(err, op->path, "value %lld does not fit %u bits", (long long)raw, op->new_bits);
      return -1;
    }
    put_bits(new, nb, op->new_bits, raw);
    return 0;
  }
  case MCR_XOP_FLOAT: {
    if (oo + op->old_size > old_len || no + op->new_size > new_len)
      return 0;
    long double v;
    if (op->old_size == 4) {
      float f;
      memcpy(&f, old + oo, 4);
      v = f;
    } else if (op->old_size == 8) {
      double d;
      memcpy(&d, old + oo, 8);
      v = d;
    } else {
      memcpy(&v, old + oo, sizeof(v) < op->old_size ? sizeof(v) : op->old_size);
    }
    if (op->new_size == 4) {
      float f = (float)v;
      memcpy(new + no, &f, 4);
    } else if (op->new_size == 8) {
      double d = (double)v;
      memcpy(new + no, &d, 8);
    } else {
      memcpy(new + no, &v, sizeof(v) < op->new_size ? sizeof(v) : op->new_size);
    }
    return 0;
  }
  default:
    value_fail(err, op->path, "unknown operation %u", op->kind);
    return -1;
  }
}

static int apply(const struct mcr_xplan *p, const unsigned char *old, size_t old_len,
                 unsigned char *new, size_t new_len, struct mcr_xerror *err)
{
  if (p->identical) {
    size_t n = old_len < new_len ? old_len : new_len;
    memcpy(new, old, n);
    return 0;
  }
  for (size_t k = 0; k < p->nops; k++)
    for (uint64_t i = 0; i < p->ops[k].count; i++)
      if (apply_op(&p->ops[k], old, old_len, new, new_len, i, err) != 0)
        return -1;
  return 0;
}

size_t mcr_xplan_new_len(const struct mcr_xplan *p, size_t old_len)
{
  if (p->has_tail && p->tail->old_size && old_len > p->old_tail_off) {
    size_t n = (old_len - p->old_tail_off) / p->tail->old_size;
    size_t fixed = p->new_tail_off > p->new_size ? p->new_tail_off : p->new_size;
    size_t end = p->new_tail_off + n * p->tail->new_size;
    return end > fixed ? end : fixed;
  }
  if (p->identical)
    return old_len > p->new_size ? old_len : p->new_size;
  return p->new_size;
}

int mcr_xplan_apply(const struct mcr_xplan *p, const unsigned char *old, size_t old_len,
                    unsigned char *new, size_t new_len, struct mcr_xerror *err)
{
  if (err)
    err->path[0] = err->msg[0] = 0;
  if (p->identical) {
    memcpy(new, old, old_len < new_len ? old_len : new_len);
    return 0;
  }
  size_t fixed = old_len < p->old_size ? old_len : p->old_size;
  if (apply(p, old, fixed, new, new_len, err) != 0)
    return -1;
  if (p->has_tail && p->tail->old_size && old_len > p->old_tail_off) {
    size_t n = (old_len - p->old_tail_off) / p->tail->old_size;
    for (size_t i = 0; i < n; i++) {
      size_t oo = p->old_tail_off + i * p->tail->old_size;
      size_t no = p->new_tail_off + i * p->tail->new_size;
      if (no + p->tail->new_size > new_len)
        break;
      if (apply(p->tail, old + oo, p->tail->old_size, new + no, p->tail->new_size, err) != 0)
        return -1;
    }
  }
  return 0;
}

void mcr_xplan_describe_lost(const struct mcr_xplan *p, uint64_t old_off, char *what,
                             size_t whatlen, char *fix, size_t fixlen)
{
  const struct mcr_xchange *hit = NULL;
  for (size_t k = 0; k < p->nchanges && !hit; k++) {
    const struct mcr_xchange *c = &p->changes[k];
    if ((c->kind == MCR_XC_REMOVED || c->kind == MCR_XC_RETYPED) && old_off >= c->old_off &&
        old_off < c->old_off + (c->old_size ? c->old_size : 1))
      hit = c;
  }
  if (!hit) {
    snprintf(what, whatlen, "a field the new version removed or converted");
    snprintf(fix, fixlen, "keep the field, or register a transformation");
    return;
  }
  if (hit->kind == MCR_XC_RETYPED) {
    snprintf(what, whatlen, "field '%s' (%s), converted to %s", hit->path, hit->old_type,
             hit->new_type);
    snprintf(fix, fixlen, "keep the field's type, or register a transformation");
    return;
  }
  const char *last = strrchr(hit->path, '.');
  last = last ? last + 1 : hit->path;
  snprintf(what, whatlen, "field '%s' (%s), which the new version does not have", hit->path,
           hit->old_type);
  if (hit->move_hint) {
    snprintf(fix, fixlen,
             "if it moved to %s (a field of that name and type there), declare it: mcr-ctl "
             "update --move-field %s (preview with mcr-ctl check --move-field); else keep the "
             "field, or register a transformation",
             strchr(hit->move_hint, '=') + 1, hit->move_hint);
    return;
  }
  snprintf(fix, fixlen,
           "if the field moved (into a nested struct, or renamed), declare where: mcr-ctl update "
           "--move-field TYPE.%s=NEW, TYPE the struct that has it, NEW its member path in the "
           "new version (preview with mcr-ctl check --move-field); else keep the field, or "
           "register a transformation",
           last);
}

int mcr_xplan_map_offset(const struct mcr_xplan *p, uint64_t old_off, size_t old_len,
                         uint64_t *new_off)
{
  if (old_off == 0) {
    /* a pointer to the start is a pointer to the whole object, not to its first
     * field (which may have moved) */
    *new_off = 0;
    return 0;
  }
  return mcr_xplan_map_field(p, old_off, old_len, new_off);
}

int mcr_xplan_map_field(const struct mcr_xplan *p, uint64_t old_off, size_t old_len,
                        uint64_t *new_off)
{
  if (p->identical) {
    *new_off = old_off;
    return 0;
  }
  if (old_off == p->old_size && !p->has_tail) {
    *new_off = p->new_size;
    return 0;
  }
  if (p->has_tail && p->tail->old_size && old_off >= p->old_tail_off) {
    uint64_t rel = old_off - p->old_tail_off, i = rel / p->tail->old_size, sub;
    if (p->old_tail_off + (i + 1) * p->tail->old_size > old_len && rel % p->tail->old_size == 0) {
      *new_off = p->new_tail_off + i * p->tail->new_size; /* one past the last element */
      return 0;
    }
    if (mcr_xplan_map_field(p->tail, rel % p->tail->old_size, p->tail->old_size, &sub) != 0)
      return -1;
    *new_off = p->new_tail_off + i * p->tail->new_size + sub;
    return 0;
  }
  for (size_t k = 0; k < p->nops; k++) {
    const struct mcr_xop *op = &p->ops[k];
    if (op->kind == MCR_XOP_ZERO)
      continue;
    for (uint64_t i = 0; i < op->count; i++) {
      uint64_t oo = op->old_off + i * op->old_stride, no = op->new_off + i * op->new_stride;
      if (op->kind == MCR_XOP_BITS) {
        if (old_off * 8 == oo && no % 8 == 0) {
          *new_off = no / 8;
          return 0;
        }
        continue;
      }
      if (op->kind == MCR_XOP_COPY) {
        if (old_off >= oo && old_off < oo + op->len) {
          *new_off = no + (old_off - oo);
          return 0;
        }
      } else if (old_off == oo) {
        *new_off = no;
        return 0;
      }
      if (op->old_stride && old_off < oo)
        break;
    }
  }
  return -1;
}

const char *mcr_xchange_name(int kind)
{
  switch (kind) {
  case MCR_XC_ADDED:
    return "added";
  case MCR_XC_REMOVED:
    return "removed";
  case MCR_XC_MOVED:
    return "moved";
  case MCR_XC_RETYPED:
    return "retyped";
  case MCR_XC_RESIZED:
    return "resized";
  default:
    return "changed";
  }
}
