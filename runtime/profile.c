/*
 * profile.c - blocking-call profiling for mcr-profile; see profile.h and
 * docs/quiescence.md (".prof format").
 *
 * On when env MCR_PROFILE_DIR names a directory. Each wrapped blocking call of a
 * registered thread is recorded under (thread class, blocking function, return
 * addresses of its call stack): the stack is walked with unw_backtrace and
 * looked up in a lock-free hash table; only the first occurrence of a stack
 * takes a mutex (to insert). Entries live in one MAP_NORESERVE pool and are
 * never freed, so readers need no lock. Names are computed only when the file is
 * written, once per address.
 *
 * A runtime thread (unregistered, signals blocked) writes MCR_PROFILE_DIR/<pid>.prof
 * every second; an exit destructor writes it once more. A forked child starts
 * with empty tables and its own file. Nothing is ever printed: a failure is
 * counted in the file's header, and profiling turns off if the file cannot be
 * written.
 */
#define _GNU_SOURCE
#include "profile.h"
#include "heap.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "elfsym.h"
#include "stackid.h"
#include "threads.h"

#define MAX_FRAMES 64        /* return addresses kept per blocking stack */
#define SKIP_FRAMES 16       /* the profiler's and the wrapper's frames before ra */
#define MAX_STACKS 16384     /* distinct (class, blocking function, stack) */
#define STACK_SLOTS 32768    /* hash index: twice MAX_STACKS, a power of two */
#define POOL_BYTES (MAX_STACKS * (sizeof(struct pstack) + MAX_FRAMES * sizeof(uintptr_t)))
#define MAX_CLASSES 1024
#define MAX_PTHREADS 8192    /* threads seen (alive or ended) per process */
#define THREAD_SLOTS 16384
#define WRITE_INTERVAL_NS 1000000000ull
#define MAX_WRITE_FAILURES 3 /* in a row: then profiling turns off */

int mcr_profiling;

uint64_t mcr_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A thread class: the creation stack as threads.h keeps it. */
struct pclass {
  int is_main;
  unsigned nframes;
  uintptr_t frames[MCR_THREAD_FRAMES];
};

/* A thread seen in this process, for "threads" and lifetime per class. */
struct pthread_rec {
  pid_t tid;
  unsigned cls;
  uint64_t created_us; /* with tid: the identity (tids are reused) */
  uint64_t from_us;    /* max(created, profiling start in this process) */
  uint64_t seen_us;    /* last seen alive */
  int ended;           /* gone from the registry: its lifetime ends at seen_us */
  struct pstack *pending;  /* the call it is blocked in (mcr_profile_begin), or NULL */
  uint64_t pending_start;
};

/* A distinct blocking call stack. Counters are updated atomically. */
struct pstack {
  uint64_t hash;
  unsigned cls;
  unsigned fn;
  unsigned nframes;
  uint64_t hits, total_ns, max_ns;
  unsigned row;       /* the writer's: its output row */
  uintptr_t frames[]; /* innermost first, starting at the wrapper's caller */
};

static char dir[4096];
static mcr_backtrace_fn unwind;
static char unwind_obj[256]; /* file name of the unwinder's object */

/* Insertions (stacks, classes, threads) take ins_lock; the writer takes
 * write_lock, then ins_lock for the thread table. Order: write, ins. */
static pthread_mutex_t ins_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static struct pstack **index_; /* STACK_SLOTS published pointers */
static unsigned char *pool;    /* POOL_BYTES */
static size_t pool_used;
static unsigned nstacks;
static struct pclass classes[MAX_CLASSES];
static unsigned nclasses;
static struct pthread_rec *threads_; /* MAX_PTHREADS */
static unsigned nthreads;
static unsigned *thread_index;      /* THREAD_SLOTS, 1 + record number, 0 empty */

static unsigned gen = 1;  /* bumped in a forked child: invalidates per-thread caches */
static uint64_t start_ns; /* profiling start in this process (monotonic) */
static uint64_t start_us; /* the same, realtime */
static uint64_t clock_offset_us; /* realtime - monotonic */
static unsigned dropped;  /* records lost: a table was full */
static unsigned failures; /* unwinds that missed the caller, files not written */
static unsigned write_failures_in_row;

