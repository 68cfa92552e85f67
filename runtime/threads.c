/*
 * threads.c - the thread registry and the pthread_create interposer; see threads.h.
 *
 * The registry is one array of slots reserved at first use (MAP_NORESERVE: only the
 * pages that hold slots in use are committed), so its memory is bounded whatever
 * the program does; a thread created while it is full runs untracked and is
 * counted. A mutex guards it: thread creation and exit are rare next to the work
 * threads do, and status requests only copy it out. The lock is held across fork
 * so the child finds it consistent; in the child only the forking thread remains.
 *
 * Creation stacks are captured with the runtime's unwinder (stackid.h: libunwind's
 * unw_backtrace, loaded with dlopen, or glibc's backtrace).
 *
 * The runtime's own threads run with mcr_in_runtime set (stackid.h): their
 * allocations and calls are not the program's startup.
 */
#define _GNU_SOURCE
#include "threads.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "elfsym.h"
#include "stackid.h"
#include "startup.h"

#define MAX_THREADS 8192

enum slot_state { SLOT_FREE, SLOT_STARTING, SLOT_LIVE };

struct slot {
  enum slot_state state;
  struct mcr_thread_info info;
  struct mcr_qthread q; /* quiesce.h */
  void *(*fn)(void *); /* the start routine and its argument, for the trampoline */
  void *arg;
};

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;   /* MAX_THREADS, mapped at first use */
static unsigned high;        /* slots [0, high) have been used */
static unsigned nlive;
static unsigned untracked;
static pthread_key_t exit_key;
static int reg_ok;           /* slots mapped and exit_key created */
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static create_fn real_create;

static uint64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void release(struct slot *s)
{
  pthread_mutex_lock(&reg_lock);
  if (s->state == SLOT_LIVE)
    nlive--;
  s->state = SLOT_FREE;
  pthread_mutex_unlock(&reg_lock);
}

/* Runs at thread exit (return, pthread_exit, cancellation). */
static void on_exit_key(void *p)
{
  release(p);
}

static void fork_prepare(void)
{
  pthread_mutex_lock(&reg_lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&reg_lock);
}

/* The child has one thread, the one that called fork: keep its slot only. */
static void fork_child(void)
{
  struct slot *mine = reg_ok ? pthread_getspecific(exit_key) : NULL;

  nlive = 0;
  for (unsigned i = 0; i < high; i++) {
    if (&slots[i] == mine && slots[i].state == SLOT_LIVE) {
      slots[i].info.tid = gettid();
      slots[i].info.pthread = (uintptr_t)pthread_self();
      nlive = 1;
    } else {
      slots[i].state = SLOT_FREE;
    }
  }
  untracked = 0;
  pthread_mutex_init(&reg_lock, NULL);
}

