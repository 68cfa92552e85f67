/* test-regions.c - the per-class regions of small objects: the index
 * arithmetic is exact up to the largest offset of a region, addresses at or
 * above a class's high-water mark are not objects, and a full region (its
 * lane 0, the half a process normally carves in) makes malloc fail with ENOMEM (in a child under RLIMIT_AS, where the reservation
 * shrinks to small regions that can be filled).
 *
 * White-box: heap.c and malloc.c are compiled into this file, to reach the
 * class tables and small_index() themselves. */
#define _GNU_SOURCE
#include "heap.c"
#include "malloc.c"

#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* small_index(n) == n / size for n = k*size - 1 and k*size: since both sides
 * are non-decreasing in n, that makes it exact on [lo*size, hi*size). */
static void check_quotients(unsigned cls, size_t lo, size_t hi)
{
  size_t d = cls_tab[cls].size;
  uint64_t m = cls_tab[cls].recip;
  for (size_t k = lo; k < hi; k++) {
    EXPECT_EQ(small_index(k * d, m), k, "class %u size %zu at %zu", cls, d, k * d);
    if (k)
      EXPECT_EQ(small_index(k * d - 1, m), k - 1, "class %u size %zu at %zu", cls, d, k * d - 1);
  }
}

static void check_index_exact(void)
{
  const size_t region = (size_t)1 << REGION_SHIFT_MAX, span = 1 << 16;
  for (unsigned c = 1; c < NCLASS; c++) {
    size_t d = cls_tab[c].size, nq = region / d; /* quotients of offsets < region */
    if (nq <= (size_t)1 << 22) { /* classes of 4 KiB and more: every quotient */
      check_quotients(c, 0, nq + 1);
    } else {
      check_quotients(c, 0, span);
      check_quotients(c, nq - span, nq + 1);
    }
    size_t last = region - 1;
    EXPECT_EQ(small_index(last, cls_tab[c].recip), last / d, "class %u last offset", c);
    unsigned x = 1;
    for (int i = 0; i < 100000; i++) {
      x = x * 1103515245 + 12345;
      size_t n = (((size_t)x << 20) ^ (size_t)x * 2654435761u) & (region - 1);
      EXPECT_EQ(small_index(n, cls_tab[c].recip), n / d, "class %u offset %zu", c, n);
    }
  }
  CHECK_LOOP("index = offset / size in 16 GiB regions: all quotients from 4 KiB up, first and last 65536 below");
}

/* Addresses around the high-water mark of a class with live objects. */
static void check_top(unsigned cls)
{
  size_t size = cls_tab[cls].size;
  char *p = malloc(size);
  struct mcr_object o;
  uintptr_t start = region_start(cls);
  size_t top = atomic_load(&cls_tab[cls].top[0]);
  EXPECT(p && (uintptr_t)p >= start && (uintptr_t)p < start + top, "class %u object %p", cls, (void *)p);
  EXPECT(mcr_heap_find(p + size - 1, &o) == 0 && o.base == p, "class %u last byte", cls);
  EXPECT_EQ(mcr_heap_find((char *)start + top, &o), -1, "class %u at top", cls);
  EXPECT_EQ(malloc_usable_size((char *)start + top), 0, "class %u at top", cls);
  free((char *)start + top); /* ignored, must not crash or hand it out */
  /* lane 1 is empty in a process not started in update mode */
  EXPECT_EQ(mcr_heap_find((char *)start + lane1_first(cls), &o), -1, "class %u lane 1", cls);
  EXPECT_EQ(malloc_usable_size((char *)start + lane1_first(cls)), 0, "class %u lane 1", cls);
  EXPECT_EQ(mcr_heap_find((char *)start + (sg.mask + 1) / 2 - 1, &o), -1, "class %u end of lane 0", cls);
  EXPECT_EQ(mcr_heap_find((char *)start + sg.mask, &o), -1, "class %u last byte of region", cls);
  EXPECT_EQ(malloc_usable_size((char *)start + sg.mask), 0, "class %u last byte of region", cls);
  free((char *)start + sg.mask - size + 1);
  free(p);
}

static void check_boundaries(void)
{
  void *keep = malloc(1);
  for (unsigned c = 1; c < NCLASS; c++)
    check_top(c);
  struct mcr_object o;
  /* around the small area: the byte before class 1, the first tag array */
  EXPECT_EQ(mcr_heap_find((char *)region_start(1) - 1, &o), -1, "%s", "byte before class 1");
  EXPECT_EQ(mcr_heap_find(cls_tab[1].tags, &o), -1, "%s", "tag array of class 1");
  EXPECT_EQ(malloc_usable_size(cls_tab[1].tags), 0, "%s", "tag array of class 1");
  free(cls_tab[1].tags);
  free(keep);
  CHECK_LOOP("high-water marks and region ends are not objects");
}