/* Per thread: whether it is registered and its class. */
static __thread struct {
  unsigned gen;
  int cls; /* -1: not a registered thread (runtime threads): never recorded */
  int busy;
  struct pthread_rec *rec;
  struct pstack *pending; /* from mcr_profile_begin, for the call with this fn and ra */
  unsigned pending_fn;
  uintptr_t pending_ra;
} self;

/* ---- recording ---- */

static uint64_t mix(uint64_t h, uint64_t v)
{
  h ^= v;
  h *= 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 29);
}

static unsigned class_find_or_add(const struct mcr_thread_info *t)
{
  unsigned n = t->is_main ? 0 : t->nframes, i;

  for (i = 0; i < nclasses; i++)
    if (classes[i].is_main == t->is_main && classes[i].nframes == n &&
        !memcmp(classes[i].frames, t->frames, n * sizeof(uintptr_t)))
      return i;
  if (nclasses == MAX_CLASSES)
    return MAX_CLASSES;
  classes[i].is_main = t->is_main;
  classes[i].nframes = n;
  memcpy(classes[i].frames, t->frames, n * sizeof(uintptr_t));
  __atomic_store_n(&nclasses, i + 1, __ATOMIC_RELEASE); /* the writer reads without the lock */
  return i;
}

/* The record of (tid, created), added if new. Under ins_lock. */
static struct pthread_rec *thread_find_or_add(pid_t tid, uint64_t created_us, unsigned cls,
                                              uint64_t now)
{
  unsigned h = (unsigned)mix((uint64_t)tid, created_us) & (THREAD_SLOTS - 1);
  struct pthread_rec *r;

  for (;; h = (h + 1) & (THREAD_SLOTS - 1)) {
    if (!thread_index[h])
      break;
    r = &threads_[thread_index[h] - 1];
    if (r->tid == tid && r->created_us == created_us)
      return r;
  }
  if (nthreads == MAX_PTHREADS)
    return NULL;
  r = &threads_[nthreads];
  r->tid = tid;
  r->cls = cls;
  r->created_us = created_us;
  r->from_us = created_us > start_us ? created_us : start_us;
  r->seen_us = now;
  r->ended = 0;
  r->pending = NULL;
  thread_index[h] = ++nthreads;
  return r;
}

/* First blocking call of this thread (in this process): its class, or -1. */
static void thread_setup(void)
{
  struct mcr_thread_info info;
  unsigned cls;

  self.gen = gen;
  self.cls = -1;
  if (mcr_threads_self_info(&info) != 0)
    return;
  pthread_mutex_lock(&ins_lock);
  cls = class_find_or_add(&info);
  self.rec = cls < MAX_CLASSES ? thread_find_or_add(info.tid, info.created_us, cls, now_us())
                               : NULL;
  if (!self.rec)
    dropped++;
  else
    self.cls = (int)cls;
  pthread_mutex_unlock(&ins_lock);
}

static int same_stack(const struct pstack *s, uint64_t h, unsigned cls, unsigned fn,
                      void *const *frames, unsigned n)
{
  return s->hash == h && s->cls == cls && s->fn == fn && s->nframes == n &&
         !memcmp(s->frames, frames, n * sizeof(uintptr_t));
}

static struct pstack *stack_find_or_add(uint64_t h, unsigned cls, unsigned fn,
                                        void *const *frames, unsigned n)
{
  unsigned i = (unsigned)h & (STACK_SLOTS - 1);
  size_t size = sizeof(struct pstack) + n * sizeof(uintptr_t);
  struct pstack *s;

  for (;; i = (i + 1) & (STACK_SLOTS - 1)) {
    s = __atomic_load_n(&index_[i], __ATOMIC_ACQUIRE);
    if (!s)
      break;
    if (same_stack(s, h, cls, fn, frames, n))
      return s;
  }
  pthread_mutex_lock(&ins_lock);
  /* another thread may have inserted it, or something else into slot i */
  for (;; i = (i + 1) & (STACK_SLOTS - 1)) {
    s = index_[i];
    if (!s)
      break;
    if (same_stack(s, h, cls, fn, frames, n))
      goto out;
  }
  if (nstacks == MAX_STACKS || pool_used + size > POOL_BYTES) {
    dropped++;
    goto out;
  }
  s = (struct pstack *)(pool + pool_used);
  pool_used += (size + 7) & ~(size_t)7;
  __atomic_store_n(&nstacks, nstacks + 1, __ATOMIC_RELAXED);
  memset(s, 0, sizeof(*s)); /* the pool is reused after fork */
  s->hash = h;
  s->cls = cls;
  s->fn = fn;
  s->nframes = n;
  memcpy(s->frames, frames, n * sizeof(uintptr_t));
  __atomic_store_n(&index_[i], s, __ATOMIC_RELEASE);
out:
  pthread_mutex_unlock(&ins_lock);
  return s;
}

