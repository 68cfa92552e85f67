/*
 * quiesce.c - the quiesce protocol; see quiesce.h and docs/quiescence.md.
 *
 * Two checks: each thread publishes its state (running, waiting, blocked, parked)
 * with sequentially consistent stores, and reads the quiesce flag after
 * publishing "running", so the coordinator either sees it running or it sees the
 * flag and parks. A thread whose fd wait returned events at the moment the flag
 * rose must handle them (they are out of the kernel): it runs on and parks at its
 * next quiescent point. When every thread is parked or blocked at a point, a
 * grace period (urcu-bp's synchronize_rcu) confirms that none is still inside
 * program code, its read-side section.
 */
#define _GNU_SOURCE
#include "quiesce.h"
#include "heap.h"
#include "procstat.h"
#include "update.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-bp.h>

#include "elfsym.h"
#include "stackid.h"
#include "startup.h"
#include "tsd.h"
#include "threads.h"

#define KICK_EVERY_NS 1000000ull /* re-send the signal to threads still in an fd wait */
#define POLL_NS 50000ull         /* how often the coordinator looks at thread states */
#define MAX_POINTS 4096

__thread struct mcr_qthread *mcr_qself __attribute__((tls_model("initial-exec")));
__thread const struct mcr_qp *mcr_qp_current __attribute__((tls_model("initial-exec")));
static __thread int online __attribute__((tls_model("initial-exec")));
int mcr_quiescing;

static int kick_sig;
static uint64_t quiesce_gen;
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER; /* one quiesce at a time */

/* the grace-period thread: runs synchronize_rcu on request */
static pthread_mutex_t gp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gp_cond = PTHREAD_COND_INITIALIZER;
static uint64_t gp_requested, gp_done;
static int gp_started;

extern const struct mcr_qp __start_mcr_qps[] __attribute__((weak, visibility("hidden")));
extern const struct mcr_qp __stop_mcr_qps[] __attribute__((weak, visibility("hidden")));

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long futex(int *addr, int op, int val, const struct timespec *ts)
{
  return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

const struct mcr_qp *__mcr_qp_enter(const struct mcr_qp *qp)
{
  const struct mcr_qp *prev = mcr_qp_current;
  mcr_qp_current = qp;
  return prev;
}

void __mcr_qp_exit(const struct mcr_qp *prev)
{
  mcr_qp_current = prev;
}

size_t mcr_quiesce_points(const struct mcr_qp **out, size_t max)
{
  size_t n = 0;

  if (!__start_mcr_qps || !__stop_mcr_qps)
    return 0;
  for (const struct mcr_qp *q = __start_mcr_qps; q < __stop_mcr_qps; q++) {
    if (q->magic != MCR_QP_MAGIC || q->version != MCR_QP_VERSION)
      continue;
    if (n < max)
      out[n] = q;
    n++;
  }
  return n;
}

int mcr_quiesce_signal(void)
{
  return kick_sig;
}

/* ---- the thread side ---- */

void mcr_quiesce_online(void)
{
  if (online++ == 0) {
    /* A thread's first read lock registers it with urcu-bp, which may map a
     * chunk of its reader registry (mmap): the runtime's bookkeeping, not a
     * startup mapping of the program (carried over, it would overwrite the new
     * process's registry with the old one's: memcached's 12th thread did, and
     * the next quiesce crashed in synchronize_rcu) */
    mcr_in_runtime++;
    urcu_bp_read_lock();
    mcr_in_runtime--;
  }
}

void mcr_quiesce_offline(void)
{
  if (online > 0 && --online == 0)
    urcu_bp_read_unlock();
}

/* The top of the calling thread's stack. */
static uintptr_t stack_top(void)
{
  pthread_attr_t a;
  void *lo;
  size_t size;
  uintptr_t top = 0;
  if (pthread_getattr_np(pthread_self(), &a) != 0)
    return 0;
  if (pthread_attr_getstack(&a, &lo, &size) == 0)
    top = (uintptr_t)lo + size;
  pthread_attr_destroy(&a);
  return top;
}

/* Parks with every callee-saved register on the stack (the clobbers make the
 * compiler save them in this frame and restore them from it on return), and
 * records the stack pointer: a rewrite of the stack while the thread waits
 * reaches the registers too. */
__attribute__((noinline)) static void park_saving_registers(struct mcr_qthread *q)
{
  uintptr_t sp;
  __asm__ volatile("" ::: "rbx", "r12", "r13", "r14", "r15", "memory");
  __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
  q->park_sp = sp;
  while (__atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST))
    futex(&mcr_quiescing, FUTEX_WAIT_PRIVATE, 1, NULL);
  q->park_sp = 0;
  __asm__ volatile("" ::: "rbx", "r12", "r13", "r14", "r15", "memory");
}

