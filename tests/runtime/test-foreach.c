/* test-foreach.c - mcr_heap_foreach enumerates exactly the live objects, with
 * their sizes and tags; realloc keeps tags; stats agree with foreach. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

enum { N = 5000 };
static char *objs[N];
static uint32_t tags[N];
static int seen[N];

struct walk {
  size_t total, total_bytes, ours, wrong_size, wrong_tag, dup, freed_seen;
  char *lo, *hi;
};

static int find_obj(const void *base)
{
  /* objs[] is sorted by address before walking */
  int lo = 0, hi = N - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (objs[mid] == base)
      return mid;
    if ((char *)base < objs[mid])
      hi = mid - 1;
    else
      lo = mid + 1;
  }
  return -1;
}

static int visit(const struct mcr_object *o, void *arg)
{
  struct walk *w = arg;
  w->total++;
  w->total_bytes += o->size;
  EXPECT(o->tag != MCR_TAG_FREE, "foreach reported a free object %p", o->base);
  int i = find_obj(o->base);
  if (i < 0)
    return 0;
  if (tags[i] == MCR_TAG_FREE) {
    w->freed_seen++;
    return 0;
  }
  w->ours++;
  if (seen[i]++)
    w->dup++;
  if (o->size != malloc_usable_size(objs[i]))
    w->wrong_size++;
  if (o->tag != tags[i])
    w->wrong_tag++;
  return 0;
}

static int stop_at_third(const struct mcr_object *o, void *arg)
{
  (void)o;
  return ++*(int *)arg == 3 ? 42 : 0;
}

static int cmp_ptr(const void *a, const void *b)
{
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  return x < y ? -1 : x > y;
}

int main(void)
{
  struct mcr_heap_stats base;
  printf("foreach test\n"); /* stdout's buffer is allocated before the baseline */
  mcr_heap_stats(&base);
  /* mixed sizes, including large ones, each with its own tag */
  unsigned x = 7;
  for (int i = 0; i < N; i++) {
    x = x * 1103515245 + 12345;
    size_t sz = i % 500 == 0 ? 40000 + (x >> 10) % 300000 : (x >> 8) % 3000;
    objs[i] = malloc(sz);
  }
  qsort(objs, N, sizeof(objs[0]), cmp_ptr);
  for (int i = 0; i < N; i++) {
    tags[i] = (uint32_t)(MCR_TAG_FIRST_SITE + i);
    mcr_heap_set_tag(objs[i], tags[i]);
  }
  /* free every third one */
  size_t live = 0;
  for (int i = 0; i < N; i++) {
    if (i % 3 == 0) {
      free(objs[i]);
      tags[i] = MCR_TAG_FREE;
    } else {
      live++;
    }
  }
  struct mcr_heap_stats st;
  mcr_heap_stats(&st); /* before the walk: foreach must not allocate */
  struct walk w = {0};
  int rc = mcr_heap_foreach(visit, &w);
  CHECK_EQ(rc, 0, "foreach returns 0 when fn always does");
  CHECK_LOOP("foreach reports no free objects");
  CHECK_EQ(w.ours, live, "foreach finds every live object of ours");
  CHECK_EQ(w.dup, 0, "foreach reports each object once");
  CHECK_EQ(w.freed_seen, 0, "foreach skips freed objects");
  CHECK_EQ(w.wrong_size, 0, "foreach sizes match malloc_usable_size");
  CHECK_EQ(w.wrong_tag, 0, "foreach tags match set_tag");
  CHECK_EQ(st.live_objects, w.total, "stats live_objects matches foreach");
  CHECK_EQ(st.live_bytes, w.total_bytes, "stats live_bytes matches foreach");
  CHECK(st.mapped_bytes >= st.live_bytes, "stats mapped >= live");
  CHECK(st.metadata_bytes > 0 && st.metadata_bytes < st.mapped_bytes, "stats metadata plausible");
  printf("  live %zu objects %zu bytes, mapped %zu, metadata %zu\n", st.live_objects,
         st.live_bytes, st.mapped_bytes, st.metadata_bytes);

  int count = 0;
  CHECK_EQ(mcr_heap_foreach(stop_at_third, &count), 42, "foreach stops on fn's non-zero");
  CHECK_EQ(count, 3, "foreach stopped at the third object");

  /* realloc keeps the tag, in place or moved, small and large */
  size_t steps[] = {1, 17, 100, 1000, 5000, 30000, 40000, 100000, 1 << 20, 3000, 24, 0};
  char *p = malloc(8);
  mcr_heap_set_tag(p, 4242);
  memset(p, 0x5a, 8);
  size_t prev = 8;
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    size_t want = steps[i] ? steps[i] : 1;
    char *q = mcr_heap_realloc(p, want);
    struct mcr_object o;
    EXPECT_EQ(mcr_heap_find(q, &o), 0, "realloc to %zu", want);
    EXPECT_EQ(o.tag, 4242, "realloc to %zu", want);
    size_t keep = prev < want ? prev : want;
    for (size_t k = 0; k < keep; k++)
      if (q[k] != 0x5a) {
        EXPECT_EQ(q[k], 0x5a, "realloc to %zu byte %zu", want, k);
        break;
      }
    if (q != p)
      EXPECT_EQ(mcr_heap_find(p, &o), -1, "old object freed after realloc to %zu", want);
    memset(q, 0x5a, want);
    prev = want;
    p = q;
  }
  CHECK_LOOP("realloc keeps tag and contents through small/large grow and shrink");
  char *same = realloc(p, 1); /* same class: in place */
  CHECK(same == p, "realloc within a class stays in place");
  free(same);

  /* large objects resize in place: a shrink trims the page run, a growth
   * extends into the free pages after it */
  char *big = malloc(1 << 20);
  memset(big, 7, 1 << 20);
  mcr_heap_set_tag(big, 555);
  char *big2 = realloc(big, 200000);
  CHECK(big2 == big, "large shrink is in place");
  CHECK(malloc_usable_size(big2) >= 200000 && malloc_usable_size(big2) < 200000 + 4096,
        "large shrink trims the page run");
  struct mcr_object bo;
  CHECK_EQ(mcr_heap_find(big + 500000, &bo), -1, "trimmed tail is not part of the object");
  char *big3 = realloc(big2, 900000);
  CHECK(big3 == big, "large growth into the free pages after it is in place");
  int intact = 1;
  for (int i = 0; i < 200000; i++)
    intact &= big3[i] == 7;
  CHECK(intact, "contents survive in-place shrink and growth");
  CHECK(mcr_heap_find(big3 + 899999, &bo) == 0 && bo.base == big3 && bo.tag == 555,
        "grown object found from its last byte, tag kept");
  free(big3);

  for (int i = 0; i < N; i++)
    if (tags[i] != MCR_TAG_FREE)
      free(objs[i]);
  struct mcr_heap_stats after;
  mcr_heap_stats(&after);
  CHECK_EQ(after.live_objects, base.live_objects, "after freeing everything, live objects back to baseline");
  CHECK_EQ(after.live_bytes, base.live_bytes, "after freeing everything, live bytes back to baseline");
  return check_done();
}
