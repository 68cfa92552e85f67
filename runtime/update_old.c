/*
 * update_old.c - the old side of a live update (update.h, docs/update.md): spawn
 * the new version as this process's child with this process's startup argv,
 * environment and cwd and all its descriptors, let it replay its startup and park,
 * quiesce, hand it the heap description, wait for its transfer, then commit (exit)
 * or roll back (kill it, resume). Runs on the runtime's update worker thread.
 */
#define _GNU_SOURCE
#include "update.h"
#include "threads.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stddef.h>
#include <unistd.h>

#include "classmatch.h"
#include "control.h"
#include "dirty.h"
#include "heap.h"
#include "procstat.h"
#include "quiesce.h"
#include "rename.h"
#include "startup.h"
#include "transfer.h"

int mcr_update_old_active;
int mcr_update_heap_frozen;

/* What the process started with, saved before main (the program may rewrite
 * its argv and environment area later, as nginx does for its process titles). */
static char *start_args;  /* NUL-separated, from /proc/self/cmdline */
static size_t start_args_len;
static char *start_env;   /* NUL-separated, from /proc/self/environ */
static size_t start_env_len;
static char start_cwd[4096];
static sigset_t start_ignored;

static char *slurp(const char *path, size_t *len)
{
  size_t cap = 1 << 16, n = 0;
  char *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (p == MAP_FAILED || fd < 0)
    goto fail;
  for (;;) {
    if (n == cap) {
      char *q = mmap(NULL, cap * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (q == MAP_FAILED)
        goto fail;
      memcpy(q, p, n);
      munmap(p, cap);
      p = q;
      cap *= 2;
    }
    ssize_t r = read(fd, p + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  *len = n;
  return p;
fail:
  if (fd >= 0)
    close(fd);
  if (p != MAP_FAILED)
    munmap(p, cap);
  *len = 0;
  return NULL;
}

__attribute__((constructor(103))) static void update_old_init(void)
{
  start_args = slurp("/proc/self/cmdline", &start_args_len);
  start_env = slurp("/proc/self/environ", &start_env_len);
  if (!getcwd(start_cwd, sizeof(start_cwd)))
    start_cwd[0] = 0;
  sigemptyset(&start_ignored);
  for (int s = 1; s < NSIG; s++) {
    struct sigaction sa;
    if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
      sigaddset(&start_ignored, s);
  }
}

/* Splits a NUL-separated block into a NULL-terminated vector with room for
 * extra more entries (runtime-private memory, freed with the block's owner). */
static char **vec(const char *block, size_t len, size_t extra, size_t *count)
{
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (!block[i])
      n++;
  if (len && block[len - 1])
    n++;
  char **v = mmap(NULL, (n + extra + 1) * sizeof(char *), PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (v == MAP_FAILED)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < len;) {
    /* a process that was itself started by an update still has its
     * predecessor's MCR_UPDATE_* in its saved environment: never pass them on */
    if (strncmp(block + i, "MCR_UPDATE_", 11) != 0)
      v[k++] = (char *)block + i;
    i += strnlen(block + i, len - i) + 1;
  }
  v[k] = NULL;
  *count = k;
  return v;
}

static void add_phase(struct mcr_update_result *r, const char *name, uint64_t ns, const char *detail)
{
  if (r->nphases >= sizeof(r->phases) / sizeof(r->phases[0]))
    return;
  struct mcr_update_phase *p = &r->phases[r->nphases++];
  snprintf(p->name, sizeof(p->name), "%s", name);
  p->us = ns / 1000;
  snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
}

static void add_line(char (*lines)[256], size_t *n, const char *s)
{
  if (*n < MCR_UPDATE_MAX_LINES)
    snprintf(lines[(*n)++], 256, "%s", s);
}

static struct mcr_update_conflict *next_conflict(struct mcr_update_result *r)
{
  if (r->nconflicts >= MCR_UPDATE_MAX_CONFLICTS) {
    r->nconflicts_lost++;
    return NULL;
  }
  return &r->conflicts[r->nconflicts++];
}

/* A conflict this process found itself (the new version's come as lines). */
static void add_conflict(struct mcr_update_result *r, const char *kind, const char *object,
                         const char *fix, const char *message)
{
  struct mcr_update_conflict *c = next_conflict(r);
  const char *field[MCR_CF_COUNT] = {0};
  size_t len[MCR_CF_COUNT] = {0};

  if (!c)
    return;
  field[MCR_CF_KIND] = kind;
  field[MCR_CF_MESSAGE] = message;
  field[MCR_CF_OBJECT] = object;
  field[MCR_CF_FIX] = fix;
  for (int f = 0; f < MCR_CF_COUNT; f++)
    len[f] = field[f] ? strlen(field[f]) : 0;
  mcr_update_conflict_set(c, field, len);
}

#define FIX_CRASH                                                                        \
  "run the new version by itself with the same arguments to see why it ends (during "     \
  "an update its output goes where the old process's goes)"
#define FIX_TIMEOUT                                                                      \
  "give the phase more time (mcr-ctl update --timeout SEC), or see with mcr-ctl status "  \
  "which thread does not reach a quiescent point"

/* reason(r, KIND, printf-like message): a conflict of the old side with the
 * usual suggestion for its kind. */
#define reason(r, kind, ...)                                                             \
  do {                                                                                   \
    char l_[1024];                                                                       \
    const char *k_ = (kind);                                                             \
    snprintf(l_, sizeof(l_), __VA_ARGS__);                                               \
    add_conflict((r), k_, NULL,                                                          \
                 !strcmp(k_, "crash") ? FIX_CRASH : !strcmp(k_, "timeout") ? FIX_TIMEOUT : NULL, \
                 l_);                                                                    \
  } while (0)

/* Text payload from the new side: "phase NAME NS DETAIL", "note TEXT",
 * "conflict FIELDS" lines (update.h). */
static void take_lines(struct mcr_update_result *r, const struct mcr_buf *b)
{
  const char *p = (const char *)b->p, *end = p + b->len;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char line[512];
    if (n > 9 && !strncmp(p, "conflict ", 9)) {
      struct mcr_update_conflict *c = next_conflict(r);
      if (c)
        mcr_update_conflict_parse(c, p + 9, n - 9);
      p = nl ? nl + 1 : NULL;
      continue;
    }
    snprintf(line, sizeof(line), "%.*s", (int)(n < sizeof(line) - 1 ? n : sizeof(line) - 1), p);
    if (!strncmp(line, "own ", 4)) {
      unsigned long long us = strtoull(line + 4, NULL, 10);
      r->nown++;
      if (us > r->own_max_us)
        r->own_max_us = us;
    } else if (!strncmp(line, "note ", 5)) {
      add_line(r->notes, &r->nnotes, line + 5);
    } else if (!strncmp(line, "phase ", 6)) {
      char name[32] = "", detail[200] = "";
      unsigned long long ns = 0;
      int used = 0;
      if (sscanf(line + 6, "%31s %llu %n", name, &ns, &used) >= 2) {
        snprintf(detail, sizeof(detail), "%s", line + 6 + used);
        add_phase(r, name, ns, detail);
      }
    }
    p = nl ? nl + 1 : NULL;
  }
}

/* Thread classes (threads.h): every class of this process's startup threads
 * must have threads in the new version, whose startup makes them (its READY
 * lists them as "threads N<TAB>CLASS" lines); else their work would stop after
 * the update: a conflict. Other differences are notes. */
#define FIX_THREADS                                                                      \
  "create the threads in the new version's startup as the old one does (a class is the " \
  "creation stack's function names and the start routine: keep those names), or stop "  \
  "them in the old version first"
static void match_thread_classes(struct mcr_update_result *r, const struct mcr_buf *ready)
{
  size_t max = 64, n, nnew = 0;
  struct mcr_thread_class *mine =
      mmap(NULL, 2 * max * sizeof(*mine), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  struct mcr_thread_class *new_ = mine + max; /* the READY's classes */
  const char *olds[64], *news[64];
  char summary[256] = "";
  size_t slen = 0, matched = 0;

  if (mine == MAP_FAILED)
    return;
  n = mcr_threads_classes(mine, max);
  for (const char *p = (const char *)ready->p, *end = p + ready->len; p && p < end;) {
    /* "threads N<TAB>CLASS\n" */
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *tab;
    size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (ln > 8 && !strncmp(p, "threads ", 8) && (tab = memchr(p, '\t', ln)) && nnew < max) {
      snprintf(new_[nnew].name, sizeof(new_[nnew].name), "%.*s", (int)(p + ln - tab - 1),
               tab + 1);
      new_[nnew].n = (unsigned)strtoul(p + 8, NULL, 10);
      news[nnew] = new_[nnew].name;
      nnew++;
    }
    p = nl ? nl + 1 : NULL;
  }
  for (size_t i = 0; i < n && i < max; i++)
    olds[i] = mine[i].name;
  for (size_t i = 0; i < n && i < max; i++) {
    long k = mcr_class_pick(mine[i].name, olds, n < max ? n : max, news, nnew);
    unsigned theirs = k >= 0 ? new_[k].n : 0;
    char line[1200];
    if (!theirs && mine[i].startup) {
      snprintf(line, sizeof(line),
               "the old version runs %u thread%s of class %s, %u made by its startup; the new "
               "version's startup made none: their work would stop",
               mine[i].n, mine[i].n == 1 ? "" : "s", mine[i].name, mine[i].startup);
      add_conflict(r, "thread", mine[i].name, FIX_THREADS, line);
      continue;
    }
    if (!theirs) {
      snprintf(line, sizeof(line), "thread class %s: %u thread%s made after the old version's "
                                   "startup, none in the new one yet (it makes them when it needs "
                                   "them)",
               mine[i].name, mine[i].n, mine[i].n == 1 ? "" : "s");
      add_line(r->notes, &r->nnotes, line);
      continue;
    }
    if (strcmp(news[k], mine[i].name)) {
      snprintf(line, sizeof(line), "thread class %s is the new version's %s (a function of its "
                                   "creation stack inlined in one version only)",
               mine[i].name, news[k]);
      add_line(r->notes, &r->nnotes, line);
    }
    matched++;
    if (theirs != mine[i].n) {
      snprintf(line, sizeof(line), "thread class %s: %u thread%s in the old version, %u in the "
                                   "new one",
               mine[i].name, mine[i].n, mine[i].n == 1 ? "" : "s", theirs);
      add_line(r->notes, &r->nnotes, line);
    }
    const char *base = strrchr(mine[i].name, '('); /* the start routine, else "main" */
    int w = base ? snprintf(summary + slen, sizeof(summary) - slen, "%s%.*s %u", slen ? ", " : "",
                            (int)strcspn(base + 1, ")"), base + 1, theirs)
                 : snprintf(summary + slen, sizeof(summary) - slen, "%s%s %u", slen ? ", " : "",
                            mine[i].name, theirs);
    if (w > 0 && (size_t)w < sizeof(summary) - slen)
      slen += (size_t)w;
  }
  if (n > max)
    add_line(r->notes, &r->nnotes, "thread classes: more than 64, the others not compared");
  if (matched) {
    char line[400];
    snprintf(line, sizeof(line), "thread classes: %zu of the old version's %zu matched in the new "
                                 "one (%s)", matched, n < max ? n : max, summary);
    add_line(r->notes, &r->nnotes, line);
  }
  munmap(mine, 2 * max * sizeof(*mine));
}

/* Is fd one the runtime opened for itself (never inherited, never listed)? */
static struct mcr_dirty *own_dirty; /* the pre-copy's tracker, while it runs */

static int own_fd(int fd, const int *own, size_t nown)
{
  for (size_t i = 0; i < nown; i++)
    if (own[i] == fd)
      return 1;
  return mcr_control_fd_is_own(fd) || mcr_dirty_owns(own_dirty, fd);
}

/* The program's open descriptors (ascending). */
static size_t list_fds(int *out, size_t max, const int *own, size_t nown)
{
  size_t n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  if (!d)
    return 0;
  int dfd = dirfd(d);
  while ((e = readdir(d))) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || e->d_name[0] == '.' || fd == dfd || own_fd((int)fd, own, nown) ||
        mcr_fd_is_runtime((int)fd))
      continue;
    if (n < max)
      out[n] = (int)fd;
    n++;
  }
  closedir(d);
  /* insertion sort: a few thousand at most */
  size_t m = n < max ? n : max;
  for (size_t i = 1; i < m; i++)
    for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
      int t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return n;
}


static int make_log_memfd(void)
{
  void *buf = NULL;
  size_t len = 0;
  int fd = -1;

  mcr_startup_refresh();
  if (mcr_startup_serialize(&buf, &len) != 0)
    return -1;
  fd = (int)syscall(SYS_memfd_create, "mcr-startup-log", MFD_CLOEXEC);
  if (fd >= 0) {
    const char *p = buf;
    size_t left = len;
    while (left) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        close(fd);
        fd = -1;
        break;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  mcr_startup_buffer_free(buf, len);
  return fd >= 0 ? mcr_fd_move_high(fd) : -1;
}

/* The children this process's startup forked that still run as its
 * children: the old halves of a process tree's pairs (docs/coordinator.md). */
/* "NAME=LO-HI LO-HI ..." (hex) into buf: the stack of each registered thread
 * but the main one, from the mapping of /proc/self/maps that holds its outermost
 * frame (or the heap object, for a stack the program allocated itself: never
 * the whole heap), up to that frame (above it: glibc's descriptor and the
 * thread's TLS, which are not the stack). 0, or -1 when there is nothing to say
 * or no room. */
static int thread_stacks_env(char *buf, size_t cap)
{
  static struct mcr_map maps[4096];
  struct mcr_qthread *qs[1024];
  size_t n = mcr_threads_qstates(qs, 1024), nmaps = mcr_proc_maps(maps, 4096), len;
  int k = 0;

  if (n > 1024)
    n = 1024;
  len = (size_t)snprintf(buf, cap, "%s=", MCR_ENV_UPDATE_STACKS);
  for (size_t i = 0; i < n && len < cap; i++) {
    uintptr_t top = qs[i]->stack_hi, lo;
    struct mcr_object o;
    const struct mcr_map *m;
    if (!qs[i]->tid || qs[i]->tid == getpid() || !top)
      continue;
    if (mcr_heap_find((void *)(top - 1), &o) == 0) /* a stack the program allocated */
      lo = (uintptr_t)o.base;
    else if ((m = mcr_proc_map_at(maps, nmaps, top - 1)))
      lo = m->lo;
    else
      continue;
    int w = snprintf(buf + len, cap - len, "%s%lx-%lx", k ? " " : "", (unsigned long)lo,
                     (unsigned long)top);
    if (w < 0 || (size_t)w >= cap - len)
      return -1; /* no room: none rather than some */
    len += (size_t)w;
    k++;
  }
  return k ? 0 : -1;
}

static size_t startup_children(pid_t *out, size_t max)
{
  const struct mcr_startup_entry *e;
  size_t n = mcr_startup_entries(&e), k = 0;
  for (size_t i = 0; i < n && k < max; i++)
    if (e[i].kind == MCR_SK_FORK && e[i].result > 0 &&
        mcr_proc_parent((pid_t)e[i].result, 0) == getpid())
      out[k++] = (pid_t)e[i].result;
  return k;
}

/* posix_spawn of path with this process's startup argv/env/cwd, every program
 * descriptor kept at its number (dup2(fd, fd) clears FD_CLOEXEC), the channel
 * and log at theirs, default signal dispositions except what was ignored at
 * startup, an empty mask. */
static int spawn(const char *path, int chan, int logfd, const char *fault, const char *renames,
                 unsigned timeout_ms, pid_t *pid, const int *own, size_t nown, char *err,
                 size_t errlen)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  size_t nargs = 0, nenv = 0;
  char **argv = vec(start_args, start_args_len, 0, &nargs);
  char **envp = vec(start_env, start_env_len, 12, &nenv);
  size_t envlen = nenv + 12 + 1; /* what vec mapped, in pointers */
  static char e_fd[64], e_log[64], e_old[64], e_fault[160], e_heap[2048], e_timeout[64];
  static char e_renames[sizeof(MCR_ENV_UPDATE_RENAMES) + MCR_RENAME_SPEC_MAX];
  static char e_stacks[sizeof(MCR_ENV_UPDATE_STACKS) + 1024 * 34];
  int fds[4096];
  size_t nfds;
  sigset_t none, def;
  int rc = -1;

  if (!argv || !envp || !nargs) {
    snprintf(err, errlen, "this process's startup arguments were not saved");
    return -1;
  }
  snprintf(e_fd, sizeof(e_fd), "%s=%d", MCR_ENV_UPDATE_FD, chan);
  snprintf(e_log, sizeof(e_log), "%s=%d", MCR_ENV_UPDATE_LOG, logfd);
  snprintf(e_old, sizeof(e_old), "%s=%d", MCR_ENV_UPDATE_OLD, (int)getpid());
  envp[nenv++] = e_fd;
  envp[nenv++] = e_log;
  envp[nenv++] = e_old;
  snprintf(e_timeout, sizeof(e_timeout), "%s=%u", MCR_ENV_UPDATE_TIMEOUT, timeout_ms);
  envp[nenv++] = e_timeout;
  pid_t kids[256];
  size_t nkids = startup_children(kids, sizeof(kids) / sizeof(kids[0]));
  if (mcr_heap_update_env_tree(e_heap + strlen(MCR_ENV_UPDATE_HEAP) + 1,
                               sizeof(e_heap) - strlen(MCR_ENV_UPDATE_HEAP) - 1, kids,
                               nkids) == 0) {
    memcpy(e_heap, MCR_ENV_UPDATE_HEAP "=", strlen(MCR_ENV_UPDATE_HEAP) + 1);
    envp[nenv++] = e_heap;
  }
  if (fault && *fault) {
    snprintf(e_fault, sizeof(e_fault), "%s=%s", MCR_ENV_UPDATE_FAULT, fault);
    envp[nenv++] = e_fault;
  }
  if (renames && *renames) {
    snprintf(e_renames, sizeof(e_renames), "%s=%s", MCR_ENV_UPDATE_RENAMES, renames);
    envp[nenv++] = e_renames;
  }
  if (thread_stacks_env(e_stacks, sizeof(e_stacks)) == 0)
    envp[nenv++] = e_stacks;
  envp[nenv] = NULL;

  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  nfds = list_fds(fds, sizeof(fds) / sizeof(fds[0]), own, nown);
  for (size_t i = 0; i < nfds && i < sizeof(fds) / sizeof(fds[0]); i++) {
    int fl = fcntl(fds[i], F_GETFD);
    if (fl >= 0 && (fl & FD_CLOEXEC))
      posix_spawn_file_actions_adddup2(&fa, fds[i], fds[i]);
  }
  posix_spawn_file_actions_adddup2(&fa, chan, chan);
  posix_spawn_file_actions_adddup2(&fa, logfd, logfd);
  if (start_cwd[0])
    posix_spawn_file_actions_addchdir_np(&fa, start_cwd);
  sigemptyset(&none);
  sigfillset(&def);
  for (int s = 1; s < NSIG; s++)
    if (sigismember(&start_ignored, s))
      sigdelset(&def, s);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  rc = posix_spawn(pid, path, &fa, &at, argv, envp);
  if (rc == EBADF) {
    snprintf(err, errlen, "cannot start %s: %s (descriptors kept closing meanwhile)", path,
             strerror(rc));
    rc = -1;
  } else if (rc != 0) {
    snprintf(err, errlen, "cannot start %s: %s", path, strerror(rc));
    rc = -1;
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  munmap(argv, (nargs + 1) * sizeof(char *));
  munmap(envp, envlen * sizeof(char *));
  return rc;
}

/* The children of pid (/proc/PID/task/PID/children), each killed. */
static void kill_children(pid_t pid)
{
  char path[96], buf[4096];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return;
  buf[n] = 0;
  for (char *p = buf, *end; *p; p = end) {
    long c = strtol(p, &end, 10);
    if (end == p)
      break;
    if (c > 0)
      kill((pid_t)c, SIGKILL);
  }
}

static void kill_new(pid_t pid, int pidfd)
{
  if (pid <= 0)
    return;
  /* a process tree's new children die with their parent (PR_SET_PDEATHSIG,
   * their waits on it), unless the program replaced that signal and a child
   * hangs where it does not wait: killed first, to be sure */
  kill_children(pid);
  if (pidfd >= 0)
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
  else
    kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
}

/* The kind of conflict a failed wait or send is. */
static const char *recv_kind(int e)
{
  switch (e) {
  case ETIMEDOUT: return "timeout";
  case ESRCH:
  case ECONNRESET:
  case EPIPE: return "crash";
  default: return "other";
  }
}

static const char *recv_error(int e)
{
  switch (e) {
  case ETIMEDOUT: return "timed out";
  case ESRCH: return "the new version exited or crashed";
  case ECONNRESET:
  case EPIPE: return "the new version closed the channel (it exited or crashed)";
  case EPROTO: return "the new version sent garbage";
  default: return strerror(e);
  }
}

/* A wait for the new version, or a send to it, failed with e while doing
 * what: one conflict, saying how the new process ended if it did. When the
 * channel closed it may not be a zombie yet, so give it a moment (its pidfd
 * becomes readable when it is). */
static void lost_new(struct mcr_update_result *r, pid_t pid, int pidfd, int e, const char *what)
{
  int st;
  pid_t w;

  if (pidfd >= 0 && !strcmp(recv_kind(e), "crash")) {
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    while (poll(&pfd, 1, 500) < 0 && errno == EINTR)
      ;
  }
  w = waitpid(pid, &st, WNOHANG);
  if (w == pid && WIFSIGNALED(st))
    reason(r, "crash", "%s: the new version was killed by signal %d (%s)", what, WTERMSIG(st),
           strsignal(WTERMSIG(st)));
  else if (w == pid && WIFEXITED(st))
    reason(r, "crash", "%s: the new version exited with status %d", what, WEXITSTATUS(st));
  else
    reason(r, recv_kind(e), "%s: %s", what, recv_error(e));
}

static void rewrite_pidfiles(pid_t old, pid_t new);
static void snapshot_pidfiles(void);
static void restore_pidfiles(void);

/* One pair's conversation, old side: the new process's READY, the pre-copy,
 * the quiesce of this process, the state description and the new process's
 * transfer (update.h), up to its DONE. Shared by the root of an update (which
 * spawned its new version) and by an old child of a process tree (whose new
 * counterpart connected to it: mcr_update_partner). */
struct side {
  int chan;     /* the channel to the new process */
  pid_t pid;    /* the new process */
  int pidfd;    /* its pidfd, or -1 */
  unsigned timeout_ms;
  int own[6];   /* the runtime's descriptors of this update: never the program's */
  size_t nown;
  struct mcr_dirty *dirty;
  struct mcr_qresult qres;
  int quiesced;
  uint64_t t_quiesce;
  struct mcr_buf state;
};

/* Returns 0 once the new process answered DONE, -1 to roll back (r says why). */
static int converse(struct side *s, struct mcr_update_result *r)
{
  struct mcr_buf msg = {0};
  char err[256];
  int type;
  uint64_t t;

  /* 2. its startup: replayed, every thread parked */
  t = mcr_update_now_ns();
  if (mcr_chan_recv(s->chan, s->pidfd, s->timeout_ms, &type, &msg) != 0) {
    int e = errno;
    lost_new(r, s->pid, s->pidfd, e, "waiting for the new version to finish its startup");
    goto fail;
  }
  take_lines(r, &msg);
  if (type != MCR_U_READY) {
    if (!r->nconflicts)
      reason(r, "other", "the new version refused the update");
    goto fail;
  }
  match_thread_classes(r, &msg);
  mcr_buf_free(&msg);
  if (r->nconflicts)
    goto fail;
  add_phase(r, "startup", mcr_update_now_ns() - t, "new version started, startup replayed, threads parked");

  /* 2b. the heap copied ahead of the pause, writes to it tracked meanwhile */
  {
    struct mcr_buf pre = {0};
    char note[256];
    if (mcr_transfer_precopy_ranges(&pre, &s->dirty, note, sizeof(note)) != 0 ||
        mcr_chan_send(s->chan, MCR_U_PRECOPY, &pre) != 0) {
      mcr_buf_free(&pre);
      lost_new(r, s->pid, s->pidfd, errno, "sending the pre-copy ranges");
      goto fail;
    }
    mcr_buf_free(&pre);
    own_dirty = s->dirty;
    if (!s->dirty && note[0])
      add_line(r->notes, &r->nnotes, note);
  }
  if (mcr_chan_recv(s->chan, s->pidfd, s->timeout_ms, &type, &msg) != 0) {
    int e = errno;
    lost_new(r, s->pid, s->pidfd, e, "waiting for the pre-copy");
    goto fail;
  }
  take_lines(r, &msg);
  mcr_buf_free(&msg);
  if (type != MCR_U_PRECOPIED) {
    if (!r->nconflicts)
      reason(r, "other", "the new version failed the pre-copy");
    goto fail;
  }

  /* 3. quiesce this process */
  t = s->t_quiesce = mcr_update_now_ns();
  if (mcr_quiesce_begin(s->timeout_ms, &s->qres) != 0) {
    reason(r, "timeout", "this process did not quiesce: %s",
           s->qres.error[0] ? s->qres.error : "a thread did not reach its quiescent point in time");
    for (size_t i = 0; i < s->qres.nthreads; i++)
      if (!s->qres.threads[i].arrived) {
        char obj[32], line[512];
        snprintf(obj, sizeof(obj), "thread %d", (int)s->qres.threads[i].tid);
        snprintf(line, sizeof(line), "thread %d did not reach a quiescent point: %s",
                 (int)s->qres.threads[i].tid, s->qres.threads[i].where);
        add_conflict(r, "timeout", obj, FIX_TIMEOUT, line);
      }
    goto fail;
  }
  s->quiesced = 1;
  add_phase(r, "quiesce", mcr_update_now_ns() - t, "");

  /* 4. the state description: the new version reads the memory itself */
  t = mcr_update_now_ns();
  {
    int fds[8192];
    size_t nfds;
    if (s->pidfd >= 0 && s->nown < sizeof(s->own) / sizeof(s->own[0]))
      s->own[s->nown++] = s->pidfd;
    nfds = list_fds(fds, sizeof(fds) / sizeof(fds[0]), s->own, s->nown);
    if (nfds > sizeof(fds) / sizeof(fds[0])) {
      reason(r, "fd", "more than %zu open descriptors", sizeof(fds) / sizeof(fds[0]));
      goto fail;
    }
    __atomic_store_n(&mcr_update_heap_frozen, 1, __ATOMIC_SEQ_CST);
    if (mcr_transfer_describe(&s->state, s->t_quiesce, fds, nfds, s->dirty, err, sizeof(err)) != 0) {
      reason(r, "other", "%s", err);
      goto fail;
    }
  }
  if (mcr_chan_send(s->chan, MCR_U_STATE, &s->state) != 0) {
    lost_new(r, s->pid, s->pidfd, errno, "sending the state description");
    goto fail;
  }
  add_phase(r, "describe", mcr_update_now_ns() - t, "");

  /* 5. the transfer, in the new version */
  if (mcr_chan_recv(s->chan, s->pidfd, s->timeout_ms, &type, &msg) != 0) {
    int e = errno;
    lost_new(r, s->pid, s->pidfd, e, "waiting for the state transfer");
    goto fail;
  }
  __atomic_store_n(&mcr_update_heap_frozen, 0, __ATOMIC_SEQ_CST);
  take_lines(r, &msg);
  mcr_buf_free(&msg);
  if (type != MCR_U_DONE) {
    if (!r->nconflicts)
      reason(r, "other", "the new version could not take over the state");
    goto fail;
  }
  return 0;
fail:
  mcr_buf_free(&msg);
  return -1;
}

/* After a rollback: this process as before the update (the heap's pages
 * writable, its threads resumed). */
static void side_end(struct side *s, struct mcr_update_result *r)
{
  own_dirty = NULL;
  mcr_dirty_stop(s->dirty); /* the heap's pages writable as before */
  s->dirty = NULL;
  __atomic_store_n(&mcr_update_heap_frozen, 0, __ATOMIC_SEQ_CST);
  if (s->quiesced) {
    mcr_quiesce_end();
    r->pause_us = (mcr_update_now_ns() - s->t_quiesce) / 1000;
  }
  __atomic_store_n(&mcr_update_old_active, 0, __ATOMIC_SEQ_CST);
  mcr_qresult_free(&s->qres);
  mcr_buf_free(&s->state);
}

void mcr_update_run(const char *path, unsigned timeout_ms, const char *fault,
                    const char *renames, struct mcr_update_result *r)
{
  int sv[2] = {-1, -1}, logfd = -1, type;
  struct side s = {.chan = -1, .pid = -1, .pidfd = -1, .timeout_ms = timeout_ms};
  struct mcr_buf msg = {0};
  char err[256];
  uint64_t t0 = mcr_update_now_ns(), t;

  memset(r, 0, sizeof(*r));
  if (access(path, X_OK) != 0) {
    r->refused = 1;
    reason(r, "other", "%s: not executable by this process (uid %d): %s", path, (int)geteuid(),
           strerror(errno));
    return;
  }
  if (mcr_quiesce_points(NULL, 0) == 0) {
    r->refused = 1;
    reason(r, "other", "this program has no quiescent points compiled in: profile it with mcr-profile, "
              "then build it with mcr-clang --mcr-quiescence=FILE");
    return;
  }

  /* 1. spawn */
  snapshot_pidfiles();
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    reason(r, "other", "socketpair: %s", strerror(errno));
    goto rollback;
  }
  sv[0] = mcr_fd_move_high(sv[0]);
  sv[1] = mcr_fd_move_high(sv[1]);
  s.chan = sv[0];
  s.own[s.nown++] = sv[0];
  s.own[s.nown++] = sv[1];
  if ((logfd = make_log_memfd()) < 0) {
    reason(r, "other", "cannot write the startup log for the new version: %s", strerror(errno));
    goto rollback;
  }
  s.own[s.nown++] = logfd;
  __atomic_store_n(&mcr_update_old_active, 1, __ATOMIC_SEQ_CST);
  /* a descriptor listed for the child may close before the spawn (a client
   * leaving): posix_spawn then fails with EBADF, and a new list is made */
  int spawned = -1;
  for (int tries = 0; tries < 5 && spawned != 0; tries++)
    spawned = spawn(path, sv[1], logfd, fault, renames, timeout_ms, &s.pid, s.own, s.nown, err,
                    sizeof(err));
  if (spawned != 0) {
    s.pid = -1;
    reason(r, "other", "%s", err);
    goto rollback;
  }
  r->spawned_pid = s.pid;
  close(sv[1]);
  sv[1] = -1;
  close(logfd);
  logfd = -1;
  s.nown = 1; /* the channel */
  s.pidfd = (int)syscall(SYS_pidfd_open, s.pid, 0);
  if (s.pidfd >= 0)
    s.pidfd = mcr_fd_move_high(s.pidfd);

  if (converse(&s, r) != 0)
    goto rollback;

  /* 6. commit */
  t = mcr_update_now_ns();
  if (mcr_chan_send(s.chan, MCR_U_COMMIT, NULL) != 0 ||
      mcr_chan_recv(s.chan, s.pidfd, timeout_ms, &type, &msg) != 0 || type != MCR_U_RESUMED) {
    int e = errno;
    lost_new(r, s.pid, s.pidfd, e, "committing: the new version did not resume");
    goto rollback;
  }
  {
    /* "resumed NS": when its threads were released; then, for a tree, "pause
     * US" lines of its children's processes (the tree's pause is the longest) */
    unsigned long long at = 0;
    const char *p = msg.p ? (const char *)msg.p : "";
    if (msg.len && sscanf(p, "resumed %llu", &at) == 1 && at > s.t_quiesce)
      r->pause_us = (at - s.t_quiesce) / 1000;
    for (const char *q = memchr(p, '\n', msg.len); q && q + 1 < p + msg.len;
         q = memchr(q + 1, '\n', (size_t)(p + msg.len - q - 1))) {
      unsigned long long us;
      if (sscanf(q + 1, "pause %llu", &us) == 1 && us > r->pause_us)
        r->pause_us = us;
    }
    take_lines(r, &msg);
  }
  mcr_buf_free(&msg);
  add_phase(r, "commit", mcr_update_now_ns() - t, "");
  if (r->nown > 1 && r->pause_us) {
    char line[256];
    snprintf(line, sizeof(line), "process tree of %u processes: the clients' longest pause %.1f ms; "
                                 "the slowest process's own part %.1f ms (its quiesce to the end of "
                                 "its transfer), the rest is the tree's commit",
             r->nown, r->pause_us / 1e3, r->own_max_us / 1e3);
    add_line(r->notes, &r->nnotes, line);
  }
  r->committed = 1;
  r->new_pid = s.pid;
  own_dirty = NULL;
  mcr_dirty_stop(s.dirty);
  r->total_us = (mcr_update_now_ns() - t0) / 1000;
  mcr_buf_free(&s.state);
  close(s.chan);
  if (s.pidfd >= 0)
    close(s.pidfd);
  /* this process stays quiesced until it exits (mcr_update_finish) */
  return;

rollback:
  kill_new(s.pid, s.pidfd);
  side_end(&s, r);
  mcr_buf_free(&msg);
  if (sv[0] >= 0)
    close(sv[0]);
  if (sv[1] >= 0)
    close(sv[1]);
  if (logfd >= 0)
    close(logfd);
  if (s.pidfd >= 0)
    close(s.pidfd);
  if (s.pid > 0)
    rewrite_pidfiles(s.pid, getpid()); /* the new startup wrote its pid: ours again */
  restore_pidfiles(); /* ...or removed or emptied it, exiting (lighttpd) */
  r->new_pid = 0;
  r->total_us = (mcr_update_now_ns() - t0) / 1000;
  if (!r->nconflicts)
    reason(r, "other", "unknown failure");
}

/* The conflicts and notes of r as FAIL lines (update.h). */
static void put_result_lines(struct mcr_buf *b, const struct mcr_update_result *r)
{
  for (size_t i = 0; i < r->nconflicts; i++) {
    const char *f[MCR_CF_COUNT];
    for (int k = 0; k < MCR_CF_COUNT; k++)
      f[k] = mcr_update_conflict_get(&r->conflicts[i], (enum mcr_conflict_field)k);
    mcr_buf_printf(b, "conflict ");
    mcr_conflict_fields(b, f);
    mcr_buf_printf(b, "\n");
  }
  for (size_t i = 0; i < r->nnotes; i++)
    mcr_buf_printf(b, "note %s\n", r->notes[i]);
}

/* The old child of a process tree (docs/coordinator.md), on a runtime thread
 * of this process: peer, the new version's counterpart (a child of the new
 * root), connected over fd. This process sends its startup log, then goes
 * through the pair's conversation; after DONE it waits for the tree's
 * decision: COMMIT (this process exits) or anything else (it resumes, and
 * tells the peer why with FAIL). */
static struct mcr_update_result partner_result; /* one update at a time */

void mcr_update_partner(int fd, pid_t peer, unsigned timeout_ms)
{
  struct mcr_update_result *r = &partner_result;
  struct side s = {.chan = fd, .pid = peer, .pidfd = -1, .timeout_ms = timeout_ms};
  struct mcr_buf msg = {0}, log = {0};
  void *buf = NULL;
  size_t len = 0;
  int type;

  memset(r, 0, sizeof(*r));
  s.own[s.nown++] = fd;
  s.pidfd = (int)syscall(SYS_pidfd_open, peer, 0);
  if (s.pidfd >= 0)
    s.pidfd = mcr_fd_move_high(s.pidfd);
  __atomic_store_n(&mcr_update_old_active, 1, __ATOMIC_SEQ_CST);
  mcr_startup_refresh();
  if (mcr_startup_serialize(&buf, &len) != 0) {
    reason(r, "other", "process %d cannot serialize its startup log", (int)getpid());
    goto rollback;
  }
  {
    /* the program's descriptors first: the peer takes them before it replays
     * the rest of this process's startup, so that what this process made
     * after the fork (its epoll instance) replays as inherited, at its number */
    int fds[8192];
    int own[sizeof(s.own) / sizeof(s.own[0]) + 1];
    size_t nown = 0, nfds;
    for (size_t i = 0; i < s.nown; i++)
      own[nown++] = s.own[i];
    if (s.pidfd >= 0)
      own[nown++] = s.pidfd;
    nfds = list_fds(fds, sizeof(fds) / sizeof(fds[0]), own, nown);
    if (nfds > sizeof(fds) / sizeof(fds[0]))
      nfds = sizeof(fds) / sizeof(fds[0]);
    mcr_buf_u32(&log, (uint32_t)nfds);
    for (size_t i = 0; i < nfds; i++)
      mcr_buf_u32(&log, (uint32_t)fds[i]);
  }
  mcr_buf_put(&log, buf, len);
  mcr_startup_buffer_free(buf, len);
  if (log.bad || mcr_chan_send(fd, MCR_U_LOG, &log) != 0) {
    lost_new(r, peer, s.pidfd, errno, "sending the startup log");
    goto rollback;
  }
  mcr_buf_free(&log);
  if (converse(&s, r) != 0)
    goto rollback;
  /* the tree's decision: the new root commits every pair or none; until then
   * this process stays quiesced (its peer dies with the new root) */
  if (mcr_chan_recv(fd, s.pidfd, 600000u, &type, &msg) != 0 || type != MCR_U_COMMIT) {
    if (!r->nconflicts)
      reason(r, "other", "the update of the process tree did not commit");
    goto rollback;
  }
  _exit(0); /* as mcr_update_finish: nothing of the program runs any more */

rollback:
  mcr_buf_free(&msg);
  mcr_buf_free(&log);
  {
    struct mcr_buf why = {0};
    put_result_lines(&why, r);
    mcr_chan_send(fd, MCR_U_FAIL, &why); /* the peer may be gone: no matter */
    mcr_buf_free(&why);
  }
  side_end(&s, r);
  if (s.pidfd >= 0)
    close(s.pidfd);
}

/* sd_notify(MAINPID=new) to the service manager, if it gave us a socket. */
static void notify_main_pid(pid_t pid)
{
  const char *path = getenv("NOTIFY_SOCKET");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  char msg[64];
  size_t plen;
  int fd;

  if (!path || !*path || (path[0] != '/' && path[0] != '@'))
    return;
  plen = strlen(path);
  if (plen >= sizeof(sa.sun_path))
    return;
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@')
    sa.sun_path[0] = 0;
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return;
  int n = snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)pid);
  sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen));
  close(fd);
}

