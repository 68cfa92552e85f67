/*
 * blocking.c - wrappers of the C library's blocking functions (mcr/qp.h).
 *
 * Defined in the executable, these win over the C library's definitions for every
 * caller, uninstrumented libraries included, as the runtime's malloc does. Each
 * forwards to the real function (dlsym RTLD_NEXT). Outside a quiescent point a
 * wrapper costs a thread-local load and a branch; under mcr-profile it also
 * reports the call (profile.h).
 *
 * At the thread's current quiescent point (mcr_qp_current names this function):
 *   - fd and signal waits (epoll_wait, poll, select, accept, read, recv*,
 *     sigsuspend, pause) leave the read-side section, park first if a quiesce is
 *     in progress, and treat an EINTR caused by the runtime's signal as "park,
 *     then call again" (never returned to the program). A woken wait that took
 *     events from the kernel returns them: the thread parks at its next point.
 *   - condition waits, semaphores, sleeps and sigwait count as arrived while
 *     blocked; if they return during a quiesce the thread parks before returning
 *     (a condition wait releases its mutex while parked).
 * Fortified variants (__read_chk ...) are wrapped too: -D_FORTIFY_SOURCE builds
 * call them instead.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "profile.h"
#include "quiesce.h"
#include "stackid.h"
#include "startup.h"
#include "update.h"

#define RA ((uintptr_t)__builtin_return_address(0))
#define LIKELY_NOT(x) __builtin_expect(!!(x), 0)

/* ---- the real functions ---- */

