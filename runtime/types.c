/*
 * types.c - registration of type sections and numbering of allocation sites.
 *
 * Both run inside the server's allocation path and constructors, so they take
 * no locks (a fork while another thread held one would leave the child stuck)
 * and allocate nothing but anonymous mappings.
 */
#include "types.h"

#include <string.h>
#include <sys/mman.h>

#include "fnv.h"
#include "heap.h"
#include "typetab.h"

#define MAX_MODULES 256

static struct mcr_module modules[MAX_MODULES];
static unsigned nmodules; /* slots published so far */

void __mcr_register_types(const char *start, const char *stop) {
  if (!start || stop <= start)
    return;
  /* Every translation unit of an output calls this with the same bounds. */
  unsigned n = __atomic_load_n(&nmodules, __ATOMIC_ACQUIRE);
  for (unsigned i = 0; i < n; i++)
    if (modules[i].start == start)
      return;
  for (;;) {
    n = __atomic_load_n(&nmodules, __ATOMIC_ACQUIRE);
    if (n >= MAX_MODULES)
      return; /* more instrumented outputs than slots: the rest stay unknown */
    if (__atomic_compare_exchange_n(&nmodules, &n, n + 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
      break;
  }
  modules[n].start = start;
  modules[n].stop = stop;
}

size_t mcr_types_modules(const struct mcr_module **out) {
  *out = modules;
  return __atomic_load_n(&nmodules, __ATOMIC_ACQUIRE);
}

/* Site table: id -> site, two levels so it grows without moving. */
#define PAGE_BITS 12
#define PAGE_SLOTS (1u << PAGE_BITS)
#define MAX_PAGES 4096 /* 16M sites */

static struct mcr_site **site_pages[MAX_PAGES];
static uint32_t next_site_id = MCR_TAG_FIRST_SITE;

static struct mcr_site **site_slot(uint32_t id, int create) {
  uint32_t page = id >> PAGE_BITS;
  if (page >= MAX_PAGES)
    return NULL;
  struct mcr_site **p = __atomic_load_n(&site_pages[page], __ATOMIC_ACQUIRE);
  if (!p && create) {
    void *m = mcr_map_anon(PAGE_SLOTS * sizeof(*p), 0);
    if (m == MAP_FAILED)
      return NULL;
    struct mcr_site **expected = NULL;
    if (__atomic_compare_exchange_n(&site_pages[page], &expected, (struct mcr_site **)m,
                                    0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      p = m;
    } else {
      munmap(m, PAGE_SLOTS * sizeof(*p));
      p = expected;
    }
  }
  return p ? &p[id & (PAGE_SLOTS - 1)] : NULL;
}

static uint32_t assign_site_id(struct mcr_site *site) {
  uint32_t id = __atomic_fetch_add(&next_site_id, 1, __ATOMIC_RELAXED);
  struct mcr_site **slot = id <= MCR_TAG_MAX ? site_slot(id, 1) : NULL;
  if (!slot) {
    /* More sites than tags (or no memory for the table): this site's objects
     * stay untyped, handled conservatively like a library's. */
    uint32_t expected = 0;
    __atomic_compare_exchange_n(&site->id, &expected, MCR_TAG_UNTYPED, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
    return expected ? expected : MCR_TAG_UNTYPED;
  }
  __atomic_store_n(slot, site, __ATOMIC_RELEASE);
  uint32_t expected = 0;
  if (!__atomic_compare_exchange_n(&site->id, &expected, id, 0, __ATOMIC_ACQ_REL,
                                   __ATOMIC_ACQUIRE)) {
    __atomic_store_n(slot, NULL, __ATOMIC_RELEASE); /* another thread won */
    return expected;
  }
  return id;
}

uint32_t mcr_site_id_of(struct mcr_site *site) {
  uint32_t id = __atomic_load_n(&site->id, __ATOMIC_RELAXED);
  return id ? id : assign_site_id(site);
}

struct mcr_site *mcr_site_by_id(uint32_t id) {
  if (id < MCR_TAG_FIRST_SITE)
    return NULL;
  struct mcr_site **slot = site_slot(id, 0);
  return slot ? __atomic_load_n(slot, __ATOMIC_ACQUIRE) : NULL;
}

int mcr_site_record(uint32_t id, struct mcr_typetab *tt, struct mcr_site_rec *rec) {
  struct mcr_site *s = mcr_site_by_id(id);
  if (!s || mcr_typetab_open(tt, s->blob, s->blob->total_size, NULL) != 0 ||
      mcr_typetab_site(tt, s->index, rec) != 0)
    return -1;
  return 0;
}

uint32_t mcr_site_id_limit(void) {
  uint32_t n = __atomic_load_n(&next_site_id, __ATOMIC_RELAXED);
  return n > MCR_TAG_MAX + 1 ? MCR_TAG_MAX + 1 : n;
}

void __mcr_tag(void *ptr, struct mcr_site *site) {
  if (!ptr || !site)
    return;
  uint32_t id = __atomic_load_n(&site->id, __ATOMIC_RELAXED);
  if (__builtin_expect(id == 0, 0))
    id = assign_site_id(site);
  mcr_heap_tag_new(ptr, id);
}

/* The startup's pieces (startup.h); a weak default beside malloc.c's. */
extern int mcr_startup_on;
void mcr_startup_piece_hook(const void *p, uint64_t size, const struct mcr_site *site,
                            uintptr_t ra);

/* An allocator wrapper's result with its size: as __mcr_tag, and a result
 * inside a heap object (a pool's piece) is recorded: while the startup is,
 * as a startup object of its own, after it in pieces.h's table. */
__attribute__((noinline)) void __mcr_tag_sized(void *ptr, struct mcr_site *site, uint64_t size) {
  if (!ptr || !site)
    return;
  if (__builtin_expect(mcr_startup_on, 0)) {
    __mcr_tag(ptr, site);
    mcr_startup_piece_hook(ptr, size, site, (uintptr_t)__builtin_return_address(0));
    return;
  }
  uint32_t id = __atomic_load_n(&site->id, __ATOMIC_RELAXED);
  if (__builtin_expect(id == 0, 0))
    id = assign_site_id(site);
  mcr_heap_tag_sized(ptr, id, size);
}

int mcr_site_key(const struct mcr_site *site, char *buf, size_t len) {
  struct mcr_typetab tt;
  if (!site || !site->blob || mcr_typetab_open(&tt, site->blob, site->blob->total_size, NULL) != 0)
    return -1;
  return mcr_typetab_site_key(&tt, site->index, buf, len);
}

uint64_t mcr_site_key_hash(const struct mcr_site *site) {
  char key[1024];
  return mcr_site_key(site, key, sizeof(key)) == 0 ? mcr_fnv(MCR_FNV_OFFSET, key, strlen(key)) : 0;
}

void __mcr_untag(void *ptr) {
  if (ptr)
    mcr_heap_set_tag(ptr, MCR_TAG_RELEASED);
}

void __mcr_tag_out(int rc, void **out, struct mcr_site *site) {
  if (rc == 0 && out)
    __mcr_tag(*out, site);
}