/* Files the startup opened for writing with fopen (pid files: redis'): the
 * startup log has the opens made through open(), not the one inside libc's
 * fopen. Absolute paths, resolved when opened. */
#define MAX_WFILES 16
static char startup_wfiles[MAX_WFILES][512];
static int nstartup_wfiles;

static FILE *note_fopen(FILE *f, const char *path, const char *mode)
{
  if (f && path && mode && (strchr(mode, 'w') || strchr(mode, 'a')) &&
      __atomic_load_n(&mcr_startup_on, __ATOMIC_RELAXED)) {
    int i = __atomic_fetch_add(&nstartup_wfiles, 1, __ATOMIC_RELAXED);
    if (i < MAX_WFILES && !realpath(path, startup_wfiles[i]))
      startup_wfiles[i][0] = 0;
  }
  return f;
}

__attribute__((visibility("default"))) FILE *fopen(const char *path, const char *mode)
{
  static FILE *(*real)(const char *, const char *);
  if (!real)
    real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen");
  return real ? note_fopen(real(path, mode), path, mode) : NULL;
}

__attribute__((visibility("default"))) FILE *fopen64(const char *path, const char *mode)
{
  static FILE *(*real)(const char *, const char *);
  if (!real)
    real = (FILE * (*)(const char *, const char *)) dlsym(RTLD_NEXT, "fopen64");
  return real ? note_fopen(real(path, mode), path, mode) : NULL;
}