void mcr_quiesce_park(struct mcr_qthread *q, const struct mcr_qp *at)
{
  int saved = errno, prev;

  if (!q || !__atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST))
    return;
  if (__atomic_load_n(&mcr_update_old_active, __ATOMIC_RELAXED))
    mcr_heap_flush_thread_cache(); /* nothing cached is lost in the transfer */
  if (__atomic_load_n(&mcr_update_parking, __ATOMIC_RELAXED) && !q->stack_hi)
    q->stack_hi = stack_top();
  prev = __atomic_load_n(&q->state, __ATOMIC_RELAXED);
  q->at = at;
  q->arrived_ns = now_ns();
  q->quiesce_gen = __atomic_load_n(&quiesce_gen, __ATOMIC_RELAXED);
  if (__atomic_load_n(&mcr_update_parking, __ATOMIC_RELAXED))
    q->tsd = mcr_tsd_record(); /* before it is seen parked */
  __atomic_store_n(&q->state, MCR_Q_PARKED, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&mcr_update_parking, __ATOMIC_RELAXED)) {
    park_saving_registers(q);
    mcr_tsd_apply(q->tsd); /* resumed: after the commit (a rollback ends this process) */
  } else {
    while (__atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST))
      futex(&mcr_quiescing, FUTEX_WAIT_PRIVATE, 1, NULL);
  }
  __atomic_store_n(&q->state, prev, __ATOMIC_SEQ_CST);
  errno = saved;
}

void mcr_quiesce_thread_start(struct mcr_qthread *q)
{
  q->tid = gettid();
  mcr_qself = q;
  /* a thread created while a quiesce is in progress runs no program code until
   * it ends: it parks before it enters its read-side section (state RUN is
   * published first, see blocking.c sleep_end). Except the threads the new
   * version's startup creates in an update: they run to their first quiescent
   * point, as the old version's did, since the startup may wait for them
   * (memcached's main waits until every worker has registered). */
  __atomic_store_n(&q->state, MCR_Q_RUN, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST) &&
      !(__atomic_load_n(&mcr_update_parking, __ATOMIC_SEQ_CST) &&
        __atomic_load_n(&mcr_startup_on, __ATOMIC_SEQ_CST)))
    mcr_quiesce_park(q, NULL);
  mcr_quiesce_online();
}

void mcr_quiesce_thread_end(struct mcr_qthread *q)
{
  __atomic_store_n(&q->tid, 0, __ATOMIC_SEQ_CST);
  while (online > 0)
    mcr_quiesce_offline();
  mcr_qself = NULL;
}

/* The runtime's signal: it only has to interrupt a blocking system call. The
 * wrappers compare kicks before and after the call to tell it from the
 * server's own signals. */
static void on_kick(int sig, siginfo_t *si, void *uc)
{
  (void)sig;
  (void)si;
  (void)uc;
  if (mcr_qself)
    __atomic_add_fetch(&mcr_qself->kicks, 1, __ATOMIC_RELAXED);
}