static struct {
  int (*epoll_wait)(int, struct epoll_event *, int, int);
  int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
  int (*poll)(struct pollfd *, nfds_t, int);
  int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
  int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
  int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
  int (*accept)(int, struct sockaddr *, socklen_t *);
  int (*accept4)(int, struct sockaddr *, socklen_t *, int);
  ssize_t (*read)(int, void *, size_t);
  ssize_t (*recv)(int, void *, size_t, int);
  ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
  ssize_t (*recvmsg)(int, struct msghdr *, int);
  int (*cond_wait)(pthread_cond_t *, pthread_mutex_t *);
  int (*cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
  int (*sem_wait)(sem_t *);
  int (*sem_timedwait)(sem_t *, const struct timespec *);
  int (*nanosleep)(const struct timespec *, struct timespec *);
  int (*clock_nanosleep)(clockid_t, int, const struct timespec *, struct timespec *);
  int (*usleep)(useconds_t);
  unsigned (*sleep)(unsigned);
  int (*sigsuspend)(const sigset_t *);
  int (*sigwait)(const sigset_t *, int *);
  int (*sigwaitinfo)(const sigset_t *, siginfo_t *);
  int (*sigtimedwait)(const sigset_t *, siginfo_t *, const struct timespec *);
  int (*pause)(void);
  ssize_t (*read_chk)(int, void *, size_t, size_t);
  ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
  ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
  int (*poll_chk)(struct pollfd *, nfds_t, int, size_t);
  int (*ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t);
} real;

static void *next(const char *name)
{
  return dlsym(RTLD_NEXT, name);
}

/* dlsym would give the oldest version of the condition-variable functions
 * (GLIBC_2.2.5, the pre-NPTL ABI); ask for the current one. */
static void *next_cond(const char *name)
{
  void *f = dlvsym(RTLD_NEXT, name, "GLIBC_2.3.2");
  return f ? f : dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
  real.epoll_wait = next("epoll_wait");
  real.epoll_pwait = next("epoll_pwait");
  real.poll = next("poll");
  real.ppoll = next("ppoll");
  real.select = next("select");
  real.pselect = next("pselect");
  real.accept = next("accept");
  real.accept4 = next("accept4");
  real.read = next("read");
  real.recv = next("recv");
  real.recvfrom = next("recvfrom");
  real.recvmsg = next("recvmsg");
  real.cond_wait = next_cond("pthread_cond_wait");
  real.cond_timedwait = next_cond("pthread_cond_timedwait");
  real.sem_wait = next("sem_wait");
  real.sem_timedwait = next("sem_timedwait");
  real.nanosleep = next("nanosleep");
  real.clock_nanosleep = next("clock_nanosleep");
  real.usleep = next("usleep");
  real.sleep = next("sleep");
  real.sigsuspend = next("sigsuspend");
  real.sigwait = next("sigwait");
  real.sigwaitinfo = next("sigwaitinfo");
  real.sigtimedwait = next("sigtimedwait");
  real.pause = next("pause");
  real.read_chk = next("__read_chk");
  real.recv_chk = next("__recv_chk");
  real.recvfrom_chk = next("__recvfrom_chk");
  real.poll_chk = next("__poll_chk");
  real.ppoll_chk = next("__ppoll_chk");
}

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

/* Early: other libraries' constructors may block before ours run. */
__attribute__((constructor(101))) static void blocking_init(void)
{
  pthread_once(&resolve_once, resolve);
}

#define REAL(f) (LIKELY_NOT(!real.f) ? pthread_once(&resolve_once, resolve) : 0, real.f)

/* ---- quiescent-point plumbing ---- */

/* The quiescent point at which the calling thread is making this call, or NULL. */
/* The process's first quiescence ends its startup (startup.h): when the main
 * thread first reaches its point. */
__attribute__((noinline, cold)) static void first_point(void)
{
  if (gettid() == getpid())
    mcr_startup_end();
}

/* The config's stack as mcr_stack_describe_at names frames: the profiler writes
 * a library's frames "NAME@LIB" or "0xOFFSET@LIB" (profile.c), the description
 * "NAME" or "LIB" (stackid.c). 0, or -1 if out does not hold it. */
static int config_stack_as_described(const char *cfg, char *out, size_t len)
{
  size_t o = 0;
  while (*cfg) {
    const char *end = strstr(cfg, " > ");
    size_t n = end ? (size_t)(end - cfg) : strlen(cfg), k = n;
    const char *from = cfg, *at = memchr(cfg, '@', n);
    if (at && !strncmp(cfg, "0x", 2)) { /* 0xOFFSET@LIB -> LIB */
      from = at + 1;
      k = n - (size_t)(from - cfg);
    } else if (at) { /* NAME@LIB -> NAME */
      k = (size_t)(at - cfg);
    }
    if (o + k + 4 > len)
      return -1;
    memcpy(out + o, from, k);
    o += k;
    if (end) {
      memcpy(out + o, " > ", 3);
      o += 3;
    }
    cfg = end ? end + 3 : cfg + n;
  }
  out[o] = 0;
  return 0;
}

/* Is got (the caller's stack, described) qp's configured stack, give or take
 * inlined frames? -1: cannot tell (no stack configured, a name too long). */
static int stack_matches(const struct mcr_qp *qp, const char *got)
{
  char cfg[2048];
  const char *want = cfg, *p = got;
  if (!qp->stack || config_stack_as_described(qp->stack, cfg, sizeof(cfg)) != 0)
    return -1;
  while (*p) {
    const char *end = strstr(p, " > ");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    /* the next name of got must come later in want, as a whole name */
    char name[256];
    const char *w = want;
    if (n >= sizeof(name))
      return -1;
    memcpy(name, p, n);
    name[n] = 0;
    for (;;) {
      const char *hit = strstr(w, name);
      if (!hit)
        return 0;
      if ((hit == cfg || (hit - cfg >= 3 && !strncmp(hit - 3, " > ", 3))) &&
          (!strncmp(hit + n, " > ", 3) || hit[n] == 0)) {
        want = hit + n;
        break;
      }
      w = hit + 1;
    }
    p = end ? end + 3 : p + n;
  }
  return 1;
}

/* Marks the same call as qp (one record per configured stack through it). */
static int same_call(const struct mcr_qp *a, const struct mcr_qp *b)
{
  return a->line == b->line && a->blockfn == b->blockfn && a->caller && b->caller &&
         a->callee && b->callee && a->file && b->file && !strcmp(a->caller, b->caller) &&
         !strcmp(a->callee, b->callee) && !strcmp(a->file, b->file);
}

/* In the new version of an update a thread parks only where its whole stack
 * (outermost first: "main > a > b") is a configured one, give or take frames
 * inlined in this build. The marker only matches the innermost call: redis'
 * epoll_wait inside processEventsWhileBlocked during an RDB load at startup is
 * marked too, and parking there would resume the load on the old state.
 * Returns the point the caller's stack above ra is at: qp, or another point
 * configured at the same call (nginx's workers and its cache manager wait at
 * the same epoll_wait call, each its own point; the call is marked with the
 * first), or NULL if the stack is none of theirs. Cannot tell: qp. */
__attribute__((noinline, cold)) static const struct mcr_qp *matching_point(const struct mcr_qp *qp,
                                                                          uintptr_t ra)
{
  const struct mcr_qp *all[64];
  char got[2048];
  size_t n;

  if (mcr_stack_describe_at(ra, got, sizeof(got)) <= 0 || !strncmp(got, "... > ", 6))
    return qp;
  if (stack_matches(qp, got) != 0)
    return qp;
  n = mcr_quiesce_points(all, sizeof(all) / sizeof(all[0]));
  for (size_t i = 0; i < n && i < sizeof(all) / sizeof(all[0]); i++)
    if (all[i] != qp && same_call(all[i], qp) && stack_matches(all[i], got) != 0)
      return all[i];
  return NULL;
}

/* In the new version of an update, a point counts only where the stack is a
 * configured one, and the startup ends there (first_point) and nowhere else:
 * a thread that passes the marked call at another stack goes on in its
 * startup window, where its waits on shared epoll instances see none of the
 * old process's events (startup.c, "Shadow epoll instances"). */
static inline const struct mcr_qp *at_point_ra(enum mcr_blockfn f, uintptr_t ra)
{
  const struct mcr_qp *qp = mcr_qp_current;
  if (!qp || qp->blockfn != f || !mcr_qself)
    return NULL;
  if (LIKELY_NOT(mcr_update_parking) && !(qp = matching_point(qp, ra)))
    return NULL;
  if (LIKELY_NOT(mcr_startup_on))
    first_point();
  return qp;
}
#define at_point(f) at_point_ra((f), (uintptr_t)__builtin_return_address(0))

/* An fd or signal wait at a quiescent point. */
struct wait {
  struct mcr_qthread *q;
  const struct mcr_qp *qp;
  unsigned kicks;
  int64_t timeout_ns; /* the caller's timeout; -1: none */
  uint64_t start_ns;  /* coarse clock, only with a timeout */
};

/* CLOCK_MONOTONIC_COARSE: a memory read in the vDSO. The time is only needed
 * after the runtime's signal interrupted a wait, that is after a quiesce, when a
 * few milliseconds more or less do not matter; every other wait pays one read. */
static uint64_t coarse_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void wait_begin(struct wait *w, const struct mcr_qp *qp, int64_t timeout_ns)
{
  w->q = mcr_qself;
  w->qp = qp;
  w->timeout_ns = timeout_ns;
  w->start_ns = timeout_ns > 0 ? coarse_ns() : 0;
  w->q->at = qp;
  __atomic_store_n(&w->q->state, MCR_Q_WAIT, __ATOMIC_SEQ_CST);
  mcr_quiesce_offline();
}

/* Before each real call: park while a quiesce is in progress. */
static inline void wait_before(struct wait *w)
{
  w->kicks = __atomic_load_n(&w->q->kicks, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST))
    mcr_quiesce_park(w->q, w->qp);
}

