/*
 * startup.c - the startup log, its replay, and the startup allocation records;
 * see startup.h and docs/update.md ("Startup log and replay").
 *
 * The wrappers are defined in the executable, so they win over the C library's
 * definitions for every caller, uninstrumented libraries included (as in
 * blocking.c). Outside the window (mcr_startup_on == 0) each one is a load, a
 * branch and a call of the real function. Inside it, a call goes:
 *   1. ID and description of the caller's stack (stackid.h), hash and detail
 *      of the arguments that must match (fd arguments translated to the old
 *      process's numbers, see below), all without our lock;
 *   2. under the lock: its ordinal, and in a replay the decision (run, return
 *      the old result, or refuse as a conflict);
 *   3. the call, or not;
 *   4. under the lock: the entry appended to this process's log.
 * The runtime's own calls (runtime threads, our bookkeeping: mcr_in_runtime)
 * are neither recorded nor replayed.
 *
 * fd translation: when a matched call that created an fd runs for real in the
 * new process (the old's object is gone: a pid file written then closed), its
 * fd number differs from the old's; later calls on it (write, close) are
 * compared with the old log using the old number.
 *
 * Memory: the log, the counters, the allocation records and the parsed old log
 * are mapped MAP_NORESERVE at first use; only the pages used are committed.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include "fnv.h"
#include "mcr/abi.h"
#include "snapshot.h"
#include "startup.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "heap.h"
#include "stackid.h"
#include "types.h"
#include "typetab.h"
#include "update.h"

#define MCR_EXPORT __attribute__((visibility("default")))
#define RA ((uintptr_t)__builtin_return_address(0))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#define MAX_ENTRIES 16384     /* this process's log; later calls are counted as dropped */
#define COUNTER_SLOTS 131072  /* (ID, kind) -> next ordinal; a power of two */
#define MAX_ALLOCS 262144     /* live allocation records */
#define ALLOC_SLOTS 524288    /* address index; a power of two */
#define ALLOC_EVENT_CAP 1000000 /* allocations hashed before the records stop (a
                                 * program that never ends its window stops paying) */
#define MAX_CONFLICTS 1024
#define MAX_NOTES 64
#define FD_MAP 65536          /* fds tracked for inheritance and translation */

#define ON_LOG 1
#define ON_ALLOCS 2

#define LOG_MAGIC "MCRSLOG"   /* 8 bytes with the NUL */
#define LOG_VERSION 1u
#define HEADER_SIZE 88u       /* 64 up to runtime c1e5beb: no snapshot fields */
#define ENTRY_FIXED 104u      /* serialized entry without its strings */
#define ALLOC_REC 56u         /* 32 up to runtime c1e5beb: no flags, block, hash, site */
#define ALLOC_REC_V1 32u
#define HEADER_SIZE_V1 64u
#define HASH_CAP ((uint64_t)64 << 20) /* bytes of startup objects hashed at its end */

MCR_EXPORT int mcr_startup_on; /* opened by startup_init */

static pthread_mutex_t st_lock = PTHREAD_MUTEX_INITIALIZER;
static int replaying;
static int ended;

static struct mcr_startup_entry *entries; /* MAX_ENTRIES */
static unsigned nentries, ndropped;

struct counter {
  uint64_t id;
  uint32_t kind; /* 0: allocations */
  uint32_t next;
  uint32_t used;
  uint32_t pad;
};
static struct counter *counters; /* COUNTER_SLOTS */

static struct mcr_startup_alloc *allocs; /* MAX_ALLOCS, in allocation order (dead ones kept
                                          * until compaction) */
static uint32_t *alloc_index;            /* ALLOC_SLOTS: 0 free, TOMB, else record + 1 */
#define TOMB 0xffffffffu
static unsigned nallocs, nlive, ntomb, allocs_dropped, alloc_events;

/* replay state */
static struct mcr_startup_log old;
static unsigned char *old_used;
static unsigned char *inherited_map; /* FD_MAP bits */
static int32_t *fd_xlat;             /* FD_MAP: new fd -> old fd number + 1 (0: none) */
static struct mcr_startup_conflict *conflicts; /* MAX_CONFLICTS */
static unsigned nconflicts, nreplayed, nrun;
/* Old entries by (stack_id, kind) and by (kind, args_hash), each key's entries
 * chained in log order: the fallbacks of match_old. */
struct chains {
  uint32_t *head; /* slots: 0 free, else the key's first entry + 1 */
  uint32_t *next; /* per entry: the next entry with its key + 1, 0: none */
  size_t slots;
};
static struct chains by_stack, by_args;
static unsigned char *claimed_map; /* FD_MAP bits: inherited fds the new process holds through
                                    * a replayed creation or an adopted socket */
static unsigned char *adopted_map; /* FD_MAP bits: own fds now holding an old listening socket */
static struct mcr_startup_conflict *notes; /* MAX_NOTES */
static unsigned nnotes, nby_args, nadopted, nsuppressed;
/* In a child of a process tree's new version (docs/coordinator.md): the index
 * in the replayed log (its old counterpart's) of the fork that made it. Calls
 * of process-wide state after it (setuid, setsid, PR_SET_PDEATHSIG) run for
 * real: the child starts with its new parent's, not with what the old child
 * made of its own. -1: not such a child. */
static long child_from = -1;
static int startup_parent;   /* this log has a startup fork whose child was another
                              * process: only then are later forks worth a stack walk */
static int trace_fd = -1;    /* MCR_STARTUP_TRACE: one line per replayed-startup call */

/* ---- the real functions ---- */

static struct {
  int (*socket)(int, int, int);
  int (*socketpair)(int, int, int, int[2]);
  int (*bind)(int, const struct sockaddr *, socklen_t);
  int (*listen)(int, int);
  int (*setsockopt)(int, int, int, const void *, socklen_t);
  int (*open)(const char *, int, ...);
  int (*open64)(const char *, int, ...);
  int (*openat)(int, const char *, int, ...);
  int (*openat64)(int, const char *, int, ...);
  int (*creat)(const char *, mode_t);
  int (*creat64)(const char *, mode_t);
  int (*open_2)(const char *, int);
  int (*open64_2)(const char *, int);
  int (*openat_2)(int, const char *, int);
  int (*openat64_2)(int, const char *, int);
  int (*close)(int);
  int (*pipe)(int[2]);
  int (*pipe2)(int[2], int);
  int (*epoll_create)(int);
  int (*epoll_create1)(int);
  int (*epoll_ctl)(int, int, int, struct epoll_event *);
  int (*eventfd)(unsigned, int);
  int (*signalfd)(int, const sigset_t *, int);
  int (*timerfd_create)(int, int);
  int (*timerfd_settime)(int, int, const struct itimerspec *, struct itimerspec *);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  pid_t (*fork)(void);
  pid_t (*setsid)(void);
  int (*chdir)(const char *);
  int (*fchdir)(int);
  int (*setuid)(uid_t);
  int (*setgid)(gid_t);
  int (*seteuid)(uid_t);
  int (*setegid)(gid_t);
  int (*setreuid)(uid_t, uid_t);
  int (*setregid)(gid_t, gid_t);
  int (*setresuid)(uid_t, uid_t, uid_t);
  int (*setresgid)(gid_t, gid_t, gid_t);
  int (*setgroups)(size_t, const gid_t *);
  int (*initgroups)(const char *, gid_t);
  int (*prctl)(int, ...);
  ssize_t (*sendmsg)(int, const struct msghdr *, int);
  pid_t (*wait4)(pid_t, int *, int, struct rusage *);
  int (*waitid)(idtype_t, id_t, siginfo_t *, int);
} real;

static void *next(const char *name)
{
  return dlsym(RTLD_NEXT, name);
}

static void resolve(void)
{
#define R(f, name) real.f = next(name)
  R(socket, "socket");
  R(socketpair, "socketpair");
  R(bind, "bind");
  R(listen, "listen");
  R(setsockopt, "setsockopt");
  R(open, "open");
  R(open64, "open64");
  R(openat, "openat");
  R(openat64, "openat64");
  R(creat, "creat");
  R(creat64, "creat64");
  R(open_2, "__open_2");
  R(open64_2, "__open64_2");
  R(openat_2, "__openat_2");
  R(openat64_2, "__openat64_2");
  R(close, "close");
  R(pipe, "pipe");
  R(pipe2, "pipe2");
  R(epoll_create, "epoll_create");
  R(epoll_create1, "epoll_create1");
  R(epoll_ctl, "epoll_ctl");
  R(eventfd, "eventfd");
  R(signalfd, "signalfd");
  R(timerfd_create, "timerfd_create");
  R(timerfd_settime, "timerfd_settime");
  R(dup, "dup");
  R(dup2, "dup2");
  R(dup3, "dup3");
  R(fork, "fork");
  R(setsid, "setsid");
  R(chdir, "chdir");
  R(fchdir, "fchdir");
  R(setuid, "setuid");
  R(setgid, "setgid");
  R(seteuid, "seteuid");
  R(setegid, "setegid");
  R(setreuid, "setreuid");
  R(setregid, "setregid");
  R(setresuid, "setresuid");
  R(setresgid, "setresgid");
  R(setgroups, "setgroups");
  R(initgroups, "initgroups");
  R(prctl, "prctl");
  R(sendmsg, "sendmsg");
  R(wait4, "wait4");
  R(waitid, "waitid");
#undef R
}

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

#define REAL(f) (UNLIKELY(!real.f) ? pthread_once(&resolve_once, resolve) : 0, real.f)
/* The window is open and the caller is the program. */
#define RECORDING() (UNLIKELY(mcr_startup_on) && (mcr_startup_on & ON_LOG) && !mcr_in_runtime)

/* ---- small helpers ---- */