/* Sends the runtime's signal to a thread in an fd wait, unless the one sent
 * last is still pending (kicks has not moved since): in a thread that blocks
 * the signal, one real-time signal would otherwise be queued every
 * KICK_EVERY_NS until the timeout, quiesce after quiesce, against the user's
 * RLIMIT_SIGPENDING. */
static void kick(struct mcr_qthread *q)
{
  unsigned k = __atomic_load_n(&q->kicks, __ATOMIC_SEQ_CST);

  if (q->kick_sent && q->kick_sent - 1 == k)
    return;
  if (syscall(SYS_tgkill, getpid(), q->tid, kick_sig) == 0)
    q->kick_sent = k + 1;
}

/* ---- the grace period ---- */

static void *gp_main(void *arg)
{
  (void)arg;
  pthread_setname_np(pthread_self(), "mcr-grace");
  pthread_mutex_lock(&gp_lock);
  for (;;) {
    while (gp_done == gp_requested)
      pthread_cond_wait(&gp_cond, &gp_lock);
    uint64_t want = gp_requested;
    pthread_mutex_unlock(&gp_lock);
    urcu_bp_synchronize_rcu();
    pthread_mutex_lock(&gp_lock);
    gp_done = want;
    pthread_cond_broadcast(&gp_cond);
  }
  return NULL;
}

/* Asks for a grace period; returns its ticket. */
static uint64_t gp_request(void)
{
  uint64_t ticket;

  pthread_mutex_lock(&gp_lock);
  if (!gp_started) {
    pthread_t t;
    if (mcr_threads_start_internal(&t, gp_main, NULL) == 0) {
      pthread_detach(t);
      gp_started = 1;
    }
  }
  ticket = ++gp_requested;
  pthread_cond_broadcast(&gp_cond);
  pthread_mutex_unlock(&gp_lock);
  return gp_started ? ticket : 0;
}

static int gp_finished(uint64_t ticket)
{
  int done;

  pthread_mutex_lock(&gp_lock);
  done = gp_done >= ticket;
  pthread_mutex_unlock(&gp_lock);
  return done;
}

/* ---- describing a thread that did not arrive ---- */

/* Whether the bytes before ra end in a call instruction (e8 rel32, or ff /2
 * with a register or memory operand): a cheap filter for return addresses found
 * by scanning a stack. */
static int after_call(uintptr_t ra)
{
  const unsigned char *p = (const unsigned char *)ra;

  if (p[-5] == 0xe8)
    return 1;
  for (int len = 2; len <= 7; len++)
    if (p[-len] == 0xff && ((p[-len + 1] >> 3) & 7) == 2)
      return 1;
  return 0;
}

#define MAX_MAPS 1024

/* What a thread that did not arrive is doing: its scheduler state, the system
 * call it is blocked in, and the return addresses found on its stack (a scan:
 * reading another thread's registers would need ptrace or a signal, and a signal
 * would interrupt the server's own system call). */