static void reg_init(void)
{
  void *m = mmap(NULL, MAX_THREADS * sizeof(struct slot), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED)
    return;
  if (pthread_key_create(&exit_key, on_exit_key) != 0) {
    munmap(m, MAX_THREADS * sizeof(struct slot));
    return;
  }
  slots = m;
  reg_ok = 1;
  /* malloc first: the heap registers its own fork handlers on first use, and
   * pthread_atfork may allocate. The heap's child handler then runs before ours. */
  free(malloc(1));
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static struct slot *reserve_slot(void)
{
  struct slot *s = NULL;

  pthread_once(&reg_once, reg_init);
  if (!reg_ok)
    return NULL;
  pthread_mutex_lock(&reg_lock);
  for (unsigned i = 0; i < high; i++)
    if (slots[i].state == SLOT_FREE) {
      s = &slots[i];
      break;
    }
  if (!s && high < MAX_THREADS)
    s = &slots[high++];
  if (s)
    s->state = SLOT_STARTING;
  else
    untracked++;
  pthread_mutex_unlock(&reg_lock);
  return s;
}

static void publish(struct slot *s)
{
  pthread_mutex_lock(&reg_lock);
  s->state = SLOT_LIVE;
  nlive++;
  pthread_mutex_unlock(&reg_lock);
  pthread_setspecific(exit_key, s);
}

static void resolve_create(void)
{
  if (!real_create)
    real_create = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
}

static void thread_end(void *p)
{
  mcr_quiesce_thread_end(p);
}

/* The thread runs program code inside a read-side section (quiesce.h) from here
 * until it ends, however it ends: the cleanup handler runs on pthread_exit and
 * cancellation too. */
extern void *__libc_stack_end;

static void *mcr_thread_trampoline(void *p)
{
  struct slot *s = p;
  void *(*fn)(void *) = s->fn;
  void *arg = s->arg;
  void *ret;

  s->info.tid = gettid();
  s->info.pthread = (uintptr_t)pthread_self();
  memset(&s->q, 0, sizeof(s->q));
  /* the program's frames end here: above are glibc's start_thread and the
   * thread's TLS and descriptor, which an update must not rewrite */
  s->q.stack_hi = (uintptr_t)__builtin_frame_address(0) + 2 * sizeof(void *);
  publish(s);
  mcr_quiesce_thread_start(&s->q);
  pthread_cleanup_push(thread_end, &s->q);
  ret = fn(arg);
  pthread_cleanup_pop(1);
  return ret;
}

/* Keeps the frames from ra (the return address into pthread_create's caller)
 * outward: whatever the unwinder reports for itself and for us is dropped. */
__attribute__((noinline)) static unsigned capture(uintptr_t ra, uintptr_t *frames, unsigned max)
{
  void *buf[MCR_THREAD_FRAMES + 8];
  int n, first = 0;

  mcr_in_runtime++; /* libunwind may mmap: not the program's startup mapping */
  n = mcr_unwinder()(buf, MCR_THREAD_FRAMES + 8);
  mcr_in_runtime--;
  for (int i = 0; i < n && i < 8; i++)
    if ((uintptr_t)buf[i] == ra) {
      first = i;
      break;
    }
  n -= first;
  if (n < 0)
    n = 0;
  if ((unsigned)n > max)
    n = (int)max;
  for (int i = 0; i < n; i++)
    frames[i] = (uintptr_t)buf[first + i];
  return (unsigned)n;
}

__attribute__((noinline)) int pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                             void *(*fn)(void *), void *arg)
{
  struct slot *s;
  int rc;

  resolve_create();
  if (!real_create)
    return EAGAIN;
  s = reserve_slot();
  if (!s)
    return real_create(t, attr, fn, arg);
  memset(&s->info, 0, sizeof(s->info));
  s->fn = fn;
  s->arg = arg;
  s->info.start = (uintptr_t)fn;
  s->info.created_us = now_us();
  s->info.startup = __atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED);
  s->info.nframes = capture((uintptr_t)__builtin_return_address(0), s->info.frames,
                            MCR_THREAD_FRAMES);
  rc = real_create(t, attr, mcr_thread_trampoline, s);
  if (rc != 0)
    release(s);
  return rc;
}

struct internal_start {
  void *(*fn)(void *);
  void *arg;
};

static void *internal_trampoline(void *p)
{
  struct internal_start s = *(struct internal_start *)p;

  mcr_in_runtime = 1;
  free(p);
  return s.fn(s.arg);
}

