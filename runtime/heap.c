/*
 * heap.c - mcr's tagged heap (see heap.h).
 *
 * Layout. One PROT_NONE, MAP_NORESERVE reservation made on first use, at a
 * random 1 GiB-aligned address in [16 TiB, 80 TiB) (away from the libraries,
 * so that a successor process can reserve the same range: heap.h), holds,
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
 * Lanes (heap.h). Every class region, the large arena and the descriptor
 * area are split in halves; each lane of each has its own bump pointer
 * (top[lane], npages[lane], meta_top[lane]), and "at or above top is not an
 * object" holds per lane: lane = offset >> (shift - 1), two instructions
 * more on free and lookup. Lane 1 of a class starts at the first slot at or after
 * half the region; the slot straddling the middle is never carved (its tag
 * slot stays FREE and is committed with lane 1). Only carving picks a lane
 * (carve_lane); free lists and free runs mix both. Free runs never merge
 * across the middle of the arena.
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
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mcr/abi.h"
#include "pieces.h"

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

/* Placement: random hints in [16 TiB, 80 TiB), 1 GiB aligned. */
#define HINT_LO ((uintptr_t)16 << 40)
#define HINT_SLOTS ((uintptr_t)64 << 10) /* 64 TiB / 1 GiB */
#define HINT_TRIES 8
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

_Static_assert(MCR_HEAP_NCLASS == NCLASS - 1, "heap.h's class count");
_Static_assert(MCR_HEAP_NLISTS == NLISTS, "heap.h's page heap list count");

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

/* One cache line each, so a free or lookup touches one line of the table. */
static struct class_info {
  uint64_t recip;    /* ceil(2^64 / size) */
  tag_t *tags;      /* the class's tag array */
  /* per lane: offset in the region of the lane's high-water mark (a
   * multiple of size); lane 1's starts at lane1_first() */
  _Atomic size_t top[2];
  uint32_t size;
  uint32_t batch;    /* objects moved between thread and central caches at once */
} __attribute__((aligned(64))) cls_tab[NCLASS];

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

/* High-water mark of the lane that offset off of class k's region is in:
 * (off * 2) >> shift rather than off >> (shift - 1), as the caller has just
 * shifted by sg.shift (off < 2^34: no overflow). */
static inline size_t top_at(const struct class_info *k, size_t off)
{
  return atomic_load_explicit(&k->top[(off << 1) >> sg.shift], memory_order_relaxed);
}

/* Lane 1 of class cls: first object offset, and the byte offset in the tag
 * array from which its tag slots are committed (the page of the straddling
 * slot's, so that a lookup in the straddling slot reads a committed FREE). */
static size_t lane1_first(unsigned cls)
{
  size_t half = (sg.mask + 1) >> 1, size = cls_tab[cls].size;
  return (half + size - 1) / size * size;
}

static size_t lane1_tag_lo(unsigned cls)
{
  size_t half = (sg.mask + 1) >> 1;
  return half / cls_tab[cls].size * sizeof(tag_t) & ~(PAGE - 1);
}

static inline size_t lane_lo(unsigned cls, unsigned lane)
{
  return lane ? lane1_first(cls) : 0;
}

/* Objects of the lane end at or below this offset. */
static inline size_t lane_hi(unsigned lane)
{
  return lane ? sg.mask + 1 : (sg.mask + 1) >> 1;
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
  /* per lane: first unused page index; the page map is valid below (lane 1
   * starts at lane_pages) */
  _Atomic size_t npages[2];
  struct span **pagemap;
  size_t lane_pages;       /* pages per lane */
  unsigned lane_pshift;    /* log2(lane_pages) */
} g __attribute__((aligned(64)));

static char *meta_base[2], *meta_top[2], *meta_commit[2], *meta_end[2];
static size_t pm_commit_bytes[2]; /* page map bytes committed, from its start */
static size_t pm_bytes;
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
  /* per lane: read-write bytes of the region and of the tag array, as
   * offsets from their start (lane 1's start at its own beginning) */
  size_t committed[2];
  size_t tag_committed[2];
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

/* The lane this process carves in. Changes under every class lock and
 * ph.lock, read under either. */
static unsigned carve_lane;

static uintptr_t reserve_base;
static size_t reserve_size;

/* Update mode (heap.h). */
enum { UPD_NONE, UPD_FAILED, UPD_READY, UPD_PREPARED, UPD_ADOPTED, UPD_ABANDONED };
static struct {
  int mode;
  char why[320];        /* UPD_FAILED: why */
  /* where this process's own lane-1 objects start (the old's marks) */
  size_t top1[NCLASS];
  size_t pages1;
  size_t meta1;         /* offset from meta_base[1] */
} upd;
static char adopt_err[320];
static uint64_t export_serial;

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

/* Makes class cls's region read-write up to offset end in lane lane, and
 * the tag slots of the objects below. Under the class lock (or before the
 * heap is published). */
static int region_commit(unsigned cls, unsigned lane, size_t end)
{
  struct central *c = &central[cls];
  size_t want = round_up(end, CARVE_COMMIT);
  if (want > lane_hi(lane))
    want = lane_hi(lane);
  size_t tags = round_up(want / cls_tab[cls].size * sizeof(tag_t), PAGE);
  if (tags > c->tag_committed[lane]) {
    size_t from = c->tag_committed[lane];
    if (commit((char *)cls_tab[cls].tags + from, tags - from) < 0)
      return -1;
    c->tag_committed[lane] = tags;
  }
  if (want > c->committed[lane]) {
    if (commit((char *)region_start(cls) + c->committed[lane], want - c->committed[lane]) < 0)
      return -1;
    c->committed[lane] = want;
  }
  return 0;
}

/* Carves up to n never-used objects from the top of the carving lane of
 * class cls's region and pushes them on *head, lowest address first. Returns
 * how many: 0 once the lane is full. Under the class lock. */
