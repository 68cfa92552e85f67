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

/* ---- the heap transform ----
 *
 * Every live object whose site's type changed is converted (in place when the
 * new layout fits its slot, else into a new object) and every pointer to it is
 * rewritten. Most of it runs before the pause, on the pre-copy's copy of the old
 * heap (mcr_xform_precopy): moved objects are built in their new objects,
 * in-place ones in side buffers, and the pointers found are rewritten where they
 * are. The pause (mcr_xform_heap) then redoes only what the pages written since
 * the pre-copy touch: the objects on those pages (converted again, their words
 * scanned again), the pointers held there, and the globals, stacks and epoll
 * data, which are always scanned. Without a pre-copy the pause does it all. */

struct chobj {
  uintptr_t base, nbase;
  size_t size, nlen;
  uint32_t tag, count; /* count: array elements */
  const struct tinfo *ti;
  unsigned char *dst; /* where the new layout is built: nbase, or a side buffer */
  uint8_t state;      /* OBJ_* */
  uint8_t stale;      /* on the pause's list of objects to check again */
  uint8_t piece;      /* a pool piece (mcr_xform_add_piece), inside a heap object */
};
enum { OBJ_OK, OBJ_DEAD };

#define NONE UINT32_MAX

struct patch {
  uintptr_t slot;  /* the word to rewrite, where the old heap has it (0: dropped) */
  uint32_t target; /* the changed object it points into, and where */
  uint32_t off;
  uint32_t holder; /* the changed object holding the slot, or NONE */
  uint32_t dropped; /* its word is scanned again in the pause */
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
  uint32_t holder; /* of the words being scanned */
  int pre;         /* scanning the pre-copy's copy: words of unknown meaning are listed */
  /* left by the pre-copy for the pause */
  int pre_ok;
  size_t npre, npre_patch;     /* objects and pointers the pre-copy found */
  uintptr_t *cons;             /* slots of words of unknown meaning, by address (| 1: dropped) */
  uint32_t *inplace;           /* the pre-copy's objects converted aside */
  size_t ninplace;
  size_t ncons, conscap;
  uint32_t *tfirst, *tlist;    /* the pre-copy's patches by target */
  uint32_t *stale;             /* objects to check again in the pause */
  size_t nstale, stalecap;
  const uint32_t *tagmap;      /* pre-copy: old site id -> new */
  struct mcr_heap_range *oldr; /* pause: where the old heap's objects are (address order) */
  size_t noldr;
  uint32_t taglimit;
  size_t cursor;
  size_t redone, fresh;        /* pause: converted again, found new */
  int committed_pending;
} H;

static int grow(void **v, size_t *cap, size_t n, size_t each)
{
  if (n < *cap)
    return 0;
  size_t nc = *cap ? 2 * *cap : 1024;
  void *nv = mcr_arena_alloc(mcr_xform_arena(), nc * each, 8);
  if (!nv)
    return -1;
  if (n)
    memcpy(nv, *v, n * each);
  *v = nv;
  *cap = nc;
  return 0;
}

static void hconflict(const char *kind, const char *msg, const char *object, const char *otype,
                      const char *ntype, const char *oloc, const char *nloc, const char *fix)
{
  const char *const f[MCR_CF_COUNT] = {kind, msg, object, otype, ntype, oloc, nloc, "", fix};
  if (H.pre) { /* before the pause nothing is decided: the pause does it all */
    H.pre_ok = 0;
    return;
  }
  (*H.conflicts)++;
  if (*H.conflicts > 20)
    return;
  mcr_buf_printf(H.report, "conflict ");
  mcr_conflict_fields(H.report, f);
  mcr_buf_printf(H.report, "\n");
}

static long add_obj(uintptr_t base, size_t size, uint32_t tag, const struct tinfo *ti)
{
  if (grow((void **)&H.v, &H.cap, H.n, sizeof(*H.v)) != 0)
    return -1;
  H.v[H.n] = (struct chobj){.base = base, .size = size, .tag = tag, .ti = ti};
  return (long)H.n++;
}

/* Whether a is in the old heap's ranges (H.oldr; none known: yes). */
static int in_old_heap(uintptr_t a)
{
  size_t lo = 0, hi = H.noldr;
  if (!H.oldr)
    return 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a < H.oldr[mid].start)
      hi = mid;
    else if (a >= H.oldr[mid].start + H.oldr[mid].len)
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

/* The pool pieces of the old heap the transfer knows (mcr_xform_add_piece),
 * sorted by address before the scan: the words of a heap object inside one
 * are scanned by the piece's type, and a piece of a changed type is converted
 * as an object of its own (index: its entry in H.v, else NONE). */
static struct {
  struct xpiece {
    uintptr_t addr;
    size_t size;
    uint32_t tag, index;
    int fresh; /* this process's own (its startup's, staying): in the new layout */
  } *v;
  size_t n, cap;
  size_t converted, moved, moved_bytes;
} PC;

int mcr_xform_add_piece(uintptr_t addr, size_t size, uint32_t tag)
{
  if (grow((void **)&PC.v, &PC.cap, PC.n, sizeof(*PC.v)) != 0)
    return -1;
  PC.v[PC.n++] = (struct xpiece){addr, size, tag, UINT32_MAX, 0};
  return 0;
}

int mcr_xform_add_new_piece(uintptr_t addr, size_t size, uint32_t tag)
{
  if (mcr_xform_add_piece(addr, size, tag) != 0)
    return -1;
  PC.v[PC.n - 1].fresh = 1;
  return 0;
}

size_t mcr_xform_npieces(void) { return PC.n; }

size_t mcr_xform_pieces_kept(void (*fn)(uintptr_t addr, size_t size, uint32_t tag, void *arg),
                             void *arg)
{
  size_t n = 0;
  for (size_t k = 0; k < PC.n; k++) {
    const struct xpiece *p = &PC.v[k];
    if (!p->tag || p->fresh ||
        (p->index != UINT32_MAX && H.v[p->index].nbase != H.v[p->index].base))
      continue; /* dead, this process's own (a startup record of its), or moved out of
                 * its pool: an object of its own now */
    fn(p->addr, p->size, p->tag, arg);
    n++;
  }
  return n;
}

void mcr_xform_clear_pieces(void)
{
  memset(&PC, 0, sizeof(PC));
}

static int sort_by_address(void **v, size_t n, size_t each);