int mcr_threads_start_internal(pthread_t *t, void *(*fn)(void *), void *arg)
{
  struct internal_start *s;
  sigset_t all, old;
  int rc;

  resolve_create();
  if (!real_create)
    return EAGAIN;
  mcr_in_runtime++;
  s = malloc(sizeof(*s));
  mcr_in_runtime--;
  if (!s)
    return EAGAIN;
  s->fn = fn;
  s->arg = arg;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = real_create(t, NULL, internal_trampoline, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    free(s);
  return rc;
}

size_t mcr_threads_snapshot(struct mcr_thread_info *out, size_t max)
{
  size_t n = 0;

  pthread_once(&reg_once, reg_init);
  if (!reg_ok)
    return 0;
  pthread_mutex_lock(&reg_lock);
  for (unsigned i = 0; i < high; i++) {
    if (slots[i].state != SLOT_LIVE)
      continue;
    if (n < max) {
      out[n] = slots[i].info;
      out[n].qstate = __atomic_load_n(&slots[i].q.state, __ATOMIC_SEQ_CST);
      out[n].qp_at = out[n].qstate != MCR_Q_RUN ? slots[i].q.at : NULL;
    }
    n++;
  }
  pthread_mutex_unlock(&reg_lock);
  return n;
}

size_t mcr_threads_qstates(struct mcr_qthread **out, size_t max)
{
  size_t n = 0;

  pthread_once(&reg_once, reg_init);
  if (!reg_ok)
    return 0;
  pthread_mutex_lock(&reg_lock);
  for (unsigned i = 0; i < high; i++) {
    if (slots[i].state != SLOT_LIVE || slots[i].q.tid == 0)
      continue;
    if (n < max)
      out[n] = &slots[i].q;
    n++;
  }
  pthread_mutex_unlock(&reg_lock);
  return n;
}

int mcr_threads_self_info(struct mcr_thread_info *out)
{
  struct slot *s = reg_ok ? pthread_getspecific(exit_key) : NULL;

  if (!s)
    return -1;
  *out = s->info;
  return 0;
}

unsigned mcr_threads_untracked(void)
{
  return __atomic_load_n(&untracked, __ATOMIC_RELAXED);
}

void mcr_threads_class(struct mcr_symbolizer *sym, const struct mcr_thread_info *t, char *buf,
                       size_t len)
{
  char names[MCR_THREAD_FRAMES][128];
  unsigned n = 0;
  size_t used = 0;

  if (len)
    buf[0] = '\0';
  if (t->is_main) {
    snprintf(buf, len, "main");
    return;
  }
  /* innermost first; stop at main or at our trampoline (a thread created by a
   * thread: its stack up to that thread's start routine) */
  for (unsigned i = 0; i < t->nframes && n < MCR_THREAD_FRAMES; i++) {
    /* a return address may be one past its call's function: look up addr - 1 */
    mcr_symbolize(sym, t->frames[i] - 1, names[n], sizeof(names[n]));
    if (!strcmp(names[n], "mcr_thread_trampoline"))
      break;
    if (!strcmp(names[n++], "main"))
      break;
  }
  for (unsigned i = n; i-- > 0;) {
    int w = snprintf(buf + used, len - used, "%s%s", names[i], i ? " > " : "");
    if (w < 0 || (size_t)w >= len - used)
      break;
    used += (size_t)w;
  }
}

void mcr_threads_class_full(struct mcr_symbolizer *sym, const struct mcr_thread_info *t,
                            char *buf, size_t len)
{
  char start[128];

  mcr_threads_class(sym, t, buf, len);
  if (t->is_main)
    return;
  mcr_symbolize(sym, t->start, start, sizeof(start));
  size_t l = strlen(buf);
  snprintf(buf + l, len - l, " (%s)", start);
}

size_t mcr_threads_classes(struct mcr_thread_class *out, size_t max)
{
  struct mcr_symbolizer sym = {0};
  size_t cap = 1024, n, nc = 0;
  struct mcr_thread_info *reg =
      mmap(NULL, cap * sizeof(*reg), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  if (reg == MAP_FAILED)
    return 0;
  n = mcr_threads_snapshot(reg, cap);
  for (size_t i = 0; i < n && i < cap; i++) {
    char name[sizeof(out->name)];
    size_t k;
    mcr_threads_class_full(&sym, &reg[i], name, sizeof(name));
    size_t have = nc < max ? nc : max;
    for (k = 0; k < have; k++)
      if (!strcmp(out[k].name, name))
        break;
    if (k == have) { /* a new class (past max: only counted) */
      nc++;
      if (k == max)
        continue;
      snprintf(out[k].name, sizeof(out[k].name), "%s", name);
      out[k].n = out[k].startup = 0;
    }
    out[k].n++;
    out[k].startup += reg[i].startup != 0;
  }
  mcr_symbolizer_close(&sym);
  munmap(reg, cap * sizeof(*reg));
  return nc;
}

/* The main thread, before main() runs. */
__attribute__((constructor(200))) static void threads_init(void)
{
  struct slot *s = reserve_slot();

  if (!s)
    return;
  memset(&s->info, 0, sizeof(s->info));
  s->info.is_main = 1;
  s->info.startup = 1;
  s->info.tid = gettid();
  s->info.pthread = (uintptr_t)pthread_self();
  s->info.created_us = now_us();
  memset(&s->q, 0, sizeof(s->q));
  s->q.stack_hi = (uintptr_t)__libc_stack_end; /* main's frames end at the initial stack */
  publish(s);
  mcr_quiesce_thread_start(&s->q);
}