/* After a real call that returned rc: whether the runtime's signal interrupted
 * it (then the wrapper calls again). */
static inline int wait_kicked(struct wait *w, long rc)
{
  return rc < 0 && errno == EINTR && __atomic_load_n(&w->q->kicks, __ATOMIC_SEQ_CST) != w->kicks;
}

static void wait_end(struct wait *w)
{
  int saved = errno;
  w->q->out_lo = w->q->out_hi = 0;
  __atomic_store_n(&w->q->state, MCR_Q_RUN, __ATOMIC_SEQ_CST);
  mcr_quiesce_online();
  errno = saved;
}

/* What is left of the caller's timeout: -1 none, 0 expired. */
static int64_t left_ns(const struct wait *w)
{
  uint64_t spent;

  if (w->timeout_ns < 0)
    return -1;
  spent = coarse_ns() - w->start_ns;
  return spent >= (uint64_t)w->timeout_ns ? 0 : w->timeout_ns - (int64_t)spent;
}

static struct timespec ns_ts(int64_t ns)
{
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  return ts;
}

/* -1 for a missing or invalid timeout (the real call then reports EINVAL). */
static int64_t ts_ns(const struct timespec *ts)
{
  if (!ts || ts->tv_sec < 0 || ts->tv_nsec < 0)
    return -1;
  return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* A copy of a wait's signal mask without the runtime's signal, so that it can
 * interrupt the wait. */
static const sigset_t *unblock_ours(const sigset_t *mask, sigset_t *copy)
{
  if (!mask || !mcr_quiesce_signal())
    return mask;
  *copy = *mask;
  sigdelset(copy, mcr_quiesce_signal());
  return copy;
}

/* A blocked wait that counts as arrived (condition waits, sleeps). */
static inline struct mcr_qthread *sleep_begin(const struct mcr_qp *qp)
{
  struct mcr_qthread *q = mcr_qself;
  q->at = qp;
  __atomic_store_n(&q->state, MCR_Q_SLEEP, __ATOMIC_SEQ_CST);
  mcr_quiesce_offline();
  return q;
}

/* Returns 1 if the thread has to park (a quiesce started meanwhile): the
 * caller then calls sleep_park, and sleep_online after. State RUN is published
 * before the flag is read, so the coordinator either sees RUN or this thread
 * sees the flag. The flag is read before the read-side section is re-entered: a
 * thread that parks never enters it, so it cannot delay the confirming grace
 * period (urcu-bp sleeps 10 ms when a reader is inside). */
static inline int sleep_end(struct mcr_qthread *q)
{
  __atomic_store_n(&q->state, MCR_Q_RUN, __ATOMIC_SEQ_CST);
  return __atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST);
}

