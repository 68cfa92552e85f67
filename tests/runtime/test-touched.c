/* test-touched.c - the heap walks behind the type conversion before the pause
 * (heap.h): mcr_heap_foreach_touched visits once each live small object whose
 * bytes or tag slot a range touches, and every large object;
 * mcr_heap_foreach_copied walks a state's small objects; mcr_heap_small_unused
 * holds no live object. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

enum { N = 2000, NLARGE = 3, MAX_RANGES = 4096 };
static char *objs[N];
static char *large[NLARGE];

struct count {
  size_t small, large, dups, freed;
  const void *last;
};

static int is_large(const void *p)
{
  for (int i = 0; i < NLARGE; i++)
    if (p == large[i])
      return 1;
  return 0;
}

static int counter(const struct mcr_object *o, void *arg)
{
  struct count *c = arg;
  if (is_large(o->base)) {
    c->large++;
    return 0;
  }
  c->small++;
  /* small objects come in ascending address order: anything else is a repeat */
  if (c->last && (const char *)o->base <= (const char *)c->last)
    c->dups++;
  c->last = o->base;
  for (int i = 2; i < N; i += 3)
    if (o->base == objs[i])
      c->freed++;
  return 0;
}


static struct count walk_touched(const struct mcr_heap_range *r, size_t n)
{
  struct count c = {0};
  mcr_heap_foreach_touched(r, n, counter, &c);
  return c;
}

int main(void)
{
  printf("touched test\n");
  for (int i = 0; i < N; i++) {
    objs[i] = malloc(40);
    memset(objs[i], 0x5a, 40);
    mcr_heap_set_tag(objs[i], MCR_TAG_FIRST_SITE + 1);
  }
  for (int i = 0; i < NLARGE; i++)
    large[i] = malloc(64 << 10);
  for (int i = 2; i < N; i += 3) /* every third one freed */
    free(objs[i]);
  struct count all = {0};
  mcr_heap_foreach(counter, &all);

  struct count none = walk_touched(NULL, 0);
  CHECK_EQ(none.small, 0, "no range: no small object");
  CHECK_EQ(none.large, NLARGE, "no range: every large object");

  /* a range inside one object's bytes */
  struct mcr_heap_range one = {(uintptr_t)objs[10] + 8, 8};
  struct count c1 = walk_touched(&one, 1);
  CHECK_EQ(c1.small, 1, "a range inside one object: that object");
  CHECK_EQ(c1.large, NLARGE, "and every large object");

  /* a range over objects 9, 10 and 11 (11 freed): only the live ones, once */
  if (objs[11] == objs[10] + 48 && objs[10] == objs[9] + 48) {
    struct mcr_heap_range three = {(uintptr_t)objs[9] + 4, 2 * 48 + 8};
    struct count c3 = walk_touched(&three, 1);
    CHECK_EQ(c3.small, 2, "a range over objects 9, 10 and 11 (freed): 9 and 10");
    CHECK_EQ(c3.freed, 0, "the freed one is not visited");
  } else {
    CHECK(0, "objects 9-11 adjacent (the test's layout assumption)");
  }

  /* every range of the heap: bytes and tags both touched, each object once */
  struct mcr_heap_state st;
  static struct mcr_heap_range r[MAX_RANGES];
  CHECK_EQ(mcr_heap_export(&st), 0, "export");
  size_t nr = mcr_heap_ranges(&st, r, MAX_RANGES);
  CHECK(nr > 0 && nr <= MAX_RANGES, "the heap's ranges");
  struct count ca = walk_touched(r, nr);
  CHECK_EQ(ca.small, all.small, "all ranges: every live small object");
  CHECK_EQ(ca.large, NLARGE, "all ranges: every large object");
  CHECK_EQ(ca.dups, 0, "all ranges: no object twice (bytes and tag slot both touched)");
  CHECK_EQ(ca.freed, 0, "all ranges: no freed object");

  /* only the tag arrays: the ranges that are not object memory, found as those
   * whose removal leaves the small objects untouched */
  struct mcr_heap_range tagr[MAX_RANGES];
  size_t nt = 0;
  for (size_t i = 0; i < nr; i++) {
    int holds = 0;
    for (int k = 0; k < N && !holds; k++)
      holds = (uintptr_t)objs[k] >= r[i].start && (uintptr_t)objs[k] < r[i].start + r[i].len;
    for (int k = 0; k < NLARGE && !holds; k++)
      holds = (uintptr_t)large[k] >= r[i].start && (uintptr_t)large[k] < r[i].start + r[i].len;
    if (!holds)
      tagr[nt++] = r[i];
  }
  struct count ct = walk_touched(tagr, nt);
  CHECK_EQ(ct.small, all.small,
           "ranges without our objects (tag arrays, metadata): every live object, through its tag");
  CHECK_EQ(ct.dups, 0, "through their tags: each once");

  struct count cc = {0};
  CHECK_EQ(mcr_heap_foreach_copied(&st, counter, &cc), 0, "foreach over the exported state");
  CHECK_EQ(cc.small, all.small, "it visits every live small object");
  CHECK_EQ(cc.large, 0, "and no large one");

  struct mcr_heap_range un[2 * MCR_HEAP_NCLASS];
  size_t nu = mcr_heap_small_unused(&st, un, 2 * MCR_HEAP_NCLASS);
  CHECK(nu > 0 && nu <= 2 * MCR_HEAP_NCLASS, "unused parts of the class regions");
  int inside = 0;
  for (size_t i = 0; i < nu; i++)
    for (int k = 0; k < N; k++)
      if (k % 3 != 2 && (uintptr_t)objs[k] >= un[i].start &&
          (uintptr_t)objs[k] < un[i].start + un[i].len)
        inside++;
  CHECK_EQ(inside, 0, "no live object in them");
  return check_failures ? 1 : 0;
}