/* By address. */
static int sort_pieces(void)
{
  size_t n = PC.n;
  void *v = PC.v;
  if (sort_by_address(&v, n, sizeof(*PC.v)) != 0)
    return -1;
  if (v != PC.v)
    PC.cap = n; /* (the sort's own array, exactly as long) */
  PC.v = v;
  return 0;
}

/* The first known piece at or above a. */
static size_t piece_at(uintptr_t a)
{
  size_t lo = 0, hi = PC.n;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (PC.v[m].addr < a)
      lo = m + 1;
    else
      hi = m;
  }
  return lo;
}

/* An object of a changed type to convert: one of the old process's. This
 * process's own objects of the same sites (its startup's, which carry the
 * same tags since the renumbering) are in the new layout already. */
static int collect(const struct mcr_object *o, void *arg)
{
  (void)arg;
  const struct tinfo *ti = mcr_xform_tinfo(o->tag);
  if (!ti || !in_old_heap((uintptr_t)o->base))
    return 0;
  return add_obj((uintptr_t)o->base, o->size, o->tag, ti) < 0 ? -1 : 0;
}

static uint32_t pre_tag(uint32_t old)
{
  if (old < MCR_TAG_FIRST_SITE)
    return old;
  return old < H.taglimit && H.tagmap[old] ? H.tagmap[old] : MCR_TAG_UNTYPED;
}

static int collect_copied(const struct mcr_object *o, void *arg)
{
  struct mcr_object m = *o;
  m.tag = pre_tag(o->tag);
  return collect(&m, arg);
}

/* Sorts n elements of each bytes, whose first member is an address, by it:
 * a bottom-up merge sort in arena memory (no qsort: it may malloc). *v is the
 * sorted array (itself, or one of the arena's). Already sorted (the heap walk
 * gives each size class in address order) nothing moves. */
static int sort_by_address(void **v, size_t n, size_t each)
{
  unsigned char *a = *v, *b;
  size_t k0 = 1;
  while (k0 < n && *(uintptr_t *)(a + (k0 - 1) * each) < *(uintptr_t *)(a + k0 * each))
    k0++;
  if (k0 >= n)
    return 0;
  if (!(b = mcr_arena_alloc(mcr_xform_arena(), (n + 1) * each, 8)))
    return -1;
  for (size_t w = 1; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        int left = *(uintptr_t *)(a + i * each) <= *(uintptr_t *)(a + j * each);
        memcpy(b + k++ * each, a + (left ? i++ : j++) * each, each);
      }
      memcpy(b + k * each, a + i * each, (mid - i) * each);
      k += mid - i;
      memcpy(b + k * each, a + j * each, (hi - j) * each);
    }
    unsigned char *t = a;
    a = b;
    b = t;
  }
  *v = a;
  return 0;
}

static int sort_objects(void)
{
  void *v = H.v;
  if (sort_by_address(&v, H.n, sizeof(*H.v)) != 0)
    return -1;
  if (v != H.v)
    H.cap = H.n; /* (the sort's own array, exactly as long) */
  H.v = v;
  return 0;
}

/* Object base -> index in H.v, open addressing. */
static uint32_t *hidx;
static size_t hcap, hused;

static inline size_t hslot(uintptr_t base)
{
  return (size_t)((base >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (hcap - 1);
}

static void index_put(uint32_t i)
{
  size_t h = hslot(H.v[i].base);
  while (hidx[h] != UINT32_MAX)
    h = (h + 1) & (hcap - 1);
  hidx[h] = i;
  hused++;
}

static int index_objects(size_t room)
{
  hcap = 64;
  while (hcap < 2 * (H.n + room) + 2)
    hcap *= 2;
  if (!(hidx = mcr_arena_alloc(mcr_xform_arena(), hcap * sizeof(*hidx), 8)))
    return -1;
  memset(hidx, 0xff, hcap * sizeof(*hidx));
  hused = 0;
  for (size_t i = 0; i < H.n; i++)
    index_put((uint32_t)i);
  return 0;
}

static long index_get(uintptr_t base)
{
  for (size_t h = hslot(base); hidx[h] != UINT32_MAX; h = (h + 1) & (hcap - 1))
    if (H.v[hidx[h]].base == base)
      return hidx[h];
  return -1;
}

/* The first of the (sorted) changed objects whose base is at or above a. */
static size_t first_at(uintptr_t a, size_t n)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (H.v[m].base < a)
      lo = m + 1;
    else
      hi = m;
  }
  return lo;
}

/* The changed object containing v, or -1. On the pre-copy's copy: a search of
 * the sorted objects. In the pause: the heap finds the object (a page-map
 * look-up), its tag says whether its type changed, the index gives its entry. */
static long find_obj(uintptr_t v)
{
  if (v < H.lo || v >= H.hi)
    return -1;
  if (H.pre) {
    size_t i = first_at(v + 1, H.n);
    if (!i || v >= H.v[i - 1].base + H.v[i - 1].size)
      return -1;
    return (long)i - 1;
  }
  struct mcr_object o;
  if (mcr_heap_find((void *)v, &o) != 0)
    return -1;
  if (!mcr_xform_tinfo(o.tag)) {
    /* inside a pool piece of a changed type? */
    size_t k = PC.n ? piece_at(v + 1) : 0;
    if (!k || v >= PC.v[k - 1].addr + PC.v[k - 1].size || PC.v[k - 1].index == UINT32_MAX)
      return -1;
    long i = (long)PC.v[k - 1].index;
    return H.v[i].state == OBJ_OK ? i : -1;
  }
  long i = index_get((uintptr_t)o.base);
  return i >= 0 && H.v[i].state == OBJ_OK ? i : -1;
}