/* The calling thread's stack for a blocking call to fn made at ra, found or
 * added; NULL if it is not recorded. */
static struct pstack *this_stack(enum mcr_blockfn fn, uintptr_t ra)
{
  void *buf[MAX_FRAMES + SKIP_FRAMES];
  uint64_t h;
  int n, first = -1;

  if (self.gen != __atomic_load_n(&gen, __ATOMIC_RELAXED))
    thread_setup();
  if (self.cls < 0)
    return NULL;
  mcr_in_runtime++; /* libunwind may mmap: not the program's startup mapping */
  n = unwind(buf, MAX_FRAMES + SKIP_FRAMES);
  mcr_in_runtime--;
  for (int i = 0; i < n && i < SKIP_FRAMES; i++)
    if ((uintptr_t)buf[i] == ra) {
      first = i;
      break;
    }
  if (first < 0) {
    __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
    return NULL;
  }
  n -= first;
  if (n > MAX_FRAMES)
    n = MAX_FRAMES;
  h = mix((uint64_t)self.cls, fn);
  for (int i = 0; i < n; i++)
    h = mix(h, (uintptr_t)buf[first + i]);
  return stack_find_or_add(h, (unsigned)self.cls, fn, buf + first, (unsigned)n);
}

/* busy: a signal handler's blocking call while we record is not recorded */
static int skip(enum mcr_blockfn fn)
{
  return !__atomic_load_n(&mcr_profiling, __ATOMIC_RELAXED) || self.busy ||
         (unsigned)fn >= MCR_BLOCK_COUNT;
}

void mcr_profile_begin(enum mcr_blockfn fn, uint64_t start, uintptr_t ra)
{
  struct pstack *s;

  if (skip(fn))
    return;
  self.busy = 1;
  s = this_stack(fn, ra);
  self.pending = s;
  self.pending_fn = fn;
  self.pending_ra = ra;
  if (s) {
    __atomic_store_n(&self.rec->pending_start, start, __ATOMIC_RELAXED);
    __atomic_store_n(&self.rec->pending, s, __ATOMIC_RELEASE);
  }
  self.busy = 0;
}

void mcr_profile_record(enum mcr_blockfn fn, uint64_t start, uint64_t end, uintptr_t ra)
{
  struct pstack *s;
  uint64_t ns = end > start ? end - start : 0, max;

  if (skip(fn))
    return;
  self.busy = 1;
  if (self.pending && self.pending_fn == (unsigned)fn && self.pending_ra == ra &&
      self.gen == __atomic_load_n(&gen, __ATOMIC_RELAXED)) {
    s = self.pending;
    __atomic_store_n(&self.rec->pending, NULL, __ATOMIC_RELAXED);
  } else {
    s = this_stack(fn, ra);
  }
  self.pending = NULL;
  if (!s)
    goto out;
  /* alive until at least now (a thread that ends between two writes) */
  __atomic_store_n(&self.rec->seen_us, end / 1000u + clock_offset_us, __ATOMIC_RELAXED);
  __atomic_fetch_add(&s->hits, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&s->total_ns, ns, __ATOMIC_RELAXED);
  max = __atomic_load_n(&s->max_ns, __ATOMIC_RELAXED);
  while (ns > max &&
         !__atomic_compare_exchange_n(&s->max_ns, &max, ns, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    ;
out:
  self.busy = 0;
}

/* ---- names (writer only, under write_lock) ---- */

/* address -> rendered frame name, filled once per address */
static struct {
  uintptr_t *keys;
  char **names;
  size_t cap, n;
} names;
static struct mcr_symbolizer sym;

struct find_obj {
  uintptr_t addr;
  const char *name;
  int found, is_exe;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
  struct find_obj *f = arg;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && f->addr >= lo && f->addr - lo < ph->p_memsz) {
      f->name = info->dlpi_name;
      f->is_exe = !info->dlpi_name || !*info->dlpi_name;
      f->found = 1;
      return 1;
    }
  }
  return 0;
}

