/* test-classes.c - every size class, large sizes and alignment: each object
 * is 16-byte aligned, holds its requested size, and objects do not overlap. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"

#define PER_SIZE 40

static void fill(unsigned char *p, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(seed + i * 7);
}

static int verify(const unsigned char *p, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i * 7))
      return 0;
  return 1;
}

int main(void)
{
  /* every size up to 1100 bytes, then every 61 bytes and powers of two +-1 to 64 KiB */
  size_t sizes[4096];
  size_t nsizes = 0;
  for (size_t s = 0; s <= 1100; s++)
    sizes[nsizes++] = s;
  for (size_t s = 1101; s <= 33000; s += 61)
    sizes[nsizes++] = s;
  for (size_t b = 2048; b <= 65536; b *= 2)
    for (size_t d = 0; d < 3; d++)
      sizes[nsizes++] = b - 1 + d;
  size_t seen[64], seen_classes = 0;
  for (size_t i = 0; i < nsizes; i++) {
    size_t sz = sizes[i];
    unsigned char *ps[PER_SIZE];
    for (int j = 0; j < PER_SIZE; j++) {
      ps[j] = malloc(sz);
      EXPECT(ps[j] != NULL, "size %zu", sz);
      if (!ps[j])
        return check_done();
      EXPECT_EQ((uintptr_t)ps[j] % 16, 0, "size %zu", sz);
      EXPECT(malloc_usable_size(ps[j]) >= sz, "size %zu", sz);
      fill(ps[j], malloc_usable_size(ps[j]), (unsigned)(i + j));
    }
    size_t u = malloc_usable_size(ps[0]);
    size_t k = 0;
    while (k < seen_classes && seen[k] != u)
      k++;
    if (k == seen_classes && u <= 32768 && seen_classes < 64)
      seen[seen_classes++] = u;
    for (int j = 0; j < PER_SIZE; j++) {
      EXPECT(verify(ps[j], malloc_usable_size(ps[j]), (unsigned)(i + j)), "size %zu obj %d", sz, j);
      free(ps[j]);
    }
  }
  CHECK_LOOP("sizes 0..64K: aligned, sized, no overlap");
  printf("  distinct small usable sizes seen: %zu\n", seen_classes);
  CHECK_EQ(seen_classes, 44, "all 44 small classes reached");

  /* large: page-rounded, page-aligned, writable at both ends */
  for (size_t sz = 32769; sz <= ((size_t)256 << 20); sz = sz * 2 + 4095) {
    unsigned char *p = malloc(sz);
    EXPECT(p != NULL, "large %zu", sz);
    if (!p)
      continue;
    EXPECT_EQ((uintptr_t)p % 4096, 0, "large %zu", sz);
    EXPECT(malloc_usable_size(p) >= sz && malloc_usable_size(p) < sz + 4096, "large %zu", sz);
    p[0] = 1;
    p[sz - 1] = 2;
    p[malloc_usable_size(p) - 1] = 3;
    free(p);
  }
  CHECK_LOOP("large sizes 32K..256M");

  /* many live objects of mixed sizes at once: no overlaps, contents intact */
  enum { N = 20000 };
  static unsigned char *live[N];
  static size_t livesz[N];
  unsigned x = 12345;
  for (int i = 0; i < N; i++) {
    x = x * 1103515245 + 12345;
    livesz[i] = (x >> 8) % (i % 100 == 0 ? 200000 : 2000);
    live[i] = malloc(livesz[i]);
    fill(live[i], livesz[i], (unsigned)i);
  }
  for (int i = 0; i < N; i += 2)
    free(live[i]);
  for (int i = 0; i < N; i += 2) {
    live[i] = malloc(livesz[i]);
    fill(live[i], livesz[i], (unsigned)i);
  }
  for (int i = 0; i < N; i++) {
    EXPECT(verify(live[i], livesz[i], (unsigned)i), "object %d size %zu", i, livesz[i]);
    free(live[i]);
  }
  CHECK_LOOP("20000 mixed live objects keep their contents");

  /* every small class holds an aligned request for each alignment it can */
  for (size_t a = 32; a <= 4096; a <<= 1)
    for (size_t sz = 1; sz <= 40000; sz = sz * 2 + 5) {
      void *p = aligned_alloc(a, sz);
      EXPECT(p && (uintptr_t)p % a == 0 && malloc_usable_size(p) >= sz, "align %zu size %zu", a, sz);
      free(p);
    }
  CHECK_LOOP("aligned small objects");
  return check_done();
}
