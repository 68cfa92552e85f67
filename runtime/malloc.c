/*
 * malloc.c - the C allocation API on top of the tagged heap (heap.h).
 *
 * The runtime is linked whole-archive into the executable, so these
 * definitions interpose glibc's for the whole process: glibc's own strdup,
 * getline, fopen... and uninstrumented shared libraries end up here too
 * (their objects keep MCR_TAG_UNTYPED). Semantics follow glibc's, including
 * realloc(p, 0) freeing p and returning NULL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

#include "heap.h"

#define MCR_EXPORT __attribute__((visibility("default")))

/* The startup allocation records (startup.h): while the startup window is open,
 * each allocation and free is reported. Weak defaults so the heap links alone
 * (tests/runtime); the runtime's startup.c defines the real ones. */
__attribute__((weak)) int mcr_startup_on;
__attribute__((weak)) void mcr_startup_alloc_hook(void *newp, void *oldp, uintptr_t ra)
{
  (void)newp, (void)oldp, (void)ra;
}
struct mcr_site;
__attribute__((weak)) void mcr_startup_piece_hook(const void *p, uint64_t size,
                                                  const struct mcr_site *site, uintptr_t ra)
{
  (void)p, (void)size, (void)site, (void)ra;
}
/* The pieces handed out after the startup (pieces.h): weak defaults too. */
__attribute__((weak)) size_t mcr_pieces_nblocks;
__attribute__((weak)) int mcr_pieces_track(uint32_t tag)
{
  (void)tag;
  return 0;
}
__attribute__((weak)) void mcr_pieces_record(uintptr_t block, uintptr_t p, size_t size,
                                             uint32_t tag)
{
  (void)block, (void)p, (void)size, (void)tag;
}
__attribute__((weak)) void mcr_pieces_block_freed(uintptr_t block)
{
  (void)block;
}
__attribute__((weak)) void mcr_pieces_block_moved(uintptr_t from, uintptr_t to, size_t len)
{
  (void)from, (void)to, (void)len;
}
__attribute__((weak)) void mcr_pieces_fork_prepare(void) {}
__attribute__((weak)) void mcr_pieces_fork_parent(void) {}
__attribute__((weak)) void mcr_pieces_fork_child(void) {}
#define HOOK(newp, oldp)                                                                       \
  (__builtin_expect(mcr_startup_on, 0)                                                        \
       ? mcr_startup_alloc_hook(newp, oldp, (uintptr_t)__builtin_return_address(0))           \
       : (void)0)

#define PAGE_SIZE_ 4096u

static int is_pow2(size_t x)
{
  return x && !(x & (x - 1));
}

MCR_EXPORT void *malloc(size_t size)
{
  void *p = mcr_heap_alloc(size, 0);
  HOOK(p, NULL);
  return p;
}

MCR_EXPORT void free(void *p)
{
  HOOK(NULL, p);
  mcr_heap_free(p);
}

MCR_EXPORT void *calloc(size_t n, size_t size)
{
  void *p = mcr_heap_calloc(n, size);
  HOOK(p, NULL);
  return p;
}

MCR_EXPORT void *realloc(void *p, size_t size)
{
  void *q;
  if (p && size == 0) {
    HOOK(NULL, p);
    mcr_heap_free(p);
    return NULL;
  }
  q = mcr_heap_realloc(p, size);
  if (q)
    HOOK(q, p);
  return q;
}

MCR_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, total);
}

MCR_EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
  if (align % sizeof(void *) != 0 || !is_pow2(align))
    return EINVAL;
  int saved = errno; /* posix_memalign reports through its result only */
  void *p = mcr_heap_alloc(size, align);
  if (!p) {
    errno = saved;
    return ENOMEM;
  }
  HOOK(p, NULL);
  *out = p;
  return 0;
}

MCR_EXPORT void *aligned_alloc(size_t align, size_t size)
{
  if (!is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  void *p = mcr_heap_alloc(size, align);
  HOOK(p, NULL);
  return p;
}

/* glibc's memalign rounds a non-power-of-two alignment up. */
MCR_EXPORT void *memalign(size_t align, size_t size)
{
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  if (align <= 16)
    align = 0; /* the default alignment */
  if (align && !is_pow2(align)) {
    size_t a = 32;
    while (a < align)
      a <<= 1;
    align = a;
  }
  void *p = mcr_heap_alloc(size, align);
  HOOK(p, NULL);
  return p;
}

MCR_EXPORT void *valloc(size_t size)
{
  void *p = mcr_heap_alloc(size, PAGE_SIZE_);
  HOOK(p, NULL);
  return p;
}

MCR_EXPORT void *pvalloc(size_t size)
{
  size_t rounded;
  if (__builtin_add_overflow(size, PAGE_SIZE_ - 1, &rounded)) {
    errno = ENOMEM;
    return NULL;
  }
  rounded &= ~(size_t)(PAGE_SIZE_ - 1);
  void *p = mcr_heap_alloc(rounded ? rounded : PAGE_SIZE_, PAGE_SIZE_);
  HOOK(p, NULL);
  return p;
}

MCR_EXPORT size_t malloc_usable_size(void *p)
{
  return mcr_heap_usable_size(p);
}

MCR_EXPORT int malloc_trim(size_t pad)
{
  (void)pad;
  return mcr_heap_trim();
}