static const char *holder_name(uintptr_t slot, char *buf, size_t len)
{
  struct mcr_object o;
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  if (mcr_heap_find((void *)slot, &o) == 0) {
    /* in a known pool piece: its site says more than its block's */
    size_t k = PC.n ? piece_at(slot + 1) : 0;
    if (k && slot < PC.v[k - 1].addr + PC.v[k - 1].size && PC.v[k - 1].tag &&
        mcr_site_record(PC.v[k - 1].tag, &tt, &rec) == 0)
      snprintf(buf, len, "pool piece 0x%lx+%lu (in heap object 0x%lx) allocated at %s:%u (%s)",
               (unsigned long)PC.v[k - 1].addr, (unsigned long)(slot - PC.v[k - 1].addr),
               (unsigned long)(uintptr_t)o.base, mcr_typetab_str(&tt, rec.file), rec.line,
               rec.type == MCR_NO_TYPE ? "untyped" : "a word of unknown meaning");
    else if (mcr_site_record(o.tag, &tt, &rec) == 0)
      snprintf(buf, len, "heap object 0x%lx+%lu allocated at %s:%u (%s)",
               (unsigned long)(uintptr_t)o.base, (unsigned long)(slot - (uintptr_t)o.base),
               mcr_typetab_str(&tt, rec.file), rec.line,
               rec.type == MCR_NO_TYPE ? "untyped" : "a word of unknown meaning");
    else if (o.tag == MCR_TAG_UNTYPED) /* no site: malloc called by code mcr-clang did not compile */
      snprintf(buf, len, "untyped heap object 0x%lx+%lu (allocated by code mcr-clang did not "
               "compile, a shared library or libc, or at a site the new version removed)",
               (unsigned long)(uintptr_t)o.base,
               (unsigned long)(slot - (uintptr_t)o.base));
    else
      snprintf(buf, len, "untyped heap object 0x%lx+%lu", (unsigned long)(uintptr_t)o.base,
               (unsigned long)(slot - (uintptr_t)o.base));
  } else {
    snprintf(buf, len, "0x%lx", (unsigned long)slot);
  }
  return buf;
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

/* A word of unknown meaning points into changed object c: the object must keep
 * its address, and the word, if it is a pointer, must stay right without being
 * rewritten: allowed when the object converts in place and the word points to
 * its start or to a field that keeps its offset. */
const char *mcr_xform_changed_type(uint32_t tag, const char **key)
{
  const struct tinfo *ti = mcr_xform_tinfo(tag);
  if (!ti)
    return NULL;
  if (key)
    *key = ti->key ? ti->key : "";
  return ti->new_name && *ti->new_name ? ti->new_name : "(unnamed)";
}

static const uint64_t *dead_v; /* mcr_xform_set_dead */
static size_t dead_n, dead_words;

void mcr_xform_set_dead(const uint64_t *ranges, size_t n)
{
  dead_v = ranges;
  dead_n = n;
  dead_words = 0;
}

static int in_dead(uintptr_t a)
{
  for (size_t i = 0; i < dead_n; i++)
    if (a >= dead_v[2 * i] && a < dead_v[2 * i + 1])
      return 1;
  return 0;
}

static void judge_pin(uintptr_t *slot, const struct chobj *c, const char *region)
{
  if (in_dead((uintptr_t)slot)) {
    dead_words++; /* an old thread's wait output buffer: overwritten before it is read */
    return;
  }
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
  struct mcr_object h;
  int foreign = !region && mcr_heap_find(slot, &h) == 0 && h.tag == MCR_TAG_UNTYPED;
  hconflict("pinned", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc, c->ti->new_loc,
            foreign ? "if a library mcr-clang did not compile allocated the holder (memcached: "
                      "Debian's libevent keeps its event lists so), compile that library with "
                      "mcr-clang into the server (docs/real-servers.md, memcached 1.6.18 -> "
                      "1.6.38); else keep this type unchanged in this update"
                    : "give the holder a precise pointer type, or keep this type unchanged in "
                      "this update");
}

static void hit(uintptr_t *slot, int cls, const char *region)
{
  long t = find_obj(*slot);
  if (t < 0)
    return;
  struct chobj *c = &H.v[t];
  if (cls == W_PTR) {
    if (grow((void **)&H.p, &H.pcap, H.np, sizeof(*H.p)) != 0) {
      hconflict("other", "out of memory recording pointers to remap", "", "", "", "", "", "");
      return;
    }
    H.p[H.np++] = (struct patch){(uintptr_t)slot, (uint32_t)t, (uint32_t)(*slot - c->base),
                                 H.holder, 0};
    H.precise++;
    return;
  }
  if (H.pre) { /* judged in the pause, against the final objects */
    if (grow((void **)&H.cons, &H.conscap, H.ncons, sizeof(*H.cons)) == 0)
      H.cons[H.ncons++] = (uintptr_t)slot;
    else
      H.pre_ok = 0;
    return;
  }
  judge_pin(slot, c, region);
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

static const struct wmap *new_wmap(uint32_t tag);

/* Words [from, to) of an object whose word map is m (word i of the object is
 * w[i]). */
static void scan_span(uintptr_t *w, size_t from, size_t to, const struct wmap *m)
{
  for (size_t i = from; i < to; i++) {
    uintptr_t v = w[i];
    if (v < H.lo || v >= H.hi)
      continue;
    int cls = word_class(m, i);
    if (cls != W_NONE)
      hit(&w[i], cls, NULL);
  }
}

/* A heap object holding known pool pieces: each piece's words by its type
 * (its holder: its entry when its type changed), the rest by the object's. */
static void scan_with_pieces(const struct mcr_object *o, size_t k, const struct wmap *m)
{
  uintptr_t base = (uintptr_t)o->base, end = base + o->size;
  uintptr_t *w = (uintptr_t *)base;
  size_t done = 0, nw = o->size / 8;
  for (; k < PC.n && PC.v[k].addr < end; k++) {
    const struct xpiece *p = &PC.v[k];
    size_t a = (p->addr - base) / 8, b = (p->addr + p->size - base + 7) / 8;
    if (a < done || b > nw)
      continue; /* overlaps the one before, or past the object's end: left to the object's map */
    scan_span(w, done, a, m);
    if (p->tag) { /* (tag 0: a dead piece, whose words are not scanned) */
      H.holder = p->index != UINT32_MAX && H.v[p->index].state == OBJ_OK ? p->index : NONE;
      scan_words((uintptr_t *)p->addr, p->size / 8,
                 p->fresh && mcr_xform_tinfo(p->tag) ? new_wmap(p->tag) : wmap_of(p->tag),
                 NULL);
      H.holder = NONE;
    }
    done = b;
  }
  scan_span(w, done, nw, m);
}

static int scan_object(const struct mcr_object *o, void *arg)
{
  (void)arg;
  if (o->tag == MCR_TAG_RELEASED)
    return 0; /* on the program's free list: its words are dead (abi.h) */
  long h = mcr_xform_tinfo(o->tag) ? index_get((uintptr_t)o->base) : -1;
  H.holder = h >= 0 && H.v[h].state == OBJ_OK ? (uint32_t)h : NONE;
  size_t k = PC.n ? piece_at((uintptr_t)o->base) : PC.n;
  if (k < PC.n && PC.v[k].addr < (uintptr_t)o->base + o->size && H.holder == NONE)
    scan_with_pieces(o, k, wmap_of(o->tag));
  else
    scan_words((uintptr_t *)o->base, o->size / 8, wmap_of(o->tag), NULL);
  H.holder = NONE;
  return *H.conflicts > 20 ? 1 : 0;
}

/* On the pre-copy's copy: the objects come in address order, as H.v is. */
static int scan_copied(const struct mcr_object *o, void *arg)
{
  (void)arg;
  uint32_t tag = pre_tag(o->tag);
  if (tag == MCR_TAG_RELEASED)
    return 0;
  while (H.cursor < H.n && H.v[H.cursor].base < (uintptr_t)o->base)
    H.cursor++;
  H.holder = H.cursor < H.n && H.v[H.cursor].base == (uintptr_t)o->base ? (uint32_t)H.cursor : NONE;
  scan_words((uintptr_t *)o->base, o->size / 8, wmap_of(tag), NULL);
  H.holder = NONE;
  return 0;
}

static void scan_regions(const struct mcr_xform_region *regions, size_t nregions)
{
  for (size_t r = 0; r < nregions && *H.conflicts <= 20; r++) {
    const struct mcr_xform_region *g = &regions[r];
    uintptr_t lo = (g->lo + 7) & ~(uintptr_t)7;
    if (g->hi <= lo)
      continue;
    size_t nw = (g->hi - lo) / 8;
    struct wmap *m = NULL;
    if (g->pointers) { /* declared: every word a pointer */
      m = mcr_arena_alloc(mcr_xform_arena(), sizeof(*m), 8);
      if (m && (m->cls = mcr_arena_alloc(mcr_xform_arena(), nw, 1))) {
        m->nwords = nw;
        memset(m->cls, W_PTR, nw);
      } else {
        m = NULL;
      }
    } else if (g->tt) {
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
}

/* The new length of c: in place when the new layout fits the slot. */
static void size_obj(struct chobj *c)
{
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

/* The i-th entry of list idx (NULL: of H.v itself). */
static inline struct chobj *nth(const uint32_t *idx, size_t i)
{
  return &H.v[idx ? idx[i] : i];
}

/* Plans that could not be built are conflicts once objects of them live. */
static int check_plans(const uint32_t *idx, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    const struct tinfo *ti = nth(idx, i)->ti;
    if (ti->plan || nth(idx, i)->state == OBJ_DEAD)
      continue;
    char obj[200];
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
      k += nth(idx, j)->ti == ti;
    snprintf(obj, sizeof(obj), "%zu heap objects allocated at %s", k, ti->new_loc);
    hconflict("type", ti->error, obj, ti->old_name, ti->new_name, ti->old_loc, ti->new_loc,
              FIX_HOOK);
    return -1;
  }
  return 0;
}

/* Where c's new layout goes: its slot (in_place_dst: there directly, else a
 * side buffer copied there in the pause) or a new object. */
static int place_obj(struct chobj *c, int in_place_dst)
{
  if (c->nlen <= c->size) {
    if (c->nbase && c->nbase != c->base)
      mcr_heap_free((void *)c->nbase); /* it moved before, not now */
    c->nbase = c->base;
    if (in_place_dst)
      c->dst = (unsigned char *)c->base;
    else if (!(c->dst = mcr_arena_alloc(mcr_xform_arena(), c->size ? c->size : 1, 16)))
      return -1;
    return 0;
  }
  if (c->nbase && c->nbase != c->base && mcr_heap_usable_size((void *)c->nbase) >= c->nlen) {
    c->dst = (unsigned char *)c->nbase; /* converted before the pause: again there */
    return 0;
  }
  if (c->nbase && c->nbase != c->base)
    mcr_heap_free((void *)c->nbase);
  void *n = mcr_heap_alloc(c->nlen, 16);
  if (!n)
    return -1;
  mcr_heap_set_tag(n, c->tag);
  c->nbase = (uintptr_t)n;
  c->dst = n;
  return 0;
}

/* Converts the old bytes old of c (c->size of them) into c->dst (c->nlen):
 * the fields the plan maps are written, the others left as they are. 0, or
 * -1 with xe. */
static int convert_bytes(const struct chobj *c, const unsigned char *old, struct mcr_xerror *xe)
{
  const struct mcr_xplan *p = c->ti->plan;
  if (c->ti->shape == MCR_SHAPE_ARRAY) {
    for (uint32_t k = 0; k < c->count; k++) {
      if (mcr_xplan_apply(p, old + (size_t)k * p->old_size, p->old_size,
                          c->dst + (size_t)k * p->new_size, p->new_size, xe) != 0)
        return -1;
      if (c->ti->hook && c->ti->hook(c->dst + (size_t)k * p->new_size, p->new_size,
                                     old + (size_t)k * p->old_size, p->old_size) != 0) {
        snprintf(xe->path, sizeof(xe->path), "[%u]", k);
        snprintf(xe->msg, sizeof(xe->msg), "%s refused it", c->ti->hook_name);
        return -1;
      }
    }
    return 0;
  }
  size_t olen = c->ti->shape == MCR_SHAPE_FLEX ? c->size : p->old_size;
  if (mcr_xplan_apply(p, old, olen, c->dst, c->nlen, xe) != 0)
    return -1;
  if (c->ti->hook && c->ti->hook(c->dst, c->nlen, old, olen) != 0) {
    snprintf(xe->path, sizeof(xe->path), "(whole object)");
    snprintf(xe->msg, sizeof(xe->msg), "%s refused it", c->ti->hook_name);
    return -1;
  }
  return 0;
}

/* Converts c from the old bytes at its base into c->dst, zeroed first. 0, or
 * -1 with xe. */
static int convert_obj(const struct chobj *c, unsigned char *old, struct mcr_xerror *xe)
{
  memcpy(old, (void *)c->base, c->size);
  memset(c->dst, 0, c->nbase == c->base ? c->size : c->nlen);
  return convert_bytes(c, old, xe);
}

static void narrowing_conflict(const struct chobj *c, const struct mcr_xerror *xe)
{
  char obj[200], msg[900];
  snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)c->base, c->size);
  snprintf(msg, sizeof(msg), "field %s: %s", xe->path, xe->msg);
  hconflict("narrowing", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc,
            c->ti->new_loc, "widen the new field, or register a transformation that handles the value");
}

static void mark_stale(size_t i);

/* Places and converts the live objects of list idx (NULL: all of H.v). In the
 * pause (decide) an in-place object is converted in its slot and a failure is
 * a conflict; before it, aside and the object is left to the pause. 0, or -1
 * (out of memory, or conflicts). */
static int convert_objects(const uint32_t *idx, size_t n, int decide)
{
  size_t maxsize = 0;
  struct mcr_xerror xe;
  for (size_t i = 0; i < n; i++)
    if (nth(idx, i)->size > maxsize)
      maxsize = nth(idx, i)->size;
  unsigned char *buf = mcr_arena_alloc(mcr_xform_arena(), maxsize + 16, 16); /* old bytes */
  if (!buf) {
    hconflict("other", "out of memory converting an object", "", "", "", "", "", "");
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    struct chobj *c = nth(idx, i);
    if (c->state != OBJ_OK)
      continue;
    if (place_obj(c, decide) != 0) {
      hconflict("other", "out of memory for a converted object", "", c->ti->old_name,
                c->ti->new_name, c->ti->old_loc, c->ti->new_loc, "");
      return -1;
    }
    if (convert_obj(c, buf, &xe) == 0)
      continue;
    if (decide)
      narrowing_conflict(c, &xe);
    else
      mark_stale(idx ? idx[i] : i); /* the value may still change: decided in the pause */
  }
  return *H.conflicts ? -1 : 0;
}

/* Frees what the pre-copy's conversion allocated and forgets it. */
static void reset(struct mcr_buf *report, int *conflicts)
{
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].nbase && H.v[i].nbase != H.v[i].base)
      mcr_heap_free((void *)H.v[i].nbase);
  memset(&H, 0, sizeof(H));
  H.report = report;
  H.conflicts = conflicts;
  H.holder = NONE;
}

