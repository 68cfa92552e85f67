/*
 * threads.h - the thread registry: every thread of the program, with where it was
 * created.
 *
 * The runtime defines pthread_create; being in the executable, this definition wins
 * over libc's for every caller, uninstrumented libraries included (ELF
 * interposition). Each new thread starts in a trampoline that registers it (kernel
 * tid, pthread_t, start routine, the return addresses of its creation call stack,
 * creation time) and is unregistered when it ends, however it ends (return,
 * pthread_exit, cancellation: a thread-specific-data destructor). The main thread
 * is registered by a constructor. The runtime's own threads are not registered.
 *
 * Names are not computed at creation: a snapshot holds addresses, and the control
 * thread symbolizes them when a request asks (elfsym.h).
 */
#ifndef MCR_THREADS_H
#define MCR_THREADS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "quiesce.h"

#define MCR_THREAD_FRAMES 24 /* return addresses kept per creation stack */

struct mcr_thread_info {
  pid_t tid;
  int is_main;
  uintptr_t pthread;      /* pthread_t as an integer */
  uintptr_t start;        /* start routine (0 for the main thread) */
  uint64_t created_us;    /* CLOCK_REALTIME, microseconds */
  unsigned nframes;
  uintptr_t frames[MCR_THREAD_FRAMES]; /* innermost first: the caller of pthread_create */
  int startup;                /* created before the process's startup ended (startup.h) */
  int qstate;                 /* enum mcr_qstate, when the snapshot was taken */
  const struct mcr_qp *qp_at; /* where it is blocked or parked (MCR_Q_WAIT and on) */
};

/* Copies up to max registered threads into out; returns how many are
 * registered (may exceed max). Takes the registry lock briefly. */
size_t mcr_threads_snapshot(struct mcr_thread_info *out, size_t max);

/* Pointers to the quiescence records of the registered threads (up to max);
 * returns how many are registered. The records stay mapped (a slot is reused,
 * never freed): a thread that ends sets its record's tid to 0. */
size_t mcr_threads_qstates(struct mcr_qthread **out, size_t max);

/* The calling thread's registry entry; returns 0, or -1 when the thread is not
 * registered (runtime threads, threads created past the registry's capacity). */
int mcr_threads_self_info(struct mcr_thread_info *out);

/* Threads created while the registry was full (they run, untracked). */
unsigned mcr_threads_untracked(void);

/* Starts a runtime-owned thread: not registered, all signals blocked (the
 * server's signal handlers never run on it). Returns 0 or an errno value. */
int mcr_threads_start_internal(pthread_t *t, void *(*fn)(void *), void *arg);

/* Renders a thread's class: its creation stack as function names, outermost
 * first, joined by " > " ("main" for the main thread). */
/* The registered threads grouped by class, for an update's matching of the
 * old version's thread classes with the new one's: a class is the creation
 * stack (mcr_threads_class) and the start routine, "main > create_worker
 * (worker_libevent)"; "main" for the main thread. Fills up to max classes in
 * order of first appearance, returns how many there are (may exceed max), or
 * 0 when out of memory. Symbolizes: not for a pause. */
struct mcr_thread_class {
  char name[480];
  unsigned n;       /* threads */
  unsigned startup; /* of them created by the startup */
};
size_t mcr_threads_classes(struct mcr_thread_class *out, size_t max);

struct mcr_symbolizer;
void mcr_threads_class(struct mcr_symbolizer *sym, const struct mcr_thread_info *t, char *buf,
                       size_t len);
/* The class of one thread as mcr_threads_classes names it: its creation stack
 * and start routine, "main > create_worker (worker_main)"; "main". */
void mcr_threads_class_full(struct mcr_symbolizer *sym, const struct mcr_thread_info *t,
                            char *buf, size_t len);

#endif /* MCR_THREADS_H */
