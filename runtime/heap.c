/*
 * heap.c - mcr's tagged heap (see heap.h).
 *
 * Layout. One PROT_NONE, MAP_NORESERVE reservation made on first use holds,
 * each part committed (mprotect) only as far as it is used:
 *   - one region of R bytes per small size class (R = 16 GiB, less if the
 *     reservation had to shrink, e.g. under RLIMIT_AS): the class's objects,
 *     back to back from the region's start;
 *   - per small class, its tag array: one 16-bit tag per object slot;
 *   - for large objects: the page map (one span pointer per 4 KiB page), span
 *     descriptors, and the large arena, carved into page runs.
 * Objects carry no header.
 *
 * Small objects (<= 32 KiB) come in 44 size classes (16-byte steps up to 256,
 * then four per doubling). Everything about a small object follows from its
 * address by arithmetic and a few always-hot tables, never from per-page or
 * per-object metadata, so free and malloc_usable_size of a cold object touch
 * no cache line but the object's own and (free) a store to its tag:
 *   class = (a - small_base) >> region shift   (class 1 is the first region)
 *   index = offset in the region / size, as a multiply by a reciprocal
 *   base  = region start + index * size;  tag slot = tags[class] + index
 * Each class carves fresh objects with a bump pointer (the high-water mark
 * "top"); an address at or above top is not an object. A region's memory
 * stays with its class: small-object memory goes back to the OS only in
 * malloc_trim, and only the free part at the top of a region (lowering top).
 * Interior free memory is reused by its class, never by another, and a
 * class whose region is full fails with ENOMEM even if others have room.
 *
 * Large objects are page runs of their own (one "large" span each), found
 * through the page map; only they load metadata on lookup.
 *
 * Free small objects store two words in their own memory: the next pointer of
 * the free list they are on and the address of their tag slot, so the
 * allocation fast path can set the tag without computing it, and free can
 * tell a double free without reading the tag in the common case.
 *
 * Concurrency: each thread has a cache of free objects per class (initial-exec
 * TLS); it refills from and flushes to a central free list per class (one
 * mutex each), which carves from the class's region. Large objects come from
 * the page heap (one mutex). Tags of objects in thread caches are
 * MCR_TAG_FREE, so foreach/find never see them.
 *
 * Invariants of the page map: every page of an in-use large span maps to it;
 * the first and last page of a free run map to the free run; every other entry
 * is NULL. Free runs are always coalesced with their free neighbours.
 */
#define _GNU_SOURCE
#include "heap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "mcr/abi.h"

/* Tags are stored in 16 bits (abi.h: MCR_TAG_MAX): 2 bytes per object. */
typedef uint16_t tag_t;
_Static_assert(MCR_TAG_MAX == (tag_t)-1, "tag_t holds every tag");

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define SLOW_PATH __attribute__((noinline, cold))

#define PAGE_SHIFT 12
#define PAGE ((size_t)1 << PAGE_SHIFT)

#define NCLASS 45           /* class 0 means "not a small object" */
#define SMALL_MAX 32768     /* largest small class */
#define SMALL_TABLE_MAX 1024 /* sizes looked up in small_cls[] */

/* Region of a small class: 2^34 bytes, halved until mmap accepts the whole
 * reservation. small_index() is exact for offsets below 2^34 (see there). */
#define REGION_SHIFT_MAX 34
#define REGION_SHIFT_MIN 20
#define LARGE_SHIFT 4 /* the large arena is 16 regions (256 GiB at most) */
#define CARVE_COMMIT ((size_t)1 << 20) /* a region is made read-write 1 MiB at a time */

#define GROW_PAGES 1024                /* large arena committed 4 MiB at a time */
#define META_COMMIT ((size_t)256 << 10)
#define PM_COMMIT ((size_t)64 << 10)

#define NLISTS 256         /* page heap: exact lists for 1..255 pages, [0] for more */
#define RELEASE_PAGES 64   /* free runs with this many dirty pages go back to the OS */
#define DIRTY_MIN_BUDGET 256 /* pages of dirty free memory always allowed (1 MiB) */

static inline size_t round_up(size_t x, size_t to)
{
  return (x + to - 1) & ~(to - 1);
}

/* ---- small classes: the hot tables ---- */

/* Read on every small free and lookup: the global part, then one entry. */
static struct {
  uintptr_t small_base; /* region of class c starts at small_base + (c << shift) */
  size_t mask;          /* region size - 1 */
  unsigned shift;
} sg __attribute__((aligned(64)));

static struct class_info {
  uint64_t recip;    /* ceil(2^64 / size) */
  tag_t *tags;      /* the class's tag array */
  _Atomic size_t top; /* bytes carved from the region (a multiple of size) */
  uint32_t size;
  uint32_t batch;    /* objects moved between thread and central caches at once */
} cls_tab[NCLASS] __attribute__((aligned(64)));

static uint8_t small_cls[SMALL_TABLE_MAX / 16 + 1];

/* Class of a, or 0 if a is not in a small region. Before init, small_base,
 * shift and every top are 0: callers reject the address on its offset. */
static inline size_t small_class(uintptr_t a)
{
  size_t c = (a - sg.small_base) >> sg.shift;
  return c - 1 < NCLASS - 1 ? c : 0;
}

static inline size_t small_offset(uintptr_t a)
{
  return (a - sg.small_base) & sg.mask;
}