/* Where patch q's slot is now: in its holder's new layout when the holder is a
 * changed object, else where it was. NULL: the holder's field was removed. */
static uintptr_t *slot_of(const struct patch *q)
{
  if (q->holder == NONE)
    return (uintptr_t *)q->slot;
  const struct chobj *hc = &H.v[q->holder];
  uint64_t soff;
  if (map_off(hc, q->slot - hc->base, 1, &soff) != 0)
    return NULL;
  return (uintptr_t *)(hc->dst + soff);
}

/* Rewrites q's slot to its target's new address. report: a pointer into a
 * removed field is a conflict (else -1 without one). */
static int apply_patch(const struct patch *q, int report)
{
  const struct chobj *t = &H.v[q->target];
  uintptr_t *slot = slot_of(q);
  uint64_t noff;
  if (!slot)
    return 0;
  if (map_off(t, q->off, 0, &noff) != 0) {
    if (report) {
      char obj[200], msg[900], what[400], fix[400];
      const struct mcr_xplan *p = t->ti->plan;
      uint64_t in = t->ti->shape == MCR_SHAPE_ARRAY && p->old_size ? q->off % p->old_size : q->off;
      mcr_xplan_describe_lost(p, in, what, sizeof(what), fix, sizeof(fix));
      snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)t->base, t->size);
      snprintf(msg, sizeof(msg), "a pointer at 0x%lx points to +%u inside it, into %s",
               (unsigned long)q->slot, q->off, what);
      hconflict("type", msg, obj, t->ti->old_name, t->ti->new_name, t->ti->old_loc,
                t->ti->new_loc, fix);
    }
    return -1;
  }
  *slot = t->nbase + noff;
  return 0;
}