static void sleep_park(struct mcr_qthread *q, const struct mcr_qp *qp)
{
  int saved = errno;
  mcr_quiesce_park(q, qp);
  errno = saved;
}

static inline void sleep_online(void)
{
  int saved = errno;
  mcr_quiesce_online();
  errno = saved;
}

#define PROFILED(fn, call)                                                                \
  do {                                                                                    \
    if (LIKELY_NOT(mcr_profiling)) {                                                      \
      uint64_t t0_ = mcr_now_ns();                                                        \
      mcr_profile_begin(fn, t0_, RA);                                                     \
      __typeof__(call) r_ = call;                                                         \
      int e_ = errno;                                                                     \
      mcr_profile_record(fn, t0_, mcr_now_ns(), RA);                                      \
      errno = e_;                                                                         \
      return r_;                                                                          \
    }                                                                                     \
  } while (0)

/* ---- fd waits ----
 * At a quiescent point every fd wait goes through the variant that takes a
 * signal mask (with a NULL mask it is the same system call as the plain one):
 * one loop per family instead of one per function. */

static int epoll_at(const struct mcr_qp *qp, int epfd, struct epoll_event *ev, int max,
                    int timeout, const sigset_t *mask)
{
  struct wait w;
  sigset_t copy;
  int rc;

  mask = unblock_ours(mask, &copy);
  wait_begin(&w, qp, timeout < 0 ? -1 : (int64_t)timeout * 1000000);
  if (ev && max > 0) { /* the wait overwrites it before the program reads it */
    w.q->out_lo = (uintptr_t)ev;
    w.q->out_hi = (uintptr_t)(ev + max);
  }
  for (;;) {
    wait_before(&w);
    rc = real.epoll_pwait(epfd, ev, max, timeout, mask);
    if (!wait_kicked(&w, rc))
      break;
    int64_t left = left_ns(&w);
    if (left == 0) {
      rc = 0;
      break;
    }
    timeout = left < 0 ? -1 : (int)((left + 999999) / 1000000);
  }
  wait_end(&w);
  return rc;
}

/* A wait that is not a quiescent point, in the window of the startup: in the
 * new version of an update it must not take the old process's events from a
 * shared epoll instance (startup.c, "Shadow epoll instances"). -1: no shadow
 * could be made; the wait then reports no event at once. */
__attribute__((noinline, cold)) static int startup_epfd(int epfd)
{
  int saved = errno, fd = mcr_startup_wait_epfd(epfd);
  errno = saved;
  return fd;
}

