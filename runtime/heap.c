/*
 * heap.c - mcr's tagged heap (see heap.h).
 *
 * Layout. One PROT_NONE, MAP_NORESERVE reservation made on first use holds
 * three regions, each committed (mprotect) only as far as it is used:
 *   - the page map: one struct span pointer per 4 KiB arena page;
 *   - metadata: span descriptors and their per-object 32-bit tag arrays;
 *   - the arena: all objects, carved into spans (runs of pages).
 * Objects carry no header: size and tag live in the span descriptor, found
 * from any pointer through the page map in O(1).
 *
 * Small objects (<= 32 KiB) come in 44 size classes (16-byte steps up to 256,
 * then four per doubling). A small span holds objects of one class; the index
 * of an object is its offset times a precomputed reciprocal. Larger objects
 * are page runs of their own (one "large" span each).
 *
 * Free small objects store two words in their own memory: the next pointer of
 * the free list they are on and the address of their tag slot, so the
 * allocation fast path can set the tag without finding the span.
 *
 * Concurrency: each thread has a cache of free objects per class (initial-exec
 * TLS); it refills from and flushes to a central free list per class (one
 * mutex each), which takes spans from the page heap (one mutex). Lock order:
 * class lock, then page heap lock. Tags of objects in thread caches are
 * MCR_TAG_FREE, so foreach/find never see them.
 *
 * Invariants of the page map: every page of an in-use span maps to it; the
 * first and last page of a free run map to the free run; every other entry is
 * NULL. Free runs are always coalesced with their free neighbours.
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

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define SLOW_PATH __attribute__((noinline, cold))

#define PAGE_SHIFT 12
#define PAGE ((size_t)1 << PAGE_SHIFT)

#define NCLASS 45           /* class 0 means "not a small object" */
#define SMALL_MAX 32768     /* largest small class */
#define SMALL_TABLE_MAX 1024 /* sizes looked up in small_cls[] */
#define SPAN_MAX_BYTES (1u << 20)
#define RECIP_SHIFT 40 /* exact for offsets < 2^40 / size: 32 MiB at 32 KiB */

#define ARENA_MAX ((size_t)256 << 30) /* VA only; halved until mmap accepts it */
#define ARENA_MIN ((size_t)64 << 20) /* under a tight RLIMIT_AS */
#define GROW_PAGES 1024                /* arena committed 4 MiB at a time */
#define META_COMMIT ((size_t)256 << 10)
#define PM_COMMIT ((size_t)64 << 10)
#define META_ALIGN 64
#define META_NLISTS 1024

#define NLISTS 256         /* page heap: exact lists for 1..255 pages, [0] for more */
#define RELEASE_PAGES 64   /* free runs with this many dirty pages go back to the OS */
#define DIRTY_MIN_BUDGET 256 /* pages of dirty free memory always allowed (1 MiB) */

enum { SPAN_FREE = 1, SPAN_SMALL = 2, SPAN_LARGE = 3 };

struct span {
  /* hot: read by free/find/usable_size */
  uintptr_t start;
  uint64_t recip;  /* small: (2^40 / size) + 1 */
  uint32_t *tags;  /* small: ntags slots; large: &ltag */
  uint32_t size;   /* small: object size */
  uint8_t cls;     /* small: class; 0 otherwise */
  uint8_t state;   /* SPAN_* */
  uint16_t unused;
  size_t npages;
  /* small: central bookkeeping, under the class lock */
  void *freelist;  /* objects: word 0 next, word 1 tag slot */
  uint32_t nfree;  /* on freelist plus never handed out */
  uint32_t bump;   /* next never-used object */
  uint32_t nobj;
  uint32_t ntags;  /* ceil(span bytes / size): slots past nobj stay FREE */
  struct span *next, *prev; /* central partial list or page heap list */
  size_t dirty;    /* free runs: pages that may be resident (upper bound) */
  uint32_t meta_size;
  uint32_t ltag;   /* large: the tag */
};

/* Read on every free: keep together. */
static struct {
  uintptr_t base;          /* arena start */
  _Atomic size_t npages;   /* arena pages in use; page map valid below */
  struct span **pagemap;
} g __attribute__((aligned(64)));

static size_t arena_pages_max;
static char *meta_base, *meta_top, *meta_commit, *meta_end;
static size_t pm_commit_bytes;
static void *meta_lists[META_NLISTS];