/* Fills class cls's region: returns the objects, sets *n. */
static char **fill_class(unsigned cls, size_t *n)
{
  size_t size = cls_tab[cls].size, cap = (sg.mask + 1) / size + 1;
  char **ps = mmap(NULL, cap * sizeof(*ps), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ps == MAP_FAILED)
    return NULL;
  size_t i = 0;
  errno = 0;
  while (i < cap && (ps[i] = malloc(size)) != NULL)
    i++;
  *n = i;
  return ps;
}

static size_t live_in_class(unsigned cls)
{
  size_t live = 0, n = atomic_load(&cls_tab[cls].top[0]) / cls_tab[cls].size;
  for (size_t i = 0; i < n; i++)
    live += cls_tab[cls].tags[i] != MCR_TAG_FREE;
  return live;
}

static void check_full_region(unsigned cls)
{
  /* lane 0: the half of the region a process carves in */
  size_t size = cls_tab[cls].size, region = (sg.mask + 1) / 2, slots = region / size, n = 0;
  size_t before = live_in_class(cls);
  char **ps = fill_class(cls, &n);
  int err = errno;
  if (!ps) {
    CHECK(0, "mmap for the object list");
    return;
  }
  printf("  class %u (%zu bytes): %zu objects (+%zu live before) in a %zu-byte lane\n", cls,
         size, n, before, region);
  CHECK_EQ(n + before, slots, "lane 0 full: every slot handed out");
  CHECK_EQ(err, ENOMEM, "the next malloc fails with ENOMEM");
  CHECK_EQ(atomic_load(&cls_tab[cls].top[0]), slots * size, "high-water mark at the last slot");
  CHECK_EQ(atomic_load(&cls_tab[cls].top[1]), lane1_first(cls), "lane 1 untouched");
  uintptr_t start = region_start(cls);
  char *last = (char *)start + (slots - 1) * size;
  struct mcr_object o;
  CHECK(mcr_heap_find(last + size - 1, &o) == 0 && o.base == last && o.size == size,
        "last byte of the last object finds it");
  CHECK_EQ(malloc_usable_size(last), size, "usable size of the last object");
  CHECK_EQ(mcr_heap_find((char *)start + region - 1, &o) == 0 ? (char *)o.base : NULL,
           region % size ? NULL : last, "last byte of lane 0: the last object or nothing");
  free(last);
  char *again = malloc(size);
  CHECK_EQ((uintptr_t)again, (uintptr_t)last, "a freed object of a full region is reused");
  for (size_t i = 0; i < n; i++)
    free(ps[i]); /* again is one of them */
  free(ps[n - 1]); /* a double free, ignored */
  munmap(ps, (slots + 1) * sizeof(*ps));
  CHECK(malloc_trim(0) == 1 && atomic_load(&cls_tab[cls].top[0]) < region,
        "malloc_trim gives the free top back");
  free(last); /* below top no more, or free: ignored either way */
  ps = fill_class(cls, &n);
  CHECK_EQ(n + before, slots, "the trimmed region is carved again");
  for (size_t i = 0; i < n; i++)
    free(ps[i]);
  munmap(ps, (slots + 1) * sizeof(*ps));
}

/* Runs under RLIMIT_AS: the reservation has shrunk. */
static int small_arena(void)
{
  void *p = malloc(1);
  printf("  regions of 2^%u bytes\n", sg.shift);
  CHECK(p && sg.shift >= REGION_SHIFT_MIN && sg.shift < REGION_SHIFT_MAX, "the reservation shrank");
  check_full_region(NCLASS - 1); /* 32 KiB: region / size is exact */
  check_full_region(3);          /* 48 bytes: the region ends with a partial slot */
  void *big = malloc(sg.mask + 1);
  CHECK(big != NULL, "a large object of one region size in the small arena");
  free(big);
  errno = 0;
  CHECK(malloc(check_size((sg.mask + 1) << 8)) == NULL && errno == ENOMEM, "too large: ENOMEM");
  free(p);
  return check_done();
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "small") == 0)
    return small_arena();
  free(check_launder(malloc(1))); /* initialises the heap */
  check_index_exact();
  check_boundaries();

  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {(rlim_t)200 << 20, (rlim_t)200 << 20};
    setrlimit(RLIMIT_AS, &rl);
    char *args[] = {argv[0], "small", NULL};
    execv("/proc/self/exe", args);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "small arena under RLIMIT_AS (child)");
  return check_done();
}
