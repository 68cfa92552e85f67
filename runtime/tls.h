/*
 * tls.h - the program's thread-local variables (__thread, _Thread_local) in a
 * live update (docs/update.md, "Thread-local variables").
 *
 * The executable's thread-local variables live in its static TLS block, one per
 * thread, at a fixed distance from the thread's pthread_t (glibc: the thread
 * descriptor at the thread pointer; the executable is TLS module 1, whose block
 * is always static). A variable is at block + its symbol's value (STT_TLS: the
 * offset in the PT_TLS segment). So each process finds every thread's block
 * from its registry (threads.h) without the thread's help, and the new version
 * reads an old thread's variables at old block + old offset.
 *
 * Threads are paired as the update pairs their classes (threads.h): the k-th
 * thread of a class in the old process, by creation, with the k-th of that
 * class in the new one ("main" with "main").
 *
 * Only variables of the program are transferred (those in the executable's
 * type tables): the runtime's own (compiled without the pass) are in the same
 * block and stay the new process's.
 */
#ifndef MCR_TLS_H
#define MCR_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "update.h"

struct mcr_arena;

/* One registered thread: its class, its executable TLS block. */
struct mcr_tls_thread {
  pid_t tid;
  uintptr_t block;
  uint64_t created_us;
  const char *cls; /* "main", "main > create_worker (worker_main)" */
};

/* Distance from a thread's pthread_t to its executable TLS block in this
 * process; returns 0, or -1 when the executable has no TLS segment or the
 * loader does not tell (dl_iterate_phdr's dlpi_tls_data). */
int mcr_tls_delta(intptr_t *delta);

/* Whether the executable's type tables describe writable thread-local
 * variables of the program. */
int mcr_tls_program_has_vars(void);

/* The registered threads in order of creation, with their classes and blocks,
 * into up to max entries of out; returns how many there are (may exceed max).
 * Class names are kept from one call to the next (symbolizing costs: call it
 * once before a pause, and the call in the pause symbolizes only threads made
 * since); they point into that cache, valid until the next call. */
size_t mcr_tls_threads(struct mcr_tls_thread *out, size_t max);

/* Old side, quiesced: appends the thread list (count, then class, block per
 * thread in order of creation; count 0 when the program has no thread-local
 * variables). */
void mcr_tls_describe(struct mcr_buf *out);

/* The STT_TLS symbols of an executable (a file, "/proc/PID/exe"). */
struct mcr_tls_syms;
struct mcr_tls_syms *mcr_tls_syms_open(struct mcr_arena *a, const char *path);
/* Offset in the TLS segment and size of variable name (file: the source file
 * of a static, as mcr_image_symbol). Returns 0, -1 when there is none, -2 when
 * several statics match. */
int mcr_tls_sym(const struct mcr_tls_syms *s, const char *name, const char *file, uintptr_t *off,
                size_t *size);

#endif /* MCR_TLS_H */
