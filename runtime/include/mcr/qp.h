/*
 * mcr/qp.h - the quiescence contract between the pass, the runtime and the
 * profiler (docs/quiescence.md).
 *
 * Blocking functions. The runtime wraps these C library functions; a thread parks
 * inside the wrapper. The quiescence config names them by their C name, the last
 * element of each stack.
 *
 * Profiling build (mcr-clang --mcr-profile): each translation unit gets one
 * pointer-free blob in section "mcr_calls" listing every call site of the unit
 * (caller, callee, file:line, loop depth). mcr-profile reads it from the
 * executable file to tell loops from straight-line code and to print file:line.
 *
 * Production build (mcr-clang --mcr-quiescence=FILE): for each quiescent point of
 * the config, the deepest program call on its stack is bracketed by
 *     prev = __mcr_qp_enter(&qp); call ...; __mcr_qp_exit(prev);
 * where qp is a struct mcr_qp in section "mcr_qps". The runtime's wrapper of the
 * blocking function parks only when the thread's current quiescent point names
 * that blocking function.
 */
#ifndef MCR_QP_H
#define MCR_QP_H

#include <stdint.h>
#include <string.h>

#define MCR_QPS_SECTION "mcr_qps"
#define MCR_CALLS_SECTION "mcr_calls"

/* Values are part of the ABI (they are stored in struct mcr_qp): append only. */
enum mcr_blockfn {
  MCR_BLOCK_NONE = 0,
  MCR_BLOCK_EPOLL_WAIT,
  MCR_BLOCK_EPOLL_PWAIT,
  MCR_BLOCK_POLL,
  MCR_BLOCK_PPOLL,
  MCR_BLOCK_SELECT,
  MCR_BLOCK_PSELECT,
  MCR_BLOCK_ACCEPT,
  MCR_BLOCK_ACCEPT4,
  MCR_BLOCK_READ,
  MCR_BLOCK_RECV,
  MCR_BLOCK_RECVFROM,
  MCR_BLOCK_RECVMSG,
  MCR_BLOCK_COND_WAIT,
  MCR_BLOCK_COND_TIMEDWAIT,
  MCR_BLOCK_SEM_WAIT,
  MCR_BLOCK_SEM_TIMEDWAIT,
  MCR_BLOCK_NANOSLEEP,
  MCR_BLOCK_CLOCK_NANOSLEEP,
  MCR_BLOCK_USLEEP,
  MCR_BLOCK_SLEEP,
  MCR_BLOCK_SIGSUSPEND,
  MCR_BLOCK_SIGWAIT,
  MCR_BLOCK_SIGWAITINFO,
  MCR_BLOCK_SIGTIMEDWAIT,
  MCR_BLOCK_PAUSE,
  MCR_BLOCK_COUNT
};

static const char *const mcr_blockfn_names[MCR_BLOCK_COUNT] = {
    "none",         "epoll_wait",  "epoll_pwait",       "poll",
    "ppoll",        "select",      "pselect",           "accept",
    "accept4",      "read",        "recv",              "recvfrom",
    "recvmsg",      "pthread_cond_wait", "pthread_cond_timedwait", "sem_wait",
    "sem_timedwait", "nanosleep",  "clock_nanosleep",   "usleep",
    "sleep",        "sigsuspend",  "sigwait",           "sigwaitinfo",
    "sigtimedwait", "pause",
};

/* MCR_BLOCK_NONE if name is not a wrapped blocking function. */
static inline enum mcr_blockfn mcr_blockfn_lookup(const char *name)
{
  for (int i = 1; i < MCR_BLOCK_COUNT; i++)
    if (!strcmp(mcr_blockfn_names[i], name))
      return (enum mcr_blockfn)i;
  return MCR_BLOCK_NONE;
}

/* Fd waits are interrupted by the runtime's signal when a quiesce starts; the
 * others (condition waits, semaphores, sleeps, sigwait) hold nothing while
 * blocked and count as arrived where they are. */
static inline int mcr_blockfn_interruptible(enum mcr_blockfn f)
{
  switch (f) {
  case MCR_BLOCK_EPOLL_WAIT: case MCR_BLOCK_EPOLL_PWAIT: case MCR_BLOCK_POLL:
  case MCR_BLOCK_PPOLL: case MCR_BLOCK_SELECT: case MCR_BLOCK_PSELECT:
  case MCR_BLOCK_ACCEPT: case MCR_BLOCK_ACCEPT4: case MCR_BLOCK_READ:
  case MCR_BLOCK_RECV: case MCR_BLOCK_RECVFROM: case MCR_BLOCK_RECVMSG:
  case MCR_BLOCK_SIGSUSPEND: case MCR_BLOCK_PAUSE:
    return 1;
  default:
    return 0;
  }
}

/* FNV-1a, 32 bits: the id of a quiescent point is the hash of its config stack
 * string ("f0 > f1 > ... > blocking_fn"), the same in every build. */
static inline uint32_t mcr_qp_hash(const char *s)
{
  uint32_t h = 2166136261u;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h;
}

#define MCR_QP_MAGIC 0x5051434dU /* "MCQP" */
#define MCR_QP_VERSION 1

/* One instrumented call site of a quiescent point (section "mcr_qps", writable,
 * one per site; several sites may share an id). The integer fields are readable
 * from the file; the pointers only in the running process. */
struct mcr_qp {
  uint32_t magic;        /* MCR_QP_MAGIC */
  uint16_t version;      /* MCR_QP_VERSION */
  uint16_t blockfn;      /* enum mcr_blockfn: the stack's last element */
  uint32_t id;           /* mcr_qp_hash(stack) */
  uint32_t line;         /* line of the instrumented call */
  const char *thread_class; /* the config's thread class */
  const char *stack;        /* the config's stack */
  const char *caller;       /* function holding the instrumented call */
  const char *callee;       /* what it calls (the next stack element) */
  const char *file;         /* source file of the call */
};

/* Entry points the production pass calls. __mcr_qp_enter sets the calling
 * thread's current quiescent point and returns the previous one, which
 * __mcr_qp_exit restores. Two thread-local stores. */
#ifdef __cplusplus
extern "C" {
#endif
const struct mcr_qp *__mcr_qp_enter(const struct mcr_qp *qp);
void __mcr_qp_exit(const struct mcr_qp *prev);
#ifdef __cplusplus
}
#endif

/* "mcr_calls" blob (profiling builds): header, then ncalls records, then a string
 * table; offsets are from the blob's start, strings NUL-terminated. Padded to 8
 * bytes; blobs of all units are concatenated by the linker. */
#define MCR_CALLS_MAGIC 0x4c43434dU /* "MCCL" */
#define MCR_CALLS_VERSION 1

struct mcr_calls_header {
  uint32_t magic;
  uint32_t version;
  uint32_t size;   /* whole blob, header and padding included */
  uint32_t ncalls;
  uint32_t calls_off;
  uint32_t strings_off;
};

#define MCR_CALL_INDIRECT 1u /* callee unknown (a function pointer): callee is "*" */

struct mcr_call_rec {
  uint32_t caller; /* str: function name */
  uint32_t callee; /* str: callee name, "*" if indirect */
  uint32_t file;   /* str: source file ("" if no debug location) */
  uint32_t line;
  uint32_t loop_depth; /* 0: not in a loop of its function */
  uint32_t flags;      /* MCR_CALL_* */
};

#endif /* MCR_QP_H */
