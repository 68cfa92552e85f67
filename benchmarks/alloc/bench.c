/*
 * bench.c - allocator microbenchmark: a redis-like mix of small allocations.
 *
 * Built twice by run.sh from this one source: against glibc's malloc, and with
 * mcr's heap (runtime/heap.c + malloc.c, whole-archive) interposed. Each thread
 * owns a keyspace of K keys and runs "requests":
 *   - every request builds argv: a 16-byte object header and a 10..40-byte
 *     string per argument (freed when the request ends), and grows a query
 *     buffer by realloc now and then;
 *   - SET (half the requests): allocates key string, value string (8..200
 *     bytes, mostly small), value header and a 24-byte dict entry, and frees
 *     the ones it replaces;
 *   - GET: argv only.
 * Every allocation and free also calls malloc_usable_size, as redis's zmalloc
 * does for its memory accounting. With 2 threads, a tenth of the argv objects
 * are freed by the other thread (cross-thread frees, as in memcached).
 *
 * Output: one line, "threads=T ops=N ns_per_op=X peak_rss_kb=Y", where an op
 * is one malloc, calloc, realloc or free call, and peak RSS is VmHWM.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEYS 100000
#define RING 1024

struct entry {
  void *key, *val, *hdr, *de;
};

/* single-producer single-consumer ring for cross-thread frees */
struct ring {
  _Atomic size_t head, tail;
  void *slot[RING];
} __attribute__((aligned(64)));

struct worker {
  pthread_t tid;
  unsigned id;
  long requests;
  long ops;
  size_t accounted; /* like redis's used_memory */
  struct ring *out, *in;
  struct entry *keys;
} __attribute__((aligned(64)));

static int nthreads;

static inline unsigned rnd(unsigned *x)
{
  *x = *x * 1103515245 + 12345;
  return *x >> 8;
}

static inline void *xalloc(struct worker *w, size_t n)
{
  void *p = malloc(n);
  if (!p)
    abort();
  memset(p, 0x11, n < 64 ? n : 64);
  w->accounted += malloc_usable_size(p);
  w->ops++;
  return p;
}

static inline void xfree(struct worker *w, void *p)
{
  if (!p)
    return;
  w->accounted -= malloc_usable_size(p);
  free(p);
  w->ops++;
}

static void drain(struct worker *w)
{
  struct ring *r = w->in;
  size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
  for (; t != h; t++) {
    free(r->slot[t % RING]);
    w->ops++;
  }
  atomic_store_explicit(&r->tail, t, memory_order_release);
}

/* Hands p to the other thread; frees it here if the ring is full. */
static void give(struct worker *w, void *p)
{
  struct ring *r = w->out;
  size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (h - atomic_load_explicit(&r->tail, memory_order_acquire) >= RING) {
    xfree(w, p);
    return;
  }
  w->accounted -= malloc_usable_size(p);
  r->slot[h % RING] = p;
  atomic_store_explicit(&r->head, h + 1, memory_order_release);
}

static void *run(void *arg)
{
  struct worker *w = arg;
  unsigned x = 12345 + w->id * 7919;
  char *qbuf = xalloc(w, 64);
  size_t qcap = 64;
  w->keys = calloc(KEYS, sizeof(struct entry));
  w->ops++;

  for (long r = 0; r < w->requests; r++) {
    unsigned u = rnd(&x);
    int set = u & 1;
    int argc = set ? 3 : 2;
    void *argv[3], *hdrs[3];
    for (int i = 0; i < argc; i++) {
      hdrs[i] = xalloc(w, 16);
      argv[i] = xalloc(w, 10 + rnd(&x) % 31);
    }
    if (u % 64 == 0) { /* query buffer growth and shrink */
      qcap = qcap < 16384 ? qcap * 2 : 64;
      qbuf = realloc(qbuf, qcap);
      w->ops++;
    }
    if (set) {
      struct entry *e = &w->keys[rnd(&x) % KEYS];
      unsigned v = rnd(&x);
      size_t vsize = v % 16 == 0 ? 64 + v % 400 : 8 + v % 56;
      xfree(w, e->key);
      xfree(w, e->val);
      xfree(w, e->hdr);
      xfree(w, e->de);
      e->key = xalloc(w, 16 + rnd(&x) % 24);
      e->val = xalloc(w, vsize);
      e->hdr = xalloc(w, 16);
      e->de = xalloc(w, 24);
    }
    for (int i = 0; i < argc; i++) {
      if (nthreads > 1 && (u >> 8) % 10 == 0)
        give(w, argv[i]);
      else
        xfree(w, argv[i]);
      xfree(w, hdrs[i]);
    }
    if (nthreads > 1 && r % 32 == 0)
      drain(w);
  }
  return NULL;
}

static long peak_rss_kb(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

int main(int argc, char **argv)
{
  nthreads = argc > 1 ? atoi(argv[1]) : 1;
  long requests = argc > 2 ? atol(argv[2]) : 1000000;
  if (nthreads < 1 || nthreads > 2) {
    fprintf(stderr, "usage: %s [1|2] [requests per thread]\n", argv[0]);
    return 2;
  }
  static struct ring rings[2];
  static struct worker ws[2];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < nthreads; i++) {
    ws[i].id = (unsigned)i;
    ws[i].requests = requests;
    ws[i].out = &rings[i];
    ws[i].in = &rings[(i + 1) % nthreads];
    pthread_create(&ws[i].tid, NULL, run, &ws[i]);
  }
  long ops = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(ws[i].tid, NULL);
    ops += ws[i].ops;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  /* wall time of all threads over all threads' ops: per-op cost at full load */
  printf("threads=%d ops=%ld ns_per_op=%.2f peak_rss_kb=%ld\n", nthreads, ops,
         ns * nthreads / (double)ops, peak_rss_kb());
  return 0;
}