/* "NAME" in the executable, "NAME@SONAME" in a shared library (its file name,
 * which is the soname the loader looked for). A function no symbol table names
 * (a stripped object) is "0xOFFSET@OBJECT", so that it never passes for a
 * function of the program; outside any object "0xADDRESS@unknown". */
static void render(uintptr_t addr, char *buf, size_t len)
{
  struct find_obj f = {.addr = addr};
  const char *base, *plus;
  char name[256];

  dl_iterate_phdr(find_object, &f);
  if (!f.found) {
    snprintf(buf, len, "0x%lx@unknown", (unsigned long)addr);
    return;
  }
  mcr_symbolize(&sym, addr, name, sizeof(name));
  if (f.is_exe) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
  } else {
    base = strrchr(f.name, '/');
    base = base ? base + 1 : f.name;
  }
  /* mcr_symbolize says "OBJECT+0xOFFSET" when no symbol contains addr */
  plus = strstr(name, "+0x");
  if (plus)
    snprintf(buf, len, "%s@%s", plus + 1, base);
  else if (f.is_exe)
    snprintf(buf, len, "%s", name);
  else
    snprintf(buf, len, "%s@%s", name, base);
}

/* The frame name of a return address (looked up at addr - 1: a call's return
 * address may be the first byte of the next function), or NULL (no memory). */
static const char *frame_name(uintptr_t ra)
{
  char buf[320];
  size_t i;

  if (names.n * 2 >= names.cap) {
    size_t cap = names.cap ? names.cap * 2 : 1024;
    uintptr_t *keys = calloc(cap, sizeof(*keys));
    char **vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
      free(keys);
      free(vals);
      return NULL;
    }
    for (size_t j = 0; j < names.cap; j++) {
      if (!names.keys[j])
        continue;
      for (i = (size_t)mix(0, names.keys[j]) & (cap - 1); keys[i]; i = (i + 1) & (cap - 1))
        ;
      keys[i] = names.keys[j];
      vals[i] = names.names[j];
    }
    free(names.keys);
    free(names.names);
    names.keys = keys;
    names.names = vals;
    names.cap = cap;
  }
  for (i = (size_t)mix(0, ra) & (names.cap - 1); names.keys[i]; i = (i + 1) & (names.cap - 1))
    if (names.keys[i] == ra)
      return names.names[i];
  render(ra - 1, buf, sizeof(buf));
  names.names[i] = strdup(buf);
  if (!names.names[i])
    return NULL;
  names.keys[i] = ra;
  names.n++;
  return names.names[i];
}

/* ---- the file ---- */

struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
  va_list ap;
  int n;

  for (;;) {
    va_start(ap, fmt);
    n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = 1;
      return;
    }
    if (b->p && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 65536;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
}

/* The stack as the config spells it: outermost first, from the thread's start
 * routine (or main) down to the blocking function. Returns -1 for the runtime's
 * own calls: the unwinder reads /proc when threads.c records a creation stack. */
static int stack_text(const struct pstack *s, struct sbuf *b)
{
  const char *fr[MAX_FRAMES];
  unsigned n = 0;

  for (unsigned i = 0; i < s->nframes; i++) {
    const char *name = frame_name(s->frames[i]), *at;
    if (!name) {
      b->oom = 1;
      return 0;
    }
    if (*unwind_obj && (at = strchr(name, '@')) && !strcmp(at + 1, unwind_obj))
      return -1;
    /* our trampoline calls the start routine; start_thread/clone run it */
    if (!strcmp(name, "mcr_thread_trampoline") || !strncmp(name, "start_thread@", 13) ||
        !strncmp(name, "clone@", 6) || !strncmp(name, "clone3@", 7))
      break;
    fr[n++] = name;
    if (!strcmp(name, "main"))
      break;
  }
  for (unsigned i = n; i-- > 0;)
    sb_printf(b, "%s > ", fr[i]);
  sb_printf(b, "%s", mcr_blockfn_names[s->fn]);
  return 0;
}