/* offset / size for any offset < 2^34. With d = size <= 2^15,
 * m = ceil(2^64 / d) and e = m*d - 2^64 (0 <= e < d), write n = q*d + r
 * (r <= d - 1): then n*m / 2^64 = q + (r + n*e / 2^64) / d, and
 * n*e < 2^34 * 2^15 < 2^64 makes r + n*e / 2^64 < d, so the floor is q. tests/runtime/test-regions.c checks
 * it at every quotient step near the ends of every class's region. */
static inline size_t small_index(size_t off, uint64_t recip)
{
  return (size_t)(((unsigned __int128)off * recip) >> 64);
}

static inline uintptr_t region_start(size_t cls)
{
  return sg.small_base + (cls << sg.shift);
}

/* ---- large objects: page map and spans ---- */

enum { SPAN_FREE = 1, SPAN_LARGE = 2 };

struct span {
  uintptr_t start;
  size_t npages;
  tag_t tag;       /* large: the object's tag */
  uint8_t state;   /* SPAN_* */
  struct span *next, *prev; /* page heap list */
  size_t dirty;    /* free runs: pages that may be resident (upper bound) */
};

static struct {
  uintptr_t base;          /* large arena start */
  _Atomic size_t npages;   /* arena pages in use; page map valid below */
  struct span **pagemap;
} g __attribute__((aligned(64)));

static size_t arena_pages_max;
static char *meta_base, *meta_top, *meta_commit, *meta_end;
static size_t pm_commit_bytes;
static struct span *meta_free_list;

struct tbin {
  void **head;
  uint32_t count, max;
};
enum { TC_NEW = 0, TC_ACTIVE = 1, TC_DEAD = 2 };
struct tcache {
  /* The thread's last allocation, so that tagging it (__mcr_tag right after
   * the call) and asking its size (redis' zmalloc) need no lookup. Cleared
   * when freed; large allocations leave it NULL. */
  void *last;
  tag_t *last_tag;
  size_t last_size;
  struct tbin bins[NCLASS];
  int state;
};
static __thread struct tcache tc __attribute__((tls_model("initial-exec")));

struct central {
  pthread_mutex_t lock;
  void *free;          /* free objects: word 0 next, word 1 tag slot */
  size_t nfree;
  size_t committed;    /* read-write bytes of the region */
  size_t tag_committed; /* read-write bytes of the tag array */
} __attribute__((aligned(64)));
static struct central central[NCLASS];

static struct {
  pthread_mutex_t lock;
  struct span *lists[NLISTS];
  uint64_t bits[NLISTS / 64];
  size_t free_pages, dirty_pages, inuse_pages;
} ph = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int inited;
static int init_failed;
static pthread_key_t tc_key;

/* ---- size classes ---- */

static size_t class_size_of(unsigned cls)
{
  if (cls <= 16)
    return (size_t)cls * 16;
  unsigned j = cls - 17, k = 8 + j / 4;
  return ((size_t)1 << k) + ((size_t)1 << (k - 2)) * (j % 4 + 1);
}

/* Class for 256 < size <= SMALL_MAX, without tables (usable before init). */
static inline unsigned class_of_big(size_t size)
{
  size_t s = size - 1;
  unsigned k = 63 - (unsigned)__builtin_clzl(s);
  return 17 + (k - 8) * 4 + (unsigned)((s - ((size_t)1 << k)) >> (k - 2));
}

static unsigned class_of(size_t size)
{
  if (size <= 256)
    return size <= 16 ? 1 : (unsigned)((size + 15) >> 4);
  return class_of_big(size);
}

static void classes_init(void)
{
  for (unsigned c = 1; c < NCLASS; c++) {
    size_t size = class_size_of(c);
    cls_tab[c].size = (uint32_t)size;
    cls_tab[c].recip = UINT64_MAX / size + 1; /* ceil(2^64 / size) */
    size_t batch = 16384 / size;
    cls_tab[c].batch = (uint32_t)(batch < 2 ? 2 : batch > 64 ? 64 : batch);
  }
  for (size_t i = 0; i <= SMALL_TABLE_MAX / 16; i++)
    small_cls[i] = (uint8_t)class_of(i * 16);
}

/* Bytes of the tag array of class cls in regions of region bytes. */
static size_t tag_array_bytes(unsigned cls, size_t region)
{
  return round_up(region / class_size_of(cls) * sizeof(tag_t), PAGE);
}

static int commit(void *p, size_t len)
{
  return mprotect(p, len, PROT_READ | PROT_WRITE);
}

/* ---- small objects: regions and central lists ---- */

/* Makes the first end bytes of class cls's region and their tag slots
 * read-write. Under the class lock. */
static int region_commit(unsigned cls, size_t end)
{
  struct central *c = &central[cls];
  size_t region = sg.mask + 1;
  size_t want = round_up(end, CARVE_COMMIT);
  if (want > region)
    want = region;
  size_t tags = round_up(want / cls_tab[cls].size * sizeof(tag_t), PAGE);
  if (tags > c->tag_committed) {
    if (commit((char *)cls_tab[cls].tags + c->tag_committed, tags - c->tag_committed) < 0)
      return -1;
    c->tag_committed = tags;
  }
  if (commit((char *)region_start(cls) + c->committed, want - c->committed) < 0)
    return -1;
  c->committed = want;
  return 0;
}

/* Carves up to n never-used objects from the top of class cls's region and
 * pushes them on *head, lowest address first. Returns how many: 0 once the
 * region is full. Under the class lock. */