/* If the file at path holds exactly the pid old (a line), it gets new. */
static void rewrite_pidfile(const char *path, pid_t old, pid_t new, int progfd);

/* Calls fn on each file the startup opened for writing: by fopen (no descriptor
 * known: -1) or by open (the descriptor the program got). */
static void startup_files(void (*fn)(const char *path, int progfd, void *arg), void *arg)
{
  const struct mcr_startup_entry *e;
  size_t n = mcr_startup_entries(&e);
  char path[MCR_SE_DETAIL];

  for (int i = 0; i < nstartup_wfiles && i < MAX_WFILES; i++)
    if (startup_wfiles[i][0])
      fn(startup_wfiles[i], -1, arg);
  for (size_t i = 0; i < n; i++) {
    const char *q1, *q2;
    if (e[i].kind != MCR_SK_OPEN || e[i].result < 0 || !(q1 = strchr(e[i].detail, '"')) ||
        !(q2 = strchr(q1 + 1, '"')) || q2 - q1 - 1 >= (long)sizeof(path))
      continue;
    snprintf(path, sizeof(path), "%.*s", (int)(q2 - q1 - 1), q1 + 1);
    fn(path, (int)e[i].result, arg);
  }
}

/* The pid files this process wrote at startup: if one still holds the pid
 * old, it gets new. At a commit (old: this process) for a pid file kept open
 * (one written and closed at startup was written again by the new version's
 * startup); at a rollback (old: the killed new version) for every one. */