/* One output line before merging: the same names may come from several
 * address stacks (two call sites in one function). */
struct row {
  const char *cls; /* into the class names */
  char *stack;
  uint64_t hits, total_ns, max_ns;
};

static int row_cmp(const void *a, const void *b)
{
  const struct row *x = a, *y = b;
  int c = strcmp(x->cls, y->cls);
  return c ? c : strcmp(x->stack, y->stack);
}

struct class_sum {
  const char *name;
  unsigned threads;
  uint64_t lifetime_us;
};

static int class_sum_cmp(const void *a, const void *b)
{
  return strcmp(((const struct class_sum *)a)->name, ((const struct class_sum *)b)->name);
}

/* Marks the registered threads alive now, adds those never seen, and ends the
 * ones that are gone. */
static void refresh_threads(uint64_t now)
{
  static struct mcr_thread_info *snap;
  static size_t cap;
  size_t n;

  for (;;) {
    n = mcr_threads_snapshot(snap, cap);
    if (n <= cap)
      break;
    free(snap);
    cap = n + 16;
    snap = malloc(cap * sizeof(*snap));
    if (!snap) {
      cap = 0;
      return;
    }
  }
  pthread_mutex_lock(&ins_lock);
  for (unsigned i = 0; i < nthreads; i++)
    if (!threads_[i].ended)
      threads_[i].ended = 2; /* provisionally: unless the snapshot has it */
  for (size_t i = 0; i < n; i++) {
    unsigned cls = class_find_or_add(&snap[i]);
    struct pthread_rec *r;
    if (cls == MAX_CLASSES ||
        !(r = thread_find_or_add(snap[i].tid, snap[i].created_us, cls, now))) {
      dropped++;
      continue;
    }
    __atomic_store_n(&r->seen_us, now, __ATOMIC_RELAXED);
    r->ended = 0;
  }
  for (unsigned i = 0; i < nthreads; i++)
    if (threads_[i].ended == 2)
      threads_[i].ended = 1;
  pthread_mutex_unlock(&ins_lock);
}