static unsigned region_carve(unsigned cls, unsigned n, void ***head)
{
  struct class_info *k = &cls_tab[cls];
  size_t size = k->size, top = atomic_load_explicit(&k->top, memory_order_relaxed);
  size_t left = (sg.mask + 1 - top) / size;
  if (n > left)
    n = (unsigned)left;
  if (n == 0)
    return 0;
  size_t end = top + n * size;
  if (end > central[cls].committed && region_commit(cls, end) < 0)
    return 0;
  char *base = (char *)region_start(cls);
  size_t idx = top / size;
  for (unsigned i = n; i-- > 0;) {
    void **o = (void **)(base + top + i * size);
    o[0] = *head;
    o[1] = &k->tags[idx + i];
    *head = o;
  }
  /* fresh tag slots are zero, MCR_TAG_FREE; the objects are now visible */
  atomic_store_explicit(&k->top, end, memory_order_release);
  return n;
}

/* Hands out up to want free objects of class cls as a list (word 0 next,
 * word 1 tag slot); returns how many. */
static unsigned central_alloc(unsigned cls, unsigned want, void **head_out)
{
  struct central *c = &central[cls];
  void **head = NULL;
  unsigned got = 0;

  pthread_mutex_lock(&c->lock);
  while (got < want && c->free) {
    void **o = c->free;
    c->free = o[0];
    o[0] = head;
    head = o;
    got++;
  }
  c->nfree -= got;
  if (got < want)
    got += region_carve(cls, want - got, &head);
  pthread_mutex_unlock(&c->lock);
  *head_out = head;
  return got;
}

/* Takes back a list of n free objects of class cls (tags already FREE). */
static void central_free(unsigned cls, void **head, void **tail, size_t n)
{
  struct central *c = &central[cls];
  pthread_mutex_lock(&c->lock);
  tail[0] = c->free;
  c->free = head;
  c->nfree += n;
  pthread_mutex_unlock(&c->lock);
}

/* Gives the free top of class cls's region back to the OS: the longest run
 * of objects just below top that are all on the central list (objects in
 * thread caches keep their memory: their owners may hand them out at any
 * time). top comes down, so the run is carved afresh when needed; its tag
 * slots are all FREE, i.e. zero, which is what the OS gives back too.
 * Returns 1 if memory was released. Under the class lock. */
static int region_trim(unsigned cls)
{
  struct central *c = &central[cls];
  struct class_info *k = &cls_tab[cls];
  size_t size = k->size, n = atomic_load_explicit(&k->top, memory_order_relaxed) / size;
  size_t lo = n - (c->nfree < n ? c->nfree : n); /* the run is at most nfree long */
  if (lo == n)
    return 0;
  /* one bit per object in [lo, n): on the central list */
  size_t mapsz = round_up((n - lo + 7) / 8, PAGE);
  uint8_t *map = mmap(NULL, mapsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED)
    return 0;
  uintptr_t base = region_start(cls);
  for (void **o = c->free; o; o = o[0]) {
    size_t i = ((uintptr_t)o - base) / size;
    if (i >= lo)
      map[(i - lo) / 8] |= (uint8_t)(1u << (i - lo) % 8);
  }
  size_t keep = n;
  while (keep > lo && (map[(keep - 1 - lo) / 8] >> (keep - 1 - lo) % 8 & 1))
    keep--;
  munmap(map, mapsz);
  if (keep == n)
    return 0;
  for (void **link = (void **)&c->free; *link;) {
    void **o = *link;
    if (((uintptr_t)o - base) / size >= keep) {
      *link = o[0];
      c->nfree--;
    } else {
      link = o;
    }
  }
  atomic_store_explicit(&k->top, keep * size, memory_order_release);
  int released = 0;
  size_t from = round_up(keep * size, PAGE), to = round_up(n * size, PAGE);
  if (to > from && madvise((char *)base + from, to - from, MADV_DONTNEED) == 0)
    released = 1;
  uintptr_t tfrom = round_up((uintptr_t)(k->tags + keep), PAGE);
  uintptr_t tto = round_up((uintptr_t)(k->tags + n), PAGE);
  if (tto > tfrom && madvise((void *)tfrom, tto - tfrom, MADV_DONTNEED) == 0)
    released = 1;
  return released;
}

/* ---- large objects: descriptors and page heap (all under ph.lock) ---- */

/* Page map entries must exist before npages covers them. */
static int pagemap_cover(size_t npages)
{
  size_t need = npages * sizeof(struct span *);
  if (need <= pm_commit_bytes)
    return 0;
  need = round_up(need, PM_COMMIT);
  if (commit((char *)g.pagemap + pm_commit_bytes, need - pm_commit_bytes) < 0)
    return -1;
  pm_commit_bytes = need;
  return 0;
}

static struct span *span_alloc(void)
{
  struct span *s = meta_free_list;
  if (s) {
    meta_free_list = s->next;
    memset(s, 0, sizeof(*s));
    return s;
  }
  if ((size_t)(meta_end - meta_top) < sizeof(*s))
    return NULL;
  if (meta_top + sizeof(*s) > meta_commit) {
    size_t want = META_COMMIT;
    if (want > (size_t)(meta_end - meta_commit))
      want = (size_t)(meta_end - meta_commit);
    if (commit(meta_commit, want) < 0)
      return NULL;
    meta_commit += want;
  }
  s = (struct span *)meta_top; /* fresh memory is zero */
  meta_top += sizeof(*s);
  return s;
}