static void *map(size_t n)
{
  void *p = (void *)syscall(SYS_mmap, NULL, n, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void unmap(void *p, size_t n)
{
  if (p)
    syscall(SYS_munmap, p, n);
}

static void copy_str(char *dst, size_t size, const char *src)
{
  snprintf(dst, size, "%s", src ? src : "");
}

const char *mcr_startup_kind_name(uint32_t kind)
{
  static const char *const names[MCR_SK_COUNT] = {
      [MCR_SK_SOCKET] = "socket",         [MCR_SK_SOCKETPAIR] = "socketpair",
      [MCR_SK_BIND] = "bind",             [MCR_SK_LISTEN] = "listen",
      [MCR_SK_SETSOCKOPT] = "setsockopt", [MCR_SK_OPEN] = "open",
      [MCR_SK_CLOSE] = "close",           [MCR_SK_PIPE] = "pipe",
      [MCR_SK_EPOLL_CREATE] = "epoll_create", [MCR_SK_EPOLL_CTL] = "epoll_ctl",
      [MCR_SK_EVENTFD] = "eventfd",       [MCR_SK_SIGNALFD] = "signalfd",
      [MCR_SK_TIMERFD_CREATE] = "timerfd_create", [MCR_SK_TIMERFD_SETTIME] = "timerfd_settime",
      [MCR_SK_DUP] = "dup",               [MCR_SK_DUP2] = "dup2",
      [MCR_SK_FORK] = "fork",             [MCR_SK_SETSID] = "setsid",
      [MCR_SK_CHDIR] = "chdir",           [MCR_SK_FCHDIR] = "fchdir",
      [MCR_SK_SETID] = "setid",           [MCR_SK_PRCTL] = "prctl",
      [MCR_SK_MMAP] = "mmap",             [MCR_SK_MMAP_ANON] = "mmap"};
  return kind > 0 && kind < MCR_SK_COUNT && names[kind] ? names[kind] : "?";
}

/* ---- init and fork ---- */

static void fork_prepare(void)
{
  pthread_mutex_lock(&st_lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&st_lock);
}

static void fork_child(void)
{
  pthread_mutex_init(&st_lock, NULL);
}

/* Under st_lock: the tables, mapped at first use. Returns 0 or -1. */
static int tables(void)
{
  static int state; /* 0 not yet, 1 ok, -1 failed */

  if (state)
    return state > 0 ? 0 : -1;
  entries = map(MAX_ENTRIES * sizeof(*entries));
  counters = map(COUNTER_SLOTS * sizeof(*counters));
  allocs = map(MAX_ALLOCS * sizeof(*allocs));
  alloc_index = map(ALLOC_SLOTS * sizeof(*alloc_index));
  conflicts = map(MAX_CONFLICTS * sizeof(*conflicts));
  state = entries && counters && allocs && alloc_index && conflicts ? 1 : -1;
  if (state < 0)
    mcr_startup_on = 0; /* no memory: no window (the program runs as without us) */
  return state > 0 ? 0 : -1;
}

/* After threads.c (200) and control.c (201): the runtime's own control socket,
 * made on the main thread in its constructor, is not the program's. The unwinder
 * is loaded now, not inside a dlopen the program makes. */
__attribute__((constructor(202))) static void startup_init(void)
{
  mcr_in_runtime++;
  pthread_once(&resolve_once, resolve);
  {
    /* the unwinder's first walk makes its validation pipe (libunwind): here,
     * as the runtime's, so that it goes high (runtime_pipe) */
    void *frames[4];
    mcr_backtrace_fn bt = mcr_unwinder();
    if (bt)
      bt(frames, 4);
  }
  mcr_stack_id(0); /* maps the memo and registers its fork handlers */
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  pthread_mutex_lock(&st_lock);
  if (tables() == 0 && !ended)
    __atomic_store_n(&mcr_startup_on, ON_LOG | ON_ALLOCS, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

/* ---- ordinals ---- */

/* Under st_lock: the next ordinal of (id, kind). */
static uint32_t next_ordinal(uint64_t id, uint32_t kind)
{
  uint64_t h = (id ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
  size_t i = (size_t)(h >> 40) & (COUNTER_SLOTS - 1);

  for (size_t p = 0; p < COUNTER_SLOTS; p++, i = (i + 1) & (COUNTER_SLOTS - 1)) {
    struct counter *c = &counters[i];
    if (!c->used) {
      c->used = 1;
      c->id = id;
      c->kind = kind;
      c->next = 1;
      return 0;
    }
    if (c->id == id && c->kind == kind)
      return c->next++;
  }
  return UINT32_MAX; /* full: matches nothing */
}

/* ---- fds ---- */

static int bit(const unsigned char *map, int fd)
{
  return map && fd >= 0 && fd < FD_MAP && (map[fd / 8] >> (fd % 8)) & 1;
}

static void set_bit(unsigned char *map, int fd)
{
  if (map && fd >= 0 && fd < FD_MAP)
    map[fd / 8] |= (unsigned char)(1u << (fd % 8));
}

static void clear_bit(unsigned char *map, int fd)
{
  if (map && fd >= 0 && fd < FD_MAP)
    map[fd / 8] &= (unsigned char)~(1u << (fd % 8));
}

static int is_inherited(int fd)
{
  return bit(inherited_map, fd);
}

/* An fd whose object the old process has: inherited, or an own fd that took
 * over an old listening socket (adopt_socket). */
static int is_shared(int fd)
{
  return is_inherited(fd) || bit(adopted_map, fd);
}

/* The old process's number for fd (see the file comment). */
static int64_t xlat(int fd)
{
  if (fd_xlat && fd >= 0 && fd < FD_MAP && fd_xlat[fd])
    return fd_xlat[fd] - 1;
  return fd;
}

static void set_xlat(int fd, int oldfd)
{
  if (fd_xlat && fd >= 0 && fd < FD_MAP)
    fd_xlat[fd] = oldfd >= 0 ? oldfd + 1 : 0;
}

/* Identity of the object fd refers to. */
static int fd_identity(int fd, uint64_t *dev, uint64_t *ino, uint64_t *link)
{
  struct stat sb;
  char path[64], target[256];
  ssize_t n;

  *dev = *ino = *link = 0;
  if (fd < 0 || fstat(fd, &sb) != 0)
    return -1;
  *dev = (uint64_t)sb.st_dev;
  *ino = (uint64_t)sb.st_ino;
  /* epoll, eventfd, timerfd, signalfd: one shared anonymous inode; the link
   * ("anon_inode:[eventpoll]") at least tells the kinds apart */
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  n = readlink(path, target, sizeof(target));
  if (n > 11 && !memcmp(target, "anon_inode:", 11))
    *link = mcr_fnv(MCR_FNV_OFFSET, target, (size_t)n);
  return 0;
}

/* ---- a call in the window ---- */

enum cls {
  C_CREATE,  /* makes new fds: replayed when the old's are inherited and still the same */
  C_MODIFY,  /* shapes the object of fd `target`: never run on an inherited fd */
  C_PROCESS, /* process-wide state (setsid, credentials, prctl): replayed when matched */
  C_LOCAL,   /* process-local and idempotent (chdir, PR_SET_NAME): always run */
  C_LOGONLY, /* file mmap: always run, never a conflict */
  C_FORK,
  C_ANON     /* anonymous mmap: at the old address when matched */
};

enum act { A_RUN, A_REPLAY, A_SKIP };

struct call {
  uint32_t kind;
  enum cls cls;
  int target;     /* C_MODIFY: the fd it shapes */
  int arg;        /* listen: the backlog; epoll_ctl: the op */
  int sock[3];    /* socket, socketpair: domain, type, protocol */
  const struct sockaddr *sa; /* bind: the address */
  socklen_t salen;
  uint64_t id;
  uint64_t hash;     /* fd arguments in the old process's numbers: matched against its log */
  uint64_t own_hash; /* the same in this process's own numbers: what its log records */
  uint32_t ordinal;
  char detail[MCR_SE_DETAIL];
  char stack[MCR_SE_STACK];
  size_t dlen;
  /* the decision */
  enum act act;
  const struct mcr_startup_entry *o; /* the matched old entry */
  int conflict;
  /* the outcome */
  int64_t result;
  int err;
  int nfds;
  int fds[2];
  uint64_t len; /* anonymous mmap: its length (recorded in dev[0]) */
  int how;      /* M_*: how c->o was found */
  int epoll_fd;                   /* epoll_ctl: the fd registered */
  const struct epoll_event *ev;   /* epoll_ctl: its event (NULL for DEL) */
  int data_in_heap;               /* epoll_ctl: its data points into this process's heap */
  pid_t pair;   /* fork in a tree's update: the old child the new one replaces */
  uint32_t late; /* MCR_SE_LATE: a fork logged after the window (late_fork) */
  uint32_t finished; /* MCR_SE_FINISHED: a replayed fork of a child that finished */
};

static void begin(struct call *c, uint32_t kind, enum cls cls, uintptr_t ra)
{
  memset(c, 0, sizeof(*c));
  c->kind = kind;
  c->cls = cls;
  c->target = -1;
  c->fds[0] = c->fds[1] = -1;
  c->id = mcr_stack_id_describe_at(ra, c->stack, sizeof(c->stack));
  c->hash = c->own_hash = mcr_fnv(MCR_FNV_OFFSET, &kind, sizeof(kind));
}

static void h_int(struct call *c, int64_t v)
{
  c->hash = mcr_fnv(c->hash, &v, sizeof(v));
  c->own_hash = mcr_fnv(c->own_hash, &v, sizeof(v));
}

/* An fd argument: translated for the match, as it is for this process's log (a
 * process updated in turn is matched against its own numbers, not its parent's). */
static void h_fd(struct call *c, int fd)
{
  int64_t o = xlat(fd), v = fd;
  c->hash = mcr_fnv(c->hash, &o, sizeof(o));
  c->own_hash = mcr_fnv(c->own_hash, &v, sizeof(v));
}

static void h_bytes(struct call *c, const void *p, size_t n)
{
  h_int(c, (int64_t)n);
  if (p) {
    c->hash = mcr_fnv(c->hash, p, n);
    c->own_hash = mcr_fnv(c->own_hash, p, n);
  }
}

static void h_str(struct call *c, const char *s)
{
  h_bytes(c, s, s ? strlen(s) + 1 : 0);
}

static void d_add(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void d_add(struct call *c, const char *fmt, ...)
{
  va_list ap;
  int w;

  if (c->dlen >= sizeof(c->detail) - 1)
    return;
  va_start(ap, fmt);
  w = vsnprintf(c->detail + c->dlen, sizeof(c->detail) - c->dlen, fmt, ap);
  va_end(ap);
  if (w > 0)
    c->dlen += (size_t)w;
  if (c->dlen >= sizeof(c->detail))
    c->dlen = sizeof(c->detail) - 1;
}

struct flag_name {
  int v;
  const char *name;
};

static void d_flags(struct call *c, int v, const struct flag_name *names)
{
  int first = 1;
  for (; names->name; names++)
    if (names->v && (v & names->v) == names->v) {
      d_add(c, "%s%s", first ? "" : "|", names->name);
      v &= ~names->v;
      first = 0;
    }
  if (v || first)
    d_add(c, "%s%#x", first ? "" : "|", (unsigned)v);
}

static void d_open_flags(struct call *c, int flags)
{
  static const struct flag_name names[] = {
      {O_CREAT, "O_CREAT"},       {O_EXCL, "O_EXCL"},         {O_NOCTTY, "O_NOCTTY"},
      {O_TRUNC, "O_TRUNC"},       {O_APPEND, "O_APPEND"},     {O_NONBLOCK, "O_NONBLOCK"},
      {O_DSYNC, "O_DSYNC"},       {O_DIRECTORY, "O_DIRECTORY"}, {O_NOFOLLOW, "O_NOFOLLOW"},
      {O_CLOEXEC, "O_CLOEXEC"},   {O_PATH, "O_PATH"},         {0, NULL}};
  int acc = flags & O_ACCMODE;
  d_add(c, "%s", acc == O_RDONLY ? "O_RDONLY" : acc == O_WRONLY ? "O_WRONLY"
                 : acc == O_RDWR ? "O_RDWR" : "O_ACCMODE");
  flags &= ~O_ACCMODE;
  if (flags) {
    d_add(c, "|");
    d_flags(c, flags, names);
  }
}

static void d_sockaddr(struct call *c, const struct sockaddr *sa, socklen_t len)
{
  char buf[INET6_ADDRSTRLEN];

  if (!sa || len < sizeof(sa_family_t)) {
    d_add(c, "NULL");
    return;
  }
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const void *)sa;
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    d_add(c, "%s:%u", buf, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    d_add(c, "[%s]:%u", buf, ntohs(in6->sin6_port));
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const void *)sa;
    size_t n = len - offsetof(struct sockaddr_un, sun_path);
    if (n > sizeof(un->sun_path))
      n = sizeof(un->sun_path);
    if (n && un->sun_path[0] == '\0')
      d_add(c, "unix:@%.*s", (int)n - 1, un->sun_path + 1);
    else
      d_add(c, "unix:%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
  } else {
    d_add(c, "family %d", sa->sa_family);
  }
}

/* The parts of an address that must match (not sin_zero's padding). */
static void h_sockaddr(struct call *c, const struct sockaddr *sa, socklen_t len)
{
  if (!sa || len < sizeof(sa_family_t)) {
    h_int(c, -1);
    return;
  }
  h_int(c, sa->sa_family);
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const void *)sa;
    h_bytes(c, &in->sin_port, sizeof(in->sin_port));
    h_bytes(c, &in->sin_addr, sizeof(in->sin_addr));
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    h_bytes(c, &in6->sin6_port, sizeof(in6->sin6_port));
    h_bytes(c, &in6->sin6_addr, sizeof(in6->sin6_addr));
    h_int(c, in6->sin6_scope_id);
  } else {
    h_bytes(c, sa, len);
  }
}

static void fill(struct mcr_startup_conflict *k, struct call *c, const char *fmt, va_list ap)
{
  char why[400];

  memset(k, 0, sizeof(*k));
  k->kind = c->kind;
  k->stack_id = c->id;
  copy_str(k->old_detail, sizeof(k->old_detail), c->o ? c->o->detail : "");
  copy_str(k->new_detail, sizeof(k->new_detail), c->detail);
  copy_str(k->stack, sizeof(k->stack), c->stack);
  vsnprintf(why, sizeof(why), fmt, ap);
  snprintf(k->message, sizeof(k->message), "%s: %s (at %s)", mcr_startup_kind_name(c->kind), why,
           c->stack[0] ? c->stack : "an unknown stack");
}

static void conflict(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Under st_lock. */
static void conflict(struct call *c, const char *fmt, ...)
{
  va_list ap;

  c->conflict = 1;
  nconflicts++;
  if (nconflicts > MAX_CONFLICTS)
    return; /* counted, not kept */
  va_start(ap, fmt);
  fill(&conflicts[nconflicts - 1], c, fmt, ap);
  va_end(ap);
}

static void note(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Under st_lock: a difference the replay accepted (mcr_startup_notes). */
static void note(struct call *c, const char *fmt, ...)
{
  va_list ap;

  if (!notes)
    notes = map(MAX_NOTES * sizeof(*notes));
  if (!notes || nnotes >= MAX_NOTES)
    return;
  va_start(ap, fmt);
  fill(&notes[nnotes++], c, fmt, ap);
  va_end(ap);
}

static uint64_t stack_key(const struct mcr_startup_entry *e)
{
  return e->stack_id ^ (uint64_t)e->kind * 0xff51afd7ed558ccdull;
}

static uint64_t args_key(const struct mcr_startup_entry *e)
{
  return e->args_hash ^ (uint64_t)e->kind * 0xc4ceb9fe1a85ec53ull;
}

/* The head slot of key in ch (the key's first entry, or a free slot). */
static uint32_t *chain_slot(struct chains *ch, uint64_t key,
                            uint64_t (*keyf)(const struct mcr_startup_entry *))
{
  size_t i = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (ch->slots - 1);

  for (;; i = (i + 1) & (ch->slots - 1))
    if (!ch->head[i] || keyf(&old.entries[ch->head[i] - 1]) == key)
      return &ch->head[i];
}

/* Builds ch over old's n entries (the key functions read old.entries). */
static void chains_build(struct chains *ch, uint64_t (*keyf)(const struct mcr_startup_entry *),
                         size_t n)
{
  /* backwards, each entry pushed in front: every chain ends up in log order */
  for (size_t i = n; i-- > 0;) {
    uint32_t *h = chain_slot(ch, keyf(&old.entries[i]), keyf);
    ch->next[i] = *h;
    *h = (uint32_t)i + 1;
  }
}

static int used_idx(const struct mcr_startup_entry *e)
{
  return (int)(e - old.entries);
}

enum { M_POSITION = 1, M_REORDERED, M_BY_ARGS, M_INSERTED };

/* Whether a call whose group's first fitting unused old entry is x is one the
 * new version makes once more than the old did (a loop whose body now creates
 * two eventfds where it created one: memcached 1.6.38's worker setup). It is
 * when the old process, after the group's last entry taken so far, made other
 * calls before x and the new process has made none of them yet: taking x would
 * pair this call with the next iteration's and shift every pairing after it.
 * When some of those calls were made already, the new version dropped the rest
 * (a call deleted from the loop body), and x is this call's counterpart. */
static int inserted(const struct mcr_startup_entry *x, uint64_t key)
{
  long prev = -1, between = 0;

  for (uint32_t v = *chain_slot(&by_stack, key, stack_key); v && v - 1 < (uint32_t)used_idx(x);
       v = by_stack.next[v - 1])
    if (old.entries[v - 1].kind == x->kind && old.entries[v - 1].stack_id == x->stack_id &&
        old_used[v - 1])
      prev = (long)v - 1;
  if (prev < 0)
    return 0;
  for (long i = prev + 1; i < used_idx(x); i++) {
    if (old.entries[i].flags & MCR_SE_LATE) /* pre-marked: never a counterpart here */
      continue;
    if (old_used[i])
      return 0;
    between++;
  }
  return between > 0;
}

/* Under st_lock: the old entry a call is paired with, marked used (NULL: none).
 * In the old entries of the call's (ID, kind) group, in log order:
 *   1. the first unused one with equal arguments (the one at the call's ordinal
 *      unless a call was added to or removed from the group before it);
 *   2. else the first unused one, with other arguments (a conflict for most
 *      kinds);
 *   either unless the call is one more than the old version made here
 *   (inserted()): then none, as for a call the old version never made.
 *   3. When no unused old entry has its (ID, kind) at all (the call moved to
 *      another call stack: a helper added, inlined, tail-called away), the
 *      first unused one of its kind with equal arguments, at any stack. Not for
 *      socket() (a listening socket is identified by its address, at bind:
 *      adopt_socket) nor fork (an unrelated fork must not be taken for the
 *      daemonizing one). */
static const struct mcr_startup_entry *match_old(struct call *c, int *how)
{
  struct mcr_startup_entry key = {.stack_id = c->id, .kind = c->kind, .args_hash = c->hash};
  const struct mcr_startup_entry *e = NULL, *first = NULL;

  *how = 0;
  if (by_stack.slots)
    for (uint32_t v = *chain_slot(&by_stack, stack_key(&key), stack_key); v;
         v = by_stack.next[v - 1]) {
      const struct mcr_startup_entry *x = &old.entries[v - 1];
      if (old_used[v - 1] || x->stack_id != c->id || x->kind != c->kind)
        continue;
      if (!first)
        first = x;
      if (x->args_hash == c->hash) {
        e = x;
        break;
      }
    }
  if (!e)
    e = first;
  if (e) {
    if (inserted(e, stack_key(&key))) {
      *how = M_INSERTED;
      return NULL;
    }
    *how = e->ordinal == c->ordinal ? M_POSITION : M_REORDERED;
    goto take;
  }
  if (!by_args.slots || c->kind == MCR_SK_SOCKET || c->kind == MCR_SK_FORK ||
      c->kind == MCR_SK_MMAP)
    return NULL;
  for (uint32_t v = *chain_slot(&by_args, args_key(&key), args_key); v; v = by_args.next[v - 1])
    if (!old_used[v - 1] && old.entries[v - 1].kind == c->kind &&
        old.entries[v - 1].args_hash == c->hash) {
      e = &old.entries[v - 1];
      *how = M_BY_ARGS;
      goto take;
    }
  return NULL;
take:
  old_used[used_idx(e)] = 1;
  return e;
}

static int result_fds(const struct mcr_startup_entry *e)
{
  return !(e->flags & MCR_SE_FD_RESULT) || e->result < 0 ? 0
         : e->fds[1] >= 0 && !(e->flags & MCR_SE_MOVED) ? 2 : 1;
}

/* The old entry's result fds are open here, inherited, and the same objects. */
static int still_same(const struct mcr_startup_entry *e)
{
  int n = result_fds(e);

  if (!n || !(e->flags & MCR_SE_OPEN_NOW))
    return 0;
  for (int i = 0; i < n; i++) {
    uint64_t dev, ino, link;
    int fd = i == 0 && (e->flags & MCR_SE_MOVED) ? e->fds[1] : e->fds[i];
    if (!is_inherited(fd) || fd_identity(fd, &dev, &ino, &link) ||
        dev != e->dev[i] || ino != e->ino[i] || link != e->link_hash[i])
      return 0;
  }
  return 1;
}

/* The fd an old entry's detail names first ("bind(5, ...", "listen(5, 16)"),
 * or -1. */
static int detail_fd(const struct mcr_startup_entry *e, const char *fn)
{
  size_t n = strlen(fn);
  const char *p = e->detail + n + 1;
  char *end;
  long v;

  if (strncmp(e->detail, fn, n) || e->detail[n] != '(')
    return -1;
  v = strtol(p, &end, 10);
  if (end == p || *end != ',' || v < 0 || v >= FD_MAP)
    return -1;
  return (int)v;
}

static int sock_int(int fd, int level, int name)
{
  int v = 0;
  socklen_t l = sizeof(v);

  return getsockopt(fd, level, name, &v, &l) == 0 && l == sizeof(v) ? v : -1;
}

/* The inode of the peer of the unix socket whose inode is ino, from the
 * kernel's socket diagnostics (what `ss -x` shows), or 0. */
static uint64_t unix_peer_ino(uint64_t ino)
{
  struct {
    struct nlmsghdr nh;
    struct unix_diag_req req;
  } q = {.nh = {.nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST},
         .req = {.sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (uint32_t)ino,
                 .udiag_show = UDIAG_SHOW_PEER, .udiag_cookie = {~0u, ~0u}}};
  union {
    struct nlmsghdr nh;
    char buf[1024];
  } a;
  uint64_t peer = 0;
  ssize_t n;
  int s = REAL(socket)(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

  if (s < 0)
    return 0;
  if (syscall(SYS_sendto, s, &q, sizeof(q), 0, NULL, 0) == (long)sizeof(q) &&
      (n = syscall(SYS_recvfrom, s, &a, sizeof(a), 0, NULL, NULL)) > 0 &&
      NLMSG_OK(&a.nh, (size_t)n) && a.nh.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
    struct unix_diag_msg *m = NLMSG_DATA(&a.nh);
    int left = (int)(a.nh.nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
    for (struct rtattr *ra = (struct rtattr *)(m + 1); m->udiag_ino == ino && RTA_OK(ra, left);
         ra = RTA_NEXT(ra, left))
      if (ra->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(ra) >= sizeof(uint32_t))
        peer = *(uint32_t *)RTA_DATA(ra);
  }
  REAL(close)(s);
  return peer;
}

/* An old socketpair() whose two numbers the old process closed after its
 * startup and gave to another socket pair of the same domain and type,
 * connected to each other: nginx's master closes a dead worker's channel and
 * makes its respawn's at the same numbers, before it forks the respawn
 * (docs/coordinator.md, "Respawned workers"). The new startup takes that pair
 * (inherited at those numbers) as its own: the old process's state names
 * those numbers for it, and its respawned child, which the new child
 * replaces, holds them. A fresh pair would get other numbers, which collide
 * with the respawned child's descriptors in the new child. */
static int pair_renewed(const struct call *c, const struct mcr_startup_entry *o)
{
  struct stat sa, sb;
  int a = o->fds[0], b = o->fds[1];

  if (result_fds(o) != 2 || !is_inherited(a) || !is_inherited(b) || bit(claimed_map, a) ||
      bit(claimed_map, b) || fstat(a, &sa) != 0 || fstat(b, &sb) != 0 || !S_ISSOCK(sa.st_mode) ||
      !S_ISSOCK(sb.st_mode) || sock_int(a, SOL_SOCKET, SO_DOMAIN) != c->sock[0] ||
      sock_int(b, SOL_SOCKET, SO_DOMAIN) != c->sock[0] ||
      sock_int(a, SOL_SOCKET, SO_TYPE) != (c->sock[1] & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) ||
      sock_int(b, SOL_SOCKET, SO_TYPE) != (c->sock[1] & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
    return 0;
  return c->sock[0] == AF_UNIX && unix_peer_ino(sa.st_ino) == (uint64_t)sb.st_ino;
}

/* fd is bound to sa: same family, port and address (and IPv6 scope). */
static int bound_to(int fd, const struct sockaddr *sa, socklen_t len)
{
  struct sockaddr_storage ss;
  socklen_t l = sizeof(ss);

  if (getsockname(fd, (struct sockaddr *)&ss, &l) != 0 || ss.ss_family != sa->sa_family)
    return 0;
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) &&
      l >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *a = (const void *)sa, *b = (const void *)&ss;
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6) &&
      l >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *a = (const void *)sa, *b = (const void *)&ss;
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           !memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr));
  }
  return 0;
}

/* Under st_lock, a bind of an own fd (its socket() ran: no old socket was
 * paired with it, its call stack differs): if an inherited socket that the
 * old log bound, and no call of this process took yet, is bound to this very
 * address (IPv4/IPv6: family, address, port) and is of the same domain, type
 * and protocol, the fd takes it over: dup3(old, fd) (FD_CLOEXEC as the new
 * socket had it), the call is not run and returns the old bind's result.
 * Options the new version set on its fresh socket are gone with it (the old
 * socket keeps its own). O_NONBLOCK is shared by both processes (one open file
 * description): never changed here. A new socket that is non-blocking where
 * the old one is blocking is a conflict (setting it would change the old
 * process, which runs on if the update rolls back); the reverse is a note (the
 * new version gets the old, non-blocking socket; servers commonly set the flag
 * after bind or listen). Another IPV6_V6ONLY is a conflict (the socket would
 * accept other connections). Not for AF_UNIX: the path may have been unlinked
 * and bound anew. */
static void adopt_socket(struct call *c)
{
  const struct mcr_startup_entry *e = NULL;
  int fd = c->target, old_fd = -1, domain, type, proto, nfl, ofl, fdfl, v6new = -1, v6old = -1;

  if (!c->sa || c->salen < sizeof(sa_family_t) ||
      (c->sa->sa_family != AF_INET && c->sa->sa_family != AF_INET6))
    return;
  domain = sock_int(fd, SOL_SOCKET, SO_DOMAIN);
  type = sock_int(fd, SOL_SOCKET, SO_TYPE);
  proto = sock_int(fd, SOL_SOCKET, SO_PROTOCOL);
  if (domain < 0 || type < 0 || proto < 0)
    return;
  /* the call's own pair first (same stack, another fd), then every old bind */
  for (size_t i = 0; i <= old.nentries && !e; i++) {
    const struct mcr_startup_entry *x = i ? &old.entries[i - 1] : c->o;
    int n;
    if (!x || x->kind != MCR_SK_BIND || x->result != 0 || (n = detail_fd(x, "bind")) < 0 ||
        !is_inherited(n) || bit(claimed_map, n) || sock_int(n, SOL_SOCKET, SO_DOMAIN) != domain ||
        sock_int(n, SOL_SOCKET, SO_TYPE) != type || sock_int(n, SOL_SOCKET, SO_PROTOCOL) != proto ||
        !bound_to(n, c->sa, c->salen) ||
        /* a connection accepted on that address has it as its own: never one */
        (type == SOCK_STREAM && sock_int(n, SOL_SOCKET, SO_ACCEPTCONN) != 1))
      continue;
    e = x;
    old_fd = n;
  }
  if (!e)
    return;
  nfl = fcntl(fd, F_GETFL);
  ofl = fcntl(old_fd, F_GETFL);
  fdfl = fcntl(fd, F_GETFD);
  if (domain == AF_INET6) {
    v6new = sock_int(fd, IPPROTO_IPV6, IPV6_V6ONLY);
    v6old = sock_int(old_fd, IPPROTO_IPV6, IPV6_V6ONLY);
  }
  if (nfl < 0 || ofl < 0 || fdfl < 0 ||
      REAL(dup3)(old_fd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
    return; /* run: the bind fails as it would have */
  if (c->o && c->o != e) /* the positional pair belongs to another socket: free it */
    old_used[used_idx(c->o)] = 0;
  c->o = e;
  old_used[used_idx(e)] = 1;
  set_bit(adopted_map, fd);
  set_bit(claimed_map, old_fd);
  set_xlat(fd, old_fd);
  c->act = A_REPLAY;
  nadopted++;
  /* this process's log: the fd's creation names the object it holds now, so
   * that the next update pairs it as an ordinary replayed socket */
  for (unsigned i = nentries; i-- > 0;) {
    struct mcr_startup_entry *x = &entries[i];
    int k = !(x->flags & MCR_SE_FD_RESULT) || x->result < 0 ? -1 : x->fds[0] == fd ? 0
            : x->fds[1] == fd ? 1 : -1;
    if (k >= 0) {
      fd_identity(fd, &x->dev[k], &x->ino[k], &x->link_hash[k]);
      break;
    }
  }
  if ((nfl & O_NONBLOCK) && !(ofl & O_NONBLOCK))
    conflict(c, "the old process's socket bound to this address (fd %d) is blocking and the new "
                "version's is non-blocking (O_NONBLOCK): the flag is shared by both processes, "
                "setting it would change the old one if the update rolled back", old_fd);
  if (v6new >= 0 && v6old >= 0 && v6new != v6old)
    conflict(c, "the old process's socket bound to this address (fd %d) has IPV6_V6ONLY %d, the "
                "new version's %d: it would accept other connections", old_fd, v6old, v6new);
  note(c, "%s: a socket the old log has no counterpart of (another call stack or other flags): "
          "fd %d took over the old process's socket bound to this address (fd %d)%s",
       c->detail, fd, old_fd,
       !(nfl & O_NONBLOCK) && (ofl & O_NONBLOCK)
           ? "; it is non-blocking (O_NONBLOCK), the new version's socket was not yet: kept"
           : "");
}

/* Under st_lock, listen() on an fd that took over an old listening socket:
 * not run, returns the old result (0); the old socket keeps its backlog, a
 * different one is a note. Returns 0 if the socket does not listen yet (the
 * ordinary rules then apply: listen would change the old process's socket). */
static int listen_adopted(struct call *c)
{
  const struct mcr_startup_entry *e = NULL;
  int old_fd = (int)xlat(c->target), backlog = -1;

  if (sock_int(c->target, SOL_SOCKET, SO_ACCEPTCONN) != 1)
    return 0;
  /* the old process's listen of that socket: an unused one first */
  for (size_t i = 0; i < old.nentries; i++) {
    const struct mcr_startup_entry *x = &old.entries[i];
    if (x->kind != MCR_SK_LISTEN || x->result != 0 || detail_fd(x, "listen") != old_fd)
      continue;
    if (!e || (old_used[used_idx(e)] && !old_used[i]))
      e = x;
  }
  if (e) {
    old_used[used_idx(e)] = 1;
    if (sscanf(e->detail, "listen(%*d, %d)", &backlog) != 1)
      backlog = -1;
  }
  c->o = e;
  c->act = A_REPLAY;
  if (backlog != c->arg) {
    if (backlog >= 0)
      note(c, "%s: the socket is the old process's (fd %d), listening with backlog %d: kept, "
              "not %d", c->detail, old_fd, backlog, c->arg);
    else
      note(c, "%s: the socket is the old process's (fd %d), already listening: its backlog is "
              "kept", c->detail, old_fd);
  }
  return 1;
}

/* The old socket() o differs from the call c in SOCK_NONBLOCK/SOCK_CLOEXEC only
 * (the hash of c's arguments with each combination of the two). */
static int socket_flags_only(const struct call *c, const struct mcr_startup_entry *o)
{
  static const int fl[] = {0, SOCK_NONBLOCK, SOCK_CLOEXEC, SOCK_NONBLOCK | SOCK_CLOEXEC};
  uint32_t kind = MCR_SK_SOCKET;

  for (int i = 0; i < 4; i++) {
    int64_t v[3] = {c->sock[0], (c->sock[1] & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) | fl[i],
                    c->sock[2]};
    uint64_t h = mcr_fnv(MCR_FNV_OFFSET, &kind, sizeof(kind));
    for (int k = 0; k < 3; k++)
      h = mcr_fnv(h, &v[k], sizeof(v[k]));
    if (h == o->args_hash)
      return 1;
  }
  return 0;
}

/* The innermost frame of a stack description: "main > a > spawn" -> "spawn". */
static const char *innermost(const char *stack)
{
  const char *p = strrchr(stack, '>');
  return p && p > stack && p[-1] == ' ' && p[1] == ' ' ? p + 2 : stack;
}

/* Under st_lock, for a startup fork whose old child is gone: the oldest live
 * child of the old process forked after its startup (MCR_SE_LATE) from the
 * same function, not yet paired, or NULL. nginx respawns a worker that died
 * through the function its startup forked it with (ngx_spawn_process, called
 * by ngx_reap_children instead of ngx_start_worker_processes). Children of
 * different kinds forked by one function could pair crosswise; their own
 * startups then differ and the child's replay refuses the update. */
static const struct mcr_startup_entry *respawn_of(const struct call *c)
{
  static pid_t taken[256];
  static unsigned ntaken;
  const char *fn = innermost(c->stack);

  for (size_t i = 0; i < old.nentries && ntaken < sizeof(taken) / sizeof(taken[0]); i++) {
    const struct mcr_startup_entry *e = &old.entries[i];
    unsigned k = 0;
    if (e->kind != MCR_SK_FORK || !(e->flags & MCR_SE_LATE) || e->result <= 0 ||
        strcmp(innermost(e->stack), fn))
      continue;
    while (k < ntaken && taken[k] != (pid_t)e->result)
      k++;
    if (k < ntaken || !mcr_update_tree_pairable((pid_t)e->result))
      continue;
    taken[ntaken++] = (pid_t)e->result;
    return e;
  }
  return NULL;
}

static int defer_epoll_ctl(struct call *c, int op);

/* Under st_lock: what a call in the window does. */
static void decide(struct call *c)
{
  const struct mcr_startup_entry *o, *respawn;
  int equal, renewed = 0;

  c->ordinal = next_ordinal(c->id, c->kind);
  c->act = A_RUN;
  if (!replaying)
    return;
  if (c->kind == MCR_SK_LISTEN && bit(adopted_map, c->target) && listen_adopted(c))
    goto count;
  o = c->o = match_old(c, &c->how);
  equal = o && o->args_hash == c->hash;
  if (c->how == M_BY_ARGS)
    nby_args++;
  switch (c->cls) {
  case C_CREATE:
    if (o && !equal && c->kind == MCR_SK_SOCKET && socket_flags_only(c, o)) {
      /* only SOCK_NONBLOCK/SOCK_CLOEXEC differ: a socket of its own, which
       * takes over the old one at bind if it is bound to the same address */
      old_used[used_idx(o)] = 0;
      c->o = NULL;
    } else if (o && !equal) {
      conflict(c, "the old version made %s here, the new makes %s", o->detail, c->detail);
      c->act = A_SKIP;
    } else if (o && (o->result < 0 || still_same(o) ||
                     (renewed = c->kind == MCR_SK_SOCKETPAIR && pair_renewed(c, o)))) {
      c->act = A_REPLAY;
      for (int i = 0; i < result_fds(o); i++)
        set_bit(claimed_map, i == 0 && (o->flags & MCR_SE_MOVED) ? o->fds[1] : o->fds[i]);
      if (renewed)
        note(c, "%s: the old process closed the pair its startup made here (%d, %d) and made "
                "another at the same numbers since (as a master does for a respawned child's "
                "channel): taken over",
             c->detail, o->fds[0], o->fds[1]);
    }
    break;
  case C_MODIFY:
    if (!is_shared(c->target)) {
      if (c->kind == MCR_SK_BIND)
        adopt_socket(c);
      break; /* the new process's own object: run (or taken over: replayed) */
    }
    if (o && equal) {
      c->act = A_REPLAY;
    } else if (o) {
      conflict(c, "the old version made %s here, the new makes %s", o->detail, c->detail);
      c->act = A_SKIP;
    } else if (c->kind == MCR_SK_EPOLL_CTL && defer_epoll_ctl(c, c->arg)) {
      c->act = A_SKIP; /* told it worked: made in the pause */
    } else {
      conflict(c, "%s would change fd %d, shared with the old process, which made no such "
                  "call here", c->detail, c->target);
      c->act = A_SKIP;
    }
    break;
  case C_PROCESS:
    if (o && equal) {
      c->act = child_from >= 0 && used_idx(o) > child_from ? A_RUN : A_REPLAY;
    } else if (o) {
      conflict(c, "the old version made %s here, the new makes %s", o->detail, c->detail);
      c->act = A_SKIP;
    }
    break;
  case C_LOCAL:
    if (o && !equal)
      conflict(c, "the old version made %s here, the new makes %s", o->detail, c->detail);
    break;
  case C_LOGONLY:
    break;
  case C_ANON:
    if (o && equal && o->result > 0)
      c->act = A_REPLAY; /* mapped at the old address (st_anon) */
    else if (o && !equal)
      conflict(c, "the old version made %s here, the new makes %s", o->detail, c->detail);
    break;
  case C_FORK:
    /* Not forked in a conflict: a child of the new version would run beside the
     * old process, serve, and outlive a rollback (nginx's workers did). */
    if (o && equal && o->result > 0 && (o->flags & MCR_SE_FINISHED)) {
      /* the old child is gone by design: so is the new one (the old state, which
       * the transfer brings, knows it finished); its pid may be another's now */
      c->act = A_REPLAY;
      c->finished = MCR_SE_FINISHED;
      note(c, "the old process's child %lld, forked here by its startup, finished (exit "
              "status 0): not forked again", (long long)o->result);
    } else if (o && equal && o->result > 0 && mcr_update_tree_pairable((pid_t)o->result)) {
      c->act = A_RUN; /* a process tree: the new child replaces the old one */
      c->pair = (pid_t)o->result;
    } else if (o && equal && o->result > 0 && (respawn = respawn_of(c)) != NULL) {
      c->act = A_RUN; /* the child that took the gone one's place */
      c->pair = (pid_t)respawn->result;
      note(c, "the old process's child %lld, forked here by its startup, is gone: its child %lld, "
              "forked later at %s (a respawn), is replaced by this fork's child instead",
           (long long)o->result, (long long)respawn->result, respawn->stack);
    } else if (o && o->result > 0) {
      conflict(c, "the old process was the parent of this fork, and its child %lld is gone (it "
                  "exited, or is no longer a child of the old process): the new child would "
                  "have no state to take over", (long long)o->result);
      c->act = A_SKIP;
    } else if (o && equal) {
      c->act = A_REPLAY; /* the old process is the child that continued: so are we */
    } else if (!o) {
      conflict(c, "the old version's startup made no fork here: the child would run beside the "
                  "old process");
      c->act = A_SKIP;
    }
    break;
  }
count:
  if (c->act == A_REPLAY)
    nreplayed++;
  else if (c->act == A_RUN)
    nrun++;
}

/* The old result, for a replayed or refused call; sets errno. */
static int64_t old_result(struct call *c, int *fds)
{
  const struct mcr_startup_entry *o = c->o;

  if (!o) { /* refused, nothing recorded: as if it had worked */
    c->result = 0;
    c->err = 0;
    return 0;
  }
  c->result = o->result;
  c->err = o->err;
  c->nfds = result_fds(o);
  for (int i = 0; i < c->nfds; i++) {
    c->fds[i] = o->fds[i];
    if (fds)
      fds[i] = o->fds[i];
  }
  if ((o->flags & MCR_SE_MOVED) && c->nfds == 1 && o->result >= 0) {
    /* the object is at fds[1]: that number for the program, and its later
     * calls hash as the number the old log has for it */
    c->result = c->fds[0] = o->fds[1];
    if (fds)
      fds[0] = o->fds[1];
    set_xlat(o->fds[1], o->fds[0]);
  }
  if (c->result < 0)
    errno = c->err;
  return c->result;
}

/* After a call ran: its outcome, and the fd translation of a matched creation. */
static void ran(struct call *c, int64_t result, int err, int nfds, const int *fds)
{
  c->result = result;
  c->err = result < 0 ? err : 0;
  c->nfds = result < 0 ? 0 : nfds;
  for (int i = 0; i < c->nfds; i++)
    c->fds[i] = fds[i];
  if (c->o && c->cls == C_CREATE && c->nfds == result_fds(c->o))
    for (int i = 0; i < c->nfds; i++)
      set_xlat(c->fds[i], c->o->fds[i]);
}

/* Under st_lock, in a replay with MCR_STARTUP_TRACE set: what was decided for c,
 * and the old call it was paired with (how a user finds a wrong pairing). */
static void trace(const struct call *c)
{
  static const char *const acts[] = {"run", "replay", "refuse"};
  static const char *const hows[] = {"-", "position", "reordered", "by-arguments", "inserted"};
  char line[2 * (MCR_SE_DETAIL + MCR_SE_STACK) + 128];
  int n;

  n = snprintf(line, sizeof(line), "%s %s: %s = %lld at %s", acts[c->act], hows[c->how],
               c->detail, (long long)c->result, c->stack);
  if (c->o && n > 0 && (size_t)n < sizeof(line))
    n += snprintf(line + n, sizeof(line) - (size_t)n, "\n    old: %s = %lld at %s", c->o->detail,
                  (long long)c->o->result, c->o->stack);
  if (n > 0 && (size_t)n < sizeof(line) - 1) {
    line[n++] = '\n';
    if (write(trace_fd, line, (size_t)n) < 0) { /* best effort: a diagnostic */ }
  }
}

/* Appends the call to this process's log. Keeps errno. */
static void record(struct call *c)
{
  struct mcr_startup_entry *e;
  uint64_t dev[2] = {0}, ino[2] = {0}, link[2] = {0};
  int saved = errno;

  mcr_in_runtime++;
  for (int i = 0; i < c->nfds; i++)
    fd_identity(c->fds[i], &dev[i], &ino[i], &link[i]);
  pthread_mutex_lock(&st_lock);
  if (replaying && trace_fd >= 0)
    trace(c);
  if (nentries >= MAX_ENTRIES || !entries) {
    ndropped++;
    if (!replaying) /* a window that never ends: stop paying for it */
      __atomic_and_fetch(&mcr_startup_on, ~ON_LOG, __ATOMIC_RELAXED);
    goto out;
  }
  e = &entries[nentries++];
  memset(e, 0, sizeof(*e));
  if (c->kind == MCR_SK_FORK && c->result > 0 && !c->late)
    startup_parent = 1;
  e->stack_id = c->id;
  e->kind = c->kind;
  e->ordinal = c->ordinal;
  e->args_hash = c->own_hash;
  e->result = c->result;
  e->err = c->err;
  e->flags = (c->nfds ? MCR_SE_FD_RESULT : 0) | (c->act == A_REPLAY ? MCR_SE_REPLAYED : 0) |
             (c->conflict ? MCR_SE_CONFLICT : 0) | c->late | c->finished;
  e->fds[0] = e->fds[1] = -1;
  if (c->kind == MCR_SK_MMAP_ANON)
    e->dev[0] = c->len;
  for (int i = 0; i < c->nfds; i++) {
    e->fds[i] = c->fds[i];
    e->dev[i] = dev[i];
    e->ino[i] = ino[i];
    e->link_hash[i] = link[i];
  }
  copy_str(e->detail, sizeof(e->detail), c->detail);
  copy_str(e->stack, sizeof(e->stack), c->stack);
out:
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
  errno = saved;
}

static void decide_locked(struct call *c)
{
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (tables() == 0)
    decide(c);
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

/* The common path of a call returning an int that may be an fd (nfds 0 or 1).
 * run() is the real call's result (errno set by it). */
#define ONE_FD_CALL(c, nfds_on_success, run_expr)                                              \
  do {                                                                                        \
    decide_locked(c);                                                                         \
    if ((c)->act != A_RUN) {                                                                  \
      int r_ = (int)old_result(c, NULL);                                                      \
      record(c);                                                                              \
      return r_;                                                                              \
    } else {                                                                                  \
      int r_ = (run_expr);                                                                    \
      int fd_ = r_;                                                                           \
      ran(c, r_, errno, (nfds_on_success), &fd_);                                             \
      record(c);                                                                              \
      return r_;                                                                              \
    }                                                                                         \
  } while (0)

/* ---- sockets ---- */

static void d_socket(struct call *c, const char *fn, int domain, int type, int proto)
{
  static const struct flag_name tflags[] = {
      {SOCK_CLOEXEC, "SOCK_CLOEXEC"}, {SOCK_NONBLOCK, "SOCK_NONBLOCK"}, {0, NULL}};
  int base = type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK);

  d_add(c, "%s(%s, ", fn,
        domain == AF_INET ? "AF_INET" : domain == AF_INET6 ? "AF_INET6"
        : domain == AF_UNIX ? "AF_UNIX" : domain == AF_NETLINK ? "AF_NETLINK" : "AF_?");
  if (domain != AF_INET && domain != AF_INET6 && domain != AF_UNIX && domain != AF_NETLINK)
    d_add(c, "%d, ", domain);
  d_add(c, "%s", base == SOCK_STREAM ? "SOCK_STREAM" : base == SOCK_DGRAM ? "SOCK_DGRAM"
                 : base == SOCK_SEQPACKET ? "SOCK_SEQPACKET" : base == SOCK_RAW ? "SOCK_RAW"
                 : "SOCK_?");
  if (type & (SOCK_CLOEXEC | SOCK_NONBLOCK)) {
    d_add(c, "|");
    d_flags(c, type & (SOCK_CLOEXEC | SOCK_NONBLOCK), tflags);
  }
  d_add(c, ", %d)", proto);
}

MCR_EXPORT int socket(int domain, int type, int proto)
{
  struct call c;

  if (!RECORDING())
    return REAL(socket)(domain, type, proto);
  begin(&c, MCR_SK_SOCKET, C_CREATE, RA);
  h_int(&c, domain);
  h_int(&c, type);
  h_int(&c, proto);
  c.sock[0] = domain;
  c.sock[1] = type;
  c.sock[2] = proto;
  d_socket(&c, "socket", domain, type, proto);
  ONE_FD_CALL(&c, 1, REAL(socket)(domain, type, proto));
}

MCR_EXPORT int socketpair(int domain, int type, int proto, int sv[2])
{
  struct call c;
  int r;

  if (!RECORDING())
    return REAL(socketpair)(domain, type, proto, sv);
  begin(&c, MCR_SK_SOCKETPAIR, C_CREATE, RA);
  h_int(&c, domain);
  h_int(&c, type);
  h_int(&c, proto);
  c.sock[0] = domain;
  c.sock[1] = type;
  c.sock[2] = proto;
  d_socket(&c, "socketpair", domain, type, proto);
  decide_locked(&c);
  if (c.act != A_RUN) {
    r = (int)old_result(&c, sv);
  } else {
    r = REAL(socketpair)(domain, type, proto, sv);
    ran(&c, r, errno, 2, sv);
  }
  record(&c);
  return r;
}

MCR_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
  struct call c;

  if (!RECORDING())
    return REAL(bind)(fd, sa, len);
  begin(&c, MCR_SK_BIND, C_MODIFY, RA);
  c.target = fd;
  c.sa = sa;
  c.salen = len;
  h_fd(&c, fd);
  h_sockaddr(&c, sa, len);
  d_add(&c, "bind(%d, ", fd);
  d_sockaddr(&c, sa, len);
  d_add(&c, ")");
  ONE_FD_CALL(&c, 0, REAL(bind)(fd, sa, len));
}

MCR_EXPORT int listen(int fd, int backlog)
{
  struct call c;

  if (!RECORDING())
    return REAL(listen)(fd, backlog);
  begin(&c, MCR_SK_LISTEN, C_MODIFY, RA);
  c.target = fd;
  c.arg = backlog;
  h_fd(&c, fd);
  h_int(&c, backlog);
  d_add(&c, "listen(%d, %d)", fd, backlog);
  ONE_FD_CALL(&c, 0, REAL(listen)(fd, backlog));
}

MCR_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
  struct call c;

  if (!RECORDING())
    return REAL(setsockopt)(fd, level, name, val, len);
  begin(&c, MCR_SK_SETSOCKOPT, C_MODIFY, RA);
  c.target = fd;
  h_fd(&c, fd);
  h_int(&c, level);
  h_int(&c, name);
  h_bytes(&c, val, val ? len : 0);
  d_add(&c, "setsockopt(%d, %d, %d, ", fd, level, name);
  if (val && len == sizeof(int))
    d_add(&c, "%d)", *(const int *)val);
  else
    d_add(&c, "%u bytes)", (unsigned)len);
  ONE_FD_CALL(&c, 0, REAL(setsockopt)(fd, level, name, val, len));
}

/* ---- files ---- */

static int needs_mode(int flags)
{
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

/* Every open variant: openat(dirfd, path, flags, mode) in the log. */
static int st_open(uintptr_t ra, int dirfd, const char *path, int flags, mode_t mode)
{
  struct call c;

  begin(&c, MCR_SK_OPEN, C_CREATE, ra);
  if (dirfd == AT_FDCWD)
    h_int(&c, AT_FDCWD);
  else
    h_fd(&c, dirfd);
  h_str(&c, path);
  h_int(&c, flags);
  h_int(&c, needs_mode(flags) ? (int64_t)mode : -1);
  if (dirfd == AT_FDCWD)
    d_add(&c, "open(\"%s\", ", path ? path : "(null)");
  else
    d_add(&c, "openat(%d, \"%s\", ", dirfd, path ? path : "(null)");
  d_open_flags(&c, flags);
  if (needs_mode(flags))
    d_add(&c, ", 0%o", (unsigned)mode);
  d_add(&c, ")");
  ONE_FD_CALL(&c, 1, REAL(openat)(dirfd, path, flags, mode));
}

#define OPEN_MODE(flags, mode)                                                                 \
  do {                                                                                        \
    if (needs_mode(flags)) {                                                                  \
      va_list ap_;                                                                            \
      va_start(ap_, flags);                                                                   \
      mode = va_arg(ap_, mode_t);                                                             \
      va_end(ap_);                                                                            \
    }                                                                                         \
  } while (0)

MCR_EXPORT int open(const char *path, int flags, ...)
{
  mode_t mode = 0;

  OPEN_MODE(flags, mode);
  if (!RECORDING())
    return REAL(open)(path, flags, mode);
  return st_open(RA, AT_FDCWD, path, flags, mode);
}

MCR_EXPORT int open64(const char *path, int flags, ...)
{
  mode_t mode = 0;

  OPEN_MODE(flags, mode);
  if (!RECORDING())
    return REAL(open64)(path, flags, mode);
  return st_open(RA, AT_FDCWD, path, flags, mode);
}

MCR_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
  mode_t mode = 0;

  OPEN_MODE(flags, mode);
  if (!RECORDING())
    return REAL(openat)(dirfd, path, flags, mode);
  return st_open(RA, dirfd, path, flags, mode);
}

MCR_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
  mode_t mode = 0;

  OPEN_MODE(flags, mode);
  if (!RECORDING())
    return REAL(openat64)(dirfd, path, flags, mode);
  return st_open(RA, dirfd, path, flags, mode);
}

MCR_EXPORT int creat(const char *path, mode_t mode)
{
  if (!RECORDING())
    return REAL(creat)(path, mode);
  return st_open(RA, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

MCR_EXPORT int creat64(const char *path, mode_t mode)
{
  if (!RECORDING())
    return REAL(creat64)(path, mode);
  return st_open(RA, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* -D_FORTIFY_SOURCE builds call these for open without a mode. */
MCR_EXPORT int __open_2(const char *path, int flags)
{
  if (!RECORDING())
    return REAL(open_2)(path, flags);
  return st_open(RA, AT_FDCWD, path, flags, 0);
}

MCR_EXPORT int __open64_2(const char *path, int flags)
{
  if (!RECORDING())
    return REAL(open64_2)(path, flags);
  return st_open(RA, AT_FDCWD, path, flags, 0);
}

MCR_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
  if (!RECORDING())
    return REAL(openat_2)(dirfd, path, flags);
  return st_open(RA, dirfd, path, flags, 0);
}

MCR_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
  if (!RECORDING())
    return REAL(openat64_2)(dirfd, path, flags);
  return st_open(RA, dirfd, path, flags, 0);
}

MCR_EXPORT int close(int fd)
{
  struct call c;

  if (!RECORDING())
    return REAL(close)(fd);
  begin(&c, MCR_SK_CLOSE, C_MODIFY, RA);
  c.target = fd;
  h_fd(&c, fd);
  d_add(&c, "close(%d)", fd);
  decide_locked(&c);
  if (c.act != A_RUN) {
    int r = (int)old_result(&c, NULL);
    record(&c);
    return r;
  } else {
    int r = REAL(close)(fd);
    ran(&c, r, errno, 0, NULL);
    if (r == 0) {
      pthread_mutex_lock(&st_lock);
      set_xlat(fd, -1);
      pthread_mutex_unlock(&st_lock);
    }
    record(&c);
    return r;
  }
}

static int st_pipe(uintptr_t ra, int fds[2], int flags, int with_flags)
{
  static const struct flag_name names[] = {
      {O_CLOEXEC, "O_CLOEXEC"}, {O_NONBLOCK, "O_NONBLOCK"}, {O_DIRECT, "O_DIRECT"}, {0, NULL}};
  struct call c;
  int r;

  begin(&c, MCR_SK_PIPE, C_CREATE, ra);
  h_int(&c, flags);
  d_add(&c, "pipe2(");
  d_flags(&c, flags, names);
  d_add(&c, ")");
  decide_locked(&c);
  if (c.act != A_RUN) {
    r = (int)old_result(&c, fds);
  } else {
    r = with_flags ? REAL(pipe2)(fds, flags) : REAL(pipe)(fds);
    ran(&c, r, errno, 2, fds);
  }
  record(&c);
  return r;
}

/* A pipe the runtime's own libraries make (libunwind's memory-validation pipe,
 * on its first stack walk) goes high, out of the program's range: at a low
 * number it would take the number the program's next descriptor gets in the
 * other version of an update, and a transfer would replace it with the old
 * process's descriptor there. */
static int runtime_pipe(int r, int fds[2])
{
  if (r == 0 && mcr_in_runtime) {
    int a = mcr_fd_move_high(fds[0]), b = mcr_fd_move_high(fds[1]);
    if (a < 0 || b < 0) { /* was at 0-2: closed; keep the call's contract */
      if (a >= 0)
        close(a);
      if (b >= 0)
        close(b);
      errno = EMFILE;
      return -1;
    }
    fds[0] = a;
    fds[1] = b;
  }
  return r;
}

MCR_EXPORT int pipe(int fds[2])
{
  if (!RECORDING())
    return runtime_pipe(REAL(pipe)(fds), fds);
  return st_pipe(RA, fds, 0, 0);
}

MCR_EXPORT int pipe2(int fds[2], int flags)
{
  if (!RECORDING())
    return runtime_pipe(REAL(pipe2)(fds, flags), fds);
  return st_pipe(RA, fds, flags, 1);
}

/* ---- epoll, eventfd, signalfd, timerfd ---- */

/* Registrations the new startup makes of its own descriptors on an epoll
 * instance it inherits, which the old startup did not make (memcached 1.6.38
 * adds a second eventfd per worker to the instances 1.6.18 made). Run now,
 * they would change the old process's instance while it serves (its threads
 * would take the new descriptors' events); the program is told they worked and
 * they are made in the pause, after the state transfer (mcr_startup_apply_
 * deferred). A rollback needs nothing undone: the kernel drops a registration
 * when its file's last descriptor closes, and these files are the new
 * process's alone. */
#define MAX_DEFERRED 256
static struct deferred {
  int epfd, fd;
  struct epoll_event ev;
  char detail[MCR_SE_DETAIL];
} deferred[MAX_DEFERRED];
static unsigned ndeferred;

/* st_lock held: the deferred registration of fd in epfd, or NULL */
static struct deferred *deferred_of(int epfd, int fd)
{
  for (unsigned i = 0; i < ndeferred; i++)
    if (deferred[i].epfd == epfd && deferred[i].fd == fd)
      return &deferred[i];
  return NULL;
}

/* st_lock held, in decide: whether an epoll_ctl on a shared instance the old
 * startup did not make is deferred (or changes one that is), with a note. */
static int defer_epoll_ctl(struct call *c, int op)
{
  struct deferred *d = deferred_of(c->target, c->epoll_fd);

  if (d && op == EPOLL_CTL_MOD && c->ev) {
    d->ev = *c->ev;
    return 1;
  }
  if (d && op == EPOLL_CTL_DEL) {
    *d = deferred[--ndeferred];
    return 1;
  }
  /* the data must mean the same after the transfer: a pointer into the heap
   * (an nginx connection) would point into the old process's heap by then */
  if (d || op != EPOLL_CTL_ADD || !c->ev || is_shared(c->epoll_fd) || c->data_in_heap ||
      ndeferred == MAX_DEFERRED)
    return 0;
  d = &deferred[ndeferred++];
  d->epfd = c->target;
  d->fd = c->epoll_fd;
  d->ev = *c->ev;
  copy_str(d->detail, sizeof(d->detail), c->detail);
  note(c, "%s: a registration the old startup did not make, of this process's own descriptor "
          "on an instance shared with the old process: made in the pause, after the state "
          "transfer", c->detail);
  return 1;
}

int mcr_startup_apply_deferred(char *why, size_t len)
{
  int rc = 0;

  pthread_mutex_lock(&st_lock);
  for (unsigned i = 0; i < ndeferred && rc == 0; i++)
    if (REAL(epoll_ctl)(deferred[i].epfd, EPOLL_CTL_ADD, deferred[i].fd, &deferred[i].ev) != 0) {
      snprintf(why, len, "%s, deferred from the new startup to the pause, failed: %s",
               deferred[i].detail, strerror(errno));
      rc = -1;
    }
  ndeferred = 0;
  pthread_mutex_unlock(&st_lock);
  return rc;
}

static int st_epoll_create(uintptr_t ra, int flags, int size)
{
  struct call c;

  begin(&c, MCR_SK_EPOLL_CREATE, C_CREATE, ra);
  h_int(&c, flags);
  d_add(&c, "epoll_create1(%s)", flags & EPOLL_CLOEXEC ? "EPOLL_CLOEXEC" : "0");
  ONE_FD_CALL(&c, 1, size > 0 ? REAL(epoll_create)(size) : REAL(epoll_create1)(flags));
}

MCR_EXPORT int epoll_create(int size)
{
  if (!RECORDING())
    return REAL(epoll_create)(size);
  if (size <= 0) { /* its own error: epoll_create1 would not give it */
    errno = EINVAL;
    return -1;
  }
  return st_epoll_create(RA, 0, size);
}

MCR_EXPORT int epoll_create1(int flags)
{
  if (!RECORDING())
    return REAL(epoll_create1)(flags);
  return st_epoll_create(RA, flags, 0);
}

/* Shadow epoll instances. In the new version of an update the program's epoll
 * instance can be the old process's (inherited at its number), on which the old
 * process waits until the commit. A wait on it during the new startup (nginx
 * probes EPOLLRDHUP with a socket pair in ngx_epoll_test_rdhup) would take the
 * old process's events, and an edge-triggered one is not reported again: that
 * connection stalls after the update. So until the startup ends such a wait
 * goes to a shadow instance that holds what the new startup registered of its
 * own descriptors; registrations of shared ones are the old process's
 * (replayed, not run) and stay out. Each shadow is one of the runtime's
 * descriptors, closed when the startup ends. */
#define MAX_SHADOWS 16
static struct {
  int epfd;   /* the program's number (an inherited instance) */
  int shadow; /* the runtime's instance */
} shadows[MAX_SHADOWS];
static unsigned nshadows;

/* st_lock held. The shadow of epfd, made at the first use: -1 if there is none
 * and none could be made. */
static int shadow_of(int epfd)
{
  int fd;

  for (unsigned i = 0; i < nshadows; i++)
    if (shadows[i].epfd == epfd)
      return shadows[i].shadow;
  if (nshadows == MAX_SHADOWS)
    return -1;
  mcr_in_runtime++;
  fd = REAL(epoll_create1)(EPOLL_CLOEXEC);
  if (fd >= 0)
    fd = mcr_fd_move_high(fd);
  mcr_in_runtime--;
  if (fd < 0)
    return -1;
  shadows[nshadows].epfd = epfd;
  shadows[nshadows++].shadow = fd;
  return fd;
}

/* st_lock held */
static void shadows_close(void)
{
  mcr_in_runtime++;
  for (unsigned i = 0; i < nshadows; i++)
    mcr_fd_close(shadows[i].shadow);
  mcr_in_runtime--;
  nshadows = 0;
}

int mcr_startup_wait_epfd(int epfd)
{
  int fd = epfd;

  pthread_mutex_lock(&st_lock);
  if (replaying && !ended && is_shared(epfd))
    fd = shadow_of(epfd);
  pthread_mutex_unlock(&st_lock);
  return fd;
}

/* A registration the new startup makes of its own fd on a shared instance:
 * into the shadow too (the replay decides what the program is told). */
static void shadow_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
  pthread_mutex_lock(&st_lock);
  if (replaying && !ended && is_shared(epfd) && !is_shared(fd)) {
    int s = shadow_of(epfd);
    if (s >= 0)
      REAL(epoll_ctl)(s, op, fd, ev);
  }
  pthread_mutex_unlock(&st_lock);
}

/* The event's data is not compared: it is often a pointer to the program's
 * object, which the update maps to the old process's (whose data the shared
 * epoll instance keeps). */
MCR_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
  struct call c;

  if (!RECORDING())
    return REAL(epoll_ctl)(epfd, op, fd, ev);
  if (UNLIKELY(replaying))
    shadow_ctl(epfd, op, fd, ev);
  begin(&c, MCR_SK_EPOLL_CTL, C_MODIFY, RA);
  c.target = epfd;
  c.arg = op;
  c.epoll_fd = fd;
  c.ev = ev;
  if (UNLIKELY(replaying) && ev && op != EPOLL_CTL_DEL) { /* outside st_lock: the heap's */
    struct mcr_object obj;
    mcr_in_runtime++;
    c.data_in_heap = mcr_heap_find((const void *)(uintptr_t)ev->data.u64, &obj) == 0;
    mcr_in_runtime--;
  }
  h_fd(&c, epfd);
  h_int(&c, op);
  h_fd(&c, fd);
  h_int(&c, ev && op != EPOLL_CTL_DEL ? (int64_t)ev->events : -1);
  d_add(&c, "epoll_ctl(%d, %s, %d", epfd,
        op == EPOLL_CTL_ADD ? "ADD" : op == EPOLL_CTL_MOD ? "MOD" : op == EPOLL_CTL_DEL ? "DEL"
                                                                                      : "?",
        fd);
  if (ev && op != EPOLL_CTL_DEL)
    d_add(&c, ", events %#x, data %#llx", ev->events, (unsigned long long)ev->data.u64);
  d_add(&c, ")");
  ONE_FD_CALL(&c, 0, REAL(epoll_ctl)(epfd, op, fd, ev));
}

MCR_EXPORT int eventfd(unsigned initval, int flags)
{
  struct call c;

  if (!RECORDING())
    return REAL(eventfd)(initval, flags);
  begin(&c, MCR_SK_EVENTFD, C_CREATE, RA);
  h_int(&c, initval);
  h_int(&c, flags);
  d_add(&c, "eventfd(%u, %#x)", initval, (unsigned)flags);
  ONE_FD_CALL(&c, 1, REAL(eventfd)(initval, flags));
}

MCR_EXPORT int signalfd(int fd, const sigset_t *mask, int flags)
{
  struct call c;

  if (!RECORDING())
    return REAL(signalfd)(fd, mask, flags);
  begin(&c, MCR_SK_SIGNALFD, fd < 0 ? C_CREATE : C_MODIFY, RA);
  c.target = fd;
  if (fd < 0)
    h_int(&c, -1);
  else
    h_fd(&c, fd);
  h_bytes(&c, mask, sizeof(*mask)); /* h_bytes takes NULL */
  h_int(&c, flags);
  d_add(&c, "signalfd(%d, mask, %#x)", fd, (unsigned)flags);
  ONE_FD_CALL(&c, fd < 0, REAL(signalfd)(fd, mask, flags));
}

MCR_EXPORT int timerfd_create(int clockid, int flags)
{
  struct call c;

  if (!RECORDING())
    return REAL(timerfd_create)(clockid, flags);
  begin(&c, MCR_SK_TIMERFD_CREATE, C_CREATE, RA);
  h_int(&c, clockid);
  h_int(&c, flags);
  d_add(&c, "timerfd_create(%d, %#x)", clockid, (unsigned)flags);
  ONE_FD_CALL(&c, 1, REAL(timerfd_create)(clockid, flags));
}

/* An absolute expiry differs from run to run: only a relative one is compared. */
MCR_EXPORT int timerfd_settime(int fd, int flags, const struct itimerspec *nv,
                               struct itimerspec *ov)
{
  struct call c;

  if (!RECORDING())
    return REAL(timerfd_settime)(fd, flags, nv, ov);
  begin(&c, MCR_SK_TIMERFD_SETTIME, C_MODIFY, RA);
  c.target = fd;
  h_fd(&c, fd);
  h_int(&c, flags);
  if (nv) {
    h_int(&c, nv->it_interval.tv_sec);
    h_int(&c, nv->it_interval.tv_nsec);
    if (!(flags & TFD_TIMER_ABSTIME)) {
      h_int(&c, nv->it_value.tv_sec);
      h_int(&c, nv->it_value.tv_nsec);
    }
  }
  d_add(&c, "timerfd_settime(%d, %#x, interval %lld.%09ld)", fd, (unsigned)flags,
        nv ? (long long)nv->it_interval.tv_sec : 0LL, nv ? nv->it_interval.tv_nsec : 0L);
  decide_locked(&c);
  if (c.act != A_RUN) {
    int r = (int)old_result(&c, NULL);
    if (ov && r == 0)
      memset(ov, 0, sizeof(*ov));
    record(&c);
    return r;
  } else {
    int r = REAL(timerfd_settime)(fd, flags, nv, ov);
    ran(&c, r, errno, 0, NULL);
    record(&c);
    return r;
  }
}

/* ---- dup ---- */

MCR_EXPORT int dup(int fd)
{
  struct call c;

  if (!RECORDING())
    return REAL(dup)(fd);
  begin(&c, MCR_SK_DUP, C_CREATE, RA);
  h_fd(&c, fd);
  d_add(&c, "dup(%d)", fd);
  ONE_FD_CALL(&c, 1, REAL(dup)(fd));
}

static int st_dup2(uintptr_t ra, int oldfd, int newfd, int flags, int three)
{
  struct call c;

  begin(&c, MCR_SK_DUP2, C_MODIFY, ra);
  c.target = newfd;
  h_fd(&c, oldfd);
  h_fd(&c, newfd);
  h_int(&c, flags);
  if (three)
    d_add(&c, "dup3(%d, %d, %#x)", oldfd, newfd, (unsigned)flags);
  else
    d_add(&c, "dup2(%d, %d)", oldfd, newfd);
  ONE_FD_CALL(&c, 1, three ? REAL(dup3)(oldfd, newfd, flags) : REAL(dup2)(oldfd, newfd));
}

MCR_EXPORT int dup2(int oldfd, int newfd)
{
  if (!RECORDING())
    return REAL(dup2)(oldfd, newfd);
  return st_dup2(RA, oldfd, newfd, 0, 0);
}

MCR_EXPORT int dup3(int oldfd, int newfd, int flags)
{
  if (!RECORDING())
    return REAL(dup3)(oldfd, newfd, flags);
  return st_dup2(RA, oldfd, newfd, flags, 1);
}

/* ---- messages on shared sockets ---- */

/* A message the new version's startup sends on a socket it shares with the old
 * process (one of a socketpair made by the old startup: nginx's master tells
 * its earlier workers about each new one, with the new channel's descriptor
 * attached) would reach the old process, which serves on if the update rolls
 * back: not sent, reported sent. The old startup sent it already; what it did
 * to the receiver is in the receiver's state, which its successor takes over.
 * Not logged (a message creates no object). */
MCR_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
  if (!RECORDING() || !replaying || !is_shared(fd) || !msg)
    return REAL(sendmsg)(fd, msg, flags);
  size_t len = 0;
  for (size_t i = 0; i < msg->msg_iovlen; i++)
    len += msg->msg_iov[i].iov_len;
  __atomic_add_fetch(&nsuppressed, 1, __ATOMIC_RELAXED);
  return (ssize_t)len;
}

/* ---- processes ---- */

/* Under st_lock: did this process's startup fork a child from the function
 * the stack ends in? */
static int spawned_from(const char *stack)
{
  const char *fn = innermost(stack);

  for (unsigned i = 0; entries && i < nentries; i++) {
    const struct mcr_startup_entry *e = &entries[i];
    if (e->kind == MCR_SK_FORK && e->result > 0 && !(e->flags & MCR_SE_LATE) &&
        !strcmp(innermost(e->stack), fn))
      return 1;
  }
  return 0;
}

/* A fork after the window ended. When this process's startup forked children
 * from the same function (nginx's ngx_spawn_process, which ngx_reap_children
 * calls again to respawn a worker that died), the fork is logged, flagged
 * MCR_SE_LATE: the parent's log gets the child's pid, and the child reopens
 * its window with the fork's 0, so that its own startup is logged up to its
 * first quiescent point as a startup child's is. An update can then pair the
 * respawned child with the startup fork whose child it replaced
 * (docs/coordinator.md, "Respawned workers"). Any other fork (a session
 * process) is not logged: it finishes on the old version. */
static pid_t late_fork(uintptr_t ra)
{
  struct call c;
  pid_t pid;
  int e, spawn;

  begin(&c, MCR_SK_FORK, C_FORK, ra);
  d_add(&c, "fork()");
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  spawn = spawned_from(c.stack);
  if (spawn)
    c.ordinal = next_ordinal(c.id, c.kind);
  pthread_mutex_unlock(&st_lock);
  pid = REAL(fork)(); /* in the runtime: the fork handlers' calls are not the program's */
  e = errno;
  mcr_in_runtime--;
  if (!spawn) {
    errno = e;
    return pid;
  }
  if (pid == 0) { /* one thread, our lock new (fork_child): the window opens again */
    ended = 0;
    __atomic_store_n(&mcr_startup_on, ON_LOG | (allocs_dropped ? 0 : ON_ALLOCS),
                     __ATOMIC_RELEASE);
  }
  c.act = A_RUN;
  c.late = MCR_SE_LATE;
  ran(&c, pid, e, 0, NULL);
  record(&c);
  errno = e;
  return pid;
}

/* Both processes log the fork, each with its own result: the child's log is
 * the parent's up to here (its memory), then "fork() = 0". Our lock is held
 * across the fork by our fork handlers, so the child's copy is consistent. */
MCR_EXPORT pid_t fork(void)
{
  struct call c;
  pid_t pid;

  if (!RECORDING()) {
    if (UNLIKELY(ended) && startup_parent && !mcr_in_runtime)
      return late_fork(RA);
    return REAL(fork)();
  }
  begin(&c, MCR_SK_FORK, C_FORK, RA);
  d_add(&c, "fork()");
  decide_locked(&c);
  if (c.act == A_SKIP) { /* refused (a conflict): fails as if out of processes */
    ran(&c, -1, EAGAIN, 0, NULL);
    record(&c);
    errno = EAGAIN;
    return -1;
  }
  if (c.act != A_RUN) {
    pid = (pid_t)old_result(&c, NULL);
    record(&c);
    return pid;
  }
  if (c.pair > 0 && mcr_update_tree_prefork() != 0) {
    ran(&c, -1, EAGAIN, 0, NULL);
    record(&c);
    errno = EAGAIN;
    return -1;
  }
  mcr_in_runtime++; /* the fork handlers' calls are not the program's */
  pid = REAL(fork)();
  int e = errno;
  mcr_in_runtime--;
  if (c.pair > 0) /* the child: its own replay and agent from here (the old child's log
                    * has the fork at the old entry's ordinal) */
    mcr_update_tree_forked(pid, c.pair, c.id, c.o ? c.o->ordinal : c.ordinal);
  ran(&c, pid, e, 0, NULL);
  record(&c);
  errno = e;
  return pid;
}

/* ---- children reaped ---- */

/* A child the program reaped: a startup child that exited with status 0
 * finished its work (nginx's cache loader exits once the cache is loaded), and
 * its fork is flagged MCR_SE_FINISHED, so that an update does not fork it again
 * nor refuse because it is gone (decide). Any other end (a signal, a failure)
 * leaves the fork as it is: a dead worker is still refused, unless respawned.
 * Without our lock: nginx reaps in its SIGCHLD handler, which may interrupt
 * a holder of the lock. The startup's fork entries were written long before;
 * the flag is set atomically. */
static void reaped(pid_t pid, int exited, int status)
{
  struct mcr_startup_entry *e = __atomic_load_n(&entries, __ATOMIC_ACQUIRE);
  unsigned n = __atomic_load_n(&nentries, __ATOMIC_ACQUIRE);

  if (pid <= 0 || !exited || status != 0 || !e)
    return;
  for (unsigned i = 0; i < n; i++)
    if (e[i].kind == MCR_SK_FORK && e[i].result == pid && !(e[i].flags & MCR_SE_LATE))
      __atomic_or_fetch(&e[i].flags, MCR_SE_FINISHED, __ATOMIC_RELEASE);
}

/* wait, waitpid and wait3 are wait4 (as in glibc): one real function. */
MCR_EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
  int st = 0;
  pid_t r = REAL(wait4)(pid, status ? status : &st, options, ru);
  if (r > 0 && UNLIKELY(startup_parent)) {
    int v = status ? *status : st;
    reaped(r, WIFEXITED(v), WEXITSTATUS(v));
  }
  return r;
}

MCR_EXPORT pid_t wait(int *status)
{
  return wait4(-1, status, 0, NULL);
}

MCR_EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
  return wait4(pid, status, options, NULL);
}

