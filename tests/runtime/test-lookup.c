/* test-lookup.c - any pointer into a live object maps to it (first, middle
 * and last byte), one past the end does not, freed objects are not found. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

static size_t class_size(unsigned cls)
{
  if (cls <= 16)
    return (size_t)cls * 16;
  unsigned j = cls - 17, k = 8 + j / 4;
  return ((size_t)1 << k) + ((size_t)1 << (k - 2)) * (j % 4 + 1);
}

/* Checks lookups around one live object of usable size u at p. */
static void check_object(char *p, size_t u, uint32_t tag)
{
  struct mcr_object o;
  size_t offs[3] = {0, u / 2, u - 1};
  for (int k = 0; k < 3; k++) {
    int rc = mcr_heap_find(p + offs[k], &o);
    EXPECT_EQ(rc, 0, "obj %p size %zu off %zu", (void *)p, u, offs[k]);
    if (rc == 0) {
      EXPECT_EQ((uintptr_t)o.base, (uintptr_t)p, "obj %p size %zu off %zu", (void *)p, u, offs[k]);
      EXPECT_EQ(o.size, u, "obj %p off %zu", (void *)p, offs[k]);
      EXPECT_EQ(o.tag, tag, "obj %p off %zu", (void *)p, offs[k]);
    }
  }
  if (mcr_heap_find(p + u, &o) == 0)
    EXPECT((char *)o.base == p + u, "one past end of %p size %zu maps to %p", (void *)p, u, o.base);
  if (mcr_heap_find(p - 1, &o) == 0)
    EXPECT((char *)o.base + o.size == p, "byte before %p maps to %p+%zu", (void *)p, o.base, o.size);
  EXPECT_EQ(malloc_usable_size(p + 1), 0, "usable size of interior %p", (void *)(p + 1));
}

int main(void)
{
  /* two spans' worth of every class, tags set through interior pointers */
  for (unsigned cls = 1; cls <= 44; cls++) {
    size_t size = class_size(cls);
    size_t n = 2 * (65536 / size < 8 ? 8 : 65536 / size);
    char **ps = malloc(n * sizeof(*ps));
    for (size_t i = 0; i < n; i++) {
      ps[i] = malloc(size);
      EXPECT_EQ(malloc_usable_size(ps[i]), size, "class %u", cls);
      /* within the wrapper-header distance: tags; deeper (a pool's piece): not */
      size_t hdr = size < MCR_TAG_MAX_HEADER + 1 ? size : MCR_TAG_MAX_HEADER + 1;
      mcr_heap_set_tag(ps[i] + i % hdr, (uint32_t)(MCR_TAG_FIRST_SITE + i));
      if (size > MCR_TAG_MAX_HEADER + 1)
        mcr_heap_set_tag(ps[i] + size - 1, 7);
    }
    for (size_t i = 0; i < n; i++)
      check_object(ps[i], size, (uint32_t)(MCR_TAG_FIRST_SITE + i));
    for (size_t i = 0; i < n; i += 2)
      free(ps[i]);
    struct mcr_object o;
    for (size_t i = 0; i < n; i++) {
      if (i % 2 == 0) {
        EXPECT_EQ(mcr_heap_find(ps[i], &o), -1, "freed class %u #%zu", cls, i);
        EXPECT_EQ(mcr_heap_find(ps[i] + size / 2, &o), -1, "freed class %u #%zu", cls, i);
      } else {
        check_object(ps[i], size, (uint32_t)(MCR_TAG_FIRST_SITE + i));
      }
    }
    for (size_t i = 1; i < n; i += 2)
      free(ps[i]);
    free(ps);
  }
  CHECK_LOOP("small classes: first/middle/last byte, one past end, freed");

  size_t large[] = {32769, 40000, 1 << 20, (3 << 20) + 5, 100 << 20};
  for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
    char *p = malloc(large[i]);
    size_t u = malloc_usable_size(p);
    EXPECT(u >= large[i], "large %zu", large[i]);
    mcr_heap_set_tag(p + 8, 99);
    mcr_heap_set_tag(p + u / 3, 7); /* a pool's piece: leaves the tag */
    check_object(p, u, 99);
    free(p);
    struct mcr_object o;
    EXPECT_EQ(mcr_heap_find(p, &o), -1, "freed large %zu", large[i]);
    EXPECT_EQ(mcr_heap_find(p + u - 1, &o), -1, "freed large %zu last byte", large[i]);
    EXPECT_EQ(mcr_heap_find(p + u / 2, &o), -1, "freed large %zu middle", large[i]);
  }
  CHECK_LOOP("large objects: first/middle/last byte, one past end, freed");

  for (size_t a = 64; a <= (1 << 20); a <<= 2) {
    char *p = aligned_alloc(a, 50000);
    check_object(p, malloc_usable_size(p), MCR_TAG_UNTYPED);
    free(p);
  }
  CHECK_LOOP("aligned large objects");

  /* neighbours: adjacent objects never map to each other */
  char *a = malloc(48), *b = malloc(48);
  struct mcr_object oa, ob;
  mcr_heap_find(a + 47, &oa);
  mcr_heap_find(b, &ob);
  CHECK(oa.base == a && ob.base == b, "adjacent objects are told apart");
  free(a);
  free(b);

  struct mcr_object o;
  int on_stack;
  CHECK_EQ(mcr_heap_find(&on_stack, &o), -1, "stack pointer not found");
  CHECK_EQ(mcr_heap_find(NULL, &o), -1, "NULL not found");
  CHECK_EQ(mcr_heap_find((void *)main, &o), -1, "code pointer not found");
  CHECK_EQ(mcr_heap_find((void *)UINTPTR_MAX, &o), -1, "~0 not found");
  return check_done();
}