static void describe(pid_t tid, char *out, size_t len)
{
  char path[64], buf[512], names[16][96];
  int fd, n, nnames = 0;
  unsigned long nr = 0, sp = 0, pc = 0;
  struct mcr_symbolizer sym = {0};
  size_t used = 0;

  out[0] = '\0';
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  n = fd >= 0 ? (int)read(fd, buf, sizeof(buf) - 1) : -1;
  if (fd >= 0)
    close(fd);
  buf[n > 0 ? n : 0] = '\0';
  if (n <= 0) {
    snprintf(out, len, "gone");
    return;
  }
  if (!strncmp(buf, "running", 7)) {
    snprintf(out, len, "running program code (not in a system call)");
    return;
  }
  {
    /* "NR a1 a2 a3 a4 a5 a6 SP PC" */
    unsigned long v[9];
    if (sscanf(buf, "%lu %lx %lx %lx %lx %lx %lx %lx %lx", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7], &v[8]) == 9) {
      nr = v[0];
      sp = v[7];
      pc = v[8];
    }
  }
  used = (size_t)snprintf(out, len, "blocked in system call %lu", nr);
  if (sp) {
    struct mcr_map *maps = malloc(MAX_MAPS * sizeof(*maps));
    size_t nmaps = maps ? mcr_proc_maps(maps, MAX_MAPS) : 0;
    const struct mcr_map *stack = mcr_proc_map_at(maps, nmaps, sp);
    if (stack && stack->perms[0] == 'r') {
      uintptr_t end = stack->hi < sp + 65536 ? stack->hi : sp + 65536;
      mcr_symbolize(&sym, pc - 1, names[nnames++], sizeof(names[0]));
      for (uintptr_t p = sp & ~(uintptr_t)7; p + 8 <= end && nnames < 16; p += 8) {
        uintptr_t w = *(const uintptr_t *)p;
        const struct mcr_map *t = w >= 4096 ? mcr_proc_map_at(maps, nmaps, w) : NULL;
        if (!t || t->perms[2] != 'x' || t->perms[0] != 'r' || w - t->lo < 8 || !after_call(w))
          continue;
        mcr_symbolize(&sym, w - 1, names[nnames], sizeof(names[0]));
        if (nnames && !strcmp(names[nnames], names[nnames - 1]))
          continue;
        nnames++;
      }
    }
    free(maps);
  }
  mcr_symbolizer_close(&sym);
  if (nnames && used < len)
    used += (size_t)snprintf(out + used, len - used, "; stack (scanned, innermost first):");
  for (int i = 0; i < nnames && used < len; i++)
    used += (size_t)snprintf(out + used, len - used, " %s", names[i]);
}

/* Whether the thread blocks the runtime's signal (SigBlk of its status). */
static int blocks_kick(pid_t tid)
{
  char path[64], line[128];
  unsigned long long mask = 0;
  int found = 0;
  FILE *f;

  snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
  if (!(f = fopen(path, "re")))
    return 0;
  while (!found && fgets(line, sizeof(line), f))
    found = sscanf(line, "SigBlk: %llx", &mask) == 1;
  fclose(f);
  return found && kick_sig >= 1 && kick_sig <= 64 && (mask >> (kick_sig - 1) & 1);
}

/* ---- the coordinator ---- */

static const char *state_name(int s)
{
  switch (s) {
  case MCR_Q_RUN: return "running";
  case MCR_Q_WAIT: return "waiting";
  case MCR_Q_SLEEP: return "blocked";
  case MCR_Q_PARKED: return "parked";
  }
  return "?";
}

const char *mcr_quiesce_state_name(int s)
{
  return state_name(s);
}

/* Memory of the coordinator's own, outside the program's heap: the heap is
 * what an update hands over, and its export must see it unchanged. */
