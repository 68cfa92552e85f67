/*
 * startup.h - the startup log, its replay by call-stack ID, and the startup
 * allocation records (docs/update.md, "Startup log and replay").
 *
 * From runtime init until mcr_startup_end(), every call that creates or shapes a
 * kernel object (sockets, files, epoll, eventfd, timers, dup, fork, setsid,
 * credentials, chdir, prctl; file mmaps, logged only) is recorded with its
 * call-stack ID (stackid.h), an ordinal among calls with the same (ID, kind), a
 * hash and a readable detail of the arguments that must match, and its result.
 * Every heap allocation of a program thread is recorded too ({address, usable
 * size, ID, ordinal}), and removed when it is freed within the window.
 *
 * The new version of a server, started by the old with the old's fds inherited,
 * replays the old log (mcr_startup_replay_begin): a call matched by (ID, kind,
 * ordinal) with equal arguments returns the old result without running, so the
 * new process ends its startup holding the old's sockets and files; a call
 * whose stack has no old counterpart is paired by its arguments, and a socket
 * created elsewhere takes over the old listening socket bound to the same
 * address; see docs/update.md for the rules and conflicts.
 *
 * Outside the window a wrapper costs a load and a branch. Everything lives in
 * runtime-private memory (mmap). Thread-safe; survives fork (the child keeps the
 * parent's entries).
 */
#ifndef MCR_STARTUP_H
#define MCR_STARTUP_H

#include <stddef.h>
#include <stdint.h>

/* The kinds of recorded calls. Values are part of the serialized format:
 * append only. Variants share a kind (open64, creat, __open_2, openat: OPEN;
 * epoll_create: EPOLL_CREATE; dup2/dup3: DUP2) so a version built with other
 * flags still matches. */
enum mcr_startup_kind {
  MCR_SK_SOCKET = 1,
  MCR_SK_SOCKETPAIR,
  MCR_SK_BIND,
  MCR_SK_LISTEN,
  MCR_SK_SETSOCKOPT,
  MCR_SK_OPEN,
  MCR_SK_CLOSE,
  MCR_SK_PIPE,
  MCR_SK_EPOLL_CREATE,
  MCR_SK_EPOLL_CTL,
  MCR_SK_EVENTFD,
  MCR_SK_SIGNALFD,
  MCR_SK_TIMERFD_CREATE,
  MCR_SK_TIMERFD_SETTIME,
  MCR_SK_DUP,
  MCR_SK_DUP2,
  MCR_SK_FORK,
  MCR_SK_SETSID,
  MCR_SK_CHDIR,
  MCR_SK_FCHDIR,
  MCR_SK_SETID, /* setuid ... setresgid, setgroups, initgroups (the detail names which) */
  MCR_SK_PRCTL,
  MCR_SK_MMAP,
  MCR_SK_MMAP_ANON, /* an anonymous mapping (private or shared): dev[0] is its length */
  MCR_SK_COUNT
};

/* Entry flags. */
#define MCR_SE_FD_RESULT 0x1u /* the result is an fd (fds[0], and fds[1] for pairs) */
#define MCR_SE_OPEN_NOW 0x2u  /* mcr_startup_refresh: each result fd is still the same object */
#define MCR_SE_REPLAYED 0x4u  /* new process: the old result was returned, the call did not run */
#define MCR_SE_CONFLICT 0x8u  /* new process: this call conflicted with the old log */
#define MCR_SE_MOVED 0x10u    /* the object this call made (fds[0], one fd) is at fds[1] now:
                               * a listening socket taken over from the old process, whose
                               * number the transfer gave to another of the old's objects */
#define MCR_SE_LATE 0x20u     /* a fork after the startup window ended, at a spawn function the
                               * startup forked children from (a respawned worker): the parent
                               * logs the child's pid, the child its 0 and then its own startup
                               * up to its first quiescent point (docs/coordinator.md) */