static unsigned region_carve(unsigned cls, unsigned n, void ***head)
{
  struct class_info *k = &cls_tab[cls];
  unsigned lane = carve_lane;
  size_t size = k->size, top = atomic_load_explicit(&k->top[lane], memory_order_relaxed);
  size_t left = (lane_hi(lane) - top) / size;
  if (n > left)
    n = (unsigned)left;
  if (n == 0)
    return 0;
  size_t end = top + n * size;
  if (end > central[cls].committed[lane] && region_commit(cls, lane, end) < 0)
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
  atomic_store_explicit(&k->top[lane], end, memory_order_release);
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

/* Gives the free top of lane lane of class cls's region back to the OS: the
 * longest run of objects just below top that are all on the central list
 * (objects in thread caches keep their memory: their owners may hand them
 * out at any time). top comes down, so the run is carved afresh when needed
 * (in lane 1 only by a successor); its tag slots are all FREE, i.e. zero,
 * which is what the OS gives back too. Returns 1 if memory was released.
 * Under the class lock. */
void *mcr_map_anon(size_t len, int flags)
{
  return (void *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
}

static int lane_trim(unsigned cls, unsigned lane)
{
  struct central *c = &central[cls];
  struct class_info *k = &cls_tab[cls];
  size_t size = k->size, first = lane_lo(cls, lane) / size;
  size_t n = atomic_load_explicit(&k->top[lane], memory_order_relaxed) / size;
  if (n <= first)
    return 0;
  size_t lo = n - (c->nfree < n - first ? c->nfree : n - first); /* the run is at most nfree long */
  if (lo == n)
    return 0;
  /* one bit per object in [lo, n): on the central list */
  size_t mapsz = round_up((n - lo + 7) / 8, PAGE);
  uint8_t *map = mcr_map_anon(mapsz, 0);
  if (map == MAP_FAILED)
    return 0;
  uintptr_t base = region_start(cls);
  for (void **o = c->free; o; o = o[0]) {
    size_t i = ((uintptr_t)o - base) / size;
    if (i >= lo && i < n)
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
    size_t i = ((uintptr_t)o - base) / size;
    if (i >= keep && i < n) {
      *link = o[0];
      c->nfree--;
    } else {
      link = o;
    }
  }
  atomic_store_explicit(&k->top[lane], keep * size, memory_order_release);
  int released = 0;
  size_t from = round_up(keep * size, PAGE), to = round_up(n * size, PAGE);
  if (to > from && madvise((char *)base + from, to - from, MADV_DONTNEED) == 0)
    released = 1;
  uintptr_t tfrom = round_up((uintptr_t)(k->tags + keep), PAGE);
  uintptr_t tto = round_up((uintptr_t)(k->tags + n), PAGE);
  /* lane 0's last tag page may hold lane 1's first tags */
  if (lane == 0 && tto > (uintptr_t)k->tags + lane1_tag_lo(cls))
    tto = (uintptr_t)k->tags + lane1_tag_lo(cls);
  if (tto > tfrom && madvise((void *)tfrom, tto - tfrom, MADV_DONTNEED) == 0)
    released = 1;
  return released;
}

static int region_trim(unsigned cls)
{
  int released = lane_trim(cls, 0);
  return lane_trim(cls, 1) | released;
}

/* ---- large objects: descriptors and page heap (all under ph.lock) ---- */

/* Page map entries of lane lane must exist before npages[lane] covers them
 * (npages: a page index). */
static int pagemap_cover(unsigned lane, size_t npages)
{
  size_t need = npages * sizeof(struct span *);
  if (need <= pm_commit_bytes[lane])
    return 0;
  need = round_up(need, PM_COMMIT);
  if (need > pm_bytes)
    need = pm_bytes;
  if (commit((char *)g.pagemap + pm_commit_bytes[lane], need - pm_commit_bytes[lane]) < 0)
    return -1;
  pm_commit_bytes[lane] = need;
  return 0;
}

/* Makes lane lane's descriptor area read-write up to end. */
static int meta_cover(unsigned lane, char *end)
{
  while (end > meta_commit[lane]) {
    size_t want = META_COMMIT;
    if (want > (size_t)(meta_end[lane] - meta_commit[lane]))
      want = (size_t)(meta_end[lane] - meta_commit[lane]);
    if (want == 0 || commit(meta_commit[lane], want) < 0)
      return -1;
    meta_commit[lane] += want;
  }
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
  unsigned lane = carve_lane;
  if ((size_t)(meta_end[lane] - meta_top[lane]) < sizeof(*s))
    return NULL;
  if (meta_cover(lane, meta_top[lane] + sizeof(*s)) < 0)
    return NULL;
  s = (struct span *)meta_top[lane]; /* fresh memory is zero */
  meta_top[lane] += sizeof(*s);
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

static inline unsigned page_lane(size_t page)
{
  return page >= g.lane_pages;
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
  unsigned lane = page_lane(page);
  size_t lo = lane ? g.lane_pages : 0;
  size_t top = atomic_load_explicit(&g.npages[lane], memory_order_relaxed);
  struct span *l = page > lo ? g.pagemap[page - 1] : NULL;
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
  unsigned lane = carve_lane;
  size_t top = atomic_load_explicit(&g.npages[lane], memory_order_relaxed);
  size_t end = (lane + 1) * g.lane_pages;
  size_t want = (n + GROW_PAGES - 1) / GROW_PAGES * GROW_PAGES;
  if (want > end - top)
    want = n;
  if (n > end - top)
    return -1;
  if (pagemap_cover(lane, top + want) < 0)
    return -1;
  if (commit((void *)addr_of(top), want << PAGE_SHIFT) < 0)
    return -1;
  atomic_store_explicit(&g.npages[lane], top + want, memory_order_release);
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
  mcr_pieces_fork_prepare();
  for (unsigned c = 1; c < NCLASS; c++)
    pthread_mutex_lock(&central[c].lock);
  pthread_mutex_lock(&ph.lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&ph.lock);
  for (unsigned c = NCLASS - 1; c >= 1; c--)
    pthread_mutex_unlock(&central[c].lock);
  mcr_pieces_fork_parent();
}

static void fork_child(void)
{
  pthread_mutex_init(&ph.lock, NULL);
  for (unsigned c = 1; c < NCLASS; c++)
    pthread_mutex_init(&central[c].lock, NULL);
  mcr_pieces_fork_child();
}

/* ---- reservation: layout, placement, update mode ---- */

struct layout {
  size_t region, small, tags, pm, meta, arena, total;
};

/* [small regions][tag arrays][page map][span descriptors][large arena] with
 * regions of 2^shift bytes. */
static void layout_of(unsigned shift, struct layout *l)
{
  l->region = (size_t)1 << shift;
  l->small = (NCLASS - 1) * l->region;
  l->tags = 0;
  for (unsigned c = 1; c < NCLASS; c++)
    l->tags += tag_array_bytes(c, l->region);
  l->arena = l->region << LARGE_SHIFT;
  l->pm = round_up((l->arena >> PAGE_SHIFT) * sizeof(struct span *), PAGE);
  /* a descriptor per free run or large object (>= 1 and >= 8 pages) */
  l->meta = l->arena / 32;
  l->total = l->small + l->tags + l->pm + l->meta + l->arena;
}

/* Points the tables at a reservation at p with regions of 2^shift bytes,
 * every lane empty. */
static void layout_set(char *p, unsigned shift)
{
  struct layout l;
  layout_of(shift, &l);
  reserve_base = (uintptr_t)p;
  reserve_size = l.total;
  /* class 1 is the first region; the subtraction may wrap, harmlessly */
  sg.small_base = (uintptr_t)p - l.region;
  sg.mask = l.region - 1;
  sg.shift = shift;
  char *t = p + l.small;
  for (unsigned c = 1; c < NCLASS; c++) {
    cls_tab[c].tags = (tag_t *)t;
    t += tag_array_bytes(c, l.region);
    atomic_store_explicit(&cls_tab[c].top[0], 0, memory_order_relaxed);
    atomic_store_explicit(&cls_tab[c].top[1], lane1_first(c), memory_order_relaxed);
    central[c].committed[0] = 0;
    central[c].committed[1] = l.region / 2;
    central[c].tag_committed[0] = 0;
    central[c].tag_committed[1] = lane1_tag_lo(c);
  }
  g.pagemap = (struct span **)t;
  pm_bytes = l.pm;
  g.lane_pages = (l.arena >> PAGE_SHIFT) / 2;
  g.lane_pshift = (unsigned)__builtin_ctzl(g.lane_pages);
  atomic_store_explicit(&g.npages[0], 0, memory_order_relaxed);
  atomic_store_explicit(&g.npages[1], g.lane_pages, memory_order_relaxed);
  pm_commit_bytes[0] = 0;
  pm_commit_bytes[1] = g.lane_pages * sizeof(struct span *);
  meta_base[0] = meta_top[0] = meta_commit[0] = t + l.pm;
  meta_end[0] = meta_base[1] = meta_top[1] = meta_commit[1] = meta_base[0] + l.meta / 2;
  meta_end[1] = meta_base[0] + l.meta;
  g.base = (uintptr_t)meta_end[1];
}

/* Bounded string building without malloc or stdio (this may run inside
 * ld.so): n counts every byte asked for, so n >= len means truncated. */
struct sbuf {
  char *p;
  size_t len, n;
};

static void sb_str(struct sbuf *b, const char *s)
{
  for (; *s; s++, b->n++)
    if (b->n + 1 < b->len)
      b->p[b->n] = *s;
  if (b->len)
    b->p[b->n < b->len ? b->n : b->len - 1] = 0;
}

static void sb_num(struct sbuf *b, uint64_t v, unsigned radix)
{
  char t[24];
  int i = (int)sizeof(t) - 1;
  t[i] = 0;
  do
    t[--i] = "0123456789abcdef"[v % radix];
  while ((v /= radix) != 0);
  sb_str(b, t + i);
}

static void sb_hex(struct sbuf *b, uint64_t v)
{
  sb_str(b, "0x");
  sb_num(b, v, 16);
}

static uint64_t random_u64(void)
{
  uint64_t r = 0;
  if (syscall(SYS_getrandom, &r, sizeof(r), 1 /* GRND_NONBLOCK */) != (long)sizeof(r))
    r = ((uint64_t)(uintptr_t)&r ^ (uint64_t)(uintptr_t)random_u64) * 0x9e3779b97f4a7c15ULL;
  return r;
}

static char *map_reserve(uintptr_t at, size_t len, int flags)
{
  char *p = mmap((void *)at, len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | flags, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* A reservation of len bytes at a random 1 GiB-aligned address in
 * [16 TiB, 80 TiB), far from the libraries near mmap_base, so that a
 * successor can reserve the same range; else wherever the kernel likes. */
static char *reserve_placed(size_t len)
{
  for (int i = 0; i < HINT_TRIES; i++) {
    uintptr_t hint = HINT_LO + ((uintptr_t)(random_u64() % HINT_SLOTS) << 30);
    /* a kernel without MAP_FIXED_NOREPLACE takes it as a hint: any address will do */
    char *p = map_reserve(hint, len, MAP_FIXED_NOREPLACE);
    if (p)
      return p;
    if (errno != EEXIST)
      break; /* e.g. RLIMIT_AS: the kernel cannot do better */
  }
  return map_reserve(0, len, 0);
}

/* Copies MCR_UPDATE_HEAP's value from the initial environment into buf.
 * Returns its length, -1 if it is not set, -2 if it does not fit. Raw system
 * calls only: the heap may be initialised inside ld.so, before environ. */
static long read_update_env(char *buf, size_t len)
{
  static const char key[] = MCR_UPDATE_HEAP_ENV "=";
  char chunk[1024];
  size_t match = 0; /* key bytes matched at the start of this entry; SIZE_MAX: no match */
  long out = -1;    /* >= 0: in the value, bytes copied */
  long ret = -1;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  for (;;) {
    long n = syscall(SYS_read, fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (long i = 0; i < n; i++) {
      char ch = chunk[i];
      if (out >= 0) {
        if (ch == 0)
          goto found;
        if ((size_t)out + 1 >= len) {
          ret = -2;
          goto done;
        }
        buf[out++] = ch;
      } else if (ch == 0) {
        match = 0;
      } else if (match != SIZE_MAX) {
        match = ch == key[match] ? match + 1 : SIZE_MAX;
        if (match == sizeof(key) - 1)
          out = 0;
      }
    }
  }
  if (out < 0)
    goto done;
found:
  buf[out] = 0;
  ret = out;
done:
  syscall(SYS_close, fd);
  return ret;
}

static const char *parse_num(const char *s, unsigned radix, uint64_t *v)
{
  uint64_t x = 0;
  const char *start = s;
  for (;; s++) {
    unsigned d;
    if (*s >= '0' && *s <= '9')
      d = (unsigned)(*s - '0');
    else if (radix == 16 && *s >= 'a' && *s <= 'f')
      d = (unsigned)(*s - 'a' + 10);
    else
      break;
    if (d >= radix || x > (UINT64_MAX - d) / radix)
      return NULL;
    x = x * radix + d;
  }
  *v = x;
  return s == start ? NULL : s;
}

struct update_geom {
  uint64_t base, shift, pages1, meta1, top1[NCLASS];
};

/* MCR_UPDATE_HEAP's value (heap.h). Returns 0 or -1. */
static int parse_update_env(const char *s, struct update_geom *u)
{
  uint64_t version;
  if (!(s = parse_num(s, 10, &version)) || version != 1 || *s++ != ':' ||
      !(s = parse_num(s, 16, &u->base)) || *s++ != ':' || !(s = parse_num(s, 10, &u->shift)) ||
      *s++ != ':' || !(s = parse_num(s, 16, &u->pages1)) || *s++ != ':' ||
      !(s = parse_num(s, 16, &u->meta1)) || *s++ != ':')
    return -1;
  for (unsigned c = 1; c < NCLASS; c++) {
    if (!(s = parse_num(s, 16, &u->top1[c])))
      return -1;
    if (*s++ != (c == NCLASS - 1 ? 0 : ','))
      return -1;
  }
  if (u->shift < REGION_SHIFT_MIN || u->shift > REGION_SHIFT_MAX || !u->base || u->base % PAGE)
    return -1;
  return 0;
}

/* Names in why the first mapping of this process that overlaps [lo, hi),
 * from /proc/self/maps (raw system calls, as above). */
static void name_taker(uintptr_t lo, uintptr_t hi, struct sbuf *why)
{
  char chunk[1024], line[384];
  size_t ll = 0;
  int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC);
  sb_str(why, "the old heap's range ");
  sb_hex(why, lo);
  sb_str(why, "-");
  sb_hex(why, hi);
  sb_str(why, " is taken");
  if (fd < 0)
    return;
  for (;;) {
    long n = syscall(SYS_read, fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (long i = 0; i < n; i++) {
      if (chunk[i] != '\n') {
        if (ll + 1 < sizeof(line))
          line[ll++] = chunk[i];
        continue;
      }
      line[ll] = 0;
      ll = 0;
      /* start-end perms offset dev inode [path] */
      uint64_t s, e;
      const char *p = parse_num(line, 16, &s);
      if (!p || *p++ != '-' || !(p = parse_num(p, 16, &e)) || s >= hi || e <= lo)
        continue;
      for (int field = 0; field < 4; field++) {
        while (*p == ' ')
          p++;
        while (*p && *p != ' ')
          p++;
      }
      while (*p == ' ')
        p++;
      sb_str(why, " by ");
      sb_str(why, *p ? p : "an anonymous mapping");
      sb_str(why, " (");
      sb_hex(why, s);
      sb_str(why, "-");
      sb_hex(why, e);
      sb_str(why, ")");
      goto out;
    }
  }
out:
  syscall(SYS_close, fd);
}

/* Update mode: the heap at exactly the old heap's range, carving lane 1 above
 * the old's lane-1 marks. The old's part of lane 1 is committed at once, so
 * that lookups of (foreign) pointers into it read free tag slots and empty
 * page map entries. Returns 0, or -1 with upd.why set and nothing reserved. */
static int reserve_update(const char *val, long vlen)
{
  struct sbuf why = {upd.why, sizeof(upd.why), 0};
  struct update_geom u;
  struct layout l;
  upd.mode = UPD_FAILED;
  if (vlen < 0 || parse_update_env(val, &u) < 0) {
    sb_str(&why, MCR_UPDATE_HEAP_ENV " is malformed");
    return -1;
  }
  layout_of((unsigned)u.shift, &l);
  char *p = map_reserve(u.base, l.total, MAP_FIXED_NOREPLACE);
  if (!p || p != (char *)u.base) {
    int err = p ? EEXIST : errno;
    if (p)
      munmap(p, l.total); /* a kernel that took MAP_FIXED_NOREPLACE as a hint */
    if (err == EEXIST) {
      name_taker(u.base, u.base + l.total, &why);
    } else {
      sb_str(&why, "cannot reserve the old heap's range ");
      sb_hex(&why, u.base);
      sb_str(&why, "-");
      sb_hex(&why, u.base + l.total);
      sb_str(&why, ": errno ");
      sb_num(&why, (uint64_t)err, 10);
    }
    return -1;
  }
  layout_set(p, (unsigned)u.shift);
  bool ok = u.pages1 >= g.lane_pages && u.pages1 <= 2 * g.lane_pages &&
            u.meta1 <= (size_t)(meta_end[1] - meta_base[1]) && u.meta1 % sizeof(struct span) == 0;
  for (unsigned c = 1; c < NCLASS && ok; c++)
    ok = u.top1[c] >= lane1_first(c) && u.top1[c] <= l.region && u.top1[c] % cls_tab[c].size == 0;
  if (!ok) {
    sb_str(&why, MCR_UPDATE_HEAP_ENV " is malformed");
    goto fail;
  }
  for (unsigned c = 1; c < NCLASS; c++) {
    upd.top1[c] = u.top1[c];
    atomic_store_explicit(&cls_tab[c].top[1], u.top1[c], memory_order_relaxed);
    if (u.top1[c] > lane1_first(c) && region_commit(c, 1, u.top1[c]) < 0)
      goto nomem;
  }
  upd.pages1 = u.pages1;
  upd.meta1 = u.meta1;
  atomic_store_explicit(&g.npages[1], u.pages1, memory_order_relaxed);
  meta_top[1] = meta_base[1] + u.meta1;
  if (pagemap_cover(1, u.pages1) < 0 || meta_cover(1, meta_top[1]) < 0)
    goto nomem;
  carve_lane = 1;
  upd.mode = UPD_READY;
  return 0;
nomem:
  sb_str(&why, "cannot commit the old heap's lane 1: errno ");
  sb_num(&why, (uint64_t)errno, 10);
fail:
  munmap(p, l.total);
  return -1;
}

/* Reserves the heap: in update mode at the old heap's range if possible,
 * else at a random address with regions of 2^shift bytes, the largest that
 * mmap accepts (RLIMIT_AS). */
static int reserve(void)
{
  char val[1536];
  long vlen = read_update_env(val, sizeof(val));
  if (vlen != -1 && reserve_update(val, vlen) == 0)
    return 0;
  for (unsigned shift = REGION_SHIFT_MAX; shift >= REGION_SHIFT_MIN; shift--) {
    struct layout l;
    layout_of(shift, &l);
    char *p = reserve_placed(l.total);
    if (!p)
      continue;
    layout_set(p, shift);
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
  if (size > (g.lane_pages << PAGE_SHIFT) || align > (g.lane_pages << PAGE_SHIFT))
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

/* The span of a, or NULL if a is outside the used part of the large arena's
 * lanes. Before init, a page index above 1 is lane 2 or more, and every
 * npages is 0. */
static inline struct span *span_of(uintptr_t a)
{
  size_t page = (a - g.base) >> PAGE_SHIFT, lane = page >> g.lane_pshift;
  if (lane > 1 || page >= atomic_load_explicit(&g.npages[lane], memory_order_relaxed))
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
  /* not across the middle: next must be in page's lane, below its top */
  unsigned lane = page_lane(page);
  struct span *r = page_lane(next) == lane &&
                           next < atomic_load_explicit(&g.npages[lane], memory_order_relaxed)
                       ? g.pagemap[next]
                       : NULL;
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
    if (off >= top_at(k, off))
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
  /* a pool's block: the pieces recorded in it end (pieces.h) */
  if (unlikely(__atomic_load_n(&mcr_pieces_nblocks, __ATOMIC_RELAXED)))
    mcr_pieces_block_freed(a);
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
  if (unlikely(off != idx * k->size || off >= top_at(k, off) ||
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
    return off == small_index(off, k->recip) * k->size && off < top_at(k, off) ? k->size : 0;
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
  } else if (size > SMALL_MAX && size <= (g.lane_pages << PAGE_SHIFT)) {
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
  if (unlikely(__atomic_load_n(&mcr_pieces_nblocks, __ATOMIC_RELAXED)))
    mcr_pieces_block_moved(a, (uintptr_t)q, size < old ? size : old); /* a pool's block */
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

/* mcr_heap_piece_sites; the startup's pieces are recorded by startup.c */
static uint8_t piece_sites[MCR_PIECE_SITES_BYTES];
extern int mcr_startup_on; /* startup.h (a weak default in malloc.c) */

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
  else if (tagp && tag >= MCR_TAG_FIRST_SITE && !__atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED) &&
           !(piece_sites[tag >> 3] & (1u << (tag & 7))))
    __atomic_or_fetch(&piece_sites[tag >> 3], (uint8_t)(1u << (tag & 7)), __ATOMIC_RELAXED);
}

void mcr_heap_tag_sized(const void *p, uint32_t tag, size_t size)
{
  uintptr_t base, d = (uintptr_t)p - (uintptr_t)tc.last;
  size_t osize;
  if (likely(tc.last && d <= MCR_TAG_MAX_HEADER && tag != MCR_TAG_FREE && tag <= MCR_TAG_MAX)) {
    *tc.last_tag = tag;
    return;
  }
  tag_t *tagp = object_of((uintptr_t)p, &base, &osize);
  if (!tagp || (uintptr_t)p - base <= MCR_TAG_MAX_HEADER) {
    mcr_heap_set_tag(p, tag);
    return;
  }
  if (tag < MCR_TAG_FIRST_SITE || tag > MCR_TAG_MAX || __atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED))
    return;
  if (!(piece_sites[tag >> 3] & (1u << (tag & 7))))
    __atomic_or_fetch(&piece_sites[tag >> 3], (uint8_t)(1u << (tag & 7)), __ATOMIC_RELAXED);
  if (mcr_pieces_track(tag) && (uintptr_t)p + size <= base + osize)
    mcr_pieces_record(base, (uintptr_t)p, size, tag);
}

void mcr_heap_mark_piece_site(uint32_t tag)
{
  if (tag >= MCR_TAG_FIRST_SITE && tag <= MCR_TAG_MAX)
    __atomic_or_fetch(&piece_sites[tag >> 3], (uint8_t)(1u << (tag & 7)), __ATOMIC_RELAXED);
}

const uint8_t *mcr_heap_piece_sites(void)
{
  return piece_sites;
}

/* fn on every live object in slots [from, to) of class c. */
static int visit_slots(unsigned c, size_t from, size_t to,
                       int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  const struct class_info *k = &cls_tab[c];
  uintptr_t start = region_start(c);
  for (size_t i = from; i < to; i++) {
    if (k->tags[i] == MCR_TAG_FREE)
      continue;
    struct mcr_object o = {(void *)(start + i * k->size), k->size, k->tags[i]};
    int r = fn(&o, arg);
    if (r)
      return r;
  }
  return 0;
}

/* fn on every live large object. */
static int visit_large(int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  for (unsigned lane = 0; lane < 2; lane++) {
    size_t top = atomic_load_explicit(&g.npages[lane], memory_order_acquire);
    for (size_t page = lane * g.lane_pages; page < top;) {
      struct span *s = g.pagemap[page];
      if (!s || s->start != addr_of(page)) {
        page++;
        continue;
      }
      if (s->state == SPAN_LARGE && s->tag != MCR_TAG_FREE) {
        struct mcr_object o = {(void *)s->start, s->npages << PAGE_SHIFT, s->tag};
        int r = fn(&o, arg);
        if (r)
          return r;
      }
      page += s->npages;
    }
  }
  return 0;
}

int mcr_heap_foreach(int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return 0;
  for (unsigned c = 1; c < NCLASS; c++) {
    size_t size = cls_tab[c].size;
    for (unsigned lane = 0; lane < 2; lane++) {
      size_t top = atomic_load_explicit(&cls_tab[c].top[lane], memory_order_acquire);
      int r = visit_slots(c, lane_lo(c, lane) / size, top / size, fn, arg);
      if (r)
        return r;
    }
  }
  return visit_large(fn, arg);
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
    for (unsigned lane = 0; lane < 2; lane++) {
      size_t lo = lane_lo(c, lane), top = atomic_load_explicit(&k->top[lane], memory_order_relaxed);
      size_t first = lo / k->size, n = top / k->size;
      for (size_t i = first; i < n; i++)
        if (k->tags[i] != MCR_TAG_FREE) {
          st->live_objects++;
          st->live_bytes += k->size;
        }
      if (n > first) {
        small_bytes += round_up(top - lo, PAGE);
        tag_bytes += round_up((n - first) * sizeof(tag_t), PAGE);
      }
    }
    pthread_mutex_unlock(&central[c].lock);
  }
  pthread_mutex_lock(&ph.lock);
  size_t used = 0; /* arena pages in use, both lanes */
  for (unsigned lane = 0; lane < 2; lane++) {
    size_t top = atomic_load_explicit(&g.npages[lane], memory_order_relaxed);
    used += top - lane * g.lane_pages;
    for (size_t page = lane * g.lane_pages; page < top;) {
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
  }
  /* clean free pages (never touched or given back) are not held */
  size_t clean = ph.free_pages - ph.dirty_pages;
  st->metadata_bytes = tag_bytes + (size_t)(meta_top[0] - meta_base[0]) +
                       (size_t)(meta_top[1] - meta_base[1]) + used * sizeof(struct span *);
  st->mapped_bytes = small_bytes + ((used - clean) << PAGE_SHIFT) + st->metadata_bytes;
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

void mcr_heap_flush_thread_cache(void)
{
  if (tc.state == TC_ACTIVE)
    for (unsigned c = 1; c < NCLASS; c++)
      tc_flush(c, 0);
}

/* ---- live update (heap.h) ---- */

/* Every class lock, then the page heap's: the order of fork_prepare. */
static void lock_all(void)
{
  fork_prepare();
}

static void unlock_all(void)
{
  fork_parent();
}

/* The lane-1 marks of process pid, a process forked from this one (the same
 * layout: its variables are at our variables' addresses), read from its
 * memory. Returns 0, or -1 (another heap, or unreadable). */
static int remote_lane1_marks(pid_t pid, size_t *pages1, size_t *meta1, size_t top1[NCLASS])
{
  static struct class_info ct[NCLASS]; /* only the update thread asks */
  uintptr_t base = 0;
  size_t np = 0;
  char *mt = NULL;
  struct iovec l[4] = {{&base, sizeof(base)}, {&np, sizeof(np)}, {&mt, sizeof(mt)},
                       {ct, sizeof(ct)}};
  struct iovec r[4] = {{&reserve_base, sizeof(base)}, {(void *)&g.npages[1], sizeof(np)},
                       {&meta_top[1], sizeof(mt)}, {cls_tab, sizeof(ct)}};
  ssize_t want = (ssize_t)(sizeof(base) + sizeof(np) + sizeof(mt) + sizeof(ct));
  if (syscall(SYS_process_vm_readv, pid, l, 4, r, 4, 0) != want || base != reserve_base ||
      mt < meta_base[1])
    return -1;
  *pages1 = np;
  *meta1 = (size_t)(mt - meta_base[1]);
  for (unsigned c = 1; c < NCLASS; c++)
    top1[c] = atomic_load_explicit(&ct[c].top[1], memory_order_relaxed);
  return 0;
}

int mcr_heap_update_env(char *buf, size_t len)
{
  return mcr_heap_update_env_tree(buf, len, NULL, 0);
}

int mcr_heap_update_env_tree(char *buf, size_t len, const pid_t *others, size_t nothers)
{
  size_t pages1, meta1, top1[NCLASS], o_pages1, o_meta1, o_top1[NCLASS];
  if (ensure_init() < 0) {
    errno = ENOMEM;
    return -1;
  }
  lock_all();
  if (upd.mode == UPD_PREPARED) {
    /* lane 0 may already hold the old's bytes: carving there would hand them out */
    unlock_all();
    errno = EBUSY;
    return -1;
  }
  /* the marks written below must not move: lane 1 is the successor's from now on */
  if (carve_lane == 1) {
    carve_lane = 0;
    upd.mode = UPD_ABANDONED;
  }
  pages1 = atomic_load_explicit(&g.npages[1], memory_order_relaxed);
  meta1 = (size_t)(meta_top[1] - meta_base[1]);
  for (unsigned c = 1; c < NCLASS; c++)
    top1[c] = atomic_load_explicit(&cls_tab[c].top[1], memory_order_relaxed);
  unlock_all();
  /* a process tree: the successors of this process's children start as its
   * successor's children (forked by its replay), so its lane-1 carving must
   * stay above every old child's lane-1 objects too (a child replayed its own
   * startup after the fork, above the marks of then) */
  for (size_t i = 0; i < nothers; i++) {
    if (remote_lane1_marks(others[i], &o_pages1, &o_meta1, o_top1) != 0)
      continue; /* gone, or another heap: nothing of it to stay clear of */
    if (o_pages1 > pages1)
      pages1 = o_pages1;
    if (o_meta1 > meta1)
      meta1 = o_meta1;
    for (unsigned c = 1; c < NCLASS; c++)
      if (o_top1[c] > top1[c])
        top1[c] = o_top1[c];
  }
  struct sbuf b = {buf, len, 0};
  sb_str(&b, "1:");
  sb_num(&b, reserve_base, 16);
  sb_str(&b, ":");
  sb_num(&b, sg.shift, 10);
  sb_str(&b, ":");
  sb_num(&b, pages1, 16);
  sb_str(&b, ":");
  sb_num(&b, meta1, 16);
  for (unsigned c = 1; c < NCLASS; c++) {
    sb_str(&b, c == 1 ? ":" : ",");
    sb_num(&b, top1[c], 16);
  }
  if (b.n >= len) {
    errno = ERANGE;
    return -1;
  }
  return 0;
}

int mcr_heap_update_ready(char *why, size_t len)
{
  struct sbuf b = {why, len, 0};
  ensure_init();
  switch (upd.mode) {
  case UPD_READY:
  case UPD_PREPARED:
    sb_str(&b, "");
    return 0;
  case UPD_FAILED:
    sb_str(&b, upd.why);
    break;
  case UPD_ADOPTED:
    sb_str(&b, "this process has adopted its predecessor's heap already");
    break;
  case UPD_ABANDONED:
    sb_str(&b, "this process gave up adopting (it was asked for its own " MCR_UPDATE_HEAP_ENV ")");
    break;
  default:
    sb_str(&b, "not started in update mode (" MCR_UPDATE_HEAP_ENV " is not set)");
    break;
  }
  return -1;
}

int mcr_heap_reservation(uintptr_t *base, size_t *size)
{
  if (ensure_init() != 0)
    return -1;
  *base = reserve_base;
  *size = reserve_size;
  return 0;
}

int mcr_heap_export(struct mcr_heap_state *st)
{
  memset(st, 0, sizeof(*st));
  if (!atomic_load_explicit(&inited, memory_order_acquire)) {
    errno = EINVAL;
    return -1;
  }
  lock_all();
  st->magic = MCR_HEAP_STATE_MAGIC;
  st->pid = (uint64_t)getpid();
  st->serial = ++export_serial;
  st->base = reserve_base;
  st->size = reserve_size;
  st->shift = sg.shift;
  st->nclass = MCR_HEAP_NCLASS;
  for (unsigned c = 1; c < NCLASS; c++) {
    for (unsigned lane = 0; lane < 2; lane++)
      st->top[c - 1][lane] = atomic_load_explicit(&cls_tab[c].top[lane], memory_order_relaxed);
    st->free_head[c - 1] = (uintptr_t)central[c].free;
    st->nfree[c - 1] = central[c].nfree;
  }
  for (unsigned lane = 0; lane < 2; lane++) {
    st->npages[lane] = atomic_load_explicit(&g.npages[lane], memory_order_relaxed);
    st->meta_top[lane] = (uintptr_t)meta_top[lane];
  }
  st->meta_free = (uintptr_t)meta_free_list;
  for (size_t i = 0; i < NLISTS; i++)
    st->ph_lists[i] = (uintptr_t)ph.lists[i];
  for (size_t i = 0; i < NLISTS / 64; i++)
    st->ph_bits[i] = ph.bits[i];
  st->free_pages = ph.free_pages;
  st->dirty_pages = ph.dirty_pages;
  st->inuse_pages = ph.inuse_pages;
  unlock_all();
  return 0;
}

/* Range list under construction: ranges of one group (one lane of one area,
 * all the old's) merge across gaps of up to a page; ranges of different
 * groups only when adjacent, since a gap there may hold the new process's
 * own objects. */
struct remit {
  struct mcr_heap_range *out;
  size_t max, n;
  uint64_t lo, hi;
  unsigned group;
};

static void remit_flush(struct remit *e)
{
  if (e->hi > e->lo) {
    if (e->n < e->max)
      e->out[e->n] = (struct mcr_heap_range){e->lo, e->hi - e->lo};
    e->n++;
  }
  e->lo = e->hi = 0;
}

static void remit_add(struct remit *e, uint64_t lo, uint64_t hi, unsigned group)
{
  if (hi <= lo)
    return;
  if (e->hi > e->lo && lo >= e->lo &&
      (lo <= e->hi || (group == e->group && lo - e->hi <= PAGE))) {
    if (hi > e->hi)
      e->hi = hi;
    e->group = group;
    return;
  }
  remit_flush(e);
  e->lo = lo;
  e->hi = hi;
  e->group = group;
}

/* Where the parts of a heap with regions of 2^shift bytes at base lie. */
struct heap_addrs {
  struct layout l;
  uint64_t small_base, tags[NCLASS], pm, meta, arena, lane_pages;
};

static void heap_addrs(uint64_t base, unsigned shift, struct heap_addrs *h)
{
  layout_of(shift, &h->l);
  h->small_base = base - h->l.region;
  uint64_t t = base + h->l.small;
  for (unsigned c = 1; c < NCLASS; c++) {
    h->tags[c] = t;
    t += tag_array_bytes(c, h->l.region);
  }
  h->pm = t;
  h->meta = h->pm + h->l.pm;
  h->arena = h->meta + h->l.meta;
  h->lane_pages = (h->l.arena >> PAGE_SHIFT) / 2;
}

static bool state_ok(const struct mcr_heap_state *st)
{
  return st->magic == MCR_HEAP_STATE_MAGIC && st->nclass == MCR_HEAP_NCLASS &&
         st->shift >= REGION_SHIFT_MIN && st->shift <= REGION_SHIFT_MAX;
}

size_t mcr_heap_ranges(const struct mcr_heap_state *st, struct mcr_heap_range *out, size_t max)
{
  struct remit e = {out, max, 0, 0, 0, 0};
  struct heap_addrs h;
  if (!state_ok(st))
    return 0;
  heap_addrs(st->base, st->shift, &h);
  uint64_t half = h.l.region / 2;
  /* the exporter itself can leave out free page runs */
  bool own = atomic_load_explicit(&inited, memory_order_acquire) && st->pid == (uint64_t)getpid() &&
             st->serial == export_serial && st->base == reserve_base && st->shift == sg.shift;

  for (unsigned c = 1; c < NCLASS; c++) {
    uint64_t r = h.small_base + ((uint64_t)c << st->shift), size = class_size_of(c);
    remit_add(&e, r, r + st->top[c - 1][0], 2 * c);
    remit_add(&e, r + (half + size - 1) / size * size, r + st->top[c - 1][1], 2 * c + 1);
  }
  for (unsigned c = 1; c < NCLASS; c++) {
    uint64_t size = class_size_of(c), first1 = (half + size - 1) / size;
    remit_add(&e, h.tags[c], h.tags[c] + st->top[c - 1][0] / size * sizeof(tag_t), 100 + 2 * c);
    remit_add(&e, h.tags[c] + first1 * sizeof(tag_t),
              h.tags[c] + st->top[c - 1][1] / size * sizeof(tag_t), 100 + 2 * c + 1);
  }
  const uint64_t ent = sizeof(struct span *);
  if (own)
    pthread_mutex_lock(&ph.lock);
  for (unsigned pass = 0; pass < 2; pass++) { /* page map, then (after meta) the arena */
    for (unsigned lane = 0; lane < 2; lane++) {
      size_t page = lane * h.lane_pages, top = st->npages[lane];
      unsigned group = 200 + 10 * pass + lane;
      if (!own) {
        if (pass == 0)
          remit_add(&e, h.pm + page * ent, h.pm + top * ent, group);
        else
          remit_add(&e, h.arena + (page << PAGE_SHIFT), h.arena + (top << PAGE_SHIFT), group);
        continue;
      }
      while (page < top) {
        struct span *s = g.pagemap[page];
        if (!s || s->start != addr_of(page)) {
          page++;
          continue;
        }
        size_t n = s->npages;
        if (s->state == SPAN_LARGE) {
          if (pass == 0)
            remit_add(&e, h.pm + page * ent, h.pm + (page + n) * ent, group);
          else
            remit_add(&e, s->start, s->start + (n << PAGE_SHIFT), group);
        } else if (pass == 0) { /* a free run: its first and last entries */
          remit_add(&e, h.pm + page * ent, h.pm + (page + 1) * ent, group);
          remit_add(&e, h.pm + (page + n - 1) * ent, h.pm + (page + n) * ent, group);
        }
        page += n;
      }
    }
    if (pass == 0) {
      remit_add(&e, h.meta, st->meta_top[0], 205);
      remit_add(&e, h.meta + h.l.meta / 2, st->meta_top[1], 206);
    }
  }
  if (own)
    pthread_mutex_unlock(&ph.lock);
  remit_flush(&e);
  return e.n;
}

/* ---- type conversion ahead of the pause (heap.h) ---- */

int mcr_heap_foreach_copied(const struct mcr_heap_state *old,
                            int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  if (!atomic_load_explicit(&inited, memory_order_acquire) || !state_ok(old) ||
      old->base != reserve_base || old->shift != sg.shift)
    return -1;
  /* out of range: the copy does not hold those slots */
  for (unsigned c = 1; c < NCLASS; c++)
    if (old->top[c - 1][0] > (sg.mask + 1) >> 1 || old->top[c - 1][1] > sg.mask + 1)
      return -1;
  for (unsigned c = 1; c < NCLASS; c++) {
    size_t size = cls_tab[c].size;
    for (unsigned lane = 0; lane < 2; lane++) {
      int r = visit_slots(c, lane_lo(c, lane) / size, old->top[c - 1][lane] / size, fn, arg);
      if (r)
        return r;
    }
  }
  return 0;
}

/* The first of r[0..n) (sorted) that ends after a. */
static size_t piece_after(const struct mcr_heap_range *r, size_t n, uint64_t a)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t m = lo + (hi - lo) / 2;
    if (r[m].start + r[m].len <= a)
      lo = m + 1;
    else
      hi = m;
  }
  return lo;
}

/* The slots [*s0, *s1) that r[i] (not before lo: piece_after) touches in
 * [lo, hi), where slot x is at at + x * unit; 0 if there is no r[i] or it starts
 * at or after hi. */
static int piece_slots(const struct mcr_heap_range *r, size_t n, size_t i, uint64_t lo,
                       uint64_t hi, uint64_t at, size_t unit, size_t *s0, size_t *s1)
{
  if (i >= n || r[i].start >= hi)
    return 0;
  uint64_t a = r[i].start > lo ? r[i].start : lo;
  uint64_t b = r[i].start + r[i].len < hi ? r[i].start + r[i].len : hi;
  *s0 = (a - at) / unit;
  *s1 = (b - 1 - at) / unit + 1;
  return 1;
}

int mcr_heap_foreach_touched(const struct mcr_heap_range *r, size_t n,
                             int (*fn)(const struct mcr_object *obj, void *arg), void *arg)
{
  if (!atomic_load_explicit(&inited, memory_order_acquire))
    return 0;
  for (unsigned c = 1; c < NCLASS; c++) {
    const struct class_info *k = &cls_tab[c];
    size_t size = k->size;
    uintptr_t start = region_start(c), tags = (uintptr_t)k->tags;
    for (unsigned lane = 0; lane < 2; lane++) {
      size_t first = lane_lo(c, lane) / size;
      size_t end = atomic_load_explicit(&k->top[lane], memory_order_acquire) / size;
      if (first >= end)
        continue;
      uint64_t blo = start + first * size, bhi = start + end * size;
      uint64_t tlo = tags + first * sizeof(tag_t), thi = tags + end * sizeof(tag_t);
      size_t i = piece_after(r, n, blo), j = piece_after(r, n, tlo), done = first;
      /* the union of the slots the pieces touch through their bytes (i) and
       * through their tags (j): two ascending sequences, merged */
      for (;;) {
        size_t a0, a1, b0, b1, s0, s1;
        int ha = piece_slots(r, n, i, blo, bhi, start, size, &a0, &a1);
        int hb = piece_slots(r, n, j, tlo, thi, tags, sizeof(tag_t), &b0, &b1);
        if (!ha && !hb)
          break;
        if (ha && (!hb || a0 <= b0)) {
          s0 = a0, s1 = a1;
          i++;
        } else {
          s0 = b0, s1 = b1;
          j++;
        }
        int rv = visit_slots(c, s0 > done ? s0 : done, s1 < end ? s1 : end, fn, arg);
        if (rv)
          return rv;
        if (s1 > done)
          done = s1;
      }
    }
  }
  return visit_large(fn, arg);
}

size_t mcr_heap_small_unused(const struct mcr_heap_state *st, struct mcr_heap_range *out,
                             size_t max)
{
  struct heap_addrs h;
  size_t k = 0;
  if (!state_ok(st))
    return 0;
  heap_addrs(st->base, st->shift, &h);
  uint64_t half = h.l.region / 2;
  for (unsigned c = 1; c < NCLASS; c++) {
    uint64_t r = h.small_base + ((uint64_t)c << st->shift);
    uint64_t lo[2] = {r + st->top[c - 1][0], r + st->top[c - 1][1]};
    uint64_t hi[2] = {r + half, r + h.l.region};
    for (unsigned lane = 0; lane < 2; lane++) {
      if (lo[lane] < hi[lane] && k < max)
        out[k] = (struct mcr_heap_range){lo[lane], hi[lane] - lo[lane]};
      k += lo[lane] < hi[lane];
    }
  }
  return k;
}

__attribute__((format(printf, 1, 2))) static int adopt_fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(adopt_err, sizeof(adopt_err), fmt, ap);
  va_end(ap);
  errno = EINVAL;
  return -1;
}

/* NULL or a descriptor of either lane. */
static bool in_meta(uint64_t p)
{
  unsigned lane = p >= (uintptr_t)meta_base[1];
  return !p || (p >= (uintptr_t)meta_base[0] && p < (uintptr_t)meta_end[1] &&
                (p - (uintptr_t)meta_base[lane]) % sizeof(struct span) == 0);
}

/* Checks old against this heap; under lock_all. Returns 0 or -1 (adopt_err). */
static int adopt_check(const struct mcr_heap_state *old)
{
  size_t half = (sg.mask + 1) / 2;
  for (unsigned c = 1; c < NCLASS; c++) {
    size_t size = cls_tab[c].size, t0 = old->top[c - 1][0], t1 = old->top[c - 1][1];
    uint64_t fh = old->free_head[c - 1], r = region_start(c);
    if (t0 > half || t0 % size || t1 < lane1_first(c) || t1 > sg.mask + 1 || t1 % size ||
        (fh && (fh < r || fh >= r + sg.mask + 1)))
      return adopt_fail("class %u (%zu bytes): the old heap's state is out of range", c, size);
    if (t1 > upd.top1[c])
      return adopt_fail("class %u (%zu bytes): the old heap's lane-1 objects end at %#zx, above "
                        "this process's own from %#zx",
                        c, size, r + t1, r + upd.top1[c]);
    if (atomic_load_explicit(&cls_tab[c].top[0], memory_order_relaxed) != 0)
      return adopt_fail("class %u (%zu bytes): this process has objects in lane 0", c, size);
  }
  if (old->npages[0] > g.lane_pages || old->npages[1] < g.lane_pages ||
      old->npages[1] > 2 * g.lane_pages || old->meta_top[0] < (uintptr_t)meta_base[0] ||
      old->meta_top[0] > (uintptr_t)meta_end[0] || old->meta_top[1] < (uintptr_t)meta_base[1] ||
      old->meta_top[1] > (uintptr_t)meta_end[1] || !in_meta(old->meta_free))
    return adopt_fail("the old heap's large-object state is out of range");
  for (size_t i = 0; i < NLISTS; i++)
    if (!in_meta(old->ph_lists[i]))
      return adopt_fail("the old heap's free page list %zu is out of range", i);
  if (old->npages[1] > upd.pages1)
    return adopt_fail("the old heap's lane-1 large arena ends at %#zx, above this process's own "
                      "from %#zx",
                      addr_of(old->npages[1]), addr_of(upd.pages1));
  if (old->meta_top[1] > (uintptr_t)meta_base[1] + upd.meta1)
    return adopt_fail("the old heap's lane-1 span descriptors end at %#" PRIx64
                      ", above this process's own from %p",
                      old->meta_top[1], (void *)(meta_base[1] + upd.meta1));
  if (atomic_load_explicit(&g.npages[0], memory_order_relaxed) != 0 || meta_top[0] != meta_base[0])
    return adopt_fail("this process has large objects in lane 0");
  return 0;
}

int mcr_heap_adopt_prepare(const struct mcr_heap_state *old)
{
  int ret = -1;
  char why[sizeof(upd.why)];
  adopt_err[0] = 0;
  if (mcr_heap_update_ready(why, sizeof(why)) < 0)
    return adopt_fail("%s", why);
  if (!state_ok(old))
    return adopt_fail("not a heap state (magic %#" PRIx64 ", %u classes)", old->magic, old->nclass);
  if (old->base != reserve_base || old->shift != sg.shift || old->size != reserve_size)
    return adopt_fail("the old heap is at %#" PRIx64 " (%#" PRIx64 " bytes, regions of 2^%u), this "
                      "one at %#zx (%#zx bytes, 2^%u)",
                      old->base, old->size, old->shift, reserve_base, reserve_size, sg.shift);
  lock_all();
  if (adopt_check(old) < 0)
    goto out;
  /* Commit the old's ranges (no cost until touched). Lane 1's part was
   * committed at initialisation, except the arena's pages. */
  for (unsigned c = 1; c < NCLASS; c++)
    if (old->top[c - 1][0] && region_commit(c, 0, old->top[c - 1][0]) < 0)
      goto nomem;
  size_t np0 = old->npages[0];
  if (np0 && (pagemap_cover(0, np0) < 0 || commit((void *)addr_of(0), np0 << PAGE_SHIFT) < 0))
    goto nomem;
  /* up to where this process's own pages start: mcr_heap_adopt frees any gap */
  if (upd.pages1 > g.lane_pages &&
      commit((void *)addr_of(g.lane_pages), (upd.pages1 - g.lane_pages) << PAGE_SHIFT) < 0)
    goto nomem;
  if (meta_cover(0, (char *)(uintptr_t)old->meta_top[0]) < 0)
    goto nomem;
  upd.mode = UPD_PREPARED;
  ret = 0;
  goto out;
nomem:
  adopt_fail("cannot commit the old heap's ranges: %s", strerror(errno));
out:
  unlock_all();
  return ret;
}

/* Maps a tag through map_tag, once per distinct tag (memo: 0 = not yet). */
static tag_t map_one(tag_t t, tag_t *memo, uint32_t (*map_tag)(uint32_t, void *), void *arg)
{
  if (memo && memo[t])
    return memo[t];
  uint32_t m = map_tag ? map_tag(t, arg) : t;
  if (m == MCR_TAG_FREE || m > MCR_TAG_MAX)
    m = MCR_TAG_UNTYPED;
  if (memo)
    memo[t] = (tag_t)m;
  return (tag_t)m;
}

int mcr_heap_adopt(const struct mcr_heap_state *old, uint32_t (*map_tag)(uint32_t tag, void *arg),
                   void *arg)
{
  if (upd.mode != UPD_PREPARED)
    return adopt_fail("mcr_heap_adopt_prepare has not succeeded");
  if (!state_ok(old) || old->base != reserve_base || old->shift != sg.shift)
    return adopt_fail("not the heap state given to mcr_heap_adopt_prepare");
  adopt_err[0] = 0;

  /* Tags first, without the locks (map_tag may allocate): nothing of this
   * process reaches the old's objects yet. */
  size_t memo_bytes = ((size_t)MCR_TAG_MAX + 1) * sizeof(tag_t);
  tag_t *memo = mmap(NULL, memo_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memo == MAP_FAILED)
    memo = NULL;
  for (unsigned c = 1; c < NCLASS; c++) {
    tag_t *tags = cls_tab[c].tags;
    size_t size = cls_tab[c].size;
    size_t from[2] = {0, lane1_first(c) / size};
    for (unsigned lane = 0; lane < 2; lane++)
      for (size_t i = from[lane], n = old->top[c - 1][lane] / size; i < n; i++)
        if (tags[i] != MCR_TAG_FREE)
          tags[i] = map_one(tags[i], memo, map_tag, arg);
  }
  for (unsigned lane = 0; lane < 2; lane++)
    for (struct span *s = (struct span *)meta_base[lane];
         (uintptr_t)(s + 1) <= old->meta_top[lane]; s++)
      if (s->state == SPAN_LARGE && s->tag != MCR_TAG_FREE)
        s->tag = map_one(s->tag, memo, map_tag, arg);
  if (memo)
    munmap(memo, memo_bytes);

  lock_all();
  for (unsigned c = 1; c < NCLASS; c++) {
    struct central *k = &central[c];
    size_t size = cls_tab[c].size;
    atomic_store_explicit(&cls_tab[c].top[0], old->top[c - 1][0], memory_order_release);
    /* slots between the old's lane-1 mark and ours (if the old trimmed) */
    for (size_t i = upd.top1[c] / size; i-- > old->top[c - 1][1] / size;) {
      void **o = (void **)(region_start(c) + i * size);
      o[0] = k->free;
      o[1] = &cls_tab[c].tags[i];
      k->free = o;
      k->nfree++;
    }
    /* ours are few (startup): walk them to append the old's */
    void *head = (void *)(uintptr_t)old->free_head[c - 1];
    if (head) {
      void **link = (void **)&k->free;
      while (*link)
        link = *link;
      *link = head;
      k->nfree += old->nfree[c - 1];
    }
  }

  atomic_store_explicit(&g.npages[0], old->npages[0], memory_order_release);
  meta_top[0] = (char *)(uintptr_t)old->meta_top[0];
  struct span **link = &meta_free_list;
  while (*link)
    link = &(*link)->next;
  *link = (struct span *)(uintptr_t)old->meta_free;
  for (size_t i = 0; i < NLISTS; i++) {
    struct span *oh = (struct span *)(uintptr_t)old->ph_lists[i];
    if (!oh)
      continue;
    struct span **l = &ph.lists[i], *prev = NULL;
    while (*l) {
      prev = *l;
      l = &(*l)->next;
    }
    *l = oh;
    oh->prev = prev;
  }
  for (size_t i = 0; i < NLISTS / 64; i++)
    ph.bits[i] |= old->ph_bits[i];
  ph.free_pages += old->free_pages;
  ph.dirty_pages += old->dirty_pages;
  ph.inuse_pages += old->inuse_pages;
  /* lane 1 of the arena: the old's pages end where ours begin (or below, if
   * something went missing): join the free runs on either side */
  size_t e = old->npages[1];
  if (e < upd.pages1) {
    ph_free_run(e, upd.pages1 - e, 0);
  } else if (e > g.lane_pages && e < atomic_load_explicit(&g.npages[1], memory_order_relaxed)) {
    struct span *l = g.pagemap[e - 1], *r = g.pagemap[e];
    if (l && r && l->state == SPAN_FREE && r->state == SPAN_FREE && r->start == addr_of(e)) {
      ph_unlink(l);
      ph_unlink(r);
      l->npages += r->npages;
      l->dirty += r->dirty;
      span_free(r);
      ph_link(l);
    }
  }
  carve_lane = 0;
  upd.mode = UPD_ADOPTED;
  unlock_all();
  return 0;
}

const char *mcr_heap_adopt_error(void)
{
  return adopt_err;
}