MCR_EXPORT pid_t wait3(int *status, int options, struct rusage *ru)
{
  return wait4(-1, status, options, ru);
}

MCR_EXPORT int waitid(idtype_t type, id_t id, siginfo_t *si, int options)
{
  int r = REAL(waitid)(type, id, si, options);
  if (r == 0 && si && si->si_pid > 0 && UNLIKELY(startup_parent))
    reaped(si->si_pid, si->si_code == CLD_EXITED, si->si_status);
  return r;
}

MCR_EXPORT pid_t setsid(void)
{
  struct call c;

  if (!RECORDING())
    return REAL(setsid)();
  begin(&c, MCR_SK_SETSID, C_PROCESS, RA);
  d_add(&c, "setsid()");
  ONE_FD_CALL(&c, 0, REAL(setsid)());
}

MCR_EXPORT int chdir(const char *path)
{
  struct call c;

  if (!RECORDING())
    return REAL(chdir)(path);
  begin(&c, MCR_SK_CHDIR, C_LOCAL, RA);
  h_str(&c, path);
  d_add(&c, "chdir(\"%s\")", path);
  ONE_FD_CALL(&c, 0, REAL(chdir)(path));
}

MCR_EXPORT int fchdir(int fd)
{
  struct call c;

  if (!RECORDING())
    return REAL(fchdir)(fd);
  begin(&c, MCR_SK_FCHDIR, C_LOCAL, RA);
  h_fd(&c, fd);
  d_add(&c, "fchdir(%d)", fd);
  ONE_FD_CALL(&c, 0, REAL(fchdir)(fd));
}