#define MCR_SE_FINISHED 0x40u /* a fork whose child the program reaped with exit status 0: it
                               * finished its work (nginx's cache loader); an update does not
                               * fork it again (docs/coordinator.md) */
#define MCR_SE_KNOWN_FLAGS 0x7fu

#define MCR_SE_DETAIL 160
#define MCR_SE_STACK 256

struct mcr_startup_entry {
  uint64_t stack_id;
  uint32_t kind;     /* enum mcr_startup_kind */
  uint32_t ordinal;  /* among entries with the same (stack_id, kind), from 0 */
  uint64_t args_hash;
  int64_t result;    /* the return value (pid for fork, 0 for pipe/socketpair) */
  int32_t err;       /* errno when the call failed, else 0 */
  uint32_t flags;    /* MCR_SE_* */
  int32_t fds[2];    /* result fds (-1: none) */
  uint64_t dev[2], ino[2]; /* fstat of fds[i] when the call returned */
  uint64_t link_hash[2];   /* hash of /proc/self/fd/N for anonymous inodes (epoll, eventfd,
                            * timerfd, signalfd share one inode), else 0 */
  char detail[MCR_SE_DETAIL]; /* "bind(6, 0.0.0.0:6379)" */
  char stack[MCR_SE_STACK];   /* "main > initServer > listenToPort" */
};

struct mcr_startup_alloc {
  uint64_t addr;
  uint64_t size;     /* usable size; a piece's requested size */
  uint64_t stack_id; /* of the allocation call (malloc, calloc, realloc ...); a piece's
                      * mixes in its allocation site's key */
  uint32_t ordinal;  /* among allocations with the same stack_id, freed ones included */
  uint32_t live;     /* internal: 0 once freed (never in what mcr_startup_allocs returns) */
  uint32_t flags;    /* MCR_SA_* */
  uint32_t site;     /* a piece: its allocation site's tag in the recording process */
  uint64_t block;    /* a piece: the heap object it is carved from (its start) */
  uint64_t hash;     /* of its bytes when the startup ended (mcr_startup_bytes_hash); 0: not
                      * known (the startup had not ended, or the record was retargeted) */
};
#define MCR_SA_PIECE 0x1u /* a piece of a pool block (an allocator wrapper's result inside a
                           * heap object), recorded with its exact size */

/* The hash the startup records keep of an object's bytes (never 0). */
uint64_t mcr_startup_bytes_hash(const void *p, size_t len);

/* The allocator wrappers' hook (types.c, __mcr_tag_sized, only while the
 * window is open): p, of size bytes, was returned by a wrapper at site; when it
 * lies inside a heap object (a pool's piece) and allocations are recorded, it is
 * recorded, its ID mixing the call stack with the site's key. ra is the wrapper
 * call's return address. */
struct mcr_site;
void mcr_startup_piece_hook(const void *p, uint64_t size, const struct mcr_site *site,
                            uintptr_t ra);

/* The executable's writable data as it was when this process's startup ended
 * (a private copy, made then): where the copy is and what it copies. */
struct mcr_startup_snapshot {
  uint64_t copy, len, data; /* the copy's address, its length, the data's address */
};
void mcr_startup_snapshot_of(struct mcr_startup_snapshot *out);

struct mcr_startup_conflict {
  uint32_t kind;
  uint64_t stack_id;
  char old_detail[MCR_SE_DETAIL]; /* "" when the old log has no such call */
  char new_detail[MCR_SE_DETAIL];
  char stack[MCR_SE_STACK];
  char message[640]; /* one line: what, old vs new, where */
};

struct mcr_startup_stats {
  int mode;              /* 0 window closed, 1 recording, 2 replaying */
  unsigned entries;      /* in this process's log */
  unsigned dropped;      /* calls not logged: the log was full */
  unsigned replayed;     /* matched: the old result returned, not run */
  unsigned run;          /* ran for real during a replay (unmatched, stale, exempt) */
  unsigned conflicts;
  unsigned allocs;       /* live allocation records */
  unsigned allocs_dropped;
  unsigned old_entries;  /* in the log being replayed */
  unsigned old_allocs;
  unsigned by_args;      /* paired with an old call at another call stack by their arguments */
  unsigned adopted;      /* own sockets that took over an old listening socket at bind */
  unsigned suppressed;   /* sendmsg on sockets shared with the old process: not sent */
  unsigned notes;
};

/* The recording/replay flag the wrappers and the allocator test (0: closed). */
extern int mcr_startup_on;

/* Ends the window (idempotent, thread-safe): wrappers go straight to the C
 * library from here on. The log and the allocation records stay. With the
 * test-only env MCR_STARTUP_DUMP=FILE, the serialized log is written there. */
void mcr_startup_end(void);

/* The epoll instance a wait on epfd uses: epfd, except in the new version of
 * an update before its startup ends, when epfd is the old process's instance:
 * then a shadow holding only the new startup's registrations of its own fds
 * (the old process's events stay its own), or -1 if none could be made. */
int mcr_startup_wait_epfd(int epfd);

/* In the pause, after the state transfer: makes the epoll registrations the new
 * startup deferred (its own descriptors on instances shared with the old
 * process). 0, or -1 with why. */
int mcr_startup_apply_deferred(char *why, size_t len);

/* This process's log (valid until the next wrapped call in the window). */
size_t mcr_startup_entries(const struct mcr_startup_entry **out);

/* Old process, just before it spawns the new version: marks each fd-result
 * entry MCR_SE_OPEN_NOW if every result fd is still open and the same object
 * (st_dev, st_ino, and /proc link for anonymous inodes), else clears it. */
void mcr_startup_refresh(void);

/* The log and the live allocation records as one flat, pointer-free, versioned
 * buffer in runtime-private memory; free it with mcr_startup_buffer_free.
 * Returns 0 or -1 (errno set). */
int mcr_startup_serialize(void **buf, size_t *len);
void mcr_startup_buffer_free(void *buf, size_t len);

