/*
 * quiesce.h - parking every thread at a quiescent point (docs/quiescence.md).
 *
 * Each registered thread has a struct mcr_qthread (in its registry slot, see
 * threads.h). It runs program code inside a liburcu (urcu-bp) read-side section;
 * the blocking wrappers (blocking.c) leave the section around a call made at the
 * thread's current quiescent point, and park the thread there while a quiesce is
 * in progress. The coordinator (mcr_quiesce_begin, called by the control thread)
 * raises the quiesce flag, interrupts threads blocked on fds with the runtime's
 * signal, waits for every thread to be parked or blocked in a condition wait or
 * sleep at a quiescent point, then for a grace period (synchronize_rcu) to
 * confirm it, all bounded by a timeout.
 */
#ifndef MCR_QUIESCE_H
#define MCR_QUIESCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mcr/qp.h"

enum mcr_qstate {
  MCR_Q_RUN = 0,   /* running program code (inside its read-side section) */
  MCR_Q_WAIT = 1,  /* blocked at a quiescent point on an fd or signal wait */
  MCR_Q_SLEEP = 2, /* blocked at a quiescent point in a condition wait or sleep */
  MCR_Q_PARKED = 3 /* parked by a quiesce */
};

#define MCR_STACK_OBJS 16 /* registered stack objects a thread keeps track of */

struct mcr_qthread {
  int state;                /* enum mcr_qstate, atomic */
  unsigned kicks;           /* incremented by the runtime's signal handler */
  unsigned kick_sent;       /* kicks + 1 when the signal was last sent (0: never) */
  pid_t tid;
  const struct mcr_qp *at;  /* the quiescent point it is blocked or parked at */
  uint64_t arrived_ns;      /* when it parked (or was first seen blocked), this quiesce */
  uint64_t quiesce_gen;     /* the quiesce arrived_ns belongs to */
  /* New version of an update (update.h): where the parked thread's stack is,
   * from its innermost word (registers saved there) to the outermost frame of
   * the program (threads.c sets it: not the TLS and thread descriptor above),
   * so the transfer can rewrite references on it. */
  uintptr_t park_sp, stack_hi;
  /* and its thread-specific data when it parked (tsd.h), rewritten likewise */
  struct mcr_tsd *tsd;
  /* The output buffer of the wait it is in at its quiescent point (epoll_wait's
   * events array), [out_lo, out_hi), else 0: what it holds is overwritten by
   * the wait before the program reads it, so an update ignores its words
   * (docs/update.md, "Heap objects"). */
  uintptr_t out_lo, out_hi;
  /* Its registered stack objects (abi.h, __mcr_stack_push), outermost first:
   * written by the thread itself, read while it is parked. */
  struct mcr_stack_obj {
    uintptr_t addr;
    uint64_t size;
    uint32_t tag;
  } objs[MCR_STACK_OBJS];
  unsigned nobjs, objs_lost;
};

/* The calling thread's record (NULL for threads the registry does not know). */
extern __thread struct mcr_qthread *mcr_qself;
/* The calling thread's current quiescent point (__mcr_qp_enter). */
extern __thread const struct mcr_qp *mcr_qp_current;
/* Nonzero while a quiesce is in progress (threads park at their next point). */
extern int mcr_quiescing;

/* Thread life cycle, called by threads.c: a registered thread starts running
 * program code (enters its read-side section; parks first if a quiesce is in
 * progress) and ends (leaves it). */
void mcr_quiesce_thread_start(struct mcr_qthread *q);
void mcr_quiesce_thread_end(struct mcr_qthread *q);

/* Parks the calling thread while a quiesce is in progress. Called by the
 * wrappers outside the read-side section. */
void mcr_quiesce_park(struct mcr_qthread *q, const struct mcr_qp *at);

/* Leaves / re-enters the read-side section around a blocking call at a
 * quiescent point. */
void mcr_quiesce_offline(void);
void mcr_quiesce_online(void);

/* The runtime's interrupt signal (a real-time signal, SIGRTMAX-3 unless
 * MCR_SIGNAL=N says otherwise). */
int mcr_quiesce_signal(void);

/* One thread's outcome in a quiesce. */
struct mcr_qarrival {
  pid_t tid;
  int arrived;              /* parked or blocked at a quiescent point */
  int state;                /* enum mcr_qstate when the quiesce ended */
  uint64_t arrival_us;      /* since the quiesce started (arrived threads) */
  const struct mcr_qp *at;  /* where it arrived (NULL if it did not) */
  char where[512];          /* a thread that did not arrive: what it is doing */
};

struct mcr_qresult {
  int ok;                   /* 1: every thread arrived */
  uint64_t quiesce_us;      /* time to quiescence (or until the timeout) */
  uint64_t grace_us;        /* of which the confirming grace period */
  size_t nthreads;
  struct mcr_qarrival *threads; /* nthreads entries (runtime-private memory: a quiesce
                                 * for an update allocates nothing in the program's heap);
                                 * free with mcr_qresult_free */
  size_t threads_bytes;
  char error[256];          /* set when the quiesce could not start */
};

/* Quiesces the process: returns 0 with every thread parked (res->ok = 1) and
 * the process held until mcr_quiesce_end(); or -1 with everything resumed and
 * res describing who did not arrive (res->ok = 0) or why it could not start
 * (res->error: no quiescent points compiled in, another quiesce running).
 * Called from a runtime-owned thread. */
int mcr_quiesce_begin(unsigned timeout_ms, struct mcr_qresult *res);
void mcr_quiesce_end(void);
void mcr_qresult_free(struct mcr_qresult *res);

/* "running", "waiting", "blocked", "parked". */
const char *mcr_quiesce_state_name(int state);

/* The quiescent points compiled into the executable (section mcr_qps). */
size_t mcr_quiesce_points(const struct mcr_qp **out, size_t max);

#endif /* MCR_QUIESCE_H */
