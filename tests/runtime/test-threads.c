/* test-threads.c - 4 threads allocate, tag and fill objects, hand them to each
 * other through a shared ring and free each other's objects; contents and tags
 * are checked on the receiving side. Thread exit must flush thread caches. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

enum { NTHREADS = 4, ITERS = 150000, RING = 4096 };

struct item {
  unsigned char *p;
  size_t size;
  uint32_t tag;
};

static struct item ring[RING];
static size_t ring_head, ring_count;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic long bad_content, bad_tag, bad_size;

static unsigned char pattern(const struct item *it, size_t k)
{
  return (unsigned char)(((uintptr_t)it->p >> 4) ^ it->size ^ k);
}

static void fill(const struct item *it)
{
  for (size_t k = 0; k < it->size; k++)
    it->p[k] = pattern(it, k);
}

static void verify_and_free(const struct item *it)
{
  for (size_t k = 0; k < it->size; k++)
    if (it->p[k] != pattern(it, k)) {
      bad_content++;
      break;
    }
  struct mcr_object o;
  if (mcr_heap_find(it->p + it->size / 2, &o) != 0 || o.tag != it->tag)
    bad_tag++;
  if (malloc_usable_size(it->p) < it->size)
    bad_size++;
  free(it->p);
}

/* Swaps an item into the ring; returns 1 and fills *out if one came back. */
static int exchange(const struct item *in, struct item *out)
{
  int got = 0;
  pthread_mutex_lock(&ring_lock);
  if (ring_count == RING || (in == NULL && ring_count > 0)) {
    *out = ring[ring_head];
    ring_head = (ring_head + 1) % RING;
    ring_count--;
    got = 1;
  }
  if (in) {
    ring[(ring_head + ring_count) % RING] = *in;
    ring_count++;
  }
  pthread_mutex_unlock(&ring_lock);
  return got;
}

static void *worker(void *arg)
{
  unsigned id = (unsigned)(uintptr_t)arg, x = id * 7919 + 1;
  for (int i = 0; i < ITERS; i++) {
    x = x * 1103515245 + 12345;
    unsigned r = x >> 8;
    struct item it, back;
    it.size = r % 64 == 0 ? 33000 + r % 70000 : r % 9 == 0 ? r % 4000 : r % 200;
    it.p = malloc(it.size);
    if (!it.p) {
      bad_size++;
      continue;
    }
    it.tag = MCR_TAG_FIRST_SITE + id;
    mcr_heap_set_tag(it.p, it.tag);
    fill(&it);
    if (r % 3 == 0) {
      verify_and_free(&it); /* local alloc/free */
    } else if (exchange(&it, &back)) {
      verify_and_free(&back); /* usually another thread's object */
    }
    if (r % 5 == 0 && exchange(NULL, &back))
      verify_and_free(&back);
  }
  return NULL;
}

static void run_round(void)
{
  pthread_t t[NTHREADS];
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_join(t[i], NULL);
  struct item back;
  while (exchange(NULL, &back))
    verify_and_free(&back);
}

int main(void)
{
  struct mcr_heap_stats base, r1, r2;
  printf("threads test\n");
  mcr_heap_stats(&base);
  run_round();
  mcr_heap_stats(&r1);
  CHECK_EQ(bad_content, 0, "round 1: contents intact across threads");
  CHECK_EQ(bad_tag, 0, "round 1: tags intact across threads");
  CHECK_EQ(bad_size, 0, "round 1: sizes and allocations ok");
  /* glibc keeps an exited thread's DTV (malloc'd) with its cached stack */
  CHECK(r1.live_objects <= base.live_objects + NTHREADS,
        "round 1: no live objects left but glibc's per-thread DTVs");
  run_round();
  mcr_heap_stats(&r2);
  CHECK_EQ(bad_content + bad_tag + bad_size, 0, "round 2: contents, tags, sizes intact");
  CHECK_EQ(r2.live_objects, r1.live_objects, "round 2: no more live objects than after round 1");
  printf("  mapped: base %zu, after round 1 %zu, after round 2 %zu\n", base.mapped_bytes,
         r1.mapped_bytes, r2.mapped_bytes);
  /* exited threads' caches went back: a second round reuses the first's memory */
  CHECK(r2.mapped_bytes <= r1.mapped_bytes + r1.mapped_bytes / 4,
        "round 2 reuses round 1's memory (thread caches flushed at exit)");
  return check_done();
}