static void mark_stale(size_t i)
{
  if (H.v[i].stale)
    return;
  if (grow((void **)&H.stale, &H.stalecap, H.nstale, sizeof(*H.stale)) != 0) {
    H.pre_ok = 0;
    return;
  }
  H.v[i].stale = 1;
  H.stale[H.nstale++] = (uint32_t)i;
}

/* ---- before the pause ---- */

void mcr_xform_precopy(const struct mcr_heap_state *old, const uint32_t *tagmap, uint32_t limit,
                       struct mcr_buf *report)
{
  static int none; /* hconflict reports nothing before the pause */
  uint64_t t0 = mcr_update_now_ns();
  reset(report, &none);
  if (!mcr_xform_changed_sites())
    return;
  H.pre = 1;
  H.tagmap = tagmap;
  H.taglimit = limit;
  if (mcr_heap_foreach_copied(old, collect_copied, NULL) != 0 || sort_objects() != 0 ||
      index_objects(H.n / 4 + 1024) != 0 || !H.n)
    goto give_up;
  for (size_t i = 0; i < H.n; i++)
    if (!H.v[i].ti->plan)
      goto give_up; /* a conflict if the objects still live: the pause says so */
  H.pre_ok = 1;
  H.lo = H.v[0].base;
  H.hi = H.v[H.n - 1].base + H.v[H.n - 1].size;
  for (size_t i = 0; i < H.n; i++)
    size_obj(&H.v[i]);
  mcr_heap_foreach_copied(old, scan_copied, NULL);
  /* moved objects into their new objects, in-place ones aside (their slot
   * keeps the old bytes the pause may still need) */
  if (!H.pre_ok || convert_objects(NULL, H.n, 0) != 0 ||
      !(H.inplace = mcr_arena_alloc(mcr_xform_arena(), (H.n + 1) * sizeof(uint32_t), 8)))
    goto give_up;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].nbase == H.v[i].base)
      H.inplace[H.ninplace++] = (uint32_t)i;
  /* the pointers; one into a removed field is a conflict the pause reports */
  for (size_t k = 0; k < H.np; k++)
    if (apply_patch(&H.p[k], 0) != 0)
      goto give_up;
  /* the patches by target (counting sort), for the targets the pause converts again */
  uint32_t *at = mcr_arena_alloc(mcr_xform_arena(), (H.n + 1) * sizeof(uint32_t), 8);
  H.tfirst = mcr_arena_alloc(mcr_xform_arena(), (H.n + 1) * sizeof(uint32_t), 8);
  H.tlist = mcr_arena_alloc(mcr_xform_arena(), (H.np + 1) * sizeof(uint32_t), 8);
  if (!at || !H.tfirst || !H.tlist)
    goto give_up;
  memset(H.tfirst, 0, (H.n + 1) * sizeof(uint32_t));
  for (size_t k = 0; k < H.np; k++)
    H.tfirst[H.p[k].target + 1]++;
  for (size_t i = 0; i < H.n; i++)
    H.tfirst[i + 1] += H.tfirst[i];
  memcpy(at, H.tfirst, (H.n + 1) * sizeof(uint32_t));
  for (size_t k = 0; k < H.np; k++)
    H.tlist[at[H.p[k].target]++] = (uint32_t)k;
  H.npre = H.n;
  H.npre_patch = H.np;
  H.pre = 0;
  mcr_buf_printf(report,
                 "note before the pause: %zu objects of changed types converted, %zu pointers "
                 "to them rewritten, in %.1f ms\n",
                 H.n, H.np, (mcr_update_now_ns() - t0) / 1e6);
  return;