static int format(struct sbuf *b)
{
  char (*cnames)[4096] = NULL;
  struct class_sum *sums = NULL;
  struct row *rows = NULL;
  unsigned ncls, nrows = 0, nsums = 0, maxrows = __atomic_load_n(&nstacks, __ATOMIC_RELAXED);
  uint64_t now = now_us(), now_ns = mcr_now_ns();
  char exe[4096];
  ssize_t el;
  int rc = -1;

  refresh_threads(now);
  ncls = __atomic_load_n(&nclasses, __ATOMIC_ACQUIRE);
  cnames = calloc(ncls ? ncls : 1, sizeof(*cnames));
  sums = calloc(ncls ? ncls : 1, sizeof(*sums));
  rows = calloc(maxrows ? maxrows : 1, sizeof(*rows));
  if (!cnames || !sums || !rows)
    goto out;
  for (unsigned i = 0; i < ncls; i++) {
    struct mcr_thread_info t = {.is_main = classes[i].is_main, .nframes = classes[i].nframes};
    memcpy(t.frames, classes[i].frames, sizeof(t.frames));
    mcr_threads_class(&sym, &t, cnames[i], sizeof(cnames[i]));
    sums[i].name = cnames[i];
  }
  pthread_mutex_lock(&ins_lock);
  for (unsigned i = 0; i < nthreads; i++) {
    const struct pthread_rec *r = &threads_[i];
    uint64_t until = r->ended ? __atomic_load_n(&r->seen_us, __ATOMIC_RELAXED) : now;
    if (r->cls >= ncls)
      continue;
    sums[r->cls].threads++;
    sums[r->cls].lifetime_us += until > r->from_us ? until - r->from_us : 0;
  }
  pthread_mutex_unlock(&ins_lock);
  for (unsigned i = 0; i < STACK_SLOTS; i++) {
    struct pstack *s = __atomic_load_n(&index_[i], __ATOMIC_ACQUIRE);
    struct sbuf t = {0};
    if (!s)
      continue;
    s->row = 0;
    if (s->cls >= ncls || nrows == maxrows) /* classes and stacks added since */
      continue;
    if (stack_text(s, &t) != 0) {
      free(t.p);
      continue;
    }
    if (t.oom) {
      free(t.p);
      goto out;
    }
    rows[nrows] = (struct row){cnames[s->cls], t.p, __atomic_load_n(&s->hits, __ATOMIC_RELAXED),
                               __atomic_load_n(&s->total_ns, __ATOMIC_RELAXED),
                               __atomic_load_n(&s->max_ns, __ATOMIC_RELAXED)};
    s->row = ++nrows; /* 0: no row */
  }
  /* calls still blocked count with the time they have waited so far */
  pthread_mutex_lock(&ins_lock);
  for (unsigned i = 0; i < nthreads; i++) {
    const struct pthread_rec *r = &threads_[i];
    struct pstack *s = __atomic_load_n(&r->pending, __ATOMIC_ACQUIRE);
    uint64_t t0 = __atomic_load_n(&r->pending_start, __ATOMIC_RELAXED), ns;
    if (!s || r->ended || !s->row || t0 > now_ns)
      continue;
    ns = now_ns - t0;
    rows[s->row - 1].hits++;
    rows[s->row - 1].total_ns += ns;
    if (ns > rows[s->row - 1].max_ns)
      rows[s->row - 1].max_ns = ns;
  }
  pthread_mutex_unlock(&ins_lock);
  qsort(rows, nrows, sizeof(*rows), row_cmp);
  qsort(sums, ncls, sizeof(*sums), class_sum_cmp);
  /* classes with the same name (pthread_create called at two places of one
   * function) are one class */
  for (unsigned i = 0; i < ncls; i++) {
    if (nsums && !strcmp(sums[nsums - 1].name, sums[i].name)) {
      sums[nsums - 1].threads += sums[i].threads;
      sums[nsums - 1].lifetime_us += sums[i].lifetime_us;
    } else {
      sums[nsums++] = sums[i];
    }
  }

  el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  exe[el > 0 ? el : 0] = '\0';
  sb_printf(b, "mcr-prof 1\n");
  sb_printf(b, "pid %d\nppid %d\n", (int)getpid(), (int)getppid());
  sb_printf(b, "exe %s\n", exe);
  sb_printf(b, "span_ns %llu\n", (unsigned long long)(mcr_now_ns() - start_ns));
  sb_printf(b, "dropped %u\nfailures %u\n", __atomic_load_n(&dropped, __ATOMIC_RELAXED),
            __atomic_load_n(&failures, __ATOMIC_RELAXED));
  for (unsigned c = 0, r = 0; c < nsums; c++) {
    sb_printf(b, "class %u %llu %s\n", sums[c].threads,
              (unsigned long long)sums[c].lifetime_us * 1000u, sums[c].name);
    while (r < nrows && strcmp(rows[r].cls, sums[c].name) < 0)
      r++;
    while (r < nrows && !strcmp(rows[r].cls, sums[c].name)) {
      struct row m = rows[r++];
      while (r < nrows && !row_cmp(&rows[r], &m)) {
        m.hits += rows[r].hits;
        m.total_ns += rows[r].total_ns;
        if (rows[r].max_ns > m.max_ns)
          m.max_ns = rows[r].max_ns;
        r++;
      }
      sb_printf(b, "stack %llu %llu %llu %s\n", (unsigned long long)m.hits,
                (unsigned long long)m.total_ns, (unsigned long long)m.max_ns, m.stack);
    }
  }
  sb_printf(b, "end\n");
  rc = b->oom ? -1 : 0;
out:
  for (unsigned i = 0; rows && i < nrows; i++)
    free(rows[i].stack);
  free(rows);
  free(sums);
  free(cnames);
  return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes DIR/<pid>.prof through a temporary name, so readers see whole files. */
static void write_profile(void)
{
  char tmp[4200], path[4200];
  struct sbuf b = {0};
  int fd = -1, ok = 0;

  pthread_mutex_lock(&write_lock);
  if (!__atomic_load_n(&mcr_profiling, __ATOMIC_RELAXED))
    goto out;
  snprintf(path, sizeof(path), "%s/%d.prof", dir, (int)getpid());
  snprintf(tmp, sizeof(tmp), "%s/.%d.prof.tmp", dir, (int)getpid());
  if (format(&b) != 0)
    goto out;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  /* out of the numbers the program hands out: a daemon closing and reusing low
   * numbers cannot get ours while we write */
  if (fd >= 0)
    fd = mcr_fd_move_high(fd);
  if (fd < 0 || write_all(fd, b.p, b.len) != 0)
    goto out;
  if (mcr_fd_close(fd) != 0) {
    fd = -1;
    goto out;
  }
  fd = -1;
  ok = rename(tmp, path) == 0;
out:
  if (fd >= 0)
    mcr_fd_close(fd);
  if (!ok && __atomic_load_n(&mcr_profiling, __ATOMIC_RELAXED)) {
    unlink(tmp);
    __atomic_fetch_add(&failures, 1, __ATOMIC_RELAXED);
    if (++write_failures_in_row >= MAX_WRITE_FAILURES)
      __atomic_store_n(&mcr_profiling, 0, __ATOMIC_RELAXED);
  } else if (ok) {
    write_failures_in_row = 0;
  }
  free(b.p);
  pthread_mutex_unlock(&write_lock);
}

/* ---- the writer thread, fork and exit ---- */

/* A raw sleep: nanosleep and friends are the wrapped functions. */
static void pause_ns(uint64_t ns)
{
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, &ts) != 0 && errno == EINTR)
    ;
}