/* Credentials: one kind, the function's name in the hash and the detail. glibc's
 * versions change every thread's credentials (not the raw system calls). */
#define SETID(name, args_decl, cargs, hash_stmts, ...)                                         \
  MCR_EXPORT int name args_decl                                                               \
  {                                                                                           \
    struct call c;                                                                            \
    if (!RECORDING())                                                                         \
      return REAL(name) cargs;                                                                \
    begin(&c, MCR_SK_SETID, C_PROCESS, RA);                                                   \
    h_str(&c, #name);                                                                         \
    hash_stmts;                                                                               \
    d_add(&c, #name "(");                                                                     \
    d_add(&c, __VA_ARGS__);                                                                   \
    d_add(&c, ")");                                                                           \
    ONE_FD_CALL(&c, 0, REAL(name) cargs);                                                     \
  }

SETID(setuid, (uid_t u), (u), h_int(&c, u), "%u", (unsigned)u)
SETID(setgid, (gid_t g), (g), h_int(&c, g), "%u", (unsigned)g)
SETID(seteuid, (uid_t u), (u), h_int(&c, u), "%u", (unsigned)u)
SETID(setegid, (gid_t g), (g), h_int(&c, g), "%u", (unsigned)g)
SETID(setreuid, (uid_t r, uid_t e), (r, e), (h_int(&c, r), h_int(&c, e)), "%d, %d", (int)r,
      (int)e)
SETID(setregid, (gid_t r, gid_t e), (r, e), (h_int(&c, r), h_int(&c, e)), "%d, %d", (int)r,
      (int)e)
SETID(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s),
      (h_int(&c, r), h_int(&c, e), h_int(&c, s)), "%d, %d, %d", (int)r, (int)e, (int)s)
SETID(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s),
      (h_int(&c, r), h_int(&c, e), h_int(&c, s)), "%d, %d, %d", (int)r, (int)e, (int)s)
