/*
 * pieces.c - the pool pieces handed out after the startup (pieces.h).
 *
 * A table of blocks (open addressing by block address, linear probing,
 * deletion by backward shift), each with a vector of its pieces sorted by
 * address. Pools carve upwards, so a new piece is nearly always appended. All
 * memory is mmap'd here: a vector's capacity is a power of two, and freed
 * vectors go on a free list per capacity.
 */
#define _GNU_SOURCE
#include "pieces.h"

#include <string.h>
#include <sys/mman.h>

#include "mcr/abi.h"
#include "typetab.h"
#include "types.h"

struct pblock {
  uintptr_t base; /* 0: an empty slot */
  uint32_t n, cls; /* cls: the vector holds 4 << cls pieces */
  struct mcr_piece *v;
};

/* A spin lock: held for a few dozen instructions, on the allocation path of
 * the program's pools (a mutex costs more than the recording). */
static int spin;
static struct pblock *tab;
static size_t tabcap; /* a power of two, or 0 */
static struct pblock *last; /* the block recorded into last (NULL after the table changed) */
size_t mcr_pieces_nblocks;

/* Blocks that may hold pieces, a bit per hash of their address, never cleared:
 * a free of any other object skips the lock. */
#define MAYBE_BITS (1u << 16)
static uint64_t maybe[MAYBE_BITS / 64];

static inline size_t maybe_bit(uintptr_t base)
{
  return (size_t)(((base >> 4) * 0x9e3779b97f4a7c15ull) >> 48) & (MAYBE_BITS - 1);
}

static void lock(void)
{
  while (__atomic_exchange_n(&spin, 1, __ATOMIC_ACQUIRE))
    while (__atomic_load_n(&spin, __ATOMIC_RELAXED))
      __builtin_ia32_pause();
}

static void unlock(void)
{
  __atomic_store_n(&spin, 0, __ATOMIC_RELEASE);
}

/* ---- memory ---- */

#define NCLS 24
#define SLAB ((size_t)1 << 20)
static void *free_vecs[NCLS]; /* each free vector's first word links the next */
static char *slab_next, *slab_end;

static size_t vec_bytes(unsigned cls)
{
  return ((size_t)4 << cls) * sizeof(struct mcr_piece);
}