int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_EPOLL_WAIT, REAL(epoll_wait)(epfd, ev, max, timeout));
  if (!(qp = at_point(MCR_BLOCK_EPOLL_WAIT))) {
    if (LIKELY_NOT(mcr_startup_on) && (epfd = startup_epfd(epfd)) < 0)
      return 0;
    return REAL(epoll_wait)(epfd, ev, max, timeout);
  }
  (void)REAL(epoll_pwait);
  return epoll_at(qp, epfd, ev, max, timeout, NULL);
}

int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_EPOLL_PWAIT, REAL(epoll_pwait)(epfd, ev, max, timeout, mask));
  if (!(qp = at_point(MCR_BLOCK_EPOLL_PWAIT))) {
    if (LIKELY_NOT(mcr_startup_on) && (epfd = startup_epfd(epfd)) < 0)
      return 0;
    return REAL(epoll_pwait)(epfd, ev, max, timeout, mask);
  }
  return epoll_at(qp, epfd, ev, max, timeout, mask);
}

static int ppoll_at(const struct mcr_qp *qp, struct pollfd *fds, nfds_t n,
                    const struct timespec *ts, const sigset_t *mask)
{
  struct timespec left = ts ? *ts : (struct timespec){0, 0};
  struct wait w;
  sigset_t copy;
  int rc;

  (void)REAL(ppoll);
  mask = unblock_ours(mask, &copy);
  wait_begin(&w, qp, ts_ns(ts));
  for (;;) {
    wait_before(&w);
    rc = real.ppoll(fds, n, ts ? &left : NULL, mask);
    if (!wait_kicked(&w, rc))
      break;
    int64_t l = left_ns(&w);
    if (l == 0) {
      rc = 0;
      break;
    }
    if (l > 0)
      left = ns_ts(l);
  }
  wait_end(&w);
  return rc;
}

static int poll_at(const struct mcr_qp *qp, struct pollfd *fds, nfds_t n, int timeout)
{
  struct timespec ts = ns_ts((int64_t)timeout * 1000000);
  return ppoll_at(qp, fds, n, timeout < 0 ? NULL : &ts, NULL);
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_POLL, REAL(poll)(fds, n, timeout));
  if (!(qp = at_point(MCR_BLOCK_POLL)))
    return REAL(poll)(fds, n, timeout);
  return poll_at(qp, fds, n, timeout);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_POLL, REAL(poll_chk)(fds, n, timeout, fdslen));
  if (!(qp = at_point(MCR_BLOCK_POLL)) || n > fdslen / sizeof(*fds))
    return REAL(poll_chk)(fds, n, timeout, fdslen);
  return poll_at(qp, fds, n, timeout);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_PPOLL, REAL(ppoll)(fds, n, ts, mask));
  if (!(qp = at_point(MCR_BLOCK_PPOLL)))
    return REAL(ppoll)(fds, n, ts, mask);
  return ppoll_at(qp, fds, n, ts, mask);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
                size_t fdslen)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_PPOLL, REAL(ppoll_chk)(fds, n, ts, mask, fdslen));
  if (!(qp = at_point(MCR_BLOCK_PPOLL)) || n > fdslen / sizeof(*fds))
    return REAL(ppoll_chk)(fds, n, ts, mask, fdslen);
  return ppoll_at(qp, fds, n, ts, mask);
}

/* pselect and select at a quiescent point. The sets are results too: the
 * caller's are kept to call again. tv (select): set to the time left, as Linux's
 * select does. */
static int pselect_at(const struct mcr_qp *qp, int nfds, fd_set *r, fd_set *wr, fd_set *ex,
                      const struct timespec *ts, const sigset_t *mask, struct timeval *tv)
{
  fd_set *sets[3] = {r, wr, ex}, saved[3];
  struct timespec left = ts ? *ts : (struct timespec){0, 0};
  struct wait w;
  sigset_t copy;
  int rc;

  (void)REAL(pselect);
  for (int i = 0; i < 3; i++)
    if (sets[i])
      saved[i] = *sets[i];
  mask = unblock_ours(mask, &copy);
  wait_begin(&w, qp, ts_ns(ts));
  for (;;) {
    wait_before(&w);
    rc = real.pselect(nfds, r, wr, ex, ts ? &left : NULL, mask);
    if (!wait_kicked(&w, rc))
      break;
    for (int i = 0; i < 3; i++)
      if (sets[i])
        *sets[i] = saved[i];
    int64_t l = left_ns(&w);
    if (l == 0) {
      /* timed out while parked: empty sets, as the real call leaves them */
      for (int i = 0; i < 3; i++)
        if (sets[i])
          FD_ZERO(sets[i]);
      rc = 0;
      break;
    }
    if (l > 0)
      left = ns_ts(l);
  }
  if (tv && ts) {
    struct timespec end = ns_ts(left_ns(&w));
    tv->tv_sec = end.tv_sec;
    tv->tv_usec = end.tv_nsec / 1000;
  }
  wait_end(&w);
  return rc;
}