static void rewrite_file(const char *path, int progfd, void *arg)
{
  const pid_t *p = arg; /* old, new */
  rewrite_pidfile(path, p[0], p[1], progfd);
}

static void rewrite_pidfiles(pid_t old, pid_t new)
{
  pid_t p[2] = {old, new};
  startup_files(rewrite_file, p);
}

/* The pid files as the update found them: startup-written files holding exactly
 * this process's pid. A new version that fails may remove or truncate them on its
 * way out (its exit path cleans up "its" pid file): a rollback puts them back. */
#define MAX_PIDFILES 8
static char pidfile_snap[MAX_PIDFILES][512];
static int npidfile_snap;

static int holds_pid(const char *path, pid_t pid)
{
  char buf[64], want[32];
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return 0;
  ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
  close(fd);
  if (got <= 0)
    return 0;
  buf[got] = 0;
  snprintf(want, sizeof(want), "%d\n", (int)pid);
  return !strcmp(buf, want);
}

static void snap_one(const char *path)
{
  for (int i = 0; i < npidfile_snap; i++)
    if (!strcmp(pidfile_snap[i], path))
      return;
  if (npidfile_snap < MAX_PIDFILES && strlen(path) < sizeof(pidfile_snap[0]) &&
      holds_pid(path, getpid()))
    snprintf(pidfile_snap[npidfile_snap++], sizeof(pidfile_snap[0]), "%s", path);
}