static void *map(size_t len)
{
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static struct mcr_piece *vec_alloc(unsigned cls)
{
  size_t len = vec_bytes(cls);
  if (cls >= NCLS)
    return NULL;
  if (free_vecs[cls]) {
    void *v = free_vecs[cls];
    free_vecs[cls] = *(void **)v;
    return v;
  }
  if (len >= SLAB / 4)
    return map(len);
  if (!slab_next || (size_t)(slab_end - slab_next) < len) {
    if (!(slab_next = map(SLAB)))
      return NULL;
    slab_end = slab_next + SLAB;
  }
  void *v = slab_next;
  slab_next += len;
  return v;
}

static void vec_free(struct mcr_piece *v, unsigned cls)
{
  *(void **)v = free_vecs[cls];
  free_vecs[cls] = v;
}

/* ---- the table of blocks ---- */

static inline size_t slot_of(uintptr_t base, size_t cap)
{
  return (size_t)(((base >> 4) * 0x9e3779b97f4a7c15ull) >> 17) & (cap - 1);
}

static struct pblock *find(uintptr_t base)
{
  if (!tabcap || !base) /* (0 marks an empty slot) */
    return NULL;
  for (size_t s = slot_of(base, tabcap);; s = (s + 1) & (tabcap - 1)) {
    if (tab[s].base == base)
      return &tab[s];
    if (!tab[s].base)
      return NULL;
  }
}

static int grow_table(void)
{
  size_t cap = tabcap ? tabcap * 2 : 1024;
  struct pblock *t = map(cap * sizeof(*t));
  if (!t)
    return -1;
  for (size_t i = 0; i < tabcap; i++) {
    if (!tab[i].base)
      continue;
    size_t s = slot_of(tab[i].base, cap);
    while (t[s].base)
      s = (s + 1) & (cap - 1);
    t[s] = tab[i];
  }
  if (tab)
    munmap(tab, tabcap * sizeof(*tab));
  tab = t;
  tabcap = cap;
  last = NULL;
  return 0;
}

static struct pblock *find_or_add(uintptr_t base)
{
  struct pblock *b = find(base);
  if (b)
    return b;
  if ((mcr_pieces_nblocks + 1) * 2 > tabcap && grow_table() != 0)
    return NULL;
  size_t s = slot_of(base, tabcap);
  while (tab[s].base)
    s = (s + 1) & (tabcap - 1);
  struct mcr_piece *v = vec_alloc(0);
  if (!v)
    return NULL;
  tab[s] = (struct pblock){base, 0, 0, v};
  __atomic_or_fetch(&maybe[maybe_bit(base) / 64], 1ull << (maybe_bit(base) % 64), __ATOMIC_RELAXED);
  __atomic_store_n(&mcr_pieces_nblocks, mcr_pieces_nblocks + 1, __ATOMIC_RELAXED);
  return &tab[s];
}

/* Removes slot s, moving back the entries after it that probing would miss. */
static void remove_slot(size_t s)
{
  size_t hole = s;
  for (size_t i = (s + 1) & (tabcap - 1); tab[i].base; i = (i + 1) & (tabcap - 1)) {
    size_t home = slot_of(tab[i].base, tabcap);
    /* entry i may fill the hole when its home is not in (hole, i] */
    if ((i > hole && (home <= hole || home > i)) || (i < hole && home <= hole && home > i)) {
      tab[hole] = tab[i];
      hole = i;
    }
  }
  tab[hole].base = 0;
  last = NULL;
  __atomic_store_n(&mcr_pieces_nblocks, mcr_pieces_nblocks - 1, __ATOMIC_RELAXED);
}

/* ---- what to record ---- */

enum { KIND_UNKNOWN = 0, KIND_TRACK = 1, KIND_SKIP = 2, KIND_LOST = 3 /* out of memory */ };
static uint8_t kinds[MCR_TAG_MAX + 1];

static int decide(uint32_t tag)
{
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  struct mcr_type_rec r;
  if (mcr_site_record(tag, &tt, &rec) != 0 || rec.type == MCR_NO_TYPE)
    return KIND_SKIP;
  uint32_t t = rec.type;
  for (int depth = 0; depth < 16; depth++) {
    if (mcr_typetab_type(&tt, t, &r) != 0)
      return KIND_SKIP;
    if (r.kind == MCR_TYPE_TYPEDEF || r.kind == MCR_TYPE_ARRAY) {
      t = r.target;
      continue;
    }
    /* bytes (strings, buffers) and void: nothing an update converts */
    if (r.kind == MCR_TYPE_VOID || (r.kind == MCR_TYPE_INT && r.size == 1))
      return KIND_SKIP;
    return KIND_TRACK;
  }
  return KIND_SKIP;
}

int mcr_pieces_track(uint32_t tag)
{
  if (tag < MCR_TAG_FIRST_SITE || tag > MCR_TAG_MAX)
    return 0;
  uint8_t k = __atomic_load_n(&kinds[tag], __ATOMIC_RELAXED);
  if (k == KIND_UNKNOWN) {
    k = (uint8_t)decide(tag);
    __atomic_store_n(&kinds[tag], k, __ATOMIC_RELAXED);
  }
  return k == KIND_TRACK;
}

int mcr_pieces_complete(uint32_t tag)
{
  return tag <= MCR_TAG_MAX && __atomic_load_n(&kinds[tag], __ATOMIC_RELAXED) == KIND_TRACK;
}

/* ---- recording ---- */

void mcr_pieces_record(uintptr_t block, uintptr_t p, size_t size, uint32_t tag)
{
  if (!size || size > UINT32_MAX)
    return;
  lock();
  struct pblock *b = last && last->base == block ? last : (last = find_or_add(block));
  if (!b)
    goto lost;
  size_t at = b->n;
  if (b->n && b->v[b->n - 1].addr + b->v[b->n - 1].size > p) {
    /* not after the last one: the pieces it overlaps ended (a reset pool,
     * or a block taken again), and it goes in address order */
    size_t i = 0, j;
    while (i < b->n && b->v[i].addr + b->v[i].size <= p)
      i++;
    for (j = i; j < b->n && b->v[j].addr < p + size; j++)
      ;
    memmove(&b->v[i], &b->v[j], (b->n - j) * sizeof(*b->v));
    b->n -= (uint32_t)(j - i);
    at = i;
  }
  if (b->n == (4u << b->cls)) {
    struct mcr_piece *v = vec_alloc(b->cls + 1);
    if (!v)
      goto lost;
    memcpy(v, b->v, b->n * sizeof(*v));
    vec_free(b->v, b->cls);
    b->v = v;
    b->cls++;
  }
  memmove(&b->v[at + 1], &b->v[at], (b->n - at) * sizeof(*b->v));
  b->v[at] = (struct mcr_piece){p, (uint32_t)size, tag};
  b->n++;
  unlock();
  return;
lost: /* the site's pieces are no longer all known */
  __atomic_store_n(&kinds[tag], KIND_LOST, __ATOMIC_RELAXED);
  unlock();
}

void mcr_pieces_block_freed(uintptr_t block)
{
  size_t bit = maybe_bit(block);
  if (!(__atomic_load_n(&maybe[bit / 64], __ATOMIC_RELAXED) & (1ull << (bit % 64))))
    return;
  lock();
  struct pblock *b = find(block);
  if (b) {
    vec_free(b->v, b->cls);
    remove_slot((size_t)(b - tab));
  }
  unlock();
}

void mcr_pieces_block_moved(uintptr_t from, uintptr_t to, size_t len)
{
  size_t bit = maybe_bit(from);
  if (!(__atomic_load_n(&maybe[bit / 64], __ATOMIC_RELAXED) & (1ull << (bit % 64))))
    return;
  lock();
  struct pblock *b = find(from);
  if (b) {
    struct pblock moved = *b;
    remove_slot((size_t)(b - tab));
    struct pblock *nb = find_or_add(to);
    if (nb) {
      /* the vector goes with the pieces, at their new addresses; the ones
       * past the copied bytes ended */
      uint32_t kept = 0;
      for (uint32_t k = 0; k < moved.n; k++)
        if (moved.v[k].addr + moved.v[k].size <= from + len) {
          moved.v[kept] = moved.v[k];
          moved.v[kept++].addr += to - from;
        }
      vec_free(nb->v, nb->cls);
      nb->v = moved.v;
      nb->cls = moved.cls;
      nb->n = kept;
    } else {
      for (uint32_t k = 0; k < moved.n; k++) /* their sites' pieces are not all known now */
        __atomic_store_n(&kinds[moved.v[k].tag], KIND_LOST, __ATOMIC_RELAXED);
      vec_free(moved.v, moved.cls);
    }
  }
  unlock();
}

size_t mcr_pieces_foreach(int (*fn)(const struct mcr_piece *p, void *arg), void *arg)
{
  size_t n = 0;
  lock();
  for (size_t i = 0; i < tabcap; i++)
    for (uint32_t k = 0; tab[i].base && k < tab[i].n; k++, n++)
      if (fn(&tab[i].v[k], arg) != 0)
        goto out;
out:
  unlock();
  return n;
}

void mcr_pieces_fork_prepare(void)
{
  lock();
}

void mcr_pieces_fork_parent(void)
{
  unlock();
}

void mcr_pieces_fork_child(void)
{
  spin = 0;
}