give_up:
  reset(NULL, NULL);
  mcr_buf_printf(report, "note before the pause: the objects of changed types are left to the "
                         "pause\n");
}

/* ---- in the pause ---- */

/* The first of the pre-copy's patches whose slot is at or above a (they are in
 * slot order: the scan went through the copy in address order). */
static size_t patch_at(uintptr_t a)
{
  size_t lo = 0, hi = H.npre_patch;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (H.p[m].slot < a)
      lo = m + 1;
    else
      hi = m;
  }
  return lo;
}

/* Drops the pre-copy's patches and listed words in [lo, hi): their words are
 * scanned again. */
static void drop_range(uintptr_t lo, uintptr_t hi)
{
  for (size_t k = patch_at(lo); k < H.npre_patch && H.p[k].slot < hi; k++)
    H.p[k].dropped = 1;
  size_t a = 0, b = H.ncons;
  while (a < b) {
    size_t m = a + (b - a) / 2;
    if ((H.cons[m] & ~(uintptr_t)1) < lo)
      a = m + 1;
    else
      b = m;
  }
  for (size_t k = a; k < H.ncons && (H.cons[k] & ~(uintptr_t)1) < hi; k++)
    H.cons[k] |= 1;
}

/* The pause's walk over the objects the written pages touch. */
struct touched {
  struct mcr_object *v;
  size_t n, cap;
};

static int note_touched(const struct mcr_object *o, void *arg)
{
  struct touched *t = arg;
  if (grow((void **)&t->v, &t->cap, t->n, sizeof(*t->v)) != 0)
    return -1;
  t->v[t->n++] = *o;
  return 0;
}

/* Marks the pre-copy's objects overlapping [lo, hi) to be checked again. */
static void stale_range(uint64_t lo, uint64_t hi)
{
  size_t i = first_at(lo, H.npre);
  if (i && H.v[i - 1].base + H.v[i - 1].size > lo)
    i--;
  for (; i < H.npre && H.v[i].base < hi; i++)
    mark_stale(i);
}

static int pause_incremental(const struct mcr_xform_region *regions, size_t nregions,
                             const struct mcr_heap_range *fresh, size_t nfresh,
                             const struct mcr_heap_state *final)
{
  struct touched tv = {0};
  struct mcr_heap_range unused[2 * MCR_HEAP_NCLASS];
  size_t nun = mcr_heap_small_unused(final, unused, 2 * MCR_HEAP_NCLASS);

  /* 1. to check again (H.stale): the objects the written pages or a trim of
   * the heap may have changed, and the objects of changed types among those
   * the written pages touch (new ones added) */
  for (size_t i = 0; i < nun && i < 2 * MCR_HEAP_NCLASS; i++)
    stale_range(unused[i].start, unused[i].start + unused[i].len);
  for (size_t i = 0; i < nfresh; i++)
    stale_range(fresh[i].start, fresh[i].start + fresh[i].len);
  if (mcr_heap_foreach_touched(fresh, nfresh, note_touched, &tv) != 0) {
    hconflict("other", "out of memory listing the objects written since the pre-copy", "", "",
              "", "", "", "");
    return -1;
  }
  size_t first_new = H.n;
  for (size_t i = 0; i < tv.n; i++) {
    const struct tinfo *ti = mcr_xform_tinfo(tv.v[i].tag);
    uintptr_t base = (uintptr_t)tv.v[i].base;
    long k;
    if (!ti)
      continue;
    if ((k = index_get(base)) < 0) {
      if ((k = add_obj(base, tv.v[i].size, tv.v[i].tag, ti)) < 0 ||
          (2 * (hused + 1) > hcap && index_objects(H.n) != 0)) {
        hconflict("other", "out of memory listing the objects of changed types", "", "", "",
                  "", "", "");
        return -1;
      }
      if (2 * (hused + 1) <= hcap && index_get(base) < 0)
        index_put((uint32_t)k); /* (a rebuilt index has it) */
      H.lo = base < H.lo ? base : H.lo;
      H.hi = base + tv.v[i].size > H.hi ? base + tv.v[i].size : H.hi;
    }
    mark_stale((size_t)k);
  }
  if (!H.pre_ok) { /* mark_stale ran out of memory */
    hconflict("other", "out of memory listing the objects to convert again", "", "", "", "", "",
              "");
    return -1;
  }
  H.fresh = H.n - first_new;
  /* 2. each: alive still with a changed type (converted again), or gone */
  for (size_t s = 0; s < H.nstale; s++) {
    struct chobj *c = &H.v[H.stale[s]];
    struct mcr_object o;
    const struct tinfo *ti;
    if (mcr_heap_find((void *)c->base, &o) == 0 && (uintptr_t)o.base == c->base &&
        (ti = mcr_xform_tinfo(o.tag))) {
      c->tag = o.tag;
      c->ti = ti;
      c->size = o.size;
      H.redone += H.stale[s] < H.npre;
    } else {
      c->state = OBJ_DEAD;
      if (c->nbase && c->nbase != c->base)
        mcr_heap_free((void *)c->nbase);
      c->nbase = 0;
      drop_range(c->base, c->base + c->size);
    }
  }
  if (check_plans(H.stale, H.nstale) != 0)
    return -1;
  for (size_t s = 0; s < H.nstale; s++)
    if (H.v[H.stale[s]].state == OBJ_OK)
      size_obj(&H.v[H.stale[s]]);
  /* 3. the words written since: every touched object again, then the globals,
   * stacks and epoll data, then the pre-copy's words of unknown meaning */
  for (size_t i = 0; i < tv.n; i++)
    drop_range((uintptr_t)tv.v[i].base, (uintptr_t)tv.v[i].base + tv.v[i].size);
  size_t from = H.np;
  for (size_t i = 0; i < tv.n && *H.conflicts <= 20; i++)
    scan_object(&tv.v[i], NULL);
  scan_regions(regions, nregions);
  for (size_t k = 0; k < H.ncons && *H.conflicts <= 20; k++) {
    uintptr_t *slot = (uintptr_t *)H.cons[k];
    long t;
    if (!(H.cons[k] & 1) && (t = find_obj(*slot)) >= 0)
      judge_pin(slot, &H.v[t], NULL);
  }
  if (*H.conflicts)
    return -1;
  /* 4. convert again / for the first time, then the pre-copy's in-place
   * conversions into their slots */
  if (convert_objects(H.stale, H.nstale, 1) != 0)
    return -1;
  for (size_t k = 0; k < H.ninplace; k++) {
    struct chobj *c = &H.v[H.inplace[k]];
    if (c->state == OBJ_OK && c->nbase == c->base && c->dst != (unsigned char *)c->base) {
      memcpy((void *)c->base, c->dst, c->size);
      c->dst = (unsigned char *)c->base;
    }
  }
  /* 5. the pointers: the pre-copy's (in words not written since) to the objects
   * converted again or gone and in the objects converted again, then those
   * found in the pause */
  for (size_t s = 0; s < H.nstale; s++) {
    uint32_t t = H.stale[s];
    const struct chobj *c = &H.v[t];
    if (t >= H.npre)
      continue;
    for (uint32_t j = H.tfirst[t]; j < H.tfirst[t + 1]; j++) {
      const struct patch *q = &H.p[H.tlist[j]];
      if (q->dropped || (q->holder != NONE && H.v[q->holder].state == OBJ_DEAD))
        continue;
      if (c->state == OBJ_DEAD) { /* dangling in the old process: as it was */
        uintptr_t *slot = slot_of(q);
        if (slot)
          *slot = c->base + q->off;
      } else if (apply_patch(q, 1) != 0) {
        return -1;
      }
    }
    if (c->state != OBJ_OK)
      continue;
    for (size_t k = patch_at(c->base); k < H.npre_patch && H.p[k].slot < c->base + c->size; k++)
      if (!H.p[k].dropped && H.v[H.p[k].target].state == OBJ_OK && apply_patch(&H.p[k], 1) != 0)
        return -1;
  }
  for (size_t k = from; k < H.np; k++)
    if (apply_patch(&H.p[k], 1) != 0)
      return -1;
  return 0;
}

