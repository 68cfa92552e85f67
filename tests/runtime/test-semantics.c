/* test-semantics.c - the C allocation API behaves like glibc's. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

int main(void)
{
  /* malloc(0): unique, freeable, findable */
  void *z1 = malloc(0), *z2 = malloc(0);
  CHECK(z1 != NULL && z2 != NULL, "malloc(0) returns non-NULL");
  CHECK(z1 != z2, "malloc(0) pointers are unique");
  CHECK(malloc_usable_size(z1) >= 1, "malloc(0) has usable bytes");
  free(z1);
  free(z2);

  free(NULL);
  CHECK(1, "free(NULL) is a no-op");

  /* realloc */
  char *r = realloc(NULL, 100);
  CHECK(r != NULL, "realloc(NULL, n) allocates");
  CHECK(malloc_usable_size(r) >= 100, "realloc(NULL, n) size");
  memset(r, 'x', 100);
  r = realloc(r, 5000);
  CHECK(r != NULL && r[0] == 'x' && r[99] == 'x', "realloc grows and keeps contents");
  r = realloc(r, 10);
  CHECK(r != NULL && r[0] == 'x' && r[9] == 'x', "realloc shrinks and keeps contents");
  errno = 0;
  void *r0 = realloc(r, 0);
  CHECK(r0 == NULL, "realloc(p, 0) returns NULL");
  struct mcr_object o;
  CHECK_EQ(mcr_heap_find(r, &o), -1, "realloc(p, 0) freed p");
  void *rn = realloc(NULL, 0);
  CHECK(rn != NULL, "realloc(NULL, 0) is malloc(0)");
  free(rn);

  /* calloc */
  unsigned char *c = calloc(100, 10);
  int nonzero = 0;
  for (int i = 0; i < 1000; i++)
    nonzero += c[i] != 0;
  CHECK_EQ(nonzero, 0, "calloc zeroes");
  memset(c, 0xff, 1000);
  free(c);
  c = calloc(1000, 1); /* likely the same slot, now dirty */
  nonzero = 0;
  for (int i = 0; i < 1000; i++)
    nonzero += c[i] != 0;
  CHECK_EQ(nonzero, 0, "calloc zeroes a reused slot");
  free(c);
  c = calloc(1, 1 << 20);
  memset(c, 0xff, 1 << 20);
  free(c);
  c = calloc(1 << 18, 4);
  nonzero = 0;
  for (int i = 0; i < 1 << 20; i++)
    nonzero += c[i] != 0;
  CHECK_EQ(nonzero, 0, "large calloc zeroes reused memory");
  free(c);
  errno = 0;
  void *co = calloc(check_size(SIZE_MAX / 2), 3);
  CHECK(co == NULL, "calloc overflow returns NULL");
  CHECK_EQ(errno, ENOMEM, "calloc overflow sets ENOMEM");
  errno = 0;
  co = reallocarray(NULL, check_size(SIZE_MAX / 2), 3);
  CHECK(co == NULL && errno == ENOMEM, "reallocarray overflow: NULL + ENOMEM");
  co = reallocarray(NULL, 10, 10);
  CHECK(co != NULL && malloc_usable_size(co) >= 100, "reallocarray allocates");
  free(co);

  /* out of memory */
  errno = 0;
  void *huge = malloc(check_size(SIZE_MAX - 100));
  CHECK(huge == NULL, "malloc(SIZE_MAX - 100) fails");
  CHECK_EQ(errno, ENOMEM, "malloc failure sets ENOMEM");
  errno = 0;
  huge = malloc((size_t)1 << 50);
  CHECK(huge == NULL && errno == ENOMEM, "malloc(1 PiB) fails with ENOMEM");
  char *keep = malloc(64);
  errno = 0;
  huge = realloc(keep, check_size(SIZE_MAX - 100));
  CHECK(huge == NULL && errno == ENOMEM, "failed realloc returns NULL + ENOMEM");
  CHECK_EQ(mcr_heap_find(keep, &o), 0, "failed realloc keeps the old object");
  free(keep);

  /* posix_memalign */
  void *pm = (void *)1;
  CHECK_EQ(posix_memalign(&pm, 24, 10), EINVAL, "posix_memalign(24) is EINVAL");
  CHECK_EQ(posix_memalign(&pm, 4, 10), EINVAL, "posix_memalign(4) is EINVAL");
  CHECK_EQ(posix_memalign(&pm, 0, 10), EINVAL, "posix_memalign(0) is EINVAL");
  CHECK(pm == (void *)1, "posix_memalign leaves *out alone on failure");
  errno = 12345;
  CHECK_EQ(posix_memalign(&pm, 64, SIZE_MAX - 100), ENOMEM, "posix_memalign huge is ENOMEM");
  CHECK_EQ(errno, 12345, "posix_memalign does not touch errno");
  for (size_t a = 8; a <= ((size_t)1 << 22); a <<= 1) {
    for (size_t sz = 0; sz < 70000; sz = sz * 3 + 1) {
      void *p = NULL;
      int rc = posix_memalign(&p, a, sz);
      EXPECT_EQ(rc, 0, "align %zu size %zu", a, sz);
      EXPECT_EQ((uintptr_t)p % a, 0, "align %zu size %zu", a, sz);
      EXPECT(malloc_usable_size(p) >= sz, "align %zu size %zu", a, sz);
      memset(p, 1, sz);
      free(p);
    }
  }
  CHECK_LOOP("posix_memalign alignments 8..4M");

  /* aligned_alloc / memalign / valloc / pvalloc */
  errno = 0;
  CHECK(aligned_alloc(check_size(48), 96) == NULL && errno == EINVAL, "aligned_alloc(48) is EINVAL");
  for (size_t a = 1; a <= ((size_t)1 << 21); a <<= 1) {
    void *p = aligned_alloc(a, 3 * a);
    EXPECT(p != NULL && (uintptr_t)p % a == 0, "aligned_alloc %zu", a);
    free(p);
    p = memalign(a, 100);
    EXPECT(p != NULL && (uintptr_t)p % a == 0, "memalign %zu", a);
    free(p);
  }
  CHECK_LOOP("aligned_alloc and memalign powers of two 1..2M");
  void *m = memalign(check_size(48), 10);
  CHECK(m != NULL && (uintptr_t)m % 64 == 0, "memalign(48) rounds up to 64");
  free(m);
  void *v = valloc(10);
  CHECK(v != NULL && (uintptr_t)v % 4096 == 0, "valloc is page-aligned");
  free(v);
  v = pvalloc(5000);
  CHECK(v != NULL && (uintptr_t)v % 4096 == 0 && malloc_usable_size(v) >= 8192,
        "pvalloc rounds up to pages");
  free(v);

  /* malloc_usable_size */
  CHECK_EQ(malloc_usable_size(NULL), 0, "malloc_usable_size(NULL) is 0");
  for (size_t sz = 0; sz < (1 << 20); sz = sz + 1 + sz / 7) {
    void *p = malloc(sz);
    EXPECT(malloc_usable_size(p) >= sz, "size %zu", sz);
    EXPECT(malloc_usable_size(p) < sz + sz / 4 + 32 || sz > 32768, "size %zu waste", sz);
    free(p);
  }
  CHECK_LOOP("malloc_usable_size >= requested, little waste");

  /* pointers the heap does not own */
  static char global[64];
  char stack[64];
  free(check_launder(global));
  free(check_launder(stack));
  free(check_launder((void *)16));
  char *own = malloc(100);
  free(own + 8); /* interior */
  CHECK_EQ(mcr_heap_find(own, &o), 0, "interior free is ignored");
  free(own);
  free(own); /* double free */
  char *n1 = malloc(100), *n2 = malloc(100);
  CHECK(n1 != n2, "double free did not hand out one slot twice");
  free(n1);
  free(n2);
  void *big = malloc(1 << 20);
  free(big);
  free(big);
  void *b1 = malloc(1 << 20), *b2 = malloc(1 << 20);
  CHECK(b1 != b2, "double free of a large object is ignored");
  free(b1);
  free(b2);
  errno = 0;
  CHECK(realloc(check_launder(global), 10) == NULL, "realloc of a foreign pointer returns NULL");
  CHECK_EQ(malloc_usable_size(check_launder(global)), 0, "usable size of a foreign pointer is 0");
  CHECK_EQ(mcr_heap_find(global, &o), -1, "foreign pointer is not found");
  CHECK(1, "foreign, interior and double frees did not crash");

  /* tags: new objects are UNTYPED */
  void *t = malloc(40);
  CHECK_EQ(mcr_heap_find(t, &o), 0, "new object found");
  CHECK_EQ(o.tag, MCR_TAG_UNTYPED, "new object is UNTYPED");
  mcr_heap_set_tag((char *)t + 5, 77);
  mcr_heap_find(t, &o);
  CHECK_EQ(o.tag, 77, "set_tag through an interior pointer");
  mcr_heap_set_tag(t, MCR_TAG_MAX);
  mcr_heap_find(t, &o);
  CHECK_EQ(o.tag, MCR_TAG_MAX, "the largest tag is kept");
  mcr_heap_set_tag(t, MCR_TAG_MAX + 1);
  mcr_heap_find(t, &o);
  CHECK_EQ(o.tag, MCR_TAG_UNTYPED, "a tag too large for 16 bits leaves the object untyped");
  mcr_heap_set_tag(global, 5); /* no-op */
  mcr_heap_set_tag(NULL, 5);
  free(t);
  void *t2 = malloc(40);
  mcr_heap_find(t2, &o);
  CHECK_EQ(o.tag, MCR_TAG_UNTYPED, "a reused slot is UNTYPED again");
  free(t2);

  /* reuse: freeing and allocating the same sizes does not grow the heap */
  struct mcr_heap_stats s0, s1;
  for (int round = 0; round < 2; round++) {
    if (round == 1)
      mcr_heap_stats(&s0);
    for (int i = 0; i < 200; i++) {
      void *ps[64];
      for (int j = 0; j < 64; j++)
        ps[j] = malloc((size_t)(j * 97 + i) % 3000);
      for (int j = 0; j < 64; j++)
        free(ps[j]);
      void *l = malloc((size_t)(i % 7 + 1) << 20);
      free(l);
    }
  }
  mcr_heap_stats(&s1);
  printf("  mapped %zu -> %zu, meta %zu -> %zu\n", s0.mapped_bytes, s1.mapped_bytes,
         s0.metadata_bytes, s1.metadata_bytes);
  CHECK(s1.mapped_bytes <= s0.mapped_bytes + (1 << 20), "freed memory is reused");
  CHECK(s1.metadata_bytes <= s0.metadata_bytes + 4096, "metadata is reused");
  void *g1 = malloc(64 << 20);
  memset(g1, 1, 64 << 20);
  mcr_heap_stats(&s0);
  free(g1);
  mcr_heap_stats(&s1);
  printf("  mapped with 64 MiB %zu, after free %zu\n", s0.mapped_bytes, s1.mapped_bytes);
  CHECK(s0.mapped_bytes - s1.mapped_bytes >= (63 << 20), "a big free returns memory");
  /* malloc_trim gives free pages back */
  void *ts[256];
  for (int i = 0; i < 256; i++)
    ts[i] = malloc(20000);
  for (int i = 0; i < 256; i++)
    memset(ts[i], 1, 20000);
  for (int i = 0; i < 256; i++)
    free(ts[i]);
  mcr_heap_stats(&s0);
  int trimmed = malloc_trim(0);
  mcr_heap_stats(&s1);
  printf("  mapped before malloc_trim %zu, after %zu\n", s0.mapped_bytes, s1.mapped_bytes);
  CHECK(trimmed == 1 && s1.mapped_bytes < s0.mapped_bytes, "malloc_trim releases free pages");
  void *after = malloc(20000);
  CHECK(after != NULL, "allocation after malloc_trim");
  free(after);
  return check_done();
}