/* Size class tables, filled by classes_init(). */
static uint8_t small_cls[SMALL_TABLE_MAX / 16 + 1];
static uint32_t cls_size[NCLASS], cls_pages[NCLASS], cls_nobj[NCLASS];
static uint32_t cls_ntags[NCLASS], cls_batch[NCLASS];
static uint64_t cls_recip[NCLASS];

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
  uint32_t *last_tag;
  size_t last_size;
  struct tbin bins[NCLASS];
  int state;
};
static __thread struct tcache tc __attribute__((tls_model("initial-exec")));

struct central {
  pthread_mutex_t lock;
  struct span *partial; /* spans with free objects */
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
    size_t minobj = size <= 8192 ? 8 : 4;
    size_t bytes = size * minobj < 65536 ? 65536 : size * minobj;
    bytes = (bytes + PAGE - 1) & ~(PAGE - 1);
    /* at most 1/16 of a span wasted at its tail */
    while ((bytes % size) * 16 > bytes)
      bytes += PAGE;
    cls_size[c] = (uint32_t)size;
    cls_pages[c] = (uint32_t)(bytes >> PAGE_SHIFT);
    cls_nobj[c] = (uint32_t)(bytes / size);
    cls_ntags[c] = (uint32_t)((bytes + size - 1) / size);
    cls_recip[c] = ((uint64_t)1 << RECIP_SHIFT) / size + 1;
    size_t batch = 16384 / size;
    cls_batch[c] = (uint32_t)(batch < 2 ? 2 : batch > 64 ? 64 : batch);
  }
  for (size_t i = 0; i <= SMALL_TABLE_MAX / 16; i++)
    small_cls[i] = (uint8_t)class_of(i * 16);
}

/* ---- reservation, metadata, page map ---- */

static int commit(void *p, size_t len)
{
  return mprotect(p, len, PROT_READ | PROT_WRITE);
}

/* Page map entries must exist before npages covers them. */
static int pagemap_cover(size_t npages)
{
  size_t need = npages * sizeof(struct span *);
  if (need <= pm_commit_bytes)
    return 0;
  need = (need + PM_COMMIT - 1) & ~(PM_COMMIT - 1);
  if (commit((char *)g.pagemap + pm_commit_bytes, need - pm_commit_bytes) < 0)
    return -1;
  pm_commit_bytes = need;
  return 0;
}

/* Under ph.lock. Blocks are 64-byte multiples, recycled by exact size. */
static void *meta_alloc(size_t size)
{
  size = (size + META_ALIGN - 1) & ~(size_t)(META_ALIGN - 1);
  size_t idx = size / META_ALIGN;
  if (idx < META_NLISTS && meta_lists[idx]) {
    void *p = meta_lists[idx];
    meta_lists[idx] = *(void **)p;
    memset(p, 0, size);
    return p;
  }
  if ((size_t)(meta_end - meta_top) < size)
    return NULL;
  if (meta_top + size > meta_commit) {
    size_t want = (size_t)(meta_top + size - meta_commit);
    want = (want + META_COMMIT - 1) & ~(META_COMMIT - 1);
    if (want > (size_t)(meta_end - meta_commit))
      want = (size_t)(meta_end - meta_commit);
    if (commit(meta_commit, want) < 0)
      return NULL;
    meta_commit += want;
  }
  void *p = meta_top; /* fresh memory is zero */
  meta_top += size;
  return p;
}

static void meta_free(void *p, size_t size)
{
  size = (size + META_ALIGN - 1) & ~(size_t)(META_ALIGN - 1);
  size_t idx = size / META_ALIGN;
  if (idx >= META_NLISTS)
    return; /* never happens with the class table above; leak rather than corrupt */
  *(void **)p = meta_lists[idx];
  meta_lists[idx] = p;
}

static inline size_t page_of(uintptr_t a)
{
  return (a - g.base) >> PAGE_SHIFT;
}

static inline uintptr_t addr_of(size_t page)
{
  return g.base + (page << PAGE_SHIFT);
}

/* ---- page heap (all under ph.lock) ---- */

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
      meta_free(r, r->meta_size);
    else
      s = r;
  }
  if (!s) {
    s = meta_alloc(sizeof(*s));
    if (!s)
      return -1; /* the pages stay unreachable: a leak, not a corruption */
    s->meta_size = sizeof(*s);
  }
  s->state = SPAN_FREE;
  s->cls = 0;
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
    meta_free(s, s->meta_size);
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
  meta_free(s, s->meta_size);
  ph_free_run(page, n, n);
}