/* Without the pre-copy's conversion: everything in the pause. */
/* The known pieces of changed types become objects to convert. A piece that
 * cannot be one (unaligned, shorter than its type, inside an object that is
 * converted itself) is a conflict. */
static int collect_pieces(void)
{
  if (PC.n && sort_pieces() != 0)
    return -1;
  for (size_t k = 0; k < PC.n; k++) {
    struct xpiece *p = &PC.v[k];
    const struct tinfo *ti = mcr_xform_tinfo(p->tag);
    struct mcr_object o;
    if (!ti || p->fresh)
      continue; /* (this process's own are in the new layout already) */
    if (k && p->addr == PC.v[k - 1].addr && p->size == PC.v[k - 1].size)
      continue; /* told twice (a startup record, and recorded since an update) */
    const char *why = NULL;
    if (p->addr % 8)
      why = "it is not aligned to a word";
    else if (ti->plan && ti->plan->old_size && p->size < ti->plan->old_size)
      why = "it is shorter than its type";
    else if (mcr_heap_find((void *)p->addr, &o) != 0 || mcr_xform_tinfo(o.tag))
      why = "it lies in an object that is converted itself";
    else if (k && p->addr < PC.v[k - 1].addr + PC.v[k - 1].size)
      why = "it overlaps another piece";
    if (why) {
      char obj[200], msg[300];
      snprintf(obj, sizeof(obj), "pool piece 0x%lx (%zu bytes)", (unsigned long)p->addr, p->size);
      snprintf(msg, sizeof(msg), "its type changed, but it cannot be converted: %s", why);
      hconflict("type", msg, obj, ti->old_name, ti->new_name, ti->old_loc, ti->new_loc,
                "keep this type unchanged in this update, or restart the server");
      continue;
    }
    long i = add_obj(p->addr, p->size, p->tag, ti);
    if (i < 0)
      return -1;
    H.v[i].piece = 1;
  }
  return 0;
}

/* After the sort: each piece's entry in H.v. */
static void index_pieces(void)
{
  for (size_t k = 0; k < PC.n; k++) {
    long i = mcr_xform_tinfo(PC.v[k].tag) ? index_get(PC.v[k].addr) : -1;
    PC.v[k].index = i >= 0 && H.v[i].piece ? (uint32_t)i : UINT32_MAX;
  }
}

static int pause_all(const struct mcr_xform_region *regions, size_t nregions)
{
  if (mcr_heap_foreach(collect, NULL) != 0 || collect_pieces() != 0 || sort_objects() != 0 ||
      index_objects(0) != 0) {
    hconflict("other", "out of memory listing the objects of changed types", "", "", "", "", "",
              "");
    return -1;
  }
  index_pieces();
  if (*H.conflicts)
    return -1;
  if (!H.n)
    return 0;
  if (check_plans(NULL, H.n) != 0)
    return -1;
  H.lo = H.v[0].base;
  H.hi = H.v[H.n - 1].base + H.v[H.n - 1].size;
  for (size_t i = 0; i < H.n; i++)
    size_obj(&H.v[i]);
  /* the scan: every live object, then the globals, stacks and epoll data */
  mcr_heap_foreach(scan_object, NULL);
  scan_regions(regions, nregions);
  if (*H.conflicts || convert_objects(NULL, H.n, 1) != 0)
    return -1;
  for (size_t k = 0; k < H.np; k++)
    if (apply_patch(&H.p[k], 1) != 0)
      return -1;
  for (size_t i = 0; i < H.n; i++) {
    if (!H.v[i].piece)
      continue;
    PC.converted++;
    if (H.v[i].nbase != H.v[i].base) {
      PC.moved++;
      PC.moved_bytes += H.v[i].nlen;
    }
  }
  return 0;
}