static void *rt_alloc(size_t n)
{
  void *p = mcr_map_anon(n ? n : 1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void rt_free(void *p, size_t n)
{
  if (p)
    munmap(p, n ? n : 1);
}

void mcr_qresult_free(struct mcr_qresult *res)
{
  rt_free(res->threads, res->threads_bytes);
  res->threads = NULL;
  res->nthreads = 0;
}

static void resume(void)
{
  __atomic_store_n(&mcr_quiescing, 0, __ATOMIC_SEQ_CST);
  futex(&mcr_quiescing, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

static int arrived(int state)
{
  return state == MCR_Q_PARKED || state == MCR_Q_SLEEP;
}

int mcr_quiesce_begin(unsigned timeout_ms, struct mcr_qresult *res)
{
  struct mcr_qthread **qs = NULL;
  uint64_t *seen_ns = NULL; /* when each thread was first seen arrived, 0: not */
  int *seen_state = NULL;   /* its state then, reported: it may wake and park since */
  size_t n, cap = 0;
  uint64_t t0, deadline, last_kick, ticket = 0, gp_start = 0, gp_end = 0;
  int all = 0;

  memset(res, 0, sizeof(*res));
  if (mcr_quiesce_points(NULL, 0) == 0) {
    snprintf(res->error, sizeof(res->error),
             "this program has no quiescent points compiled in: profile it with mcr-profile, "
             "then build it with mcr-clang --mcr-quiescence=FILE");
    return -1;
  }
  if (!kick_sig) {
    snprintf(res->error, sizeof(res->error), "the runtime's signal could not be installed");
    return -1;
  }
  if (mcr_threads_untracked()) {
    snprintf(res->error, sizeof(res->error),
             "%u threads are not in the runtime's registry (created past its capacity): they "
             "cannot be parked", mcr_threads_untracked());
    return -1;
  }
  if (pthread_mutex_trylock(&busy) != 0) {
    snprintf(res->error, sizeof(res->error), "another quiesce or update is in progress");
    return -1;
  }

  t0 = now_ns();
  deadline = t0 + (uint64_t)timeout_ms * 1000000u;
  __atomic_add_fetch(&quiesce_gen, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&mcr_quiescing, 1, __ATOMIC_SEQ_CST);

  /* the threads as they are now; a thread created from here on parks at its
   * start (mcr_quiesce_thread_start), one that ends drops out */
  for (;;) {
    n = mcr_threads_qstates(qs, cap);
    if (n <= cap)
      break;
    rt_free(qs, cap * sizeof(*qs));
    cap = n + 16;
    qs = rt_alloc(cap * sizeof(*qs));
    if (!qs) {
      resume();
      pthread_mutex_unlock(&busy);
      snprintf(res->error, sizeof(res->error), "out of memory");
      return -1;
    }
  }
  seen_ns = rt_alloc((n ? n : 1) * sizeof(*seen_ns));
  seen_state = rt_alloc((n ? n : 1) * sizeof(*seen_state));
  res->threads_bytes = (n ? n : 1) * sizeof(*res->threads);
  res->threads = rt_alloc(res->threads_bytes);
  if (!seen_ns || !seen_state || !res->threads) {
    rt_free(qs, cap * sizeof(*qs));
    rt_free(seen_ns, (n ? n : 1) * sizeof(*seen_ns));
    rt_free(seen_state, (n ? n : 1) * sizeof(*seen_state));
    mcr_qresult_free(res);
    resume();
    pthread_mutex_unlock(&busy);
    snprintf(res->error, sizeof(res->error), "out of memory");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (__atomic_load_n(&qs[i]->state, __ATOMIC_SEQ_CST) == MCR_Q_WAIT)
      kick(qs[i]);
  last_kick = now_ns();

  /* Wait until every thread is parked or blocked at a point, then let a grace
   * period confirm it. The grace period comes last because urcu-bp's writer
   * polls readers and sleeps 10 ms between rounds once a reader is slow: asked
   * while threads still run program code it would cost 10 ms; asked when every
   * thread is outside its read-side section it ends in microseconds. */
  for (;;) {
    uint64_t now = now_ns();
    int states_ok = 1;
    for (size_t i = 0; i < n; i++) {
      int s = __atomic_load_n(&qs[i]->state, __ATOMIC_SEQ_CST);
      if (__atomic_load_n(&qs[i]->tid, __ATOMIC_SEQ_CST) == 0)
        continue; /* the thread ended */
      if (arrived(s)) {
        if (!seen_ns[i])
          seen_ns[i] = s == MCR_Q_PARKED && qs[i]->quiesce_gen == quiesce_gen
                           ? qs[i]->arrived_ns
                           : now;
        seen_state[i] = s;
      } else {
        states_ok = 0;
        seen_ns[i] = 0;
      }
    }
    if (states_ok) {
      if (!ticket) {
        ticket = gp_request();
        gp_start = now;
      } else if (gp_finished(ticket)) {
        gp_end = now;
        all = 1;
        break;
      }
    }
    if (now >= deadline)
      break;
    if (now - last_kick >= KICK_EVERY_NS) {
      for (size_t i = 0; i < n; i++)
        if (__atomic_load_n(&qs[i]->state, __ATOMIC_SEQ_CST) == MCR_Q_WAIT)
          kick(qs[i]);
      last_kick = now;
    }
    struct timespec ts = {0, (long)(ticket ? POLL_NS / 5 : POLL_NS)};
    nanosleep(&ts, NULL);
  }

  res->quiesce_us = (now_ns() - t0) / 1000;
  res->grace_us = gp_end ? (gp_end - gp_start) / 1000 : 0;
  res->ok = all;
  /* on a timeout, resume first, describe the stragglers after: a thread stuck
   * in a system call is still there, and the others wait no longer */
  if (!all)
    resume();
  res->nthreads = 0;
  for (size_t i = 0; i < n; i++) {
    struct mcr_qarrival *a = &res->threads[res->nthreads];
    pid_t tid = __atomic_load_n(&qs[i]->tid, __ATOMIC_SEQ_CST);
    if (!tid)
      continue; /* it ended */
    res->nthreads++;
    a->tid = tid;
    /* quiesced: each thread's state when the grace period confirmed it (a
     * thread blocked at its point may have woken since, on its way to park) */
    a->state = all ? seen_state[i] : __atomic_load_n(&qs[i]->state, __ATOMIC_SEQ_CST);
    a->arrived = all || seen_ns[i] != 0;
    a->at = a->arrived ? qs[i]->at : NULL;
    a->arrival_us = a->arrived && seen_ns[i] > t0 ? (seen_ns[i] - t0) / 1000 : 0;
    if (!a->arrived) {
      describe(tid, a->where, sizeof(a->where));
      if (a->state == MCR_Q_WAIT && blocks_kick(tid)) {
        char d[sizeof(a->where)];
        snprintf(d, sizeof(d), "%s", a->where);
        snprintf(a->where, sizeof(a->where),
                 "blocks the runtime's signal %d, which cannot interrupt its wait at the "
                 "quiescent point; %s", kick_sig, d);
      }
    }
  }
  rt_free(qs, cap * sizeof(*qs));
  rt_free(seen_ns, (n ? n : 1) * sizeof(*seen_ns));
  rt_free(seen_state, (n ? n : 1) * sizeof(*seen_state));
  if (!all) {
    pthread_mutex_unlock(&busy);
    return -1;
  }
  return 0;
}

void mcr_quiesce_end(void)
{
  resume();
  pthread_mutex_unlock(&busy);
}

/* ---- set-up ---- */

static void fork_prepare(void)
{
  urcu_bp_before_fork();
}

static void fork_parent(void)
{
  urcu_bp_after_fork_parent();
}

/* The child has only the forking thread, which was running program code: no
 * quiesce is in progress there (the parent's, if any, is the parent's). Except
 * in the new version of an update, before its commit: a child of it must not
 * serve, so it parks at its first quiescent point (the startup does not fork
 * there, startup.c; this covers a fork outside its window). */
static void fork_child(void)
{
  urcu_bp_after_fork_child();
  if (!__atomic_load_n(&mcr_update_parking, __ATOMIC_RELAXED))
    mcr_quiescing = 0;
  pthread_mutex_init(&busy, NULL);
  pthread_mutex_init(&gp_lock, NULL);
  pthread_cond_init(&gp_cond, NULL);
  gp_requested = gp_done = 0;
  gp_started = 0;
  if (mcr_qself) {
    mcr_qself->tid = gettid();
    mcr_qself->state = MCR_Q_RUN;
    mcr_qself->kick_sent = 0; /* a child starts with no signal pending */
  }
}

__attribute__((constructor(199))) static void quiesce_init(void)
{
  struct sigaction sa;
  const char *env = getenv("MCR_SIGNAL");
  int sig = SIGRTMAX - 3;

  if (env && *env) {
    char *end;
    long v = strtol(env, &end, 10);
    if (!*end && v >= SIGRTMIN && v <= SIGRTMAX)
      sig = (int)v;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_kick;
  sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: it must interrupt fd waits */
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) == 0)
    kick_sig = sig;
  free(malloc(1)); /* the heap's fork handlers first (see threads.c) */
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}
