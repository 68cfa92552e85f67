/* test-update.c - heap adoption across processes (heap.h, "live update").
 *
 * Generation 0 (a normal process) fills its heap with objects of many sizes,
 * small and large, tags them, frees some, writes patterns, then starts
 * generation 1 (this binary again) with MCR_UPDATE_HEAP, and sends it its
 * heap export, its ranges and the list of objects to check through a pipe.
 * Generation 1 allocates its own objects (lane 1, above gen 0's lane-1 marks,
 * disjoint from gen 0's objects), copies gen 0's ranges with
 * process_vm_readv, adopts them with tags mapped to tag + 1000, and checks
 * that it has one heap holding both: lookups, contents, foreach, disjoint new
 * allocations, free/realloc/reuse of old objects, malloc_trim, a thread's
 * cache of lane-1 objects. Then it does the same to generation 2.
 * Also: update mode whose range is taken, or whose value is malformed,
 * reports why and still gives a working heap. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

#define LAST_GEN 2
#define TAG_STEP 1000

extern char **environ;

struct rec {
  uint64_t base, size;
  uint32_t tag, seed;
};

/* Everything the test keeps lives outside the heap, so that the heap holds
 * only what the checks count. */
static void *raw_alloc(size_t bytes)
{
  void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(2);
  }
  return p;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Mostly small, some of every small class range, a few large. */
static size_t rnd_size(void)
{
  uint64_t k = rnd() % 100;
  if (k < 65)
    return 1 + rnd() % 256;
  if (k < 85)
    return 257 + rnd() % (4096 - 256);
  if (k < 95)
    return 4097 + rnd() % (32768 - 4096);
  return 32769 + rnd() % 300000;
}

static uint8_t pat(uint32_t seed, size_t j)
{
  return (uint8_t)((seed * 2654435761u >> 11) + j * 131 + (j >> 9));
}

static void fill(void *p, size_t n, uint32_t seed)
{
  uint8_t *b = p;
  for (size_t j = 0; j < n; j++)
    b[j] = pat(seed, j);
}

static int intact(const void *p, size_t n, uint32_t seed)
{
  const uint8_t *b = p;
  for (size_t j = 0; j < n; j++)
    if (b[j] != pat(seed, j))
      return 0;
  return 1;
}

/* ---- geometry, from the export (heap.h) ---- */

struct geo {
  uint64_t small_base, mask, half, arena, arena_half;
};

static struct geo geo_of(const struct mcr_heap_state *st)
{
  struct geo g;
  uint64_t region = (uint64_t)1 << st->shift, arena = region << 4;
  g.small_base = st->base - region;
  g.mask = region - 1;
  g.half = region / 2;
  g.arena = st->base + st->size - arena;
  g.arena_half = arena / 2;
  return g;
}

/* Lane of object p (1 or 0), and its class (0 for large) and region offset. */
static int lane_of(const struct geo *g, const struct mcr_heap_state *st, uint64_t p, unsigned *cls,
                   uint64_t *off)
{
  if (p >= g->arena) {
    *cls = 0;
    *off = p - g->arena;
    return p - g->arena >= g->arena_half;
  }
  *cls = (unsigned)((p - g->small_base) >> st->shift);
  *off = (p - g->small_base) & g->mask;
  return *off >= g->half;
}

/* ---- object lists ---- */

struct list {
  struct rec *r;
  size_t n, cap;
};

static void list_init(struct list *l, size_t cap)
{
  l->r = raw_alloc(cap * sizeof(*l->r));
  l->n = 0;
  l->cap = cap;
}

static void list_add(struct list *l, void *p, size_t size, uint32_t tag, uint32_t seed)
{
  if (l->n == l->cap) {
    fprintf(stderr, "list full\n");
    exit(2);
  }
  l->r[l->n++] = (struct rec){(uintptr_t)p, size, tag, seed};
}

static int cmp_rec(const void *a, const void *b)
{
  const struct rec *x = a, *y = b;
  return x->base < y->base ? -1 : x->base > y->base;
}