int mcr_xform_heap(const struct mcr_xform_region *regions, size_t nregions,
                   const struct mcr_heap_range *fresh, size_t nfresh,
                   const struct mcr_heap_state *final, struct mcr_buf *report, int *conflicts)
{
  uint64_t t0 = mcr_update_now_ns();
  /* pieces are known in the pause only: all of it is done there */
  int incremental = H.pre_ok && fresh && final && !PC.n;
  if (!mcr_xform_changed_sites())
    return 0;
  if (incremental) {
    H.report = report;
    H.conflicts = conflicts;
    H.holder = NONE;
  } else {
    reset(report, conflicts); /* what the pre-copy converted is no use now */
  }
  /* (after reset(), which clears H) */
  H.oldr = NULL;
  H.noldr = 0;
  size_t n = final ? mcr_heap_ranges(final, NULL, 0) : 0;
  if (n) { /* none (a state it cannot read): every object of a changed type, as before */
    struct mcr_heap_range *r = mcr_arena_alloc(mcr_xform_arena(), (n + 1) * sizeof(*r), 8);
    if (!r) {
      hconflict("other", "out of memory listing the old heap's ranges", "", "", "", "", "", "");
      return -1;
    }
    size_t got = mcr_heap_ranges(final, r, n);
    H.noldr = got < n ? got : n;
    H.oldr = r;
  }
  if (incremental ? pause_incremental(regions, nregions, fresh, nfresh, final)
                  : pause_all(regions, nregions))
    return -1;
  H.committed_pending = 1;
  uint64_t dt = mcr_update_now_ns() - t0;
  if (dead_words)
    mcr_buf_printf(report, "note %zu words of unknown meaning in the old threads' wait output "
                           "buffers (epoll_wait's events) pin nothing: the wait overwrites them\n",
                   dead_words);
  if (incremental) {
    mcr_buf_printf(report,
                   "phase transform %llu %zu changed types: %zu objects converted before the pause "
                   "(%zu in place, %zu pointers); in it %zu checked, %zu converted again, %zu "
                   "new, %zu pointers; %zu pinned words\n",
                   (unsigned long long)dt, mcr_xform_changed_sites(), H.npre, H.ninplace,
                   H.npre_patch, H.nstale, H.redone, H.fresh, H.np - H.npre_patch, H.pinned);
    return 0;
  }
  size_t moved = 0;
  for (size_t i = 0; i < H.n; i++)
    moved += H.v[i].nbase != H.v[i].base;
  if (PC.converted)
    mcr_buf_printf(report, "note %zu pool pieces of changed types converted (of %zu pieces "
                           "known), %zu of them moved out of their pools into objects of their "
                           "own (%zu bytes that their pools do not free)\n",
                   PC.converted, PC.n, PC.moved, PC.moved_bytes);
  mcr_buf_printf(report,
                 "phase transform %llu %zu objects of %zu changed types converted (%zu moved), "
                 "%zu pointers remapped, %zu words of unknown meaning left as they are\n",
                 (unsigned long long)dt, H.n, mcr_xform_changed_sites(), moved, H.precise,
                 H.pinned);
  return 0;
}

int mcr_xform_changes(uintptr_t base)
{
  struct mcr_object o;
  return mcr_heap_find((void *)base, &o) == 0 && (uintptr_t)o.base == base &&
         mcr_xform_tinfo(o.tag) != NULL;
}

uintptr_t mcr_xform_where(uintptr_t base)
{
  long i = hidx ? index_get(base) : -1;
  return i >= 0 && H.v[i].state == OBJ_OK && H.v[i].nbase ? H.v[i].nbase : base;
}

void mcr_xform_committed(void)
{
  /* the old copies of moved objects: nothing points to them any more */
  if (!H.committed_pending)
    return;
  H.committed_pending = 0;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].state == OBJ_OK && H.v[i].nbase && H.v[i].nbase != H.v[i].base && !H.v[i].piece)
      mcr_heap_free((void *)H.v[i].base); /* (a piece's memory is its pool's) */
}

/* ---- startup pool pieces of changed types (transfer.c, --reinit) ----
 * A pool's block has no room for a piece that grew, so such a piece is not
 * converted where it is: it is converted into its counterpart, the piece the
 * new startup made at the same call-stack ID, which then replaces it. */

/* c describes a piece of osize old bytes of tag's type, nsize new: 0, or -1
 * when the type did not change or its change cannot map those sizes. */
static int piece_obj(uint32_t tag, size_t osize, size_t nsize, struct chobj *c)
{
  const struct tinfo *ti = mcr_xform_tinfo(tag);
  memset(c, 0, sizeof(*c));
  if (!ti || !ti->plan || !ti->plan->old_size || !ti->plan->new_size)
    return -1;
  c->ti = ti;
  c->tag = tag;
  c->size = osize;
  if (ti->shape != MCR_SHAPE_ARRAY && ti->shape != MCR_SHAPE_SINGLE)
    return -1;
  size_obj(c);
  if (ti->shape == MCR_SHAPE_ARRAY && osize % ti->plan->old_size)
    return -1;
  if (ti->shape == MCR_SHAPE_SINGLE && osize != ti->plan->old_size)
    return -1;
  return c->nlen == nsize ? 0 : -1;
}

int mcr_xform_piece_fits(uint32_t tag, size_t osize, size_t nsize)
{
  struct chobj c;
  const struct tinfo *ti = mcr_xform_tinfo(tag);
  if (!ti)
    return 0;
  if (piece_obj(tag, osize, nsize, &c) == 0)
    return 1;
  return ti->shape == MCR_SHAPE_SINGLE ? -1 : -2;
}

int mcr_xform_piece_offset(uint32_t tag, size_t osize, size_t nsize, uint64_t off,
                           uint64_t *noff)
{
  struct chobj c;
  if (piece_obj(tag, osize, nsize, &c) != 0)
    return -1;
  return map_off(&c, off, 0, noff);
}

int mcr_xform_piece_convert(uint32_t tag, const unsigned char *old, size_t osize,
                            unsigned char *dst, size_t nsize, char *why, size_t whylen)
{
  struct chobj c;
  struct mcr_xerror xe;
  if (piece_obj(tag, osize, nsize, &c) != 0) {
    snprintf(why, whylen, "its type's change does not map %zu old bytes to %zu new ones", osize,
             nsize);
    return -1;
  }
  /* into a copy: the fields the new version added keep the new startup's values,
   * and a failure leaves the new piece as it was */
  unsigned char *tmp = mcr_arena_alloc(mcr_xform_arena(), nsize ? nsize : 1, 16);
  if (!tmp) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  memcpy(tmp, dst, nsize);
  c.dst = tmp;
  if (convert_bytes(&c, old, &xe) != 0) {
    snprintf(why, whylen, "field %s: %s", xe.path, xe.msg);
    return -1;
  }
  memcpy(dst, tmp, nsize);
  return 0;
}

/* The word map of tag's objects in the new layout (a converted piece). */
static const struct wmap *new_wmap(uint32_t tag)
{
  /* (as wmaps: one update per process, so built once) */
  static struct wmap *built[MCR_TAG_MAX + 1];
  const struct tinfo *ti = mcr_xform_tinfo(tag);
  if (!ti || tag > MCR_TAG_MAX)
    return NULL;
  if (!built[tag])
    built[tag] = wmap_build(ti->ntab, ti->ntype, ti->shape);
  return built[tag];
}