static void span_free(struct span *s)
{
  s->next = meta_free_list;
  meta_free_list = s;
}

static inline size_t page_of(uintptr_t a)
{
  return (a - g.base) >> PAGE_SHIFT;
}

static inline uintptr_t addr_of(size_t page)
{
  return g.base + (page << PAGE_SHIFT);
}

static inline size_t list_index(size_t npages)
{
  return npages < NLISTS ? npages : 0;
}

static void ph_link(struct span *s)
{
  size_t i = list_index(s->npages);
  s->prev = NULL;
  s->next = ph.lists[i];
  if (s->next)
    s->next->prev = s;
  ph.lists[i] = s;
  ph.bits[i / 64] |= (uint64_t)1 << (i % 64);
  size_t first = page_of(s->start);
  g.pagemap[first] = s;
  g.pagemap[first + s->npages - 1] = s;
  ph.free_pages += s->npages;
  ph.dirty_pages += s->dirty;
}

static void ph_unlink(struct span *s)
{
  size_t i = list_index(s->npages);
  if (s->prev)
    s->prev->next = s->next;
  else
    ph.lists[i] = s->next;
  if (s->next)
    s->next->prev = s->prev;
  if (!ph.lists[i])
    ph.bits[i / 64] &= ~((uint64_t)1 << (i % 64));
  size_t first = page_of(s->start);
  g.pagemap[first] = NULL;
  g.pagemap[first + s->npages - 1] = NULL;
  ph.free_pages -= s->npages;
  ph.dirty_pages -= s->dirty;
}

static struct span *ph_find(size_t n)
{
  if (n < NLISTS) {
    for (size_t w = n / 64; w < NLISTS / 64; w++) {
      uint64_t bits = ph.bits[w];
      if (w == n / 64)
        bits &= ~(uint64_t)0 << (n % 64);
      if (bits)
        return ph.lists[w * 64 + (size_t)__builtin_ctzl(bits)];
    }
  }
  /* best fit, lowest address on ties */
  struct span *best = NULL;
  for (struct span *s = ph.lists[0]; s; s = s->next)
    if (s->npages >= n &&
        (!best || s->npages < best->npages || (s->npages == best->npages && s->start < best->start)))
      best = s;
  return best;
}

/* Returns [page, page + n) to the free runs, merging with free neighbours.
 * The page map entries of the range must be NULL. dirty: pages of the range
 * that may be resident. Big dirty runs go back to the OS. */
static int ph_free_run(size_t page, size_t n, size_t dirty)
{
  size_t top = atomic_load_explicit(&g.npages, memory_order_relaxed);
  struct span *l = page > 0 ? g.pagemap[page - 1] : NULL;
  struct span *r = page + n < top ? g.pagemap[page + n] : NULL;
  struct span *s = NULL;

  if (l && l->state == SPAN_FREE) {
    ph_unlink(l);
    page = page_of(l->start);
    n += l->npages;
    dirty += l->dirty;
    s = l;
  }
  if (r && r->state == SPAN_FREE) {
    ph_unlink(r);
    n += r->npages;
    dirty += r->dirty;
    if (s)
      span_free(r);
    else
      s = r;
  }
  if (!s) {
    s = span_alloc();
    if (!s)
      return -1; /* the pages stay unreachable: a leak, not a corruption */
  }
  s->state = SPAN_FREE;
  s->start = addr_of(page);
  s->npages = n;
  s->dirty = dirty > n ? n : dirty;

  size_t budget = ph.inuse_pages / 16;
  if (budget < DIRTY_MIN_BUDGET)
    budget = DIRTY_MIN_BUDGET;
  if (s->dirty && (s->dirty >= RELEASE_PAGES || ph.dirty_pages + s->dirty > budget)) {
    if (madvise((void *)s->start, n << PAGE_SHIFT, MADV_DONTNEED) == 0)
      s->dirty = 0;
  }
  ph_link(s);
  return 0;
}

static int ph_grow(size_t n)
{
  size_t top = atomic_load_explicit(&g.npages, memory_order_relaxed);
  size_t want = (n + GROW_PAGES - 1) / GROW_PAGES * GROW_PAGES;
  if (want > arena_pages_max - top)
    want = n;
  if (n > arena_pages_max - top)
    return -1;
  if (pagemap_cover(top + want) < 0)
    return -1;
  if (commit((void *)addr_of(top), want << PAGE_SHIFT) < 0)
    return -1;
  atomic_store_explicit(&g.npages, top + want, memory_order_release);
  return ph_free_run(top, want, 0);
}

/* Takes n pages off the free runs; *dirty says whether they may be non-zero.
 * Returns the first page, or (size_t)-1. */
static size_t ph_alloc_run(size_t n, bool *dirty)
{
  struct span *s = ph_find(n);
  if (!s) {
    if (ph_grow(n) < 0)
      return (size_t)-1;
    s = ph_find(n);
    if (!s)
      return (size_t)-1;
  }
  ph_unlink(s);
  size_t page = page_of(s->start);
  *dirty = s->dirty != 0;
  if (s->npages > n) {
    /* the rest keeps its place; its neighbours are not free, no merging */
    size_t rest = s->npages - n;
    s->dirty = s->dirty > rest ? rest : s->dirty;
    s->start = addr_of(page + n);
    s->npages = rest;
    ph_link(s);
  } else {
    span_free(s);
  }
  ph.inuse_pages += n;
  return page;
}