SETID(setgroups, (size_t n, const gid_t *list), (n, list),
      (h_int(&c, (int64_t)n), h_bytes(&c, list, list ? n * sizeof(gid_t) : 0)), "%zu groups", n)

/* It reads the group database (NSS may open files and sockets): those calls are
 * libc's, not the program's. */
MCR_EXPORT int initgroups(const char *user, gid_t group)
{
  struct call c;
  int r;

  if (!RECORDING())
    return REAL(initgroups)(user, group);
  begin(&c, MCR_SK_SETID, C_PROCESS, RA);
  h_str(&c, "initgroups");
  h_str(&c, user);
  h_int(&c, group);
  d_add(&c, "initgroups(\"%s\", %u)", user ? user : "(null)", (unsigned)group);
  decide_locked(&c);
  if (c.act != A_RUN) {
    r = (int)old_result(&c, NULL);
  } else {
    mcr_in_runtime++;
    r = REAL(initgroups)(user, group);
    mcr_in_runtime--;
    ran(&c, r, errno, 0, NULL);
  }
  record(&c);
  return r;
}

/* Only the options that shape the process are logged; the others (reads
 * above all: PR_GET_NAME fills the caller's buffer) always run. The thread's
 * name is the thread's own: set for real. */
MCR_EXPORT int prctl(int option, ...)
{
  unsigned long a[4];
  struct call c;
  va_list ap;
  enum cls cls;

  va_start(ap, option);
  for (int i = 0; i < 4; i++)
    a[i] = va_arg(ap, unsigned long);
  va_end(ap);
  if (!RECORDING())
    return REAL(prctl)(option, a[0], a[1], a[2], a[3]);
  switch (option) {
  case PR_SET_NAME:
    cls = C_LOCAL;
    break;
  case PR_SET_PDEATHSIG:
  case PR_SET_DUMPABLE:
  case PR_SET_KEEPCAPS:
  case PR_CAPBSET_DROP:
  case PR_SET_SECUREBITS:
  case PR_SET_TIMERSLACK:
  case PR_SET_CHILD_SUBREAPER:
  case PR_SET_NO_NEW_PRIVS:
  case PR_SET_THP_DISABLE:
    cls = C_PROCESS;
    break;
  default:
    return REAL(prctl)(option, a[0], a[1], a[2], a[3]);
  }
  begin(&c, MCR_SK_PRCTL, cls, RA);
  h_int(&c, option);
  if (option == PR_SET_NAME) {
    char name[17];
    snprintf(name, sizeof(name), "%s", a[0] ? (const char *)a[0] : "");
    h_str(&c, name);
    d_add(&c, "prctl(PR_SET_NAME, \"%s\")", name);
  } else {
    h_int(&c, (int64_t)a[0]);
    d_add(&c, "prctl(%d, %lu)", option, a[0]);
  }
  ONE_FD_CALL(&c, 0, REAL(prctl)(option, a[0], a[1], a[2], a[3]));
}