/* A parsed log: entries and allocation records in runtime-private memory. */
struct mcr_startup_log {
  struct mcr_startup_entry *entries;
  size_t nentries;
  struct mcr_startup_alloc *allocs;
  size_t nallocs;
  uint32_t dropped, allocs_dropped;
  struct mcr_startup_snapshot snap; /* all 0 when the log has none */
  void *mem;
  size_t memlen;
};
/* Validates everything (magic, version, sizes, bounds, kinds, strings,
 * checksum); returns 0, or -1 with a message in err naming what is wrong and
 * where. Never reads outside [buf, buf + len). */
int mcr_startup_parse(const void *buf, size_t len, struct mcr_startup_log *out, char *err,
                      size_t errlen);
void mcr_startup_log_free(struct mcr_startup_log *log);

/* New process, early (a constructor before main): replay log (a buffer from
 * mcr_startup_serialize) with the fd numbers inherited from the old process.
 * Returns 0, or -1 with a message (the process then records normally). */
int mcr_startup_replay_begin(const void *log, size_t len, const int *inherited,
                             size_t ninherited, char *err, size_t errlen);

/* In a child that a replayed fork made for a process tree's update
 * (docs/coordinator.md): replay log, the startup log of the old child this one
 * replaces, from here on. The fork is the call (stack_id, ordinal); up to it
 * the old child's log is the parent's, used as far as the parent's replay
 * used it. Returns 0, or -1 with a message. */
int mcr_startup_replay_switch(const void *log, size_t len, uint64_t stack_id, uint32_t ordinal,
                              char *err, size_t errlen);

/* The replayed log's startup forks whose old result was a child pid (copies,
 * at most max; not the late forks of respawned children). */
size_t mcr_startup_old_forks(struct mcr_startup_entry *out, size_t max);

/* fd, now the old process's object at the old number, counts as inherited. */
void mcr_startup_replay_inherit(int fd);

/* After the transfer replaced descriptor fd (the new startup's) with the old
 * process's of the same number: this process's log entries that made fd or
 * acted on it ("bind(FD, ..."), describe an object the process no longer has.
 * They are made unmatchable (no stack, no argument hash), so that the next
 * update's replay runs those calls as new ones instead of pairing them with
 * whatever fd now holds (an adopted listening socket's number, later a
 * connection of the old process's: the next replay bound for real and failed). */
void mcr_startup_forget_fd(int fd);

/* The conflicts found so far in a replay. */
size_t mcr_startup_conflicts(const struct mcr_startup_conflict **out);
/* Differences a replay accepted (a listening socket taken over by its address,
 * its backlog or O_NONBLOCK kept): one message each, as for conflicts. */
size_t mcr_startup_notes(const struct mcr_startup_conflict **out);
void mcr_startup_stats(struct mcr_startup_stats *out);

/* This process's live startup allocation records, in allocation order (valid
 * until the next allocation in the window). */
size_t mcr_startup_allocs(const struct mcr_startup_alloc **out);
/* The replayed (old) log's allocation with this (stack_id, ordinal), or NULL. */
const struct mcr_startup_alloc *mcr_startup_old_alloc(uint64_t stack_id, uint32_t ordinal);
/* The replayed (old) log's allocation records (in its order). */
size_t mcr_startup_old_allocs(const struct mcr_startup_alloc **out);
/* The replayed (old) log's snapshot of the old process's writable data. */
void mcr_startup_old_snapshot(struct mcr_startup_snapshot *out);

/* The allocator's hook (malloc.c, only while mcr_startup_on): newp was
 * returned for a request (NULL: none), oldp was freed or reallocated (NULL:
 * none). ra is the allocation call's return address. */
/* After an update: the startup object recorded at address from was replaced by
 * the old process's at to, which the program uses now; the record names it, so
 * that the next update pairs the right object. */
void mcr_startup_alloc_retarget(uint64_t from, uint64_t to);
/* After an update with --reinit: the startup object at addr stayed this
 * process's (its pointers to replaced objects rewritten): its hash is taken
 * again, so that the next update still finds it unchanged, unless it holds
 * state (transferred: the old object's, converted into it), which the next
 * update must transfer too (hash 0: never "unchanged"). */
void mcr_startup_alloc_rehash(uint64_t addr, int transferred);

void mcr_startup_alloc_hook(void *newp, void *oldp, uintptr_t ra);

const char *mcr_startup_kind_name(uint32_t kind);

/* The anonymous mappings the replayed (old) startup made (mmap with
 * MAP_ANONYMOUS from the program), for the transfer: the new startup maps its
 * counterpart (same call stack, ordinal, length, protection and flags) at the old
 * address, so that pointers to it stay right, and the transfer copies the old
 * contents into it. */
struct mcr_anon_map {
  uint64_t addr, len;
  int shared;  /* MAP_SHARED */
  int paired;  /* this process mapped its counterpart at addr */
  const char *detail, *stack; /* of the old call */
};
/* Fills up to max (in the old log's order), returns how many there are. */
size_t mcr_startup_anon_maps(struct mcr_anon_map *out, size_t max);

#endif /* MCR_STARTUP_H */