static void snap_file(const char *path, int progfd, void *arg)
{
  (void)progfd;
  (void)arg;
  snap_one(path);
}

static void snapshot_pidfiles(void)
{
  npidfile_snap = 0;
  startup_files(snap_file, NULL);
}

static void restore_pidfiles(void)
{
  char line[32];
  int ll = snprintf(line, sizeof(line), "%d\n", (int)getpid());
  for (int i = 0; i < npidfile_snap; i++) {
    if (holds_pid(pidfile_snap[i], getpid()))
      continue;
    int fd = open(pidfile_snap[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
      continue;
    if (write(fd, line, (size_t)ll) != ll)
      (void)ftruncate(fd, 0);
    close(fd);
  }
}

/* One line of buf at *p that is pid a or b: 1 (a), 2 (b), 0 (neither). */
static int pid_line(const char **p, pid_t a, pid_t b)
{
  char *end;
  long v = strtol(*p, &end, 10);
  if (end == *p || *end != '\n' || **p < '0' || **p > '9' || (v != a && v != b))
    return 0;
  *p = end + 1;
  return v == a ? 1 : 2;
}

/* A pid file holding old gets new. Kept open by the program (progfd), it was
 * also written by the other version's startup through the same descriptor, at
 * the shared offset: it then reads "old\nnew\n" or "new\nold\n"; and the
 * descriptor's offset must end up after the line written, or the next
 * generation's startup leaves a hole of NULs before its own. */
static void rewrite_pidfile(const char *path, pid_t old, pid_t new, int progfd)
{
  char buf[64];
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return;
  ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
  if (got > 0) {
    const char *p = buf;
    int l1, l2 = 0;
    buf[got] = 0;
    l1 = pid_line(&p, old, new);
    if (l1 && *p)
      l2 = pid_line(&p, old, new);
    if (!*p && (l1 == 1 || l2 == 1) && (!l2 || l1 != l2)) {
      char line[32];
      struct stat a, b;
      int ll = snprintf(line, sizeof(line), "%d\n", (int)new);
      if (pwrite(fd, line, (size_t)ll, 0) == ll && ftruncate(fd, ll) == 0 && progfd >= 0 &&
          fstat(fd, &a) == 0 && fstat(progfd, &b) == 0 && a.st_dev == b.st_dev &&
          a.st_ino == b.st_ino && lseek(progfd, 0, SEEK_CUR) > ll)
        lseek(progfd, ll, SEEK_SET);
    }
  }
  close(fd);
}

void mcr_update_finish(const struct mcr_update_result *r)
{
  notify_main_pid(r->new_pid);
  rewrite_pidfiles(getpid(), r->new_pid);
  /* No atexit handlers, no stdio flush: the new version owns every file and
   * connection now, and this process's handlers would act on them (remove the
   * pid file, flush a log buffer twice, send a goodbye). */
  _exit(0);
}