static void pagemap_set(size_t page, size_t n, struct span *s)
{
  for (size_t i = 0; i < n; i++)
    g.pagemap[page + i] = s;
}

/* Frees an in-use span's pages and descriptor. Under ph.lock. */
static void span_release(struct span *s)
{
  size_t page = page_of(s->start), n = s->npages;
  s->state = 0;
  pagemap_set(page, n, NULL);
  ph.inuse_pages -= n;
  span_free(s);
  ph_free_run(page, n, n);
}

/* ---- thread caches ---- */

static void tc_flush(unsigned cls, uint32_t keep)
{
  struct tbin *b = &tc.bins[cls];
  if (b->count <= keep)
    return;
  uint32_t n = b->count - keep;
  void **head = b->head, **last = head;
  for (uint32_t i = 1; i < n; i++)
    last = last[0];
  b->head = last[0];
  b->count = keep;
  central_free(cls, head, last, n);
}

static void tc_destructor(void *arg)
{
  (void)arg;
  for (unsigned c = 1; c < NCLASS; c++) {
    tc_flush(c, 0);
    tc.bins[c].max = 0;
  }
  tc.state = TC_DEAD;
}

static void tc_init(void)
{
  for (unsigned c = 1; c < NCLASS; c++)
    tc.bins[c].max = 2 * cls_tab[c].batch;
  tc.state = TC_ACTIVE;
  /* non-NULL value so the destructor runs at thread exit */
  pthread_setspecific(tc_key, &tc);
}

/* ---- initialisation and fork ---- */

static void fork_prepare(void)
{
  for (unsigned c = 1; c < NCLASS; c++)
    pthread_mutex_lock(&central[c].lock);
  pthread_mutex_lock(&ph.lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&ph.lock);
  for (unsigned c = NCLASS - 1; c >= 1; c--)
    pthread_mutex_unlock(&central[c].lock);
}

static void fork_child(void)
{
  pthread_mutex_init(&ph.lock, NULL);
  for (unsigned c = 1; c < NCLASS; c++)
    pthread_mutex_init(&central[c].lock, NULL);
}

/* Reserves [small regions][tag arrays][page map][span descriptors][large
 * arena] with regions of 2^shift bytes, the largest that mmap accepts. */