int select(int nfds, fd_set *r, fd_set *wr, fd_set *ex, struct timeval *tv)
{
  const struct mcr_qp *qp;
  struct timespec ts;

  PROFILED(MCR_BLOCK_SELECT, REAL(select)(nfds, r, wr, ex, tv));
  if (!(qp = at_point(MCR_BLOCK_SELECT)))
    return REAL(select)(nfds, r, wr, ex, tv);
  if (tv) {
    ts.tv_sec = tv->tv_sec;
    ts.tv_nsec = tv->tv_usec * 1000;
  }
  return pselect_at(qp, nfds, r, wr, ex, tv ? &ts : NULL, NULL, tv);
}

int pselect(int nfds, fd_set *r, fd_set *wr, fd_set *ex, const struct timespec *ts,
            const sigset_t *mask)
{
  const struct mcr_qp *qp;

  PROFILED(MCR_BLOCK_PSELECT, REAL(pselect)(nfds, r, wr, ex, ts, mask));
  if (!(qp = at_point(MCR_BLOCK_PSELECT)))
    return REAL(pselect)(nfds, r, wr, ex, ts, mask);
  return pselect_at(qp, nfds, r, wr, ex, ts, mask, NULL);
}

/* accept, read and recv* have no timeout of their own: call again until done. */
#define NO_TIMEOUT_WAIT(qp, call, result)                                                 \
  do {                                                                                    \
    struct wait w_;                                                                       \
    wait_begin(&w_, qp, -1);                                                            \
    do {                                                                                  \
      wait_before(&w_);                                                                   \
      result = call;                                                                      \
    } while (wait_kicked(&w_, (long)result));                                             \
    wait_end(&w_);                                                                        \
  } while (0)

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
  const struct mcr_qp *qp;
  int rc;

  PROFILED(MCR_BLOCK_ACCEPT, REAL(accept)(fd, addr, len));
  if (!(qp = at_point(MCR_BLOCK_ACCEPT)))
    return REAL(accept)(fd, addr, len);
  NO_TIMEOUT_WAIT(qp, real.accept(fd, addr, len), rc);
  return rc;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
  const struct mcr_qp *qp;
  int rc;

  PROFILED(MCR_BLOCK_ACCEPT4, REAL(accept4)(fd, addr, len, flags));
  if (!(qp = at_point(MCR_BLOCK_ACCEPT4)))
    return REAL(accept4)(fd, addr, len, flags);
  NO_TIMEOUT_WAIT(qp, real.accept4(fd, addr, len, flags), rc);
  return rc;
}

