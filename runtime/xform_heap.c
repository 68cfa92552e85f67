/*
 * xform_heap.c - the heap objects of changed types in a live update (xform.h):
 * which words of an object are pointers, and the conversion of every live
 * object of a changed type with the rewriting of the pointers to it.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "heap.h"
#include "types.h"
#include "update.h"
#include "xform.h"
#include "xform_int.h"

/* ---- what the words of a typed object are ---- */

void mcr_xform_classify(const struct mcr_typetab *tt, uint32_t t, uint64_t off, uint8_t *cls,
                     size_t nwords, int depth)
{
  struct mcr_type_rec r;
  if (depth > 32 || t == MCR_NO_TYPE || mcr_typetab_type(tt, t, &r) != 0 || off / 8 >= nwords)
    return;
  switch (r.kind) {
  case MCR_TYPE_TYPEDEF:
    mcr_xform_classify(tt, r.target, off, cls, nwords, depth + 1);
    return;
  case MCR_TYPE_POINTER:
    if (off % 8 == 0)
      cls[off / 8] = W_PTR;
    return;
  case MCR_TYPE_INT:
    if (r.size == 8 && off % 8 == 0 && cls[off / 8] == W_NONE)
      cls[off / 8] = W_CONS; /* intptr_t, size_t, long: may hold an address */
    return;
  case MCR_TYPE_UNION:
    for (uint64_t b = off / 8 * 8; b < off + r.size && b / 8 < nwords; b += 8)
      cls[b / 8] = W_CONS;
    return;
  case MCR_TYPE_STRUCT:
    for (uint32_t i = 0; i < r.count; i++) {
      struct mcr_member_rec m;
      if (mcr_typetab_member(tt, r.first_member + i, &m) == 0 && !m.bit_size)
        mcr_xform_classify(tt, m.type, off + m.offset_bits / 8, cls, nwords, depth + 1);
    }
    return;
  case MCR_TYPE_ARRAY: {
    struct mcr_type_rec e;
    uint32_t et = r.target;
    for (int i = 0; i < 8 && mcr_typetab_type(tt, et, &e) == 0 && e.kind == MCR_TYPE_TYPEDEF; i++)
      et = e.target;
    if (mcr_typetab_type(tt, et, &e) != 0 || !e.size)
      return;
    if (e.kind == MCR_TYPE_INT && e.size == 1) { /* a character buffer */
      for (uint64_t b = off / 8 * 8; b < off + r.size && b / 8 < nwords; b += 8)
        cls[b / 8] = W_CONS;
      return;
    }
    if (e.kind != MCR_TYPE_STRUCT && e.kind != MCR_TYPE_UNION && e.kind != MCR_TYPE_POINTER &&
        e.kind != MCR_TYPE_ARRAY && !(e.kind == MCR_TYPE_INT && e.size == 8))
      return;
    for (uint32_t i = 0; i < r.count && (off + (uint64_t)i * e.size) / 8 < nwords; i++)
      mcr_xform_classify(tt, r.target, off + (uint64_t)i * e.size, cls, nwords, depth + 1);
    return;
  }
  default:
    return;
  }
}

/* Per tag: the class of each word of one element (arrays repeat it), and of the
 * words after a flexible struct's fixed part. */
struct wmap {
  uint8_t *cls;
  size_t nwords; /* of one element (the type's size / 8); 0: all conservative */
  int array;
  uint8_t *tail;
  size_t tail_words, tail_off; /* flex: element words and where the tail starts */
};

static struct wmap *wmaps[MCR_TAG_MAX + 1];
static uint8_t wdone[MCR_TAG_MAX + 1];