static void *writer_main(void *arg)
{
  /* a forked child writes after a second: one that execs or exits at once
   * (a helper) leaves no file */
  if (arg)
    pause_ns(WRITE_INTERVAL_NS);
  while (__atomic_load_n(&mcr_profiling, __ATOMIC_RELAXED)) {
    write_profile();
    pause_ns(WRITE_INTERVAL_NS);
  }
  return NULL;
}

static void start_writer(int delayed)
{
  pthread_t t;

  if (mcr_threads_start_internal(&t, writer_main, delayed ? (void *)1 : NULL) != 0) {
    mcr_profiling = 0;
    return;
  }
  pthread_detach(t);
}

static void fork_prepare(void)
{
  pthread_mutex_lock(&write_lock);
  pthread_mutex_lock(&ins_lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&ins_lock);
  pthread_mutex_unlock(&write_lock);
}

/* The child is a new process: its own tables, its own file. */
static void fork_child(void)
{
  pthread_mutex_init(&ins_lock, NULL);
  pthread_mutex_init(&write_lock, NULL);
  if (!mcr_profiling)
    return;
  memset(index_, 0, STACK_SLOTS * sizeof(*index_));
  memset(thread_index, 0, THREAD_SLOTS * sizeof(*thread_index));
  pool_used = 0;
  nstacks = nclasses = nthreads = 0;
  dropped = failures = write_failures_in_row = 0;
  start_ns = mcr_now_ns();
  start_us = now_us();
  clock_offset_us = start_us - start_ns / 1000u;
  gen++;
  start_writer(1);
}

__attribute__((destructor)) static void profile_fini(void)
{
  if (mcr_profiling)
    write_profile();
}

static void *map(size_t size)
{
  void *p = mcr_map_anon(size, MAP_NORESERVE);
  return p == MAP_FAILED ? NULL : p;
}

/* After threads.c's constructor (200): the main thread is registered, and our
 * fork handlers run after the registry's. */
__attribute__((constructor(210))) static void profile_init(void)
{
  const char *d = getenv("MCR_PROFILE_DIR");
  struct stat st;

  if (!d || !*d || strlen(d) >= sizeof(dir) || stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
    return;
  strcpy(dir, d);
  index_ = map(STACK_SLOTS * sizeof(*index_));
  pool = map(POOL_BYTES);
  threads_ = map(MAX_PTHREADS * sizeof(*threads_));
  thread_index = map(THREAD_SLOTS * sizeof(*thread_index));
  if (!index_ || !pool || !threads_ || !thread_index)
    return;
  /* the runtime's unwinder (stackid.h), loaded now */
  unwind = mcr_unwinder();
  snprintf(unwind_obj, sizeof(unwind_obj), "%s", mcr_unwinder_object());
  start_ns = mcr_now_ns();
  start_us = now_us();
  clock_offset_us = start_us - start_ns / 1000u;
  if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
    return;
  mcr_profiling = 1;
  start_writer(0);
}