/* Logged only (a file mapping is the process's own). The system call directly:
 * the allocator maps memory through here before anything can be resolved. */
static void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static void *st_mmap(uintptr_t ra, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  struct call c;
  void *p;
  char path[64], target[128];
  ssize_t n;

  begin(&c, MCR_SK_MMAP, C_LOGONLY, ra);
  h_int(&c, (int64_t)len);
  h_int(&c, prot);
  h_int(&c, flags);
  h_fd(&c, fd);
  h_int(&c, off);
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  n = readlink(path, target, sizeof(target) - 1);
  target[n > 0 ? n : 0] = '\0';
  d_add(&c, "mmap(%d \"%s\", %zu, %#x, %#x, %lld)", fd, target, len, (unsigned)prot,
        (unsigned)flags, (long long)off);
  decide_locked(&c);
  p = raw_mmap(addr, len, prot, flags, fd, off);
  c.result = p == MAP_FAILED ? -1 : (int64_t)(uintptr_t)p;
  c.err = p == MAP_FAILED ? errno : 0;
  record(&c);
  return p;
}

/* An anonymous mapping of the startup: logged with its length; in a replay its
 * counterpart is mapped at the old address (pointers in the state the transfer
 * brings point there), or it is a conflict if that address is taken. */
static void *st_anon(uintptr_t ra, void *addr, size_t len, int prot, int flags, int fd,
                     off_t off)
{
  struct call c;
  void *p = MAP_FAILED;

  begin(&c, MCR_SK_MMAP_ANON, C_ANON, ra);
  h_int(&c, (int64_t)len);
  h_int(&c, prot);
  h_int(&c, flags);
  d_add(&c, "mmap(anonymous %s, %zu, %#x)", (flags & MAP_SHARED) ? "shared" : "private", len,
        (unsigned)prot);
  decide_locked(&c);
  if (c.act == A_REPLAY) {
    p = raw_mmap((void *)(uintptr_t)c.o->result, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);
    if (p != MAP_FAILED && (uintptr_t)p != (uintptr_t)c.o->result) { /* an old kernel */
      munmap(p, len);
      p = MAP_FAILED;
    }
    if (p == MAP_FAILED) {
      c.act = A_RUN;
      pthread_mutex_lock(&st_lock);
      conflict(&c, "the old version mapped %zu bytes at 0x%llx here; that address is taken in "
                   "the new process, so pointers to the mapping could not stay right",
               len, (unsigned long long)c.o->result);
      pthread_mutex_unlock(&st_lock);
    }
  }
  if (p == MAP_FAILED)
    p = raw_mmap(addr, len, prot, flags, fd, off);
  c.result = p == MAP_FAILED ? -1 : (int64_t)(uintptr_t)p;
  c.err = p == MAP_FAILED ? errno : 0;
  c.len = len;
  record(&c);
  return p;
}

/* Anonymous mappings at a fixed address are the program's own layout: not logged. */
#define ANON_LOGGED(flags) (((flags) & MAP_ANONYMOUS) && !((flags) & (MAP_FIXED | MAP_FIXED_NOREPLACE)))

MCR_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  if (!RECORDING())
    return raw_mmap(addr, len, prot, flags, fd, off);
  if (ANON_LOGGED(flags))
    return st_anon(RA, addr, len, prot, flags, fd, off);
  if (fd < 0 || (flags & MAP_ANONYMOUS))
    return raw_mmap(addr, len, prot, flags, fd, off);
  return st_mmap(RA, addr, len, prot, flags, fd, off);
}

MCR_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  if (!RECORDING())
    return raw_mmap(addr, len, prot, flags, fd, off);
  if (ANON_LOGGED(flags))
    return st_anon(RA, addr, len, prot, flags, fd, off);
  if (fd < 0 || (flags & MAP_ANONYMOUS))
    return raw_mmap(addr, len, prot, flags, fd, off);
  return st_mmap(RA, addr, len, prot, flags, fd, off);
}

size_t mcr_startup_anon_maps(struct mcr_anon_map *out, size_t max)
{
  size_t n = 0;
  for (size_t i = 0; i < old.nentries; i++) {
    const struct mcr_startup_entry *o = &old.entries[i];
    if (o->kind != MCR_SK_MMAP_ANON || o->result <= 0)
      continue;
    if (n < max) {
      struct mcr_anon_map *m = &out[n];
      m->addr = (uint64_t)o->result;
      m->len = o->dev[0];
      m->shared = strstr(o->detail, "anonymous shared") != NULL;
      m->paired = 0;
      m->detail = o->detail;
      m->stack = o->stack;
      for (unsigned k = 0; k < nentries; k++)
        if (entries[k].kind == MCR_SK_MMAP_ANON && (entries[k].flags & MCR_SE_REPLAYED) &&
            entries[k].result == o->result && entries[k].dev[0] == o->dev[0])
          m->paired = 1;
    }
    n++;
  }
  return n;
}

/* ---- the window ---- */

/* Under st_lock, when the startup ends: each live record's bytes, so that an
 * update can tell the objects the program never changed since (configuration
 * the new version's startup rebuilds: docs/update.md, "Reinitialized startup
 * state") from the ones it did. Up to HASH_CAP bytes: beyond, hash 0 (unknown). */
static void drop_dead_pieces(void);

static void hash_records(void)
{
  uint64_t done = 0;
  if (!allocs || !alloc_index)
    return;
  drop_dead_pieces(); /* (no compaction: rebuilding the index costs a millisecond here) */
  for (unsigned i = 0; i < nallocs; i++) {
    struct mcr_startup_alloc *a = &allocs[i];
    a->hash = 0;
    if (!a->live || done + a->size > HASH_CAP)
      continue;
    a->hash = mcr_startup_bytes_hash((const void *)(uintptr_t)a->addr, a->size);
    done += a->size;
  }
}

void mcr_startup_end(void)
{
  pthread_mutex_lock(&st_lock);
  if (!ended && __atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED)) {
    mcr_in_runtime++;
    hash_records();
    mcr_snapshot_take();
    mcr_in_runtime--;
  }
  __atomic_store_n(&mcr_startup_on, 0, __ATOMIC_RELEASE);
  ended = 1;
  replaying = 0;
  shadows_close();
  pthread_mutex_unlock(&st_lock);
}

size_t mcr_startup_entries(const struct mcr_startup_entry **out)
{
  *out = entries;
  return nentries;
}

void mcr_startup_refresh(void)
{
  pthread_mutex_lock(&st_lock);
  for (unsigned i = 0; i < nentries; i++) {
    struct mcr_startup_entry *e = &entries[i];
    int n = result_fds(e), same = n > 0;
    for (int k = 0; k < n; k++) {
      uint64_t dev, ino, link;
      int fd = k == 0 && (e->flags & MCR_SE_MOVED) ? e->fds[1] : e->fds[k];
      if (fd_identity(fd, &dev, &ino, &link) || dev != e->dev[k] || ino != e->ino[k] ||
          link != e->link_hash[k])
        same = 0;
    }
    if (same)
      e->flags |= MCR_SE_OPEN_NOW;
    else
      e->flags &= ~MCR_SE_OPEN_NOW;
  }
  pthread_mutex_unlock(&st_lock);
}

size_t mcr_startup_old_forks(struct mcr_startup_entry *out, size_t max)
{
  size_t k = 0;
  pthread_mutex_lock(&st_lock);
  for (size_t i = 0; i < old.nentries && k < max; i++)
    if (old.entries[i].kind == MCR_SK_FORK && old.entries[i].result > 0 &&
        !(old.entries[i].flags & MCR_SE_LATE))
      out[k++] = old.entries[i];
  pthread_mutex_unlock(&st_lock);
  return k;
}

size_t mcr_startup_conflicts(const struct mcr_startup_conflict **out)
{
  *out = conflicts;
  return nconflicts < MAX_CONFLICTS ? nconflicts : MAX_CONFLICTS;
}

size_t mcr_startup_notes(const struct mcr_startup_conflict **out)
{
  *out = notes;
  return notes ? nnotes : 0;
}

void mcr_startup_stats(struct mcr_startup_stats *out)
{
  pthread_mutex_lock(&st_lock);
  memset(out, 0, sizeof(*out));
  out->mode = !mcr_startup_on ? 0 : replaying ? 2 : 1;
  out->entries = nentries;
  out->dropped = ndropped;
  out->replayed = nreplayed;
  out->run = nrun;
  out->conflicts = nconflicts;
  out->by_args = nby_args;
  out->adopted = nadopted;
  out->suppressed = nsuppressed;
  out->notes = nnotes;
  out->allocs = nlive;
  out->allocs_dropped = allocs_dropped;
  out->old_entries = (unsigned)old.nentries;
  out->old_allocs = (unsigned)old.nallocs;
  pthread_mutex_unlock(&st_lock);
}

/* ---- allocation records ---- */

static size_t addr_slot(uint64_t addr)
{
  return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ull >> 40) & (ALLOC_SLOTS - 1);
}