/* Index of an object of sorted list l that intersects [p, p + n), or -1. */
static long overlapping(const struct list *l, uint64_t p, uint64_t n)
{
  size_t lo = 0, hi = l->n; /* first with base >= p + n */
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (l->r[mid].base < p + n)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0 && l->r[lo - 1].base + l->r[lo - 1].size > p)
    return (long)lo - 1;
  return -1;
}

static int collect(const struct mcr_object *o, void *arg)
{
  struct list *l = arg;
  if (l->n < l->cap)
    l->r[l->n] = (struct rec){(uintptr_t)o->base, o->size, o->tag, 0};
  l->n++;
  return 0;
}

static size_t heap_count(void)
{
  struct list l = {NULL, 0, 0};
  mcr_heap_foreach(collect, &l);
  return l.n;
}

/* ---- making objects ---- */

/* Allocates n objects of random sizes tagged from tag0 up, fills them, frees
 * about a third; the survivors go to out. */
static void make_objects(struct list *out, size_t n, uint32_t tag0, uint32_t seed0)
{
  void **ps = raw_alloc(n * sizeof(*ps));
  size_t *sizes = raw_alloc(n * sizeof(*sizes));
  for (size_t i = 0; i < n; i++) {
    size_t want = rnd_size();
    ps[i] = rnd() % 8 == 0 ? calloc(1, want) : malloc(want);
    if (!ps[i]) {
      CHECK(0, "allocation while making objects");
      exit(1);
    }
    if (i % 5 == 4) { /* some grow and keep their tag */
      mcr_heap_set_tag(ps[i], tag0 + (uint32_t)i);
      ps[i] = realloc(ps[i], want + rnd() % 5000);
    }
    sizes[i] = malloc_usable_size(ps[i]);
    mcr_heap_set_tag(ps[i], tag0 + (uint32_t)i);
    fill(ps[i], sizes[i], seed0 + (uint32_t)i);
  }
  for (size_t i = 0; i < n; i++) {
    if (rnd() % 3 == 0)
      free(ps[i]);
    else
      list_add(out, ps[i], sizes[i], tag0 + (uint32_t)i, seed0 + (uint32_t)i);
  }
  munmap(ps, n * sizeof(*ps));
  munmap(sizes, n * sizeof(*sizes));
}

/* Checks every object of l: lookups at both ends, usable size, tag (plus
 * tag_add), contents. Returns the number of bad ones. */
static size_t verify(const struct list *l, uint32_t tag_add, const char *what)
{
  size_t bad = 0;
  for (size_t i = 0; i < l->n; i++) {
    const struct rec *r = &l->r[i];
    struct mcr_object a, b;
    void *p = (void *)(uintptr_t)r->base;
    int ok = mcr_heap_find(p, &a) == 0 && mcr_heap_find((char *)p + r->size - 1, &b) == 0 &&
             a.base == p && b.base == p && a.size == r->size && a.tag == r->tag + tag_add &&
             malloc_usable_size(p) == r->size && intact(p, r->size, r->seed);
    if (!ok && bad++ < 5)
      printf("  %s: object %p size %zu tag %u (want %u) intact %d\n", what, p, (size_t)r->size,
             mcr_heap_find(p, &a) == 0 ? a.tag : 0, r->tag + tag_add, intact(p, r->size, r->seed));
  }
  return bad;
}

/* ---- a thread with a cache of lane-1 objects across the adoption ---- */

static pthread_barrier_t bar;
static void *cached[64];
static int thread_ok;

static void *cache_thread(void *arg)
{
  (void)arg;
  for (int i = 0; i < 64; i++)
    cached[i] = malloc(40);
  for (int i = 0; i < 64; i++)
    free(cached[i]); /* now in this thread's cache */
  pthread_barrier_wait(&bar); /* the adoption happens */
  pthread_barrier_wait(&bar);
  int ok = 1;
  void *got[64];
  for (int i = 0; i < 64; i++) {
    char *p = got[i] = malloc(40);
    struct mcr_object o;
    int hit = 0;
    for (int j = 0; j < 64; j++)
      hit |= p == cached[j];
    ok &= hit && mcr_heap_find(p, &o) == 0 && o.base == p && o.tag == MCR_TAG_UNTYPED;
    fill(p, malloc_usable_size(p), 7u + (uint32_t)i);
  }
  memcpy(cached, got, sizeof(got));
  thread_ok = ok;
  return NULL;
}