static int reserve(void)
{
  for (unsigned shift = REGION_SHIFT_MAX; shift >= REGION_SHIFT_MIN; shift--) {
    size_t region = (size_t)1 << shift;
    size_t small = (NCLASS - 1) * region, tags = 0;
    for (unsigned c = 1; c < NCLASS; c++)
      tags += tag_array_bytes(c, region);
    size_t arena = region << LARGE_SHIFT;
    size_t pm = round_up((arena >> PAGE_SHIFT) * sizeof(struct span *), PAGE);
    /* a descriptor per free run or large object (>= 1 and >= 8 pages) */
    size_t meta = arena / 32;
    char *p = mmap(NULL, small + tags + pm + meta + arena, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      continue;
    /* class 1 is the first region; the subtraction may wrap, harmlessly */
    sg.small_base = (uintptr_t)p - region;
    sg.mask = region - 1;
    sg.shift = shift;
    char *t = p + small;
    for (unsigned c = 1; c < NCLASS; c++) {
      cls_tab[c].tags = (tag_t *)t;
      t += tag_array_bytes(c, region);
    }
    g.pagemap = (struct span **)t;
    meta_base = meta_top = meta_commit = t + pm;
    meta_end = meta_base + meta;
    g.base = (uintptr_t)meta_end;
    arena_pages_max = arena >> PAGE_SHIFT;
    return 0;
  }
  return -1;
}

static int heap_init_slow(void)
{
  int ret = -1;
  bool register_fork = false;

  pthread_mutex_lock(&init_lock);
  if (atomic_load_explicit(&inited, memory_order_acquire)) {
    ret = 0;
    goto out;
  }
  if (init_failed)
    goto out;
  init_failed = 1;
  classes_init();
  for (unsigned c = 0; c < NCLASS; c++)
    pthread_mutex_init(&central[c].lock, NULL);
  if (reserve() < 0)
    goto out;
  if (pthread_key_create(&tc_key, tc_destructor) != 0)
    goto out;
  init_failed = 0;
  register_fork = true;
  atomic_store_explicit(&inited, 1, memory_order_release);
  ret = 0;
out:
  pthread_mutex_unlock(&init_lock);
  /* pthread_atfork may allocate: only once the heap works and no lock is held */
  if (register_fork)
    pthread_atfork(fork_prepare, fork_parent, fork_child);
  return ret;
}

static inline int ensure_init(void)
{
  if (likely(atomic_load_explicit(&inited, memory_order_acquire)))
    return 0;
  return heap_init_slow();
}

/* ---- small objects: thread side ---- */

/* Hands out o, the head of the thread's bin b: a new object is UNTYPED, and is
 * the thread's last allocation (the memo __mcr_tag and usable_size use). */
static inline void *take_cached(struct tbin *b, void **o, unsigned cls)
{
  b->head = o[0];
  b->count--;
  tc.last = o;
  tc.last_tag = o[1];
  tc.last_size = cls_tab[cls].size;
  *tc.last_tag = MCR_TAG_UNTYPED;
  return o;
}

SLOW_PATH static void *small_alloc_slow(unsigned cls, size_t size)
{
  if (ensure_init() < 0)
    goto nomem;
  if (cls == 0)
    cls = class_of(size);
  if (tc.state == TC_NEW)
    tc_init();

  struct tbin *b = &tc.bins[cls];
  void **o = b->head;
  if (!o) {
    unsigned want = tc.state == TC_ACTIVE ? cls_tab[cls].batch : 1;
    unsigned got = central_alloc(cls, want, (void **)&o);
    if (!got)
      goto nomem;
    b->head = o;
    b->count = got;
  }
  return take_cached(b, o, cls);
nomem:
  errno = ENOMEM;
  return NULL;
}

static inline void *small_alloc(unsigned cls, size_t size)
{
  struct tbin *b = &tc.bins[cls];
  void **o = b->head;
  if (likely(o != NULL))
    return take_cached(b, o, cls);
  return small_alloc_slow(cls, size);
}

SLOW_PATH static void small_free_slow(void **o, tag_t *tagp, unsigned cls)
{
  if (tc.state == TC_NEW)
    tc_init();
  o[1] = tagp;
  if (tc.state != TC_ACTIVE) {
    central_free(cls, o, o, 1);
    return;
  }
  struct tbin *b = &tc.bins[cls];
  o[0] = b->head;
  b->head = o;
  b->count++;
  if (b->count > b->max)
    tc_flush(cls, b->count - cls_tab[cls].batch);
}

/* ---- large objects ---- */

SLOW_PATH static void *large_alloc(size_t size, size_t align, bool *zeroed)
{
  tc.last = NULL;
  void *ret = NULL;
  bool dirty;

  if (ensure_init() < 0)
    goto nomem;
  if (size > (arena_pages_max << PAGE_SHIFT) || align > (arena_pages_max << PAGE_SHIFT))
    goto nomem;
  size_t n = (size + PAGE - 1) >> PAGE_SHIFT;
  if (n == 0)
    n = 1;
  size_t extra = align > PAGE ? (align >> PAGE_SHIFT) - 1 : 0;

  pthread_mutex_lock(&ph.lock);
  size_t page = ph_alloc_run(n + extra, &dirty);
  if (page == (size_t)-1)
    goto unlock;
  if (extra) {
    uintptr_t a = (addr_of(page) + align - 1) & ~(uintptr_t)(align - 1);
    size_t lead = page_of(a) - page, trail = extra - lead;
    ph.inuse_pages -= extra;
    if (lead)
      ph_free_run(page, lead, dirty ? lead : 0);
    if (trail)
      ph_free_run(page + lead + n, trail, dirty ? trail : 0);
    page += lead;
  }
  struct span *s = span_alloc();
  if (!s) {
    ph.inuse_pages -= n;
    ph_free_run(page, n, dirty ? n : 0);
    goto unlock;
  }
  s->start = addr_of(page);
  s->npages = n;
  s->state = SPAN_LARGE;
  s->tag = MCR_TAG_UNTYPED;
  pagemap_set(page, n, s);
  ret = (void *)s->start;
  if (zeroed)
    *zeroed = !dirty;
unlock:
  pthread_mutex_unlock(&ph.lock);
  if (ret)
    return ret;
nomem:
  errno = ENOMEM;
  return NULL;
}

/* The span of a, or NULL if a is outside the large arena's used part. */
static inline struct span *span_of(uintptr_t a)
{
  size_t page = (a - g.base) >> PAGE_SHIFT;
  if (page >= atomic_load_explicit(&g.npages, memory_order_relaxed))
    return NULL;
  return g.pagemap[page];
}

SLOW_PATH static void large_free(uintptr_t a)
{
  pthread_mutex_lock(&ph.lock);
  /* re-read under the lock: a racing double free must find the span gone */
  struct span *s = g.pagemap[page_of(a)];
  if (s && s->state == SPAN_LARGE && s->start == a && s->tag != MCR_TAG_FREE) {
    s->tag = MCR_TAG_FREE;
    span_release(s);
  }
  pthread_mutex_unlock(&ph.lock);
}

/* Resizes a large object in place to n pages: trims its tail, or grows into
 * the free run that follows it. Returns 0 on success, -1 if it cannot. */
SLOW_PATH static int large_resize(uintptr_t a, size_t n)
{
  int ret = -1;
  pthread_mutex_lock(&ph.lock);
  struct span *s = g.pagemap[page_of(a)];
  if (!s || s->state != SPAN_LARGE || s->start != a || s->tag == MCR_TAG_FREE)
    goto out;
  size_t page = page_of(a), old = s->npages;
  if (n <= old) {
    size_t tail = old - n;
    if (tail) {
      pagemap_set(page + n, tail, NULL);
      s->npages = n;
      ph.inuse_pages -= tail;
      ph_free_run(page + n, tail, tail);
    }
    ret = 0;
    goto out;
  }
  size_t need = n - old, next = page + old;
  struct span *r = next < atomic_load_explicit(&g.npages, memory_order_relaxed) ? g.pagemap[next] : NULL;
  if (!r || r->state != SPAN_FREE || r->npages < need)
    goto out;
  ph_unlink(r);
  if (r->npages > need) {
    size_t rest = r->npages - need;
    r->start = addr_of(next + need);
    r->npages = rest;
    r->dirty = r->dirty > rest ? rest : r->dirty;
    ph_link(r);
  } else {
    span_free(r);
  }
  pagemap_set(next, need, s);
  s->npages = n;
  ph.inuse_pages += need;
  ret = 0;
out:
  pthread_mutex_unlock(&ph.lock);
  return ret;
}

/* ---- lookup ---- */

/* Live object containing a: its tag slot, base and size; NULL if none. */
static tag_t *object_of(uintptr_t a, uintptr_t *base, size_t *size)
{
  size_t cls = small_class(a);
  if (cls) {
    const struct class_info *k = &cls_tab[cls];
    size_t off = small_offset(a);
    if (off >= atomic_load_explicit(&k->top, memory_order_relaxed))
      return NULL;
    size_t idx = small_index(off, k->recip);
    if (k->tags[idx] == MCR_TAG_FREE)
      return NULL;
    *base = a - off + idx * k->size;
    *size = k->size;
    return &k->tags[idx];
  }
  struct span *s = span_of(a);
  if (s && s->state == SPAN_LARGE && a >= s->start && a - s->start < (s->npages << PAGE_SHIFT) &&
      s->tag != MCR_TAG_FREE) {
    *base = s->start;
    *size = s->npages << PAGE_SHIFT;
    return &s->tag;
  }
  return NULL;
}

/* ---- public API ---- */

void *mcr_heap_alloc(size_t size, size_t align)
{
  if (likely(align <= 16)) {
    if (likely(size <= SMALL_TABLE_MAX))
      return small_alloc(small_cls[(size + 15) >> 4], size);
    if (size <= SMALL_MAX)
      return small_alloc(class_of_big(size), size);
    return large_alloc(size, 0, NULL);
  }
  if (align & (align - 1)) {
    errno = EINVAL;
    return NULL;
  }
  if (ensure_init() < 0) {
    errno = ENOMEM;
    return NULL;
  }
  /* a class whose size is a multiple of align has every object aligned,
   * since regions start on a page */
  if (align <= PAGE && size <= SMALL_MAX) {
    size_t s = size ? (size + align - 1) & ~(align - 1) : align;
    for (unsigned c = s <= SMALL_MAX ? class_of(s) : NCLASS; c < NCLASS; c++)
      if (cls_tab[c].size % align == 0)
        return small_alloc(c, size);
  }
  return large_alloc(size, align, NULL);
}

void *mcr_heap_calloc(size_t n, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (total <= SMALL_MAX) {
    void *p = mcr_heap_alloc(total, 0);
    if (p)
      memset(p, 0, total);
    return p;
  }
  bool zeroed = false;
  void *p = large_alloc(total, 0, &zeroed);
  if (p && !zeroed)
    memset(p, 0, total);
  return p;
}

void mcr_heap_free(void *p)
{
  uintptr_t a = (uintptr_t)p;
  size_t cls = small_class(a);
  if (unlikely(!cls)) {
    if (span_of(a)) /* NULL and foreign pointers fall out here */
      large_free(a);
    return;
  }
  const struct class_info *k = &cls_tab[cls];
  size_t off = small_offset(a), idx = small_index(off, k->recip);
  tag_t *tagp = &k->tags[idx];
  void **o = p;
  /* Interior pointers, pointers above top and double frees are ignored. A
   * free object holds its tag slot's address in word 1: only then is the tag
   * read, so the common case never waits on the tag's cache line (a store
   * does not). */
  if (unlikely(off != idx * k->size || off >= atomic_load_explicit(&k->top, memory_order_relaxed) ||
               (o[1] == tagp && *tagp == MCR_TAG_FREE)))
    return;
  if (p == tc.last)
    tc.last = NULL;
  *tagp = MCR_TAG_FREE;
  struct tbin *b = &tc.bins[cls];
  if (likely(b->count < b->max)) {
    o[0] = b->head;
    o[1] = tagp;
    b->head = o;
    b->count++;
    return;
  }
  small_free_slow(p, tagp, (unsigned)cls);
}

size_t mcr_heap_usable_size(const void *p)
{
  if (p && p == tc.last)
    return tc.last_size;
  /* Asking the size of a freed object is undefined: the tag is not read. */
  uintptr_t a = (uintptr_t)p;
  size_t cls = small_class(a);
  if (likely(cls)) {
    const struct class_info *k = &cls_tab[cls];
    size_t off = small_offset(a);
    return off == small_index(off, k->recip) * k->size &&
                   off < atomic_load_explicit(&k->top, memory_order_relaxed)
               ? k->size
               : 0;
  }
  struct span *s = span_of(a);
  if (s && s->state == SPAN_LARGE && a == s->start)
    return s->npages << PAGE_SHIFT;
  return 0;
}

void mcr_heap_tag_new(const void *p, uint32_t tag)
{
  uintptr_t d = (uintptr_t)p - (uintptr_t)tc.last;
  if (likely(tc.last && d <= MCR_TAG_MAX_HEADER && tag != MCR_TAG_FREE && tag <= MCR_TAG_MAX)) {
    *tc.last_tag = tag;
    return;
  }
  mcr_heap_set_tag(p, tag);
}

void *mcr_heap_realloc(void *p, size_t size)
{
  if (!p)
    return mcr_heap_alloc(size, 0);
  uintptr_t a = (uintptr_t)p, base;
  size_t old;
  tag_t *tagp = object_of(a, &base, &old);
  if (!tagp || base != a) {
    /* not ours: its size is unknown, so nothing can be copied safely */
    errno = ENOMEM;
    return NULL;
  }
  if (old <= SMALL_MAX) {
    if (size <= old && class_of(size) == class_of(old))
      return p;
  } else if (size > SMALL_MAX && size <= (arena_pages_max << PAGE_SHIFT)) {
    /* large stays large: trim or extend the page run where it is */
    if (large_resize(a, (size + PAGE - 1) >> PAGE_SHIFT) == 0)
      return p;
  }
  tag_t tag = *tagp;
  void *q = mcr_heap_alloc(size, 0);
  if (!q)
    return NULL;
  memcpy(q, p, size < old ? size : old);
  mcr_heap_set_tag(q, tag);
  mcr_heap_free(p);
  return q;
}

int mcr_heap_find(const void *p, struct mcr_object *out)
{
  uintptr_t base;
  size_t size;
  tag_t *tagp = object_of((uintptr_t)p, &base, &size);
  if (!tagp)
    return -1;
  out->base = (void *)base;
  out->size = size;
  out->tag = *tagp;
  return 0;
}

void mcr_heap_set_tag(const void *p, uint32_t tag)
{
  uintptr_t base;
  size_t size;
  if (tag == MCR_TAG_FREE) /* would make a live object look free */
    return;
  if (tag > MCR_TAG_MAX) /* does not fit: the object is untyped, not mislabelled */
    tag = MCR_TAG_UNTYPED;
  tag_t *tagp = object_of((uintptr_t)p, &base, &size);
  /* Deeper inside, p is a sub-allocation (a pool's), not the object. */
  if (tagp && (uintptr_t)p - base <= MCR_TAG_MAX_HEADER)
    *tagp = tag;
}

int mcr_heap_foreach(int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return 0;
  for (unsigned c = 1; c < NCLASS; c++) {
    const struct class_info *k = &cls_tab[c];
    size_t size = k->size, n = atomic_load_explicit(&k->top, memory_order_acquire) / size;
    uintptr_t start = region_start(c);
    for (size_t i = 0; i < n; i++) {
      if (k->tags[i] == MCR_TAG_FREE)
        continue;
      struct mcr_object o = {(void *)(start + i * size), size, k->tags[i]};
      int r = fn(&o, arg);
      if (r)
        return r;
    }
  }
  size_t top = atomic_load_explicit(&g.npages, memory_order_acquire);
  for (size_t page = 0; page < top;) {
    struct span *s = g.pagemap[page];
    if (!s || s->start != addr_of(page)) {
      page++;
      continue;
    }
    size_t n = s->npages;
    if (s->state == SPAN_LARGE && s->tag != MCR_TAG_FREE) {
      struct mcr_object o = {(void *)s->start, n << PAGE_SHIFT, s->tag};
      int r = fn(&o, arg);
      if (r)
        return r;
    }
    page += n;
  }
  return 0;
}

void mcr_heap_stats(struct mcr_heap_stats *st)
{
  memset(st, 0, sizeof(*st));
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return;
  size_t small_bytes = 0, tag_bytes = 0;
  for (unsigned c = 1; c < NCLASS; c++) {
    const struct class_info *k = &cls_tab[c];
    pthread_mutex_lock(&central[c].lock);
    size_t top = atomic_load_explicit(&k->top, memory_order_relaxed), n = top / k->size;
    for (size_t i = 0; i < n; i++)
      if (k->tags[i] != MCR_TAG_FREE) {
        st->live_objects++;
        st->live_bytes += k->size;
      }
    small_bytes += round_up(top, PAGE);
    tag_bytes += round_up(n * sizeof(tag_t), PAGE);
    pthread_mutex_unlock(&central[c].lock);
  }
  pthread_mutex_lock(&ph.lock);
  size_t top = atomic_load_explicit(&g.npages, memory_order_relaxed);
  for (size_t page = 0; page < top;) {
    struct span *s = g.pagemap[page];
    if (!s || s->start != addr_of(page)) {
      page++;
      continue;
    }
    if (s->state == SPAN_LARGE && s->tag != MCR_TAG_FREE) {
      st->live_objects++;
      st->live_bytes += s->npages << PAGE_SHIFT;
    }
    page += s->npages;
  }
  /* clean free pages (never touched or given back) are not held */
  size_t clean = ph.free_pages - ph.dirty_pages;
  st->metadata_bytes = tag_bytes + (size_t)(meta_top - meta_base) + top * sizeof(struct span *);
  st->mapped_bytes = small_bytes + ((top - clean) << PAGE_SHIFT) + st->metadata_bytes;
  pthread_mutex_unlock(&ph.lock);
}

int mcr_heap_trim(void)
{
  int released = 0;
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return 0;
  if (tc.state == TC_ACTIVE)
    for (unsigned c = 1; c < NCLASS; c++)
      tc_flush(c, 0);
  for (unsigned c = 1; c < NCLASS; c++) {
    pthread_mutex_lock(&central[c].lock);
    released |= region_trim(c);
    pthread_mutex_unlock(&central[c].lock);
  }
  pthread_mutex_lock(&ph.lock);
  for (size_t i = 0; i < NLISTS; i++)
    for (struct span *s = ph.lists[i]; s; s = s->next)
      if (s->dirty && madvise((void *)s->start, s->npages << PAGE_SHIFT, MADV_DONTNEED) == 0) {
        ph.dirty_pages -= s->dirty;
        s->dirty = 0;
        released = 1;
      }
  pthread_mutex_unlock(&ph.lock);
  return released;
}