/* Under st_lock: the index slot holding addr, or NULL. */
static uint32_t *find_alloc(uint64_t addr)
{
  size_t i = addr_slot(addr);

  for (size_t p = 0; p < ALLOC_SLOTS; p++, i = (i + 1) & (ALLOC_SLOTS - 1)) {
    uint32_t v = alloc_index[i];
    if (!v)
      return NULL;
    if (v != TOMB && allocs[v - 1].addr == addr)
      return &alloc_index[i];
  }
  return NULL;
}

/* Under st_lock: drops dead records and tombstones. */
static void compact(void)
{
  unsigned n = 0;

  memset(alloc_index, 0, ALLOC_SLOTS * sizeof(*alloc_index));
  for (unsigned i = 0; i < nallocs; i++) {
    size_t s;
    if (!allocs[i].live)
      continue;
    allocs[n] = allocs[i];
    for (s = addr_slot(allocs[n].addr); alloc_index[s]; s = (s + 1) & (ALLOC_SLOTS - 1))
      ;
    alloc_index[s] = n + 1;
    n++;
  }
  nallocs = nlive = n;
  ntomb = 0;
}

/* Under st_lock: drops the record at address a, if any. */
static void drop_record(uint64_t a)
{
  uint32_t *slot = find_alloc(a);
  if (slot) {
    allocs[*slot - 1].live = 0;
    *slot = TOMB;
    nlive--;
    ntomb++;
  }
}

/* Under st_lock: appends rec (its ordinal given here), replacing a record of
 * the same address (freed behind our back, or a pool block's memory carved
 * again: the address is new now). */
static void add_record(struct mcr_startup_alloc rec)
{
  size_t s;
  rec.ordinal = next_ordinal(rec.stack_id, 0);
  rec.live = 1;
  drop_record(rec.addr);
  if (nallocs == MAX_ALLOCS || ntomb > ALLOC_SLOTS / 4)
    compact();
  if (nallocs == MAX_ALLOCS || nlive >= ALLOC_SLOTS / 2) {
    /* a startup that loads data (redis reading its RDB file) allocates far
     * more than long-lived startup objects: stop recording rather than let
     * the open-addressing index fill up (every probe then walks it all) */
    __atomic_and_fetch(&mcr_startup_on, ~ON_ALLOCS, __ATOMIC_RELAXED);
    allocs_dropped++;
    return;
  }
  allocs[nallocs] = rec;
  for (s = addr_slot(rec.addr); alloc_index[s] && alloc_index[s] != TOMB;
       s = (s + 1) & (ALLOC_SLOTS - 1))
    ;
  if (alloc_index[s] == TOMB)
    ntomb--;
  alloc_index[s] = ++nallocs;
  nlive++;
}

void mcr_startup_alloc_hook(void *newp, void *oldp, uintptr_t ra)
{
  uint64_t id = 0;
  size_t size = 0;

  if (mcr_in_runtime || !(__atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED) & ON_ALLOCS))
    return;
  if (newp) {
    if (__atomic_add_fetch(&alloc_events, 1, __ATOMIC_RELAXED) > ALLOC_EVENT_CAP) {
      /* the window has lasted too long: stop paying for it */
      __atomic_and_fetch(&mcr_startup_on, ~ON_ALLOCS, __ATOMIC_RELAXED);
      __atomic_add_fetch(&allocs_dropped, 1, __ATOMIC_RELAXED);
      return;
    }
    id = mcr_stack_id_at(ra);
    size = mcr_heap_usable_size(newp);
  }
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (tables() != 0)
    goto out;
  if (oldp)
    drop_record((uint64_t)(uintptr_t)oldp);
  if (newp)
    add_record((struct mcr_startup_alloc){.addr = (uint64_t)(uintptr_t)newp, .size = size,
                                          .stack_id = id});
out:
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