static struct span *span_new_small(unsigned cls)
{
  struct span *s = NULL;
  bool dirty;
  pthread_mutex_lock(&ph.lock);
  size_t page = ph_alloc_run(cls_pages[cls], &dirty);
  if (page == (size_t)-1)
    goto out;
  size_t msize = sizeof(*s) + (size_t)cls_ntags[cls] * sizeof(uint32_t);
  s = meta_alloc(msize);
  if (!s) {
    ph.inuse_pages -= cls_pages[cls];
    ph_free_run(page, cls_pages[cls], dirty ? cls_pages[cls] : 0);
    goto out;
  }
  s->meta_size = (uint32_t)msize;
  s->start = addr_of(page);
  s->recip = cls_recip[cls];
  s->tags = (uint32_t *)(s + 1);
  s->size = cls_size[cls];
  s->cls = (uint8_t)cls;
  s->state = SPAN_SMALL;
  s->npages = cls_pages[cls];
  s->nobj = cls_nobj[cls];
  s->ntags = cls_ntags[cls];
  s->nfree = s->nobj;
  pagemap_set(page, s->npages, s);
out:
  pthread_mutex_unlock(&ph.lock);
  return s;
}

/* ---- central lists ---- */

static void partial_push(struct central *c, struct span *s)
{
  s->prev = NULL;
  s->next = c->partial;
  if (s->next)
    s->next->prev = s;
  c->partial = s;
}