ssize_t read(int fd, void *buf, size_t n)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_READ, REAL(read)(fd, buf, n));
  if (!(qp = at_point(MCR_BLOCK_READ)))
    return REAL(read)(fd, buf, n);
  NO_TIMEOUT_WAIT(qp, real.read(fd, buf, n), rc);
  return rc;
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_READ, REAL(read_chk)(fd, buf, n, buflen));
  if (!(qp = at_point(MCR_BLOCK_READ)))
    return REAL(read_chk)(fd, buf, n, buflen);
  NO_TIMEOUT_WAIT(qp, real.read_chk(fd, buf, n, buflen), rc);
  return rc;
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_RECV, REAL(recv)(fd, buf, n, flags));
  if (!(qp = at_point(MCR_BLOCK_RECV)))
    return REAL(recv)(fd, buf, n, flags);
  NO_TIMEOUT_WAIT(qp, real.recv(fd, buf, n, flags), rc);
  return rc;
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_RECV, REAL(recv_chk)(fd, buf, n, buflen, flags));
  if (!(qp = at_point(MCR_BLOCK_RECV)))
    return REAL(recv_chk)(fd, buf, n, buflen, flags);
  NO_TIMEOUT_WAIT(qp, real.recv_chk(fd, buf, n, buflen, flags), rc);
  return rc;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_RECVFROM, REAL(recvfrom)(fd, buf, n, flags, addr, len));
  if (!(qp = at_point(MCR_BLOCK_RECVFROM)))
    return REAL(recvfrom)(fd, buf, n, flags, addr, len);
  NO_TIMEOUT_WAIT(qp, real.recvfrom(fd, buf, n, flags, addr, len), rc);
  return rc;
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                       struct sockaddr *addr, socklen_t *len);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                       struct sockaddr *addr, socklen_t *len)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_RECVFROM, REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, len));
  if (!(qp = at_point(MCR_BLOCK_RECVFROM)))
    return REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, len);
  NO_TIMEOUT_WAIT(qp, real.recvfrom_chk(fd, buf, n, buflen, flags, addr, len), rc);
  return rc;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
  const struct mcr_qp *qp;
  ssize_t rc;

  PROFILED(MCR_BLOCK_RECVMSG, REAL(recvmsg)(fd, msg, flags));
  if (!(qp = at_point(MCR_BLOCK_RECVMSG)))
    return REAL(recvmsg)(fd, msg, flags);
  NO_TIMEOUT_WAIT(qp, real.recvmsg(fd, msg, flags), rc);
  return rc;
}

/* ---- signal waits ---- */

/* sigsuspend and pause return -1/EINTR whenever a handler ran; after our signal
 * the thread parks, then returns that as any wake-up (the program loops). */
int sigsuspend(const sigset_t *mask)
{
  const struct mcr_qp *qp;
  struct wait w;
  sigset_t copy;
  int rc;

  PROFILED(MCR_BLOCK_SIGSUSPEND, REAL(sigsuspend)(mask));
  if (!(qp = at_point(MCR_BLOCK_SIGSUSPEND)))
    return REAL(sigsuspend)(mask);
  mask = unblock_ours(mask, &copy);
  wait_begin(&w, qp, -1);
  wait_before(&w);
  rc = real.sigsuspend(mask);
  if (wait_kicked(&w, rc))
    wait_before(&w);
  wait_end(&w);
  return rc;
}

int pause(void)
{
  const struct mcr_qp *qp;
  struct wait w;
  int rc;

  PROFILED(MCR_BLOCK_PAUSE, REAL(pause)());
  if (!(qp = at_point(MCR_BLOCK_PAUSE)))
    return REAL(pause)();
  wait_begin(&w, qp, -1);
  wait_before(&w);
  rc = real.pause();
  if (wait_kicked(&w, rc))
    wait_before(&w);
  wait_end(&w);
  return rc;
}

/* ---- waits that count as arrived ---- */

/* The new version of an update parks before such a wait rather than inside it,
 * with its registers on its stack (update.h), holding no lock. */
static void park_first(const struct mcr_qp *qp, pthread_mutex_t *m)
{
  int saved = errno;
  if (m)
    pthread_mutex_unlock(m);
  mcr_quiesce_offline();
  mcr_quiesce_park(mcr_qself, qp);
  mcr_quiesce_online();
  if (m)
    pthread_mutex_lock(m);
  errno = saved;
}

#define SLEEP_WAIT(fn, call, result)                                                      \
  do {                                                                                    \
    const struct mcr_qp *qp_ = at_point(fn);                                              \
    struct mcr_qthread *q_;                                                               \
    if (!qp_)                                                                             \
      return call;                                                                        \
    if (LIKELY_NOT(mcr_update_parking))                                                   \
      park_first(qp_, NULL);                                                              \
    q_ = sleep_begin(qp_);                                                                \
    result = call;                                                                        \
    if (sleep_end(q_))                                                                    \
      sleep_park(q_, qp_);                                                                \
    sleep_online();                                                                       \
  } while (0)

