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
#define MCR_ENV_UPDATE_RENAMES "MCR_UPDATE_RENAMES" /* rename.h: "OLD=NEW OLD=NEW" */
#define MCR_ENV_UPDATE_TIMEOUT "MCR_UPDATE_TIMEOUT" /* the old side's bound per phase, ms */
/* the old process's threads' stacks but the main thread's, "LO-HI LO-HI" in hex:
 * pointers into them are refused as pointers into its main stack are (image.h) */
#define MCR_ENV_UPDATE_STACKS "MCR_UPDATE_STACKS"

enum mcr_umsg {
  MCR_U_READY = 1,   /* new -> old: text lines */
  MCR_U_FAIL = 2,    /* either way: text, one reason per line */
  MCR_U_STATE = 3,   /* old -> new: binary (update_old.c writes, transfer.c reads) */
  MCR_U_DONE = 4,    /* new -> old: text lines */
  MCR_U_COMMIT = 5,  /* old -> new: empty */
  MCR_U_RESUMED = 6, /* new -> old: text lines */
  MCR_U_PRECOPY = 7, /* old -> new: heap ranges to copy before the pause */
  MCR_U_PRECOPIED = 8, /* new -> old: text lines */
  /* process trees (docs/coordinator.md) */
  MCR_U_LOG = 9,     /* old child -> new child: its startup log (mcr_startup_serialize) */
  MCR_U_GO = 10,     /* new parent -> new child: let your old partner quiesce now */
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

/* ---- conflicts (docs/update.md, "Conflict reports"; proto/report.proto) ----
 *
 * The new version says why it refuses with text lines in a FAIL (or READY, DONE)
 * payload:
 *
 *   conflict KIND\tMESSAGE\tOBJECT\tOLD_TYPE\tNEW_TYPE\tOLD_LOCATION\tNEW_LOCATION\tSTACK\tFIX
 *
 * fields separated by one TAB each, in this order; trailing fields may be left out
 * or empty. KIND is one short word (lowercase letters, digits, '-', '_', at most
 * 15): startup, type, narrowing, enum, pinned, global, heap, image, fd, stack,
 * crash, timeout, other. Locations are "file:line" or "file:line:col"; STACK is
 * function names, outermost first, joined by " > ". A field must not hold a TAB or
 * a newline (mcr_conflict_field_put replaces them with spaces). A line without a
 * TAB, or whose first field is not such a word, is kind "other" with the whole
 * text as its message (TABs made spaces).
 */
enum mcr_conflict_field {
  MCR_CF_KIND,
  MCR_CF_MESSAGE,
  MCR_CF_OBJECT,
  MCR_CF_OLD_TYPE,
  MCR_CF_NEW_TYPE,
  MCR_CF_OLD_LOCATION,
  MCR_CF_NEW_LOCATION,
  MCR_CF_STACK,
  MCR_CF_FIX,
  MCR_CF_COUNT
};

/* Appends s to b as a conflict field: TABs, newlines and other control
 * characters become spaces. */
void mcr_conflict_field_put(struct mcr_buf *b, const char *s);

/* Appends the fields f[MCR_CF_COUNT] (NULL: empty) TAB-separated, each through
 * mcr_conflict_field_put: a conflict line without its "conflict " prefix. */
void mcr_conflict_fields(struct mcr_buf *b, const char *const f[MCR_CF_COUNT]);

/* ---- old side (update_old.c) ---- */

#define MCR_UPDATE_MAX_LINES 64
/* Conflicts kept per update, and the room for one conflict's fields (NUL
 * separated). A longer conflict loses the ends ("...") of its longest fields:
 * object, types, locations and stack first, kind, message and fix last. */
#define MCR_UPDATE_MAX_CONFLICTS 48
#define MCR_UPDATE_CONFLICT_LEN 2048
struct mcr_update_phase {
  char name[32];
  uint64_t us;
  char detail[200]; /* transfer.c formats up to 199 bytes */
};
struct mcr_update_conflict {
  uint16_t off[MCR_CF_COUNT]; /* where each field starts in text */
  char text[MCR_UPDATE_CONFLICT_LEN];
};
/* Lives in the old process's .bss (control.c): fixed size, no allocation. */
struct mcr_update_result {
  int committed;
  pid_t new_pid;     /* the process that serves now (committed), else 0 */
  pid_t spawned_pid; /* the new version's process, if one was started */
  uint64_t pause_us, total_us;
  size_t nphases;
  struct mcr_update_phase phases[24];
  size_t nconflicts, nconflicts_lost, nnotes;
  struct mcr_update_conflict conflicts[MCR_UPDATE_MAX_CONFLICTS];
  char notes[MCR_UPDATE_MAX_LINES][256];
  int refused; /* bad input or busy: nothing was done (conflict 0 says why) */
  /* a process tree: each process's own part of the pause (its old partner's
   * quiesce to the end of its transfer, "own US" lines): the longest, how many */
  uint64_t own_max_us;
  unsigned nown;
};

/* Stores the fields (len[f] bytes of field[f], which need no NUL; NULL with
 * length 0 for none) in c, control characters made spaces. */
void mcr_update_conflict_set(struct mcr_update_conflict *c, const char *const *field,
                             const size_t *len);
/* One "conflict " line's text (after that prefix, without the newline). */
void mcr_update_conflict_parse(struct mcr_update_conflict *c, const char *line, size_t n);

/* Field f of conflict c ("" if empty). */
static inline const char *mcr_update_conflict_get(const struct mcr_update_conflict *c,
                                                  enum mcr_conflict_field f)
{
  return c->text + c->off[f];
}

/* Runs an update of this process to the executable at path (called on a
 * runtime thread). renames: the renamed functions (rename.h: "OLD=NEW" pairs
 * separated by spaces), or NULL / "" for none; passed to the new version. On return with res->committed, the caller replies and then
 * calls mcr_update_finish(), which never returns. */
void mcr_update_run(const char *path, unsigned timeout_ms, const char *fault,
                    const char *renames, struct mcr_update_result *res);
__attribute__((noreturn)) void mcr_update_finish(const struct mcr_update_result *res);

/* The old side of one pair of a process tree's update (docs/coordinator.md),
 * on a runtime thread: fd is the connection of peer, the new process that
 * replaces this one. Sends this process's startup log, then goes through the
 * pair's conversation; on the tree's COMMIT this process exits (never
 * returns); else it resumes and returns, having told the peer why (FAIL). */
void mcr_update_partner(int fd, pid_t peer, unsigned timeout_ms);

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



/* Process trees (docs/coordinator.md), called by the startup replay's fork():
 * nonzero if the old process's child old_child (the old result of this fork)
 * can be paired with the child this fork makes: it is alive and a child of the
 * process this one replaces. */
int mcr_update_tree_pairable(pid_t old_child);
/* Before the fork of such a pair: the link between the new parent and child.
 * Returns 0, or -1 (errno). */
int mcr_update_tree_prefork(void);
/* After it, in both processes (result: fork's). The child connects to
 * old_child, switches its replay to old_child's startup log (the fork is the
 * call (stack_id, ordinal) of it) and starts its own update agent; the parent
 * adds the child to those its agent waits for. */
void mcr_update_tree_forked(pid_t result, pid_t old_child, uint64_t stack_id, uint32_t ordinal);

/* Tests: crashes or hangs the new version at the named phase if
 * MCR_UPDATE_FAULT asked for it (update_new.c). */
void mcr_update_fault(const char *phase);
#endif /* MCR_UPDATE_H */
