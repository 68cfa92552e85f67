/*
 * update.h - live update (docs/update.md): the old process spawns the new
 * version of its program and the two talk over a channel (a stream socket pair)
 * until the new one commits or the old one rolls back.
 *
 *   old                                   new
 *   spawn (fds, argv, env, cwd) ------->  replay startup, park every thread
 *                               <-------  READY (or FAIL: conflicts)
 *   PRECOPY (heap ranges; writes ------>  copy them, rewrite image pointers
 *   to them tracked from now)   <-------  PRECOPIED
 *   quiesce
 *   STATE (heap, written pages, ------->  copy what changed, globals, pointers,
 *   sites, fds)                           stacks, fds
 *                               <-------  DONE (or FAIL)
 *   COMMIT                      ------->  resume
 *                               <-------  RESUMED
 *   reply to mcr-ctl, _exit(0)
 *
 * Anything else (a FAIL, the new process dying, a timeout) rolls back: the old
 * process kills the new one and resumes. The old process never writes its own
 * program state during an update.
 */
#ifndef MCR_UPDATE_H
#define MCR_UPDATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Environment of the new version (removed before its main runs). */
#define MCR_ENV_UPDATE_FD "MCR_UPDATE_FD"       /* the channel's fd number */
#define MCR_ENV_UPDATE_LOG "MCR_UPDATE_LOG"     /* memfd with the old startup log */
#define MCR_ENV_UPDATE_OLD "MCR_UPDATE_OLD_PID" /* the old process */
#define MCR_ENV_UPDATE_FAULT "MCR_UPDATE_FAULT" /* tests: "PHASE:crash" / "PHASE:hang" */
#define MCR_ENV_UPDATE_HEAP "MCR_UPDATE_HEAP"   /* heap.h: where the old heap is */

/* Runtime-owned fds of either process live at or above this number, so they
 * never take a number the program uses. */
#define MCR_UPDATE_FD_BASE 900

enum mcr_umsg {
  MCR_U_READY = 1,   /* new -> old: text lines */
  MCR_U_FAIL = 2,    /* either way: text, one reason per line */
  MCR_U_STATE = 3,   /* old -> new: binary (update_old.c writes, transfer.c reads) */
  MCR_U_DONE = 4,    /* new -> old: text lines */
  MCR_U_COMMIT = 5,  /* old -> new: empty */
  MCR_U_RESUMED = 6, /* new -> old: text lines */
  MCR_U_PRECOPY = 7, /* old -> new: heap ranges to copy before the pause */
  MCR_U_PRECOPIED = 8, /* new -> old: text lines */
};

/* A growable byte buffer in runtime-private memory (mmap), for messages. */
struct mcr_buf {
  unsigned char *p;
  size_t len, cap;
  size_t pos; /* read cursor */
  int bad;    /* a read ran past the end, or an allocation failed */
};
void mcr_buf_free(struct mcr_buf *b);
void mcr_buf_put(struct mcr_buf *b, const void *p, size_t n);
void mcr_buf_u32(struct mcr_buf *b, uint32_t v);
void mcr_buf_u64(struct mcr_buf *b, uint64_t v);
void mcr_buf_str(struct mcr_buf *b, const char *s);
void mcr_buf_printf(struct mcr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int mcr_buf_get(struct mcr_buf *b, void *p, size_t n);
uint32_t mcr_buf_get_u32(struct mcr_buf *b);
uint64_t mcr_buf_get_u64(struct mcr_buf *b);
/* Returns a pointer into the buffer (NUL-terminated there) or "" if bad. */
const char *mcr_buf_get_str(struct mcr_buf *b);

/* One message: type and payload. Returns 0, or -1 with errno (EPIPE/ECONNRESET
 * when the peer went away, ETIMEDOUT, EPROTO for garbage). */
int mcr_chan_send(int fd, int type, const struct mcr_buf *payload);
/* Waits up to timeout_ms (also returns -1/ESRCH early if pidfd >= 0 becomes
 * readable: that process died). On success *type is set and *payload holds the
 * payload (the caller frees it). */
int mcr_chan_recv(int fd, int pidfd, unsigned timeout_ms, int *type, struct mcr_buf *payload);

/* Monotonic clock in ns (system-wide, comparable between the two processes). */
uint64_t mcr_update_now_ns(void);

/* ---- old side (update_old.c) ---- */

#define MCR_UPDATE_MAX_LINES 64
struct mcr_update_phase {
  char name[32];
  uint64_t us;
  char detail[96];
};
struct mcr_update_result {
  int committed;
  pid_t new_pid;
  uint64_t pause_us, total_us;
  size_t nphases;
  struct mcr_update_phase phases[24];
  size_t nreasons, nnotes;
  char reasons[MCR_UPDATE_MAX_LINES][256];
  char notes[MCR_UPDATE_MAX_LINES][256];
  int refused; /* bad input or busy: nothing was done (reasons[0] says why) */
};

/* Runs an update of this process to the executable at path (called on a
 * runtime thread). On return with res->committed, the caller replies and then
 * calls mcr_update_finish(), which never returns. */
void mcr_update_run(const char *path, unsigned timeout_ms, const char *fault,
                    struct mcr_update_result *res);
__attribute__((noreturn)) void mcr_update_finish(const struct mcr_update_result *res);

/* Nonzero while this process is the old side of an update: parked threads give
 * their heap caches back (heap.h) so nothing is lost in the transfer. */
extern int mcr_update_old_active;
/* Nonzero from the heap's export until the new version has copied it: no
 * runtime thread of the old process may allocate (the control thread waits). */
extern int mcr_update_heap_frozen;

/* ---- new side (update_new.c) ---- */

/* Nonzero in a new version until it commits: every thread parks at its first
 * quiescent point, before condition waits too, with its registers on its stack
 * (quiesce.c), so the transfer can rewrite references on parked stacks. */
extern int mcr_update_parking;



/* Tests: crashes or hangs the new version at the named phase if
 * MCR_UPDATE_FAULT asked for it (update_new.c). */
void mcr_update_fault(const char *phase);
#endif /* MCR_UPDATE_H */