int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
  const struct mcr_qp *qp;
  struct mcr_qthread *q;
  int rc;

  PROFILED(MCR_BLOCK_COND_WAIT, REAL(cond_wait)(c, m));
  if (!(qp = at_point(MCR_BLOCK_COND_WAIT)))
    return REAL(cond_wait)(c, m);
  if (LIKELY_NOT(mcr_update_parking))
    park_first(qp, m);
  q = sleep_begin(qp);
  rc = real.cond_wait(c, m);
  if (sleep_end(q)) {
    /* it returned holding m: never park holding a lock another thread needs */
    pthread_mutex_unlock(m);
    sleep_park(q, qp);
    pthread_mutex_lock(m);
  }
  sleep_online();
  return rc;
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *ts)
{
  const struct mcr_qp *qp;
  struct mcr_qthread *q;
  int rc;

  PROFILED(MCR_BLOCK_COND_TIMEDWAIT, REAL(cond_timedwait)(c, m, ts));
  if (!(qp = at_point(MCR_BLOCK_COND_TIMEDWAIT)))
    return REAL(cond_timedwait)(c, m, ts);
  if (LIKELY_NOT(mcr_update_parking))
    park_first(qp, m);
  q = sleep_begin(qp);
  rc = real.cond_timedwait(c, m, ts);
  if (sleep_end(q)) {
    pthread_mutex_unlock(m);
    sleep_park(q, qp);
    pthread_mutex_lock(m);
  }
  sleep_online();
  return rc;
}

int sem_wait(sem_t *s)
{
  int rc;
  PROFILED(MCR_BLOCK_SEM_WAIT, REAL(sem_wait)(s));
  SLEEP_WAIT(MCR_BLOCK_SEM_WAIT, REAL(sem_wait)(s), rc);
  return rc;
}

int sem_timedwait(sem_t *s, const struct timespec *ts)
{
  int rc;
  PROFILED(MCR_BLOCK_SEM_TIMEDWAIT, REAL(sem_timedwait)(s, ts));
  SLEEP_WAIT(MCR_BLOCK_SEM_TIMEDWAIT, REAL(sem_timedwait)(s, ts), rc);
  return rc;
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
  int rc;
  PROFILED(MCR_BLOCK_NANOSLEEP, REAL(nanosleep)(req, rem));
  SLEEP_WAIT(MCR_BLOCK_NANOSLEEP, REAL(nanosleep)(req, rem), rc);
  return rc;
}

int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
{
  int rc;
  PROFILED(MCR_BLOCK_CLOCK_NANOSLEEP, REAL(clock_nanosleep)(clk, flags, req, rem));
  SLEEP_WAIT(MCR_BLOCK_CLOCK_NANOSLEEP, REAL(clock_nanosleep)(clk, flags, req, rem), rc);
  return rc;
}

int usleep(useconds_t us)
{
  int rc;
  PROFILED(MCR_BLOCK_USLEEP, REAL(usleep)(us));
  SLEEP_WAIT(MCR_BLOCK_USLEEP, REAL(usleep)(us), rc);
  return rc;
}

unsigned sleep(unsigned s)
{
  unsigned rc;
  PROFILED(MCR_BLOCK_SLEEP, REAL(sleep)(s));
  SLEEP_WAIT(MCR_BLOCK_SLEEP, REAL(sleep)(s), rc);
  return rc;
}

int sigwait(const sigset_t *set, int *sig)
{
  int rc;
  PROFILED(MCR_BLOCK_SIGWAIT, REAL(sigwait)(set, sig));
  SLEEP_WAIT(MCR_BLOCK_SIGWAIT, REAL(sigwait)(set, sig), rc);
  return rc;
}

int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
  int rc;
  PROFILED(MCR_BLOCK_SIGWAITINFO, REAL(sigwaitinfo)(set, info));
  SLEEP_WAIT(MCR_BLOCK_SIGWAITINFO, REAL(sigwaitinfo)(set, info), rc);
  return rc;
}

int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *ts)
{
  int rc;
  PROFILED(MCR_BLOCK_SIGTIMEDWAIT, REAL(sigtimedwait)(set, info, ts));
  SLEEP_WAIT(MCR_BLOCK_SIGTIMEDWAIT, REAL(sigtimedwait)(set, info, ts), rc);
  return rc;
}