static void partial_remove(struct central *c, struct span *s)
{
  if (s->prev)
    s->prev->next = s->next;
  else
    c->partial = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

/* Hands out up to want free objects of class cls as a list (word 0 next,
 * word 1 tag slot); returns how many. */
static unsigned central_alloc(unsigned cls, unsigned want, void **head_out)
{
  struct central *c = &central[cls];
  void **head = NULL;
  unsigned got = 0;
  size_t size = cls_size[cls];

  pthread_mutex_lock(&c->lock);
  while (got < want) {
    struct span *s = c->partial;
    if (!s) {
      s = span_new_small(cls);
      if (!s)
        break;
      partial_push(c, s);
    }
    while (got < want && s->freelist) {
      void **o = s->freelist;
      s->freelist = o[0];
      o[0] = head;
      head = o;
      got++;
      s->nfree--;
    }
    while (got < want && s->bump < s->nobj) {
      void **o = (void **)(s->start + s->bump * size);
      o[0] = head;
      o[1] = &s->tags[s->bump];
      head = o;
      s->bump++;
      got++;
      s->nfree--;
    }
    if (s->nfree == 0)
      partial_remove(c, s);
  }
  pthread_mutex_unlock(&c->lock);
  *head_out = head;
  return got;
}

/* Takes back a list of free objects of class cls (tags already FREE). */
static void central_free(unsigned cls, void **head)
{
  struct central *c = &central[cls];
  pthread_mutex_lock(&c->lock);
  while (head) {
    void **o = head;
    head = o[0];
    struct span *s = g.pagemap[page_of((uintptr_t)o)];
    o[0] = s->freelist;
    s->freelist = o;
    if (s->nfree++ == 0)
      partial_push(c, s);
    /* an empty span goes back to the page heap unless it is the only one */
    if (s->nfree == s->nobj && (c->partial != s || s->next)) {
      partial_remove(c, s);
      pthread_mutex_lock(&ph.lock);
      span_release(s);
      pthread_mutex_unlock(&ph.lock);
    }
  }
  pthread_mutex_unlock(&c->lock);
}

/* ---- thread caches ---- */

static void tc_flush(unsigned cls, uint32_t keep)
{
  struct tbin *b = &tc.bins[cls];
  if (b->count <= keep)
    return;
  void **head = b->head, **last = head;
  for (uint32_t i = 1; i < b->count - keep; i++)
    last = last[0];
  b->head = last[0];
  last[0] = NULL;
  b->count = keep;
  central_free(cls, head);
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
    tc.bins[c].max = 2 * cls_batch[c];
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

  /* [page map][metadata: 1/4 of the arena, enough for 16-byte objects][arena] */
  for (size_t arena = ARENA_MAX; arena >= ARENA_MIN; arena /= 2) {
    size_t pages = arena >> PAGE_SHIFT;
    size_t pm = (pages * sizeof(struct span *) + PAGE - 1) & ~(PAGE - 1);
    size_t meta = arena / 4;
    void *p = mmap(NULL, pm + meta + arena, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      continue;
    g.pagemap = p;
    meta_base = meta_top = meta_commit = (char *)p + pm;
    meta_end = meta_base + meta;
    g.base = (uintptr_t)meta_end;
    arena_pages_max = pages;
    break;
  }
  if (!g.pagemap)
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

/* ---- small objects ---- */

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
    unsigned want = tc.state == TC_ACTIVE ? cls_batch[cls] : 1;
    unsigned got = central_alloc(cls, want, (void **)&o);
    if (!got)
      goto nomem;
    b->head = o;
    b->count = got;
  }
  b->head = o[0];
  b->count--;
  tc.last = o;
  tc.last_tag = o[1];
  tc.last_size = cls_size[cls];
  *tc.last_tag = MCR_TAG_UNTYPED;
  return o;
nomem:
  errno = ENOMEM;
  return NULL;
}

static inline void *small_alloc(unsigned cls, size_t size)
{
  struct tbin *b = &tc.bins[cls];
  void **o = b->head;
  if (likely(o != NULL)) {
    b->head = o[0];
    b->count--;
    tc.last = o;
    tc.last_tag = o[1];
    tc.last_size = cls_size[cls];
    *tc.last_tag = MCR_TAG_UNTYPED;
    return o;
  }
  return small_alloc_slow(cls, size);
}

SLOW_PATH static void small_free_slow(void **o, uint32_t *tagp, unsigned cls)
{
  if (tc.state == TC_NEW)
    tc_init();
  o[1] = tagp;
  if (tc.state != TC_ACTIVE) {
    o[0] = NULL;
    central_free(cls, o);
    return;
  }
  struct tbin *b = &tc.bins[cls];
  o[0] = b->head;
  b->head = o;
  b->count++;
  if (b->count > b->max)
    tc_flush(cls, b->count - cls_batch[cls]);
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
  struct span *s = meta_alloc(sizeof(*s));
  if (!s) {
    ph.inuse_pages -= n;
    ph_free_run(page, n, dirty ? n : 0);
    goto unlock;
  }
  s->meta_size = sizeof(*s);
  s->start = addr_of(page);
  s->npages = n;
  s->state = SPAN_LARGE;
  s->ltag = MCR_TAG_UNTYPED;
  s->tags = &s->ltag;
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

SLOW_PATH static void large_free(uintptr_t a)
{
  pthread_mutex_lock(&ph.lock);
  /* re-read under the lock: a racing double free must find the span gone */
  struct span *s = g.pagemap[page_of(a)];
  if (s && s->state == SPAN_LARGE && s->start == a && s->ltag != MCR_TAG_FREE) {
    s->ltag = MCR_TAG_FREE;
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
  if (!s || s->state != SPAN_LARGE || s->start != a || s->ltag == MCR_TAG_FREE)
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
    meta_free(r, r->meta_size);
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

/* The span of a, or NULL if a is outside the arena's used part. */
static inline struct span *span_of(uintptr_t a)
{
  size_t page = (a - g.base) >> PAGE_SHIFT;
  if (page >= atomic_load_explicit(&g.npages, memory_order_relaxed))
    return NULL;
  return g.pagemap[page];
}

/* Live object containing a: its tag slot, base and size; NULL if none. */
static uint32_t *object_of(uintptr_t a, uintptr_t *base, size_t *size)
{
  struct span *s = span_of(a);
  if (!s)
    return NULL;
  if (s->state == SPAN_SMALL) {
    size_t idx = ((a - s->start) * s->recip) >> RECIP_SHIFT;
    if (idx >= s->nobj || s->tags[idx] == MCR_TAG_FREE)
      return NULL;
    *base = s->start + idx * s->size;
    *size = s->size;
    return &s->tags[idx];
  }
  if (s->state == SPAN_LARGE && a >= s->start && a - s->start < (s->npages << PAGE_SHIFT) &&
      s->ltag != MCR_TAG_FREE) {
    *base = s->start;
    *size = s->npages << PAGE_SHIFT;
    return &s->ltag;
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
   * since spans start on a page */
  if (align <= PAGE && size <= SMALL_MAX) {
    size_t s = size ? (size + align - 1) & ~(align - 1) : align;
    for (unsigned c = s <= SMALL_MAX ? class_of(s) : NCLASS; c < NCLASS; c++)
      if (cls_size[c] % align == 0)
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
  struct span *s = span_of(a); /* NULL and foreign pointers fall out here */
  if (unlikely(!s))
    return;
  if (likely(s->cls)) {
    size_t idx = ((a - s->start) * s->recip) >> RECIP_SHIFT;
    uint32_t *tagp = &s->tags[idx];
    void **o = p;
    /* Interior pointers and double frees are ignored. A free object holds
     * its tag slot's address in word 1: only then is the tag read, so the
     * common case never waits on the tag's cache line (a store does not). */
    if (unlikely(a != s->start + idx * s->size || (o[1] == tagp && *tagp == MCR_TAG_FREE)))
      return;
    if (p == tc.last)
      tc.last = NULL;
    *tagp = MCR_TAG_FREE;
    struct tbin *b = &tc.bins[s->cls];
    if (likely(b->count < b->max)) {
      o[0] = b->head;
      o[1] = tagp;
      b->head = o;
      b->count++;
      return;
    }
    small_free_slow(p, tagp, s->cls);
    return;
  }
  large_free(a);
}

size_t mcr_heap_usable_size(const void *p)
{
  if (p && p == tc.last)
    return tc.last_size;
  /* Asking the size of a freed object is undefined: the tag is not read. */
  uintptr_t a = (uintptr_t)p;
  struct span *s = span_of(a);
  if (!s)
    return 0;
  if (s->state == SPAN_SMALL) {
    size_t idx = ((a - s->start) * s->recip) >> RECIP_SHIFT;
    return idx < s->nobj && a == s->start + idx * s->size ? s->size : 0;
  }
  if (s->state == SPAN_LARGE && a == s->start)
    return s->npages << PAGE_SHIFT;
  return 0;
}

void mcr_heap_tag_new(const void *p, uint32_t tag)
{
  uintptr_t d = (uintptr_t)p - (uintptr_t)tc.last;
  if (likely(tc.last && d <= MCR_TAG_MAX_HEADER && tag != MCR_TAG_FREE)) {
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
  uint32_t *tagp = object_of(a, &base, &old);
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
  uint32_t tag = *tagp;
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
  uint32_t *tagp = object_of((uintptr_t)p, &base, &size);
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
  uint32_t *tagp = object_of((uintptr_t)p, &base, &size);
  /* Deeper inside, p is a sub-allocation (a pool's), not the object. */
  if (tagp && (uintptr_t)p - base <= MCR_TAG_MAX_HEADER)
    *tagp = tag;
}

int mcr_heap_foreach(int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return 0;
  size_t top = atomic_load_explicit(&g.npages, memory_order_acquire);
  for (size_t page = 0; page < top;) {
    struct span *s = g.pagemap[page];
    if (!s || s->start != addr_of(page)) {
      page++;
      continue;
    }
    size_t n = s->npages;
    if (s->state == SPAN_SMALL) {
      uintptr_t start = s->start;
      size_t size = s->size;
      uint32_t *tags = s->tags, nobj = s->nobj;
      for (uint32_t i = 0; i < nobj; i++) {
        if (tags[i] == MCR_TAG_FREE)
          continue;
        struct mcr_object o = {(void *)(start + i * size), size, tags[i]};
        int r = fn(&o, arg);
        if (r)
          return r;
      }
    } else if (s->state == SPAN_LARGE && s->ltag != MCR_TAG_FREE) {
      struct mcr_object o = {(void *)s->start, n << PAGE_SHIFT, s->ltag};
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
  pthread_mutex_lock(&ph.lock);
  size_t top = atomic_load_explicit(&g.npages, memory_order_relaxed);
  for (size_t page = 0; page < top;) {
    struct span *s = g.pagemap[page];
    if (!s || s->start != addr_of(page)) {
      page++;
      continue;
    }
    if (s->state == SPAN_SMALL) {
      for (uint32_t i = 0; i < s->nobj; i++)
        if (s->tags[i] != MCR_TAG_FREE) {
          st->live_objects++;
          st->live_bytes += s->size;
        }
    } else if (s->state == SPAN_LARGE && s->ltag != MCR_TAG_FREE) {
      st->live_objects++;
      st->live_bytes += s->npages << PAGE_SHIFT;
    }
    page += s->npages;
  }
  /* clean free pages (never touched or given back) are not held */
  size_t clean = ph.free_pages - ph.dirty_pages;
  st->metadata_bytes = (size_t)(meta_top - meta_base) + top * sizeof(struct span *);
  st->mapped_bytes = ((top - clean) << PAGE_SHIFT) + st->metadata_bytes;
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
  /* the empty span each class keeps to avoid churn goes too */
  for (unsigned c = 1; c < NCLASS; c++) {
    pthread_mutex_lock(&central[c].lock);
    for (struct span *s = central[c].partial, *next; s; s = next) {
      next = s->next;
      if (s->nfree == s->nobj) {
        partial_remove(&central[c], s);
        pthread_mutex_lock(&ph.lock);
        span_release(s);
        pthread_mutex_unlock(&ph.lock);
      }
    }
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