uint64_t mcr_startup_bytes_hash(const void *p, size_t len)
{
  const unsigned char *b = p;
  uint64_t h = 0xcbf29ce484222325ull ^ len, w;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    memcpy(&w, b + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < len; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h ? h : 1;
}

void mcr_startup_piece_hook(const void *p, uint64_t size, const struct mcr_site *site,
                            uintptr_t ra)
{
  struct mcr_object o;
  uintptr_t a = (uintptr_t)p;

  if (mcr_in_runtime || !(__atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED) & ON_ALLOCS) ||
      !p || !size || mcr_heap_find(p, &o) != 0 || a <= (uintptr_t)o.base + MCR_TAG_MAX_HEADER ||
      size > (uintptr_t)o.base + o.size - a)
    return; /* not a piece: an object of its own (the allocation hook records it) */
  /* the events the allocation hook counts bound this too */
  if (__atomic_add_fetch(&alloc_events, 1, __ATOMIC_RELAXED) > ALLOC_EVENT_CAP) {
    __atomic_and_fetch(&mcr_startup_on, ~ON_ALLOCS, __ATOMIC_RELAXED);
    __atomic_add_fetch(&allocs_dropped, 1, __ATOMIC_RELAXED);
    return;
  }
  uint32_t site_id = __atomic_load_n(&site->id, __ATOMIC_RELAXED);
  /* the ID leaves out a frame of the site's own function (stackid.h,
   * mcr_stack_id_outside) */
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  const char *function = NULL;
  if (site->blob &&
      mcr_typetab_open(&tt, site->blob, site->blob->total_size, NULL) == 0 &&
      mcr_typetab_site(&tt, site->index, &rec) == 0)
    function = mcr_typetab_str(&tt, rec.function);
  uint64_t id = mcr_stack_id_outside(ra, function);
  id = (id ^ mcr_site_key_hash(site)) * 0x100000001b3ull;
  id = id ? id : 1;
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (tables() != 0)
    goto out;
  add_record((struct mcr_startup_alloc){.addr = (uint64_t)a, .size = size, .stack_id = id,
                                        .flags = MCR_SA_PIECE, .site = site_id,
                                        .block = (uint64_t)(uintptr_t)o.base});
out:
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

/* Under st_lock, outside the allocator: pieces whose block is gone (a pool
 * destroyed, its memory handed out again) are dead. */
static void drop_dead_pieces(void)
{
  for (unsigned i = 0; i < nallocs; i++) {
    struct mcr_startup_alloc *a = &allocs[i];
    struct mcr_object o;
    if (!a->live || !(a->flags & MCR_SA_PIECE))
      continue;
    if (mcr_heap_find((const void *)(uintptr_t)a->addr, &o) == 0 &&
        (uintptr_t)o.base == a->block && a->addr + a->size <= a->block + o.size)
      continue;
    drop_record(a->addr);
  }
}

size_t mcr_startup_allocs(const struct mcr_startup_alloc **out)
{
  size_t n;

  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (allocs && alloc_index) {
    drop_dead_pieces();
    compact();
  }
  n = nlive;
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
  *out = allocs;
  return n;
}

void mcr_startup_alloc_retarget(uint64_t from, uint64_t to)
{
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (allocs && alloc_index) {
    uint32_t *slot = find_alloc(from);
    if (slot) {
      /* the index is by address: the record moves to its new slot */
      uint32_t rec = *slot;
      size_t s;
      *slot = TOMB;
      ntomb++;
      allocs[rec - 1].addr = to;
      /* the old process's object, changed since its startup: never "unchanged" */
      allocs[rec - 1].hash = 0;
      if (allocs[rec - 1].flags & MCR_SA_PIECE) {
        struct mcr_object o;
        if (mcr_heap_find((const void *)(uintptr_t)to, &o) == 0)
          allocs[rec - 1].block = (uint64_t)(uintptr_t)o.base;
      }
      for (s = addr_slot(to); alloc_index[s] && alloc_index[s] != TOMB; s = (s + 1) & (ALLOC_SLOTS - 1))
        ;
      if (alloc_index[s] == TOMB)
        ntomb--;
      alloc_index[s] = rec;
    }
  }
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

void mcr_startup_alloc_rehash(uint64_t addr, int transferred)
{
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (allocs && alloc_index) {
    uint32_t *slot = find_alloc(addr);
    if (slot) {
      struct mcr_startup_alloc *a = &allocs[*slot - 1];
      a->hash = transferred ? 0 : mcr_startup_bytes_hash((const void *)(uintptr_t)a->addr, a->size);
    }
  }
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
}

/* (stack_id, ordinal) -> index into old.allocs + 1, open addressing, built on
 * first use (the transfer asks for every startup object: tens of thousands). */
static uint32_t *old_alloc_index;
static size_t old_alloc_cap;

static size_t alloc_key(uint64_t stack_id, uint32_t ordinal)
{
  return (size_t)((stack_id ^ ((uint64_t)ordinal * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull >> 20);
}

size_t mcr_startup_old_allocs(const struct mcr_startup_alloc **out)
{
  *out = old.allocs;
  return old.nallocs;
}

void mcr_startup_old_snapshot(struct mcr_startup_snapshot *out)
{
  *out = old.snap;
}

const struct mcr_startup_alloc *mcr_startup_old_alloc(uint64_t stack_id, uint32_t ordinal)
{
  if (!old.nallocs)
    return NULL;
  if (!old_alloc_index) {
    size_t cap = 1024;
    while (cap < 2 * old.nallocs)
      cap *= 2;
    uint32_t *t = map(cap * sizeof(*t));
    if (!t) { /* no memory: the slow way */
      for (size_t i = 0; i < old.nallocs; i++)
        if (old.allocs[i].stack_id == stack_id && old.allocs[i].ordinal == ordinal)
          return &old.allocs[i];
      return NULL;
    }
    for (size_t i = 0; i < old.nallocs; i++) {
      size_t h = alloc_key(old.allocs[i].stack_id, old.allocs[i].ordinal) & (cap - 1);
      while (t[h])
        h = (h + 1) & (cap - 1);
      t[h] = (uint32_t)i + 1;
    }
    old_alloc_cap = cap;
    old_alloc_index = t;
  }
  for (size_t h = alloc_key(stack_id, ordinal) & (old_alloc_cap - 1); old_alloc_index[h];
       h = (h + 1) & (old_alloc_cap - 1)) {
    const struct mcr_startup_alloc *a = &old.allocs[old_alloc_index[h] - 1];
    if (a->stack_id == stack_id && a->ordinal == ordinal)
      return a;
  }
  return NULL;
}

/* ---- serialization ----
 *
 * Layout (version 1), all integers in the host's byte order (x86_64: little):
 *   header, HEADER_SIZE bytes: magic "MCRSLOG\0", u32 version, u32 header_size,
 *     u64 total_len, u32 nentries, u32 nallocs, u32 entry_fixed, u32 alloc_rec,
 *     u32 dropped, u32 allocs_dropped, u64 checksum (FNV-1a 64 of every
 *     byte of the buffer but these 8), 8 bytes reserved (0), u64 snapshot copy,
 *     u64 snapshot length, u64 data address (mcr_startup_snapshot; absent in
 *     logs of 64-byte headers);
 *   nentries entries: entry_fixed bytes (u64 stack_id, u32 kind, u32 ordinal,
 *     u64 args_hash, i64 result, i32 err, u32 flags, i32 fds[2], u64 dev[2],
 *     u64 ino[2], u64 link_hash[2], u16 detail_len, u16 stack_len, u32 0),
 *     then the detail and the stack text (no NUL), padded with 0 to 8 bytes;
 *   nallocs records of alloc_rec bytes: u64 addr, u64 size, u64 stack_id,
 *     u32 ordinal, u32 flags (MCR_SA_*), u64 block, u64 hash, u32 site, u32 0
 *     (flags, block and hash absent in records of 32 bytes, site in records
 *     of 48).
 * A reader accepts larger entry_fixed/alloc_rec/header_size (fields appended
 * later) and skips what it does not know.
 */

struct cursor {
  unsigned char *p;
  size_t off, len;
};

static void put(struct cursor *c, const void *v, size_t n)
{
  memcpy(c->p + c->off, v, n);
  c->off += n;
}

#define PUT(c, v)                                                                              \
  do {                                                                                        \
    __typeof__(v) v_ = (v);                                                                   \
    put(c, &v_, sizeof(v_));                                                                  \
  } while (0)

/* Of everything but the checksum field itself. */
static uint64_t checksum(const unsigned char *p, size_t len)
{
  return mcr_fnv(mcr_fnv(MCR_FNV_OFFSET, p, 48), p + 56, len - 56);
}

static size_t pad8(size_t n)
{
  return (n + 7) & ~(size_t)7;
}

static size_t entry_bytes(const struct mcr_startup_entry *e)
{
  return pad8(ENTRY_FIXED + strnlen(e->detail, sizeof(e->detail)) +
              strnlen(e->stack, sizeof(e->stack)));
}

int mcr_startup_serialize(void **bufp, size_t *lenp)
{
  struct cursor c = {0};
  size_t total = HEADER_SIZE;
  uint64_t sum;
  int rc = -1;

  *bufp = NULL;
  *lenp = 0;
  mcr_in_runtime++;
  pthread_mutex_lock(&st_lock);
  if (allocs && alloc_index) {
    drop_dead_pieces();
    compact();
  }
  for (unsigned i = 0; i < nentries; i++)
    total += entry_bytes(&entries[i]);
  total += (size_t)nlive * ALLOC_REC;
  c.p = map(total);
  if (!c.p) {
    errno = ENOMEM;
    goto out;
  }
  c.len = total;
  put(&c, LOG_MAGIC, 8);
  PUT(&c, (uint32_t)LOG_VERSION);
  PUT(&c, (uint32_t)HEADER_SIZE);
  PUT(&c, (uint64_t)total);
  PUT(&c, (uint32_t)nentries);
  PUT(&c, (uint32_t)nlive);
  PUT(&c, (uint32_t)ENTRY_FIXED);
  PUT(&c, (uint32_t)ALLOC_REC);
  PUT(&c, (uint32_t)ndropped);
  PUT(&c, (uint32_t)allocs_dropped);
  PUT(&c, (uint64_t)0); /* checksum, below */
  PUT(&c, (uint64_t)0);
  {
    struct mcr_startup_snapshot sn;
    mcr_startup_snapshot_of(&sn);
    PUT(&c, sn.copy);
    PUT(&c, sn.len);
    PUT(&c, sn.data);
  }
  for (unsigned i = 0; i < nentries; i++) {
    const struct mcr_startup_entry *e = &entries[i];
    uint16_t dl = (uint16_t)strnlen(e->detail, sizeof(e->detail));
    uint16_t sl = (uint16_t)strnlen(e->stack, sizeof(e->stack));
    size_t start = c.off;
    PUT(&c, e->stack_id);
    PUT(&c, e->kind);
    PUT(&c, e->ordinal);
    PUT(&c, e->args_hash);
    PUT(&c, e->result);
    PUT(&c, e->err);
    PUT(&c, e->flags & MCR_SE_KNOWN_FLAGS);
    PUT(&c, e->fds[0]);
    PUT(&c, e->fds[1]);
    PUT(&c, e->dev[0]);
    PUT(&c, e->dev[1]);
    PUT(&c, e->ino[0]);
    PUT(&c, e->ino[1]);
    PUT(&c, e->link_hash[0]);
    PUT(&c, e->link_hash[1]);
    PUT(&c, dl);
    PUT(&c, sl);
    PUT(&c, (uint32_t)0);
    put(&c, e->detail, dl);
    put(&c, e->stack, sl);
    c.off = start + entry_bytes(e); /* the mapping is zeroed: padding is 0 */
  }
  for (unsigned i = 0; i < nlive; i++) {
    PUT(&c, allocs[i].addr);
    PUT(&c, allocs[i].size);
    PUT(&c, allocs[i].stack_id);
    PUT(&c, allocs[i].ordinal);
    PUT(&c, allocs[i].flags);
    PUT(&c, allocs[i].block);
    PUT(&c, allocs[i].hash);
    PUT(&c, allocs[i].site);
    PUT(&c, (uint32_t)0);
  }
  sum = checksum(c.p, total);
  memcpy(c.p + 48, &sum, sizeof(sum));
  *bufp = c.p;
  *lenp = total;
  rc = 0;
out:
  pthread_mutex_unlock(&st_lock);
  mcr_in_runtime--;
  return rc;
}

void mcr_startup_buffer_free(void *buf, size_t len)
{
  unmap(buf, len);
}

struct reader {
  const unsigned char *p;
  size_t off, len;
};

static int get(struct reader *r, void *v, size_t n)
{
  if (n > r->len - r->off)
    return -1;
  memcpy(v, r->p + r->off, n);
  r->off += n;
  return 0;
}

#define GET(r, v) get(r, &(v), sizeof(v))

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  int n = 0;

  if (err && errlen) {
    n = snprintf(err, errlen, "startup log: ");
    if (n < 0 || (size_t)n >= errlen)
      n = 0;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int mcr_startup_parse(const void *buf, size_t len, struct mcr_startup_log *out, char *err,
                      size_t errlen)
{
  struct reader r = {.p = buf, .len = len};
  char magic[8];
  uint32_t version, hsize, nent, nal, efix, arec, dropped, adropped;
  uint64_t total, sum, reserved;
  size_t memlen;
  unsigned char *mem;

  memset(out, 0, sizeof(*out));
  if (!buf)
    return fail(err, errlen, "no buffer");
  if (len < HEADER_SIZE)
    return fail(err, errlen, "truncated: %zu bytes, the header alone is %u", len, HEADER_SIZE);
  get(&r, magic, 8);
  GET(&r, version);
  GET(&r, hsize);
  GET(&r, total);
  GET(&r, nent);
  GET(&r, nal);
  GET(&r, efix);
  GET(&r, arec);
  GET(&r, dropped);
  GET(&r, adropped);
  GET(&r, sum);
  GET(&r, reserved);
  if (memcmp(magic, LOG_MAGIC, 8))
    return fail(err, errlen, "bad magic: not a startup log");
  if (version != LOG_VERSION)
    return fail(err, errlen, "version %u, this runtime reads version %u", version, LOG_VERSION);
  if (total != len)
    return fail(err, errlen, "truncated or padded: the header says %llu bytes, the buffer has %zu",
                (unsigned long long)total, len);
  if (hsize < HEADER_SIZE_V1 || hsize > len)
    return fail(err, errlen, "bad header size %u (buffer %zu bytes)", hsize, len);
  if (efix < ENTRY_FIXED || efix > 4096 || arec < ALLOC_REC_V1 || arec > 4096)
    return fail(err, errlen, "bad record sizes: entry %u (at least %u), allocation %u (at least %u)",
                efix, ENTRY_FIXED, arec, ALLOC_REC_V1);
  if (checksum(buf, len) != sum)
    return fail(err, errlen, "checksum mismatch: the buffer is corrupt");
  if (reserved)
    return fail(err, errlen, "reserved header bytes are not 0");
  if (nent > (len - hsize) / efix || nal > (len - hsize) / arec)
    return fail(err, errlen, "%u entries and %u allocation records cannot fit in %zu bytes", nent,
                nal, len);
  memlen = (size_t)nent * sizeof(struct mcr_startup_entry) +
           (size_t)nal * sizeof(struct mcr_startup_alloc);
  mem = map(memlen ? memlen : 1);
  if (!mem)
    return fail(err, errlen, "no memory for %u entries: %s", nent, strerror(errno));
  out->mem = mem;
  out->memlen = memlen ? memlen : 1;
  out->entries = (struct mcr_startup_entry *)mem;
  out->allocs = (struct mcr_startup_alloc *)(mem + (size_t)nent * sizeof(struct mcr_startup_entry));
  out->dropped = dropped;
  out->allocs_dropped = adropped;
  if (hsize >= HEADER_SIZE) {
    GET(&r, out->snap.copy);
    GET(&r, out->snap.len);
    GET(&r, out->snap.data);
  }
  r.off = hsize;
  for (uint32_t i = 0; i < nent; i++) {
    struct mcr_startup_entry *e = &out->entries[i];
    size_t start = r.off;
    uint16_t dl = 0, sl = 0;
    uint32_t zero;
    if (efix > len - r.off) {
      fail(err, errlen, "truncated: entry %u at offset %zu needs %u bytes, %zu left", i, start,
           efix, len - r.off);
      goto bad;
    }
    GET(&r, e->stack_id);
    GET(&r, e->kind);
    GET(&r, e->ordinal);
    GET(&r, e->args_hash);
    GET(&r, e->result);
    GET(&r, e->err);
    GET(&r, e->flags);
    GET(&r, e->fds[0]);
    GET(&r, e->fds[1]);
    GET(&r, e->dev[0]);
    GET(&r, e->dev[1]);
    GET(&r, e->ino[0]);
    GET(&r, e->ino[1]);
    GET(&r, e->link_hash[0]);
    GET(&r, e->link_hash[1]);
    GET(&r, dl);
    GET(&r, sl);
    GET(&r, zero);
    r.off = start + efix;
    if (e->kind == 0 || e->kind >= MCR_SK_COUNT) {
      fail(err, errlen, "entry %u at offset %zu: unknown kind %u", i, start, e->kind);
      goto bad;
    }
    if (e->flags & ~MCR_SE_KNOWN_FLAGS) {
      fail(err, errlen, "entry %u (%s): unknown flags %#x", i, mcr_startup_kind_name(e->kind),
           e->flags);
      goto bad;
    }
    if (e->fds[0] < -1 || e->fds[1] < -1 || (e->fds[1] >= 0 && e->fds[0] < 0) ||
        ((e->flags & MCR_SE_FD_RESULT) && e->result >= 0 && e->fds[0] < 0)) {
      fail(err, errlen, "entry %u (%s): bad result fds %d, %d", i, mcr_startup_kind_name(e->kind),
           e->fds[0], e->fds[1]);
      goto bad;
    }
    if (e->err < 0 || e->err > 4095) {
      fail(err, errlen, "entry %u (%s): bad errno %d", i, mcr_startup_kind_name(e->kind), e->err);
      goto bad;
    }
    if (dl >= MCR_SE_DETAIL || sl >= MCR_SE_STACK) {
      fail(err, errlen, "entry %u (%s): text too long (detail %u, stack %u bytes)", i,
           mcr_startup_kind_name(e->kind), dl, sl);
      goto bad;
    }
    if ((size_t)dl + sl > len - r.off || pad8(efix + (size_t)dl + sl) > len - start) {
      fail(err, errlen, "truncated: entry %u at offset %zu: its text runs past the end", i, start);
      goto bad;
    }
    get(&r, e->detail, dl);
    get(&r, e->stack, sl);
    if (memchr(e->detail, '\0', dl) || memchr(e->stack, '\0', sl)) {
      fail(err, errlen, "entry %u (%s): a NUL inside its text", i, mcr_startup_kind_name(e->kind));
      goto bad;
    }
    r.off = start + pad8(efix + (size_t)dl + sl);
  }
  for (uint32_t i = 0; i < nal; i++) {
    struct mcr_startup_alloc *a = &out->allocs[i];
    size_t start = r.off;
    if (arec > len - r.off) {
      fail(err, errlen, "truncated: allocation record %u at offset %zu needs %u bytes, %zu left",
           i, start, arec, len - r.off);
      goto bad;
    }
    GET(&r, a->addr);
    GET(&r, a->size);
    GET(&r, a->stack_id);
    GET(&r, a->ordinal);
    if (arec >= 48) {
      GET(&r, a->flags);
      GET(&r, a->block);
      GET(&r, a->hash);
    }
    if (arec >= ALLOC_REC)
      GET(&r, a->site);
    a->live = 1;
    r.off = start + arec;
    if (!a->addr || a->size > (1ull << 48)) {
      fail(err, errlen, "allocation record %u: bad address %#llx or size %llu", i,
           (unsigned long long)a->addr, (unsigned long long)a->size);
      goto bad;
    }
  }
  if (r.off != len) {
    fail(err, errlen, "%zu bytes after the last record (offset %zu)", len - r.off, r.off);
    goto bad;
  }
  out->nentries = nent;
  out->nallocs = nal;
  return 0;
bad:
  mcr_startup_log_free(out);
  return -1;
}

void mcr_startup_log_free(struct mcr_startup_log *log)
{
  unmap(log->mem, log->memlen);
  memset(log, 0, sizeof(*log));
}

/* ---- replay ---- */

int mcr_startup_replay_begin(const void *buf, size_t len, const int *inherited,
                             size_t ninherited, char *err, size_t errlen)
{
  struct mcr_startup_log log;
  size_t slots = 16;
  int rc = -1;

  mcr_in_runtime++;
  if (mcr_startup_parse(buf, len, &log, err, errlen) != 0)
    goto out_unlocked;
  pthread_mutex_lock(&st_lock);
  if (ended || !(mcr_startup_on & ON_LOG) || tables() != 0) {
    fail(err, errlen, "the startup window of this process is closed: too late to replay");
    goto out;
  }
  if (replaying || old.mem) {
    fail(err, errlen, "a replay has already begun");
    goto out;
  }
  while (slots < 2 * log.nentries)
    slots *= 2;
  old_used = map(log.nentries ? log.nentries : 1);
  if (!inherited_map)
    inherited_map = map(FD_MAP / 8);
  if (!claimed_map)
    claimed_map = map(FD_MAP / 8);
  if (!adopted_map)
    adopted_map = map(FD_MAP / 8);
  if (!fd_xlat)
    fd_xlat = map(FD_MAP * sizeof(*fd_xlat));
  by_stack.head = map(slots * sizeof(uint32_t));
  by_args.head = map(slots * sizeof(uint32_t));
  by_stack.next = map((log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  by_args.next = map((log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  if (!old_used || !inherited_map || !claimed_map || !adopted_map || !fd_xlat ||
      !by_stack.head || !by_args.head || !by_stack.next || !by_args.next) {
    fail(err, errlen, "no memory for the replay tables: %s", strerror(errno));
    unmap(old_used, log.nentries ? log.nentries : 1);
    unmap(by_stack.head, slots * sizeof(uint32_t));
    unmap(by_args.head, slots * sizeof(uint32_t));
    unmap(by_stack.next, (log.nentries ? log.nentries : 1) * sizeof(uint32_t));
    unmap(by_args.next, (log.nentries ? log.nentries : 1) * sizeof(uint32_t));
    memset(&by_stack, 0, sizeof(by_stack));
    memset(&by_args, 0, sizeof(by_args));
    old_used = NULL;
    goto out;
  }
  for (size_t i = 0; i < ninherited; i++)
    if (inherited[i] >= 0 && inherited[i] < FD_MAP)
      inherited_map[inherited[i] / 8] |= (unsigned char)(1u << (inherited[i] % 8));
  for (size_t i = 0; i < log.nentries; i++) /* late forks pair only by respawn_of */
    if (log.entries[i].flags & MCR_SE_LATE)
      old_used[i] = 1;
  old = log;
  log.mem = NULL;
  by_stack.slots = by_args.slots = slots;
  chains_build(&by_stack, stack_key, old.nentries);
  chains_build(&by_args, args_key, old.nentries);
  replaying = 1;
  rc = 0;
  if (getenv("MCR_STARTUP_TRACE") && *getenv("MCR_STARTUP_TRACE")) {
    int fd = real.open(getenv("MCR_STARTUP_TRACE"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                       0600);
    trace_fd = fd >= 0 ? mcr_fd_move_high(fd) : -1; /* high: the replay's numbers stay the old */
  }
out:
  pthread_mutex_unlock(&st_lock);
  if (log.mem)
    mcr_startup_log_free(&log);
out_unlocked:
  mcr_in_runtime--;
  return rc;
}

int mcr_startup_replay_switch(const void *buf, size_t len, uint64_t stack_id, uint32_t ordinal,
                              char *err, size_t errlen)
{
  struct mcr_startup_log log;
  size_t slots = 16, k;
  uint32_t *sh = NULL, *ah = NULL, *sn = NULL, *an = NULL;
  unsigned char *used = NULL;
  int rc = -1, late = 0;

  mcr_in_runtime++;
  if (mcr_startup_parse(buf, len, &log, err, errlen) != 0)
    goto out_unlocked;
  pthread_mutex_lock(&st_lock);
  if (!replaying || ended) {
    fail(err, errlen, "this process is not replaying its startup");
    goto out;
  }
  for (k = 0; k < log.nentries; k++) {
    const struct mcr_startup_entry *e = &log.entries[k];
    if (e->kind == MCR_SK_FORK && e->stack_id == stack_id && e->ordinal == ordinal &&
        e->result == 0 && !(e->flags & MCR_SE_LATE))
      break;
  }
  if (k == log.nentries) /* a respawned child (respawn_of): the late fork that made it */
    for (k = 0; k < log.nentries; k++)
      if (log.entries[k].kind == MCR_SK_FORK && log.entries[k].result == 0 &&
          (log.entries[k].flags & MCR_SE_LATE)) {
        late = 1;
        break;
      }
  if (k == log.nentries) {
    fail(err, errlen, "the old child's startup log has no fork that made it at this call "
                      "stack: it is not the child of this fork");
    goto out;
  }
  while (slots < 2 * log.nentries)
    slots *= 2;
  used = map(log.nentries ? log.nentries : 1);
  sh = map(slots * sizeof(uint32_t));
  ah = map(slots * sizeof(uint32_t));
  sn = map((log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  an = map((log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  if (!used || !sh || !ah || !sn || !an) {
    fail(err, errlen, "no memory for the replay tables: %s", strerror(errno));
    goto out;
  }
  /* up to the fork the old child's log is its parent's (its memory at the
   * fork): what the parent's replay used then is used here. A respawned
   * child's is its parent's log when it respawned it: the whole startup,
   * which this child's calls must not take. Its own calls come from another
   * call stack (ngx_reap_children's, not ngx_start_worker_processes'): they
   * pair by kind and arguments (match_old, rule 3). */
  for (size_t i = 0; i < k; i++)
    used[i] = late || i >= old.nentries ? 1 : old_used[i];
  used[k] = 1;
  for (size_t i = k; i < log.nentries; i++)
    if (log.entries[i].flags & MCR_SE_LATE)
      used[i] = 1;
  /* the parent's tables stay mapped (in-flight calls may point into them) */
  old = log;
  log.mem = NULL;
  old_used = used;
  by_stack = (struct chains){sh, sn, slots};
  by_args = (struct chains){ah, an, slots};
  chains_build(&by_stack, stack_key, old.nentries);
  chains_build(&by_args, args_key, old.nentries);
  old_alloc_index = NULL; /* rebuilt for this log at first use */
  old_alloc_cap = 0;
  child_from = (long)k;
  /* the parent's notes and counts (this child's memory at the fork) are the
   * parent's to report */
  nnotes = 0;
  nreplayed = nrun = nby_args = nadopted = nsuppressed = 0;
  shadows_close(); /* the parent's: this child's shared instances are its old child's */
  ndeferred = 0;   /* the parent's registrations: its own to make in its pause */
  sh = ah = sn = an = NULL;
  used = NULL;
  rc = 0;
out:
  pthread_mutex_unlock(&st_lock);
  unmap(used, log.nentries ? log.nentries : 1);
  unmap(sh, slots * sizeof(uint32_t));
  unmap(ah, slots * sizeof(uint32_t));
  unmap(sn, (log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  unmap(an, (log.nentries ? log.nentries : 1) * sizeof(uint32_t));
  if (log.mem)
    mcr_startup_log_free(&log);
out_unlocked:
  mcr_in_runtime--;
  return rc;
}

void mcr_startup_forget_fd(int fd)
{
  pthread_mutex_lock(&st_lock);
  /* the object now replaced: the latest entry that made fd, and what came after */
  unsigned from = nentries;
  for (unsigned i = nentries; i-- > 0;) {
    const struct mcr_startup_entry *x = &entries[i];
    if ((x->flags & MCR_SE_FD_RESULT) && x->result >= 0 && (x->fds[0] == fd || x->fds[1] == fd)) {
      from = i;
      break;
    }
  }
  if (from == nentries) {
    pthread_mutex_unlock(&st_lock);
    return;
  }
  struct mcr_startup_entry *made = &entries[from];
  int to = adopted_map && bit(adopted_map, fd) ? (int)xlat(fd) : -1;
  if (to >= 0 && to != fd && made->fds[0] == fd && result_fds(made) == 1) {
    /* a listening socket taken over from the old process: it lives on at the
     * old number (inherited); the entries keep their numbers and hashes, the
     * next replay gives the program that number (old_result) */
    made->flags |= MCR_SE_MOVED;
    made->fds[1] = to;
    clear_bit(adopted_map, fd);
  } else {
    for (unsigned i = from; i < nentries; i++) {
      struct mcr_startup_entry *x = &entries[i];
      const char *paren = strchr(x->detail, '(');
      long on = -1;
      if (paren) {
        char *end;
        on = strtol(paren + 1, &end, 10);
        if (end == paren + 1 || (*end != ',' && *end != ')'))
          on = -1;
      }
      if (i == from || (on == fd && x->kind != MCR_SK_FORK)) {
        x->stack_id = ~0ull;
        x->args_hash = 0;
      }
    }
  }
  pthread_mutex_unlock(&st_lock);
}

void mcr_startup_replay_inherit(int fd)
{
  pthread_mutex_lock(&st_lock);
  set_bit(inherited_map, fd);
  set_xlat(fd, -1);
  pthread_mutex_unlock(&st_lock);
}