/* ---- parent side ---- */

static char envbuf[4096];

/* Starts this binary as args with MCR_UPDATE_HEAP=value added to environ.
 * Only spawns: allocates nothing in this process's heap but posix_spawn's. */
static pid_t spawn_self(char *const args[], const char *value)
{
  size_t n = 0;
  while (environ[n])
    n++;
  char **envp = raw_alloc((n + 2) * sizeof(char *));
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], MCR_UPDATE_HEAP_ENV "=", sizeof(MCR_UPDATE_HEAP_ENV)) != 0)
      envp[k++] = environ[i];
  if (value) {
    snprintf(envbuf, sizeof(envbuf), "%s=%s", MCR_UPDATE_HEAP_ENV, value);
    envp[k++] = envbuf;
  }
  envp[k] = NULL;
  pid_t pid;
  fflush(stdout);
  int err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, args, envp);
  if (err) {
    printf("FAIL - posix_spawn: %s\n", strerror(err));
    exit(1);
  }
  return pid;
}

static void write_all(int fd, const void *p, size_t n)
{
  const char *b = p;
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      perror("write");
      exit(2);
    }
    b += w;
    n -= (size_t)w;
  }
}

static int read_all(int fd, void *p, size_t n)
{
  char *b = p;
  while (n) {
    ssize_t r = read(fd, b, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    b += r;
    n -= (size_t)r;
  }
  return 0;
}

#define MAX_RANGES 100000

/* Hands the heap over to generation gen (objects to check: l) and waits. */
/* A child generation 1 forked in update mode (a process tree): its class and
 * the end of its highest lane-1 object, as an offset in the class's region. */
static pid_t tree_kid;
static unsigned tree_cls;
static uint64_t tree_off;

/* Field cls (1-based) of the lane-1 marks of an MCR_UPDATE_HEAP value. */
static uint64_t env_top1(const char *v, unsigned cls)
{
  for (int k = 0; k < 5 && v; k++)
    v = strchr(v, ':') ? strchr(v, ':') + 1 : NULL;
  for (unsigned c = 1; c < cls && v; c++)
    v = strchr(v, ',') ? strchr(v, ',') + 1 : NULL;
  return v ? strtoull(v, NULL, 16) : 0;
}

static void hand_over(int gen, const struct list *l)
{
  char value[2048];
  CHECK_EQ(mcr_heap_update_env(value, sizeof(value)), 0, "mcr_heap_update_env");
  if (tree_kid > 0) {
    /* the successor of a tree's root carves above its children's objects too */
    char tree[2048];
    CHECK_EQ(mcr_heap_update_env_tree(tree, sizeof(tree), &tree_kid, 1), 0,
             "mcr_heap_update_env_tree with the child");
    uint64_t mine = env_top1(value, tree_cls), all = env_top1(tree, tree_cls);
    printf("  class %u: this process's lane-1 mark %#lx, its child's objects end at %#lx, the "
           "tree's mark %#lx\n", tree_cls, (unsigned long)mine, (unsigned long)tree_off,
           (unsigned long)all);
    CHECK(mine < tree_off, "the child's lane-1 objects lie above this process's own mark");
    CHECK(all >= tree_off, "the tree's lane-1 mark is above the child's objects");
    kill(tree_kid, SIGKILL);
    waitpid(tree_kid, NULL, 0);
    tree_kid = 0;
    CHECK_EQ(mcr_heap_update_env(value, sizeof(value)), 0, "mcr_heap_update_env again");
  }
  char small[8];
  CHECK_EQ(mcr_heap_update_env(small, sizeof(small)) == -1 && errno == ERANGE, 1,
           "mcr_heap_update_env: ERANGE when the buffer is too small");
  int fds[2];
  if (pipe(fds) < 0) {
    perror("pipe");
    exit(2);
  }
  char fdarg[16], genarg[16];
  snprintf(fdarg, sizeof(fdarg), "%d", fds[0]);
  snprintf(genarg, sizeof(genarg), "%d", gen);
  char *args[] = {"test-update", "child", fdarg, genarg, NULL};
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* Yama: let the child read us */
  /* The successor may start before the export: it carves above the lane-1
   * marks in value, which this process no longer moves. */
  pid_t pid = spawn_self(args, value);
  close(fds[0]);

  struct mcr_heap_range *ranges = raw_alloc(MAX_RANGES * sizeof(*ranges));
  struct mcr_heap_state st;
  uint64_t count;
  /* Trimming may lower lane-1 marks below those in value: the successor's
   * adoption must then take over the slots in between. */
  mcr_heap_flush_thread_cache();
  malloc_trim(0);
  /* quiesced from here until the child is done: no malloc or free */
  int exported = mcr_heap_export(&st);
  count = heap_count();
  uint64_t nr = mcr_heap_ranges(&st, ranges, MAX_RANGES);
  uint64_t nobj = l->n;
  if (exported == 0 && nr <= MAX_RANGES) {
    write_all(fds[1], &st, sizeof(st));
    write_all(fds[1], &count, sizeof(count));
    write_all(fds[1], &nr, sizeof(nr));
    write_all(fds[1], ranges, nr * sizeof(*ranges));
    write_all(fds[1], &nobj, sizeof(nobj));
    write_all(fds[1], l->r, nobj * sizeof(*l->r));
  }
  close(fds[1]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  uint64_t bytes = 0;
  for (size_t i = 0; i < nr && i < MAX_RANGES; i++)
    bytes += ranges[i].len;
  const char *t = value;
  for (int colons = 0; colons < 5 && t; colons++)
    t = strchr(t, ':') ? strchr(t, ':') + 1 : NULL;
  unsigned lowered = 0;
  for (unsigned c = 0; t && *t && c < MCR_HEAP_NCLASS; c++) {
    char *end;
    lowered += st.top[c][1] < strtoull(t, &end, 16);
    t = *end ? end + 1 : end;
  }
  printf("  generation %d: lane-1 marks of %u classes lowered (trim) after update_env\n", gen - 1,
         lowered);
  if (gen > 1)
    CHECK(lowered > 0, "a lane-1 mark went down between update_env and the export");
  printf("  generation %d: export of %zu objects, %zu ranges, %.1f MiB\n", gen - 1, (size_t)count,
         (size_t)nr, bytes / 1048576.0);
  CHECK(exported == 0 && nr > 0 && nr <= MAX_RANGES, "export and ranges");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, gen == 1 ? "generation 1 (child)" : "generation 2 (grandchild)");
}

/* ---- child side ---- */

static uint32_t map_calls;
static uint32_t map_plus(uint32_t tag, void *arg)
{
  (void)arg;
  map_calls++;
  return tag + TAG_STEP;
}

/* Frees the highest live lane-1 object of some class (one of keep's), so
 * that trimming lowers that class's lane-1 mark below what update_env said:
 * the successor must take over the slots in between. Returns 1 if done. */
static int lower_lane1_mark(struct list *keep, const struct geo *g, const struct mcr_heap_state *st)
{
  struct list all;
  list_init(&all, 400000);
  mcr_heap_foreach(collect, &all);
  for (unsigned c = 1; c <= MCR_HEAP_NCLASS; c++) {
    long top = -1;
    for (size_t i = 0; i < all.n; i++) {
      unsigned cls;
      uint64_t off;
      if (lane_of(g, st, all.r[i].base, &cls, &off) && cls == c &&
          (top < 0 || all.r[i].base > all.r[top].base))
        top = (long)i;
    }
    for (size_t j = 0; top >= 0 && j < keep->n; j++)
      if (keep->r[j].base == all.r[top].base) {
        free((void *)(uintptr_t)keep->r[j].base);
        keep->r[j] = keep->r[--keep->n];
        return 1;
      }
  }
  return 0;
}

static int child(int fd, int gen)
{
  char why[512];
  printf("# generation %d\n", gen); /* stdout's buffer exists before counting */
  int ready = mcr_heap_update_ready(why, sizeof(why));
  CHECK_EQ(ready, 0, "update mode: the heap is at the old heap's address");
  if (ready)
    printf("  why: %s\n", why);

  /* objects of startup, before the old's state arrives: lane 1 */
  struct list own;
  list_init(&own, 20000);
  make_objects(&own, 3000, 20000 + (uint32_t)gen * 3000, 1000000u * (uint32_t)gen);
  pthread_t th;
  pthread_barrier_init(&bar, NULL, 2);
  pthread_create(&th, NULL, cache_thread, NULL);

  struct mcr_heap_state st;
  uint64_t old_count, nr, nobj;
  if (read_all(fd, &st, sizeof(st)) || read_all(fd, &old_count, sizeof(old_count)) ||
      read_all(fd, &nr, sizeof(nr))) {
    CHECK(0, "read the export from the parent");
    return check_done();
  }
  struct mcr_heap_range *ranges = raw_alloc(nr * sizeof(*ranges));
  struct list old;
  if (read_all(fd, ranges, nr * sizeof(*ranges)) || read_all(fd, &nobj, sizeof(nobj))) {
    CHECK(0, "read the ranges from the parent");
    return check_done();
  }
  list_init(&old, nobj + 1);
  old.n = nobj;
  if (read_all(fd, old.r, nobj * sizeof(*old.r))) {
    CHECK(0, "read the object list from the parent");
    return check_done();
  }
  close(fd);
  qsort(old.r, old.n, sizeof(*old.r), cmp_rec);

  /* own objects: lane 1, above the old's lane-1 marks, disjoint from its objects */
  struct geo g = geo_of(&st);
  size_t wrong_lane = 0, below = 0, overlap = 0;
  for (size_t i = 0; i < own.n; i++) {
    unsigned cls;
    uint64_t off;
    wrong_lane += lane_of(&g, &st, own.r[i].base, &cls, &off) != 1;
    if (cls && cls <= MCR_HEAP_NCLASS)
      below += off < st.top[cls - 1][1];
    else if (!cls)
      below += own.r[i].base < g.arena + (st.npages[1] << 12);
    overlap += overlapping(&old, own.r[i].base, own.r[i].size) >= 0;
  }
  printf("  %zu objects of its own\n", own.n);
  CHECK_EQ(wrong_lane, 0, "own objects are in lane 1");
  CHECK_EQ(below, 0, "own objects are above the old heap's lane-1 marks");
  CHECK_EQ(overlap, 0, "own objects are disjoint from the old's");

  /* a process tree (docs/coordinator.md): a child forked now, in update mode,
   * carves its own startup objects in lane 1 above this process's marks of
   * then; the successor of this process must carve above them too */
  if (gen == 1) {
    int kp[2];
    if (pipe(kp) < 0) {
      perror("pipe");
      exit(2);
    }
    pid_t kid = fork();
    if (kid == 0) {
      uint64_t top = 0;
      for (int i = 0; i < 4000; i++) { /* 64 bytes: class 4; the parent makes few more */
        uint64_t a = (uint64_t)(uintptr_t)malloc(64);
        if (a + 64 > top)
          top = a + 64;
      }
      write_all(kp[1], &top, sizeof(top));
      for (;;)
        pause();
    }
    close(kp[1]);
    uint64_t ktop = 0;
    CHECK_EQ(read_all(kp[0], &ktop, sizeof(ktop)), 0, "the tree child's highest object");
    close(kp[0]);
    CHECK_EQ(lane_of(&g, &st, ktop - 64, &tree_cls, &tree_off), 1,
             "the tree child carves in lane 1");
    tree_off += 64;
    tree_kid = kid; /* checked at the hand-over to generation 2 */
  }

  /* an old state that overlaps our own objects is refused */
  struct mcr_heap_state bad = st;
  for (unsigned c = 0; c < MCR_HEAP_NCLASS; c++)
    bad.top[c][1] = (uint64_t)1 << st.shift;
  CHECK_EQ(mcr_heap_adopt_prepare(&bad), -1, "adopt_prepare refuses a state overlapping our lane 1");
  printf("  why: %s\n", mcr_heap_adopt_error());
  CHECK(strstr(mcr_heap_adopt_error(), "above this process's own") != NULL, "and says so");
  CHECK_EQ(mcr_heap_adopt(&st, map_plus, NULL), -1, "adopt without a successful prepare fails");

  pthread_barrier_wait(&bar); /* the thread has cached lane-1 objects, and waits */
  size_t own_count = heap_count();
  CHECK_EQ(mcr_heap_adopt_prepare(&st), 0, "mcr_heap_adopt_prepare");
  if (*mcr_heap_adopt_error())
    printf("  why: %s\n", mcr_heap_adopt_error());
  pid_t ppid = getppid();
  size_t copied = 0, want = 0;
  for (size_t i = 0; i < nr; i++) {
    struct iovec v = {(void *)(uintptr_t)ranges[i].start, ranges[i].len};
    want += v.iov_len;
    while (v.iov_len) {
      ssize_t n = process_vm_readv(ppid, &v, 1, &v, 1, 0);
      if (n <= 0) {
        printf("  process_vm_readv %p+%zu: %s\n", v.iov_base, v.iov_len, strerror(errno));
        break;
      }
      copied += (size_t)n;
      v.iov_base = (char *)v.iov_base + n;
      v.iov_len -= (size_t)n;
    }
  }
  CHECK_EQ(copied, want, "copied the old's ranges (process_vm_readv)");
  int adopted = mcr_heap_adopt(&st, map_plus, NULL);
  CHECK_EQ(adopted, 0, "mcr_heap_adopt");
  if (adopted)
    printf("  why: %s\n", mcr_heap_adopt_error());
  printf("  map_tag called %u times\n", map_calls);
  CHECK(map_calls > 0 && map_calls <= 0x10000, "map_tag called once per distinct tag at most");
  CHECK(mcr_heap_update_ready(why, sizeof(why)) == -1 && strstr(why, "adopted"),
        "after adopting, not ready any more");

  /* one heap holding both */
  CHECK_EQ(verify(&old, TAG_STEP, "old"), 0, "every old object: found, size, mapped tag, contents");
  CHECK_EQ(verify(&own, 0, "own"), 0, "every own object: found, size, tag, contents");
  struct list all;
  list_init(&all, 400000);
  mcr_heap_foreach(collect, &all);
  CHECK_EQ(all.n, old_count + own_count, "foreach: the old's objects plus ours");
  qsort(all.r, all.n, sizeof(*all.r), cmp_rec);
  size_t ovl = 0, untagged_old = 0;
  for (size_t i = 1; i < all.n; i++)
    ovl += all.r[i - 1].base + all.r[i - 1].size > all.r[i].base;
  for (size_t i = 0; i < old.n; i++) {
    long j = overlapping(&all, old.r[i].base, 1);
    untagged_old += j < 0 || all.r[j].tag != old.r[i].tag + TAG_STEP;
  }
  CHECK_EQ(ovl, 0, "foreach: no two objects overlap");
  CHECK_EQ(untagged_old, 0, "foreach: every old object with its mapped tag");

  /* slots between the old's lowered lane-1 mark and ours are handed out */
  const char *t = getenv(MCR_UPDATE_HEAP_ENV);
  for (int colons = 0; colons < 5 && t; colons++)
    t = strchr(t, ':') ? strchr(t, ':') + 1 : NULL;
  size_t gaps = 0, gap_hits = 0;
  for (unsigned c = 1; t && *t && c <= MCR_HEAP_NCLASS; c++) {
    char *end;
    uint64_t ours = strtoull(t, &end, 16), theirs = st.top[c - 1][1];
    t = *end ? end + 1 : end;
    if (theirs >= ours)
      continue;
    gaps++;
    size_t size = 0;
    for (size_t i = 0; i < all.n && !size; i++) {
      unsigned cls;
      uint64_t off;
      if (lane_of(&g, &st, all.r[i].base, &cls, &off) && cls == c)
        size = all.r[i].size;
    }
    void **got = raw_alloc(5000 * sizeof(void *));
    size_t n = 0;
    for (; size && n < 5000; n++) {
      got[n] = malloc(size);
      unsigned cls;
      uint64_t off;
      lane_of(&g, &st, (uintptr_t)got[n], &cls, &off);
      if (cls == c && off >= theirs && off < ours) {
        gap_hits++;
        n++;
        break;
      }
    }
    while (n)
      free(got[--n]);
  }
  if (gen > 1) {
    printf("  %zu classes with slots between the old's lane-1 mark and ours\n", gaps);
    CHECK(gaps > 0 && gap_hits == gaps, "those slots are handed out");
  }

  /* the thread's cache of lane-1 objects is still good */
  pthread_barrier_wait(&bar);
  pthread_join(th, NULL);
  CHECK(thread_ok, "a thread's cached lane-1 objects are handed out after the adoption");

  /* new allocations never overlap an existing object */
  struct list fresh;
  list_init(&fresh, 20000);
  size_t hits = 0, lane1 = 0, old_small = 0, old_large = 0;
  for (int i = 0; i < 6000; i++) {
    size_t want = rnd_size();
    char *p = malloc(want);
    if (!p) {
      hits++;
      continue;
    }
    size_t n = malloc_usable_size(p);
    hits += overlapping(&all, (uintptr_t)p, n) >= 0;
    unsigned cls;
    uint64_t off;
    int lane = lane_of(&g, &st, (uintptr_t)p, &cls, &off);
    lane1 += lane;
    /* below the old's lane-0 marks: one of its free objects or page runs */
    if (!lane && cls && off < st.top[cls - 1][0])
      old_small++;
    if (!lane && !cls && off < st.npages[0] << 12)
      old_large++;
    uint32_t tag = 40000 + (uint32_t)gen * 1000 + (uint32_t)i % 1000;
    mcr_heap_set_tag(p, tag);
    fill(p, n, 5000000u + (uint32_t)i);
    list_add(&fresh, p, n, tag, 5000000u + (uint32_t)i);
  }
  CHECK_EQ(hits, 0, "new allocations: none overlaps an existing object");
  printf("  %zu of %zu new objects in lane 1 (free lists), %zu small and %zu large from the old's "
         "free lists and runs\n",
         lane1, fresh.n, old_small, old_large);
  CHECK(old_small > 0 && old_large > 0, "the old's free objects and page runs are handed out");

  /* free and realloc old objects: memory reused */
  size_t reused_small = 0, reused_large = 0, freed = 0;
  struct list keep;
  list_init(&keep, old.n + own.n + fresh.n + 100);
  for (size_t i = 0; i < old.n; i++) {
    struct rec *r = &old.r[i];
    void *p = (void *)(uintptr_t)r->base;
    if (i % 2) {
      r->tag += TAG_STEP;
      list_add(&keep, p, r->size, r->tag, r->seed);
      continue;
    }
    if (i % 4 == 0) {
      free(p);
      freed++;
      void *q = malloc(r->size);
      if (q == p)
        r->size > 32768 ? reused_large++ : reused_small++;
      struct mcr_object o;
      if (mcr_heap_find(q, &o) == 0 && o.tag == MCR_TAG_UNTYPED && malloc_usable_size(q) >= r->size) {
        fill(q, r->size, r->seed);
        mcr_heap_set_tag(q, 3);
        list_add(&keep, q, malloc_usable_size(q), 3, r->seed);
      } else {
        hits++;
      }
    } else {
      size_t grow = r->size < 1000 ? r->size * 3 : r->size + 40000;
      char *q = realloc(p, grow);
      struct mcr_object o;
      if (q && intact(q, r->size, r->seed) && mcr_heap_find(q, &o) == 0 && o.tag == r->tag + TAG_STEP) {
        fill(q, malloc_usable_size(q), r->seed);
        list_add(&keep, q, malloc_usable_size(q), o.tag, r->seed);
      } else {
        hits++;
      }
    }
  }
  printf("  freed %zu old objects; an allocation of the same size got the same address: %zu small, "
         "%zu large\n",
         freed, reused_small, reused_large);
  CHECK_EQ(hits, 0, "free, malloc and realloc of old objects (realloc keeps contents and tag)");
  CHECK(reused_small > 0 && reused_large > 0, "freed old objects are reused, small and large");

  /* malloc_trim after freeing many */
  for (size_t i = 0; i < fresh.n; i++)
    if (i % 3 == 0)
      free((void *)(uintptr_t)fresh.r[i].base);
    else
      keep.r[keep.n++] = fresh.r[i];
  for (size_t i = 0; i < own.n; i++)
    keep.r[keep.n++] = own.r[i];
  CHECK_EQ(malloc_trim(0), 1, "malloc_trim releases memory");
  for (int i = 0; i < 64; i++)
    list_add(&keep, cached[i], malloc_usable_size(cached[i]), MCR_TAG_UNTYPED, 7u + (uint32_t)i);
  CHECK_EQ(verify(&keep, 0, "kept"), 0, "after trim: every live object found, with its contents");

  if (gen < LAST_GEN) {
    CHECK(lower_lane1_mark(&keep, &g, &st), "freed the last live lane-1 object of a class");
    hand_over(gen + 1, &keep);
  }
  return check_done();
}

/* ---- update mode that cannot be honoured ---- */

static int failed_mode(const char *expect)
{
  char why[512];
  int r = mcr_heap_update_ready(why, sizeof(why));
  printf("# update mode expected to fail: %s\n  why: %s\n", expect, why);
  CHECK(r == -1 && strstr(why, expect), "mcr_heap_update_ready says why");
  /* a working, ordinary heap nonetheless */
  struct list l;
  list_init(&l, 4000);
  make_objects(&l, 2000, 100, 77);
  CHECK_EQ(verify(&l, 0, "fallback"), 0, "objects of the fallback heap");
  struct mcr_heap_state st;
  CHECK_EQ(mcr_heap_export(&st), 0, "export");
  struct geo g = geo_of(&st);
  size_t lane1 = 0;
  for (size_t i = 0; i < l.n; i++) {
    unsigned cls;
    uint64_t off;
    lane1 += lane_of(&g, &st, l.r[i].base, &cls, &off);
  }
  CHECK_EQ(lane1, 0, "it carves in lane 0");
  struct mcr_heap_state dummy = st;
  CHECK_EQ(mcr_heap_adopt_prepare(&dummy), -1, "and cannot adopt");
  return check_done();
}

int main(int argc, char **argv)
{
  if (argc == 4 && strcmp(argv[1], "child") == 0)
    return child(atoi(argv[2]), atoi(argv[3]));
  if (argc == 3 && strcmp(argv[1], "fail") == 0)
    return failed_mode(argv[2]);

  printf("# generation 0\n");
  char why[512];
  CHECK(mcr_heap_update_ready(why, sizeof(why)) == -1 && strstr(why, "not started in update mode"),
        "a normal process is not in update mode");
  struct list objs;
  list_init(&objs, 20000);
  make_objects(&objs, 6000, 2, 1);
  struct mcr_heap_state st;
  mcr_heap_export(&st);
  printf("  heap at %#lx, %lu bytes\n", (unsigned long)st.base, (unsigned long)st.size);
  CHECK(st.base >= (uint64_t)16 << 40 && st.base < (uint64_t)80 << 40 && st.base % (1 << 30) == 0,
        "the heap is placed at a 1 GiB boundary in [16 TiB, 80 TiB)");
  struct geo g = geo_of(&st);
  size_t lane1 = 0;
  for (size_t i = 0; i < objs.n; i++) {
    unsigned cls;
    uint64_t off;
    lane1 += lane_of(&g, &st, objs.r[i].base, &cls, &off);
  }
  CHECK_EQ(lane1, 0, "a normal process carves in lane 0");
  CHECK_EQ(verify(&objs, 0, "gen 0"), 0, "generation 0's objects before the update");

  /* generations 1 and 2 */
  hand_over(1, &objs);
  CHECK_EQ(verify(&objs, 0, "gen 0 after"), 0, "generation 0's objects untouched by the update");

  /* update mode whose range is taken: a range ending at the top of the
   * address space holds the stack (and usually the libraries) */
  char value[2048], taken[2048];
  mcr_heap_update_env(value, sizeof(value));
  const char *rest = strchr(value + 2, ':');
  uint64_t top = (uint64_t)0x7ffffffff000ULL, base = (top - st.size) & ~(uint64_t)0xfff;
  snprintf(taken, sizeof(taken), "1:%lx%s", (unsigned long)base, rest);
  char *args_taken[] = {"test-update", "fail", "is taken by", NULL};
  pid_t pid = spawn_self(args_taken, taken);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "update mode at a taken range (child)");

  char *args_bad[] = {"test-update", "fail", "malformed", NULL};
  pid = spawn_self(args_bad, "1:12345:zz");
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "update mode with a malformed value (child)");
  return check_done();
}