static struct wmap *wmap_build(const struct mcr_typetab *tt, uint32_t type, uint32_t shape)
{
  struct mcr_type_rec r;
  uint32_t t = type;
  struct wmap *w = mcr_arena_alloc(mcr_xform_arena(), sizeof(*w), 8);
  if (!w)
    return NULL;
  for (int i = 0; i < 8 && mcr_typetab_type(tt, t, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    t = r.target;
  if (mcr_typetab_type(tt, t, &r) != 0 || !r.size)
    return w; /* nwords 0: conservative */
  w->nwords = (r.size + 7) / 8;
  w->array = shape == MCR_SHAPE_ARRAY;
  if (!(w->cls = mcr_arena_alloc(mcr_xform_arena(), w->nwords, 1)))
    return NULL;
  mcr_xform_classify(tt, type, 0, w->cls, w->nwords, 0);
  if (shape == MCR_SHAPE_FLEX && r.kind == MCR_TYPE_STRUCT && r.count) {
    struct mcr_member_rec m;
    struct mcr_type_rec a, e;
    if (mcr_typetab_member(tt, r.first_member + r.count - 1, &m) == 0 &&
        mcr_typetab_type(tt, m.type, &a) == 0 && a.kind == MCR_TYPE_ARRAY &&
        mcr_typetab_type(tt, a.target, &e) == 0) {
      uint32_t et = a.target;
      for (int i = 0; i < 8 && e.kind == MCR_TYPE_TYPEDEF; i++) {
        et = e.target;
        if (mcr_typetab_type(tt, et, &e) != 0)
          break;
      }
      if (e.size && e.size % 8 == 0 && (m.offset_bits / 8) % 8 == 0) {
        w->tail_words = e.size / 8;
        w->tail_off = m.offset_bits / 8;
        if ((w->tail = mcr_arena_alloc(mcr_xform_arena(), w->tail_words, 1)))
          mcr_xform_classify(tt, et, 0, w->tail, w->tail_words, 0);
      } else if (e.kind == MCR_TYPE_INT && e.size == 1) {
        w->tail_words = 1; /* chars: conservative */
        w->tail_off = m.offset_bits / 8;
        if ((w->tail = mcr_arena_alloc(mcr_xform_arena(), 1, 1)))
          w->tail[0] = W_CONS;
      }
    }
  }
  return w;
}

/* The class of word i of an object with map w (NULL: untyped). */
static inline int word_class(const struct wmap *w, size_t i)
{
  if (!w || !w->nwords)
    return W_CONS;
  if (w->array)
    return w->cls[i % w->nwords];
  if (w->tail && i * 8 >= w->tail_off)
    return w->tail[(i * 8 - w->tail_off) / 8 % w->tail_words];
  return i < w->nwords ? w->cls[i] : W_NONE; /* slack after the type: not the object's */
}

/* The map of a live object's tag: the old type's when the tag's type changed (the
 * object is still in the old layout while it is scanned), else the new site's. */
static const struct wmap *wmap_of(uint32_t tag)
{
  if (tag < MCR_TAG_FIRST_SITE || tag > MCR_TAG_MAX)
    return NULL;
  if (wdone[tag])
    return wmaps[tag];
  wdone[tag] = 1;
  const struct tinfo *ti = mcr_xform_tinfo(tag);
  if (ti) {
    wmaps[tag] = wmap_build(ti->otab, ti->otype, ti->shape);
    return wmaps[tag];
  }
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  if (mcr_site_record(tag, &tt, &rec) != 0 || rec.type == MCR_NO_TYPE ||
      rec.shape == MCR_SHAPE_UNKNOWN)
    return NULL;
  struct mcr_typetab *keep = mcr_arena_alloc(mcr_xform_arena(), sizeof(*keep), 8);
  if (!keep)
    return NULL;
  *keep = tt;
  wmaps[tag] = wmap_build(keep, rec.type, rec.shape);
  return wmaps[tag];
}

/* ---- the heap transform ---- */

struct chobj {
  uintptr_t base, nbase;
  size_t size, nlen;
  uint32_t tag, count; /* count: array elements */
  const struct tinfo *ti;
};

struct patch {
  uintptr_t slot; /* the word to rewrite (old location) */
  uint32_t target;
  uint32_t off; /* into the target */
};

static struct {
  struct chobj *v;
  size_t n, cap;
  struct patch *p;
  size_t np, pcap;
  uintptr_t lo, hi;
  struct mcr_buf *report;
  int *conflicts;
  size_t pinned, precise;
} H;

static void hconflict(const char *kind, const char *msg, const char *object, const char *otype,
                      const char *ntype, const char *oloc, const char *nloc, const char *fix)
{
  const char *const f[MCR_CF_COUNT] = {kind, msg, object, otype, ntype, oloc, nloc, "", fix};
  (*H.conflicts)++;
  if (*H.conflicts > 20)
    return;
  mcr_buf_printf(H.report, "conflict ");
  mcr_conflict_fields(H.report, f);
  mcr_buf_printf(H.report, "\n");
}

static int collect(const struct mcr_object *o, void *arg)
{
  (void)arg;
  if (o->tag > MCR_TAG_MAX || !mcr_xform_tinfo(o->tag))
    return 0;
  if (H.n == H.cap) {
    size_t nc = H.cap ? 2 * H.cap : 1024;
    struct chobj *n = mcr_arena_alloc(mcr_xform_arena(), nc * sizeof(*n), 8);
    if (!n)
      return -1;
    if (H.n)
      memcpy(n, H.v, H.n * sizeof(*n));
    H.v = n;
    H.cap = nc;
  }
  H.v[H.n++] = (struct chobj){.base = (uintptr_t)o->base, .size = o->size, .tag = o->tag,
                              .ti = mcr_xform_tinfo(o->tag)};
  return 0;
}

/* Bottom-up merge sort by base, in arena memory (no qsort: it may malloc). The
 * heap walk gives each size class in address order, so often nothing moves. */
static int sort_objects(void)
{
  size_t k0 = 1;
  while (k0 < H.n && H.v[k0 - 1].base < H.v[k0].base)
    k0++;
  if (k0 >= H.n)
    return 0;
  struct chobj *tmp = mcr_arena_alloc(mcr_xform_arena(), (H.n + 1) * sizeof(*tmp), 8);
  if (!tmp)
    return -1;
  struct chobj *a = H.v, *b = tmp;
  for (size_t w = 1; w < H.n; w *= 2) {
    for (size_t lo = 0; lo < H.n; lo += 2 * w) {
      size_t mid = lo + w < H.n ? lo + w : H.n, hi = lo + 2 * w < H.n ? lo + 2 * w : H.n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        b[k++] = a[i].base <= a[j].base ? a[i++] : a[j++];
      while (i < mid)
        b[k++] = a[i++];
      while (j < hi)
        b[k++] = a[j++];
    }
    struct chobj *t = a;
    a = b;
    b = t;
  }
  H.v = a;
  return 0;
}

/* Object base -> index in H.v, open addressing (built after the sort). */
static uint32_t *hidx;
static size_t hcap;

static inline size_t hslot(uintptr_t base)
{
  return (size_t)((base >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (hcap - 1);
}

static int index_objects(void)
{
  hcap = 64;
  while (hcap < 2 * H.n + 2)
    hcap *= 2;
  if (!(hidx = mcr_arena_alloc(mcr_xform_arena(), hcap * sizeof(*hidx), 8)))
    return -1;
  memset(hidx, 0xff, hcap * sizeof(*hidx));
  for (size_t i = 0; i < H.n; i++) {
    size_t h = hslot(H.v[i].base);
    while (hidx[h] != UINT32_MAX)
      h = (h + 1) & (hcap - 1);
    hidx[h] = (uint32_t)i;
  }
  return 0;
}

/* The changed object containing v, or -1: the heap finds the object (a page-map
 * look-up), its tag says whether its type changed, the index gives its entry. */
static long find_obj(uintptr_t v)
{
  struct mcr_object o;
  if (v < H.lo || v >= H.hi || mcr_heap_find((void *)v, &o) != 0 || o.tag > MCR_TAG_MAX ||
      !mcr_xform_tinfo(o.tag))
    return -1;
  for (size_t h = hslot((uintptr_t)o.base); hidx[h] != UINT32_MAX; h = (h + 1) & (hcap - 1))
    if (H.v[hidx[h]].base == (uintptr_t)o.base)
      return hidx[h];
  return -1;
}

static const char *holder_name(uintptr_t slot, char *buf, size_t len)
{
  struct mcr_object o;
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  if (mcr_heap_find((void *)slot, &o) == 0) {
    if (mcr_site_record(o.tag, &tt, &rec) == 0)
      snprintf(buf, len, "heap object 0x%lx+%lu allocated at %s:%u (%s)",
               (unsigned long)(uintptr_t)o.base, (unsigned long)(slot - (uintptr_t)o.base),
               mcr_typetab_str(&tt, rec.file), rec.line,
               rec.type == MCR_NO_TYPE ? "untyped" : "a word of unknown meaning");
    else
      snprintf(buf, len, "untyped heap object 0x%lx+%lu", (unsigned long)(uintptr_t)o.base,
               (unsigned long)(slot - (uintptr_t)o.base));
  } else {
    snprintf(buf, len, "0x%lx", (unsigned long)slot);
  }
  return buf;
}

static int map_off(const struct chobj *c, uint64_t off, int as_field, uint64_t *out);

static void hit(uintptr_t *slot, int cls, const char *region)
{
  long t = find_obj(*slot);
  if (t < 0)
    return;
  struct chobj *c = &H.v[t];
  if (cls == W_PTR) {
    if (H.np == H.pcap) {
      size_t nc = H.pcap ? 2 * H.pcap : 4096;
      struct patch *n = mcr_arena_alloc(mcr_xform_arena(), nc * sizeof(*n), 8);
      if (!n) {
        hconflict("other", "out of memory recording pointers to remap", "", "", "", "", "", "");
        return;
      }
      if (H.np)
        memcpy(n, H.p, H.np * sizeof(*n));
      H.p = n;
      H.pcap = nc;
    }
    H.p[H.np++] = (struct patch){(uintptr_t)slot, (uint32_t)t, (uint32_t)(*slot - c->base)};
    H.precise++;
    return;
  }
  /* a word of unknown meaning: the object must keep its address, and the word, if
   * it is a pointer, must stay right without being rewritten: allowed when the
   * object converts in place and the word points to its start or to a field that
   * keeps its offset */
  uint64_t off = *slot - c->base, noff;
  if (c->nlen <= c->size && map_off(c, off, 0, &noff) == 0 && noff == off) {
    H.pinned++;
    return;
  }
  char obj[200], holder[400], msg[900];
  const char *why = c->nlen > c->size
                        ? "the object cannot stay where it is (its new layout needs more room)"
                        : "it points into a field that moves";
  snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)c->base, c->size);
  if (region)
    snprintf(holder, sizeof(holder), "%s", region);
  else
    holder_name((uintptr_t)slot, holder, sizeof(holder));
  if (region)
    snprintf(msg, sizeof(msg),
             "its type changed, but %s may point to it (+%lu) and is not known to be a pointer, "
             "so it cannot be rewritten, and %s",
             holder, (unsigned long)(*slot - c->base), why);
  else
    snprintf(msg, sizeof(msg),
             "its type changed, but %s (at 0x%lx) may point to it (+%lu) and is not known to be "
             "a pointer, so it cannot be rewritten, and %s",
             holder, (unsigned long)(uintptr_t)slot, (unsigned long)(*slot - c->base), why);
  hconflict("pinned", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc, c->ti->new_loc,
            "give the holder a precise pointer type, or keep this type unchanged in this update");
}

static void scan_words(uintptr_t *w, size_t n, const struct wmap *m, const char *region)
{
  for (size_t i = 0; i < n; i++) {
    uintptr_t v = w[i];
    if (v < H.lo || v >= H.hi)
      continue;
    int cls = word_class(m, i);
    if (cls != W_NONE)
      hit(&w[i], cls, region);
  }
}

static int scan_object(const struct mcr_object *o, void *arg)
{
  (void)arg;
  scan_words((uintptr_t *)o->base, o->size / 8, wmap_of(o->tag), NULL);
  return *H.conflicts > 20 ? 1 : 0;
}

/* Where old offset off of changed object c is in its new layout: as a pointer
 * target (field 0: the object or element itself) or as a field (a slot). */
static int map_off(const struct chobj *c, uint64_t off, int as_field, uint64_t *out)
{
  const struct mcr_xplan *p = c->ti->plan;
  int (*map)(const struct mcr_xplan *, uint64_t, size_t, uint64_t *) =
      as_field ? mcr_xplan_map_field : mcr_xplan_map_offset;
  if (c->ti->shape == MCR_SHAPE_ARRAY) {
    uint64_t i = off / p->old_size, sub;
    if (map(p, off % p->old_size, p->old_size, &sub) != 0)
      return -1;
    *out = i * p->new_size + sub;
    return 0;
  }
  return map(p, off, c->size, out);
}

int mcr_xform_heap(const struct mcr_xform_region *regions, size_t nregions, struct mcr_buf *report,
                   int *conflicts)
{
  uint64_t t0 = mcr_update_now_ns();
  memset(&H, 0, sizeof(H));
  H.report = report;
  H.conflicts = conflicts;
  if (!mcr_xform_changed_sites())
    return 0;
  if (mcr_heap_foreach(collect, NULL) != 0 || sort_objects() != 0 || index_objects() != 0) {
    hconflict("other", "out of memory listing the objects of changed types", "", "", "", "", "",
              "");
    return -1;
  }
  if (!H.n)
    return 0;
  /* plans that could not be built are conflicts now that objects of them live */
  for (size_t i = 0; i < H.n; i++) {
    const struct tinfo *ti = H.v[i].ti;
    if (ti->plan)
      continue;
    char obj[200];
    size_t k = 0;
    for (size_t j = 0; j < H.n; j++)
      k += H.v[j].ti == ti;
    snprintf(obj, sizeof(obj), "%zu heap objects allocated at %s", k, ti->new_loc);
    hconflict("type", ti->error, obj, ti->old_name, ti->new_name, ti->old_loc, ti->new_loc,
              FIX_HOOK);
    for (size_t j = 0; j < H.n; j++) /* once per site */
      if (H.v[j].ti == ti)
        H.v[j].ti = NULL;
  }
  if (*conflicts)
    return -1;
  H.lo = H.v[0].base;
  H.hi = H.v[H.n - 1].base + H.v[H.n - 1].size;
  /* the new sizes: in place when the new layout fits the slot */
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    const struct mcr_xplan *p = c->ti->plan;
    if (c->ti->shape == MCR_SHAPE_ARRAY) {
      c->count = (uint32_t)(c->size / p->old_size);
      c->nlen = (size_t)c->count * p->new_size;
    } else {
      c->nlen = mcr_xplan_new_len(p, c->size < p->old_size ? p->old_size : c->size);
      if (c->ti->shape == MCR_SHAPE_SINGLE)
        c->nlen = p->new_size;
    }
  }
  /* the scan: every live object, then the globals and the parked stacks */
  uint64_t t1 = mcr_update_now_ns();
  mcr_heap_foreach(scan_object, NULL);
  for (size_t r = 0; r < nregions && *conflicts <= 20; r++) {
    const struct mcr_xform_region *g = &regions[r];
    uintptr_t lo = (g->lo + 7) & ~(uintptr_t)7;
    if (g->hi <= lo)
      continue;
    size_t nw = (g->hi - lo) / 8;
    struct wmap *m = NULL;
    if (g->tt) {
      m = mcr_arena_alloc(mcr_xform_arena(), sizeof(*m), 8);
      if (m && (m->cls = mcr_arena_alloc(mcr_xform_arena(), nw, 1))) {
        m->nwords = nw;
        mcr_xform_classify(g->tt, g->type, lo - g->lo, m->cls, nw, 0);
      } else {
        m = NULL;
      }
    }
    scan_words((uintptr_t *)lo, nw, m, g->name);
  }
  uint64_t t2 = mcr_update_now_ns();
  if (*conflicts)
    return -1;
  /* convert: in place when the new layout fits the slot, else a new object */
  size_t moved = 0;
  struct mcr_xerror xe;
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    if (c->nlen <= c->size) {
      c->nbase = c->base;
    } else {
      void *n = mcr_heap_alloc(c->nlen, 16);
      if (!n) {
        hconflict("other", "out of memory for a converted object", "", c->ti->old_name,
                  c->ti->new_name, c->ti->old_loc, c->ti->new_loc, "");
        return -1;
      }
      memset(n, 0, c->nlen);
      mcr_heap_set_tag(n, c->tag);
      c->nbase = (uintptr_t)n;
      moved++;
    }
  }
  size_t maxsize = 0;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].size > maxsize)
      maxsize = H.v[i].size;
  unsigned char *old = mcr_arena_alloc(mcr_xform_arena(), maxsize, 16); /* one object's old bytes */
  if (!old) {
    hconflict("other", "out of memory converting an object", "", "", "", "", "", "");
    return -1;
  }
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    const struct mcr_xplan *p = c->ti->plan;
    memcpy(old, (void *)c->base, c->size);
    unsigned char *dst = (unsigned char *)c->nbase;
    if (c->nbase == c->base)
      memset(dst, 0, c->size);
    int bad = 0;
    if (c->ti->shape == MCR_SHAPE_ARRAY) {
      for (uint32_t k = 0; k < c->count && !bad; k++) {
        bad = mcr_xplan_apply(p, old + (size_t)k * p->old_size, p->old_size,
                              dst + (size_t)k * p->new_size, p->new_size, &xe) != 0;
        if (!bad && c->ti->hook &&
            c->ti->hook(dst + (size_t)k * p->new_size, p->new_size, old + (size_t)k * p->old_size,
                        p->old_size) != 0) {
          bad = 1;
          snprintf(xe.path, sizeof(xe.path), "[%u]", k);
          snprintf(xe.msg, sizeof(xe.msg), "%s refused it", c->ti->hook_name);
        }
      }
    } else {
      size_t olen = c->ti->shape == MCR_SHAPE_FLEX ? c->size : p->old_size;
      bad = mcr_xplan_apply(p, old, olen, dst, c->nlen, &xe) != 0;
      if (!bad && c->ti->hook && c->ti->hook(dst, c->nlen, old, olen) != 0) {
        bad = 1;
        snprintf(xe.path, sizeof(xe.path), "(whole object)");
        snprintf(xe.msg, sizeof(xe.msg), "%s refused it", c->ti->hook_name);
      }
    }
    if (bad) {
      char obj[200], msg[900];
      snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)c->base, c->size);
      snprintf(msg, sizeof(msg), "field %s: %s", xe.path, xe.msg);
      hconflict("narrowing", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc,
                c->ti->new_loc,
                "widen the new field, or register a transformation that handles the value");
    }
  }
  if (*conflicts)
    return -1;
  /* the pointers: each slot (moved with its holder when that was converted too) */
  size_t removed = 0;
  for (size_t k = 0; k < H.np; k++) {
    struct patch *q = &H.p[k];
    const struct chobj *t = &H.v[q->target];
    uint64_t noff, soff;
    uintptr_t slot = q->slot;
    long h = find_obj(slot);
    if (h >= 0) {
      const struct chobj *hc = &H.v[h];
      if (map_off(hc, slot - hc->base, 1, &soff) != 0)
        continue; /* the holder's field was removed: nothing to rewrite */
      slot = hc->nbase + soff;
    }
    if (map_off(t, q->off, 0, &noff) != 0) {
      removed++;
      char obj[200], msg[600];
      snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)t->base, t->size);
      snprintf(msg, sizeof(msg),
               "a pointer at 0x%lx points to +%u inside it, a field the new version removed or "
               "converted",
               (unsigned long)q->slot, q->off);
      hconflict("type", msg, obj, t->ti->old_name, t->ti->new_name, t->ti->old_loc, t->ti->new_loc,
                "keep the field, or register a transformation");
      continue;
    }
    *(uintptr_t *)slot = t->nbase + noff;
  }
  if (*conflicts)
    return -1;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].nbase != H.v[i].base)
      mcr_heap_free((void *)H.v[i].base);
  uint64_t t3 = mcr_update_now_ns();
  mcr_buf_printf(report,
                 "phase transform %llu %zu objects of %zu changed types converted (%zu moved), "
                 "%zu pointers remapped, %zu words of unknown meaning left as they are; scan %.1f "
                 "ms, convert %.1f ms\n",
                 (unsigned long long)(t3 - t0), H.n, mcr_xform_changed_sites(), moved, H.precise, H.pinned,
                 (t2 - t1) / 1e6, (t3 - t2) / 1e6);
  (void)removed;
  return 0;
}
