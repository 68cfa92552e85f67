/*
 * update_new.c - the new side of a live update (update.h, docs/update.md).
 *
 * A process started by an old version for an update finds MCR_UPDATE_FD in its
 * environment. Before any program code runs it removes the MCR_UPDATE_*
 * variables (the program sees the old process's environment), starts replaying
 * the old startup log, and raises the quiesce flag, so that every thread parks
 * at its first quiescent point. A runtime thread (the agent) then tells the old
 * process it is ready, takes the state over when the old process has quiesced,
 * and releases the threads on commit.
 */
#define _GNU_SOURCE
#include "update.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "control.pb-c.h"
#include "stackid.h"

#include "elfsym.h"
#include "image.h"
#include "procstat.h"
#include "quiesce.h"
#include "rename.h"
#include "startup.h"
#include "threads.h"
#include "transfer.h"

int mcr_update_parking;

#define WAIT_STARTUP_MS 60000u  /* the old side enforces its own, shorter, timeout */
static unsigned wait_startup_ms = WAIT_STARTUP_MS; /* 3/4 of MCR_UPDATE_TIMEOUT, if given: a
                                                    * child's own timeout then names it,
                                                    * before the old root's (which starts a
                                                    * little earlier or later) ends the whole
                                                    * update */
#define WAIT_STATE_MS 600000u

static int chan = -1;
static pid_t old_pid;
static char fault_spec[128];
static struct mcr_renames renames; /* mcr-ctl update --rename: for image.c */
static int inherited[8192];
static size_t ninherited;

/* Process trees (docs/coordinator.md). A new process whose startup forked
 * children paired with old ones waits for them at each step (kids); a child
 * has its partner as chan and a link to its new parent (parent_link). */
#define MAX_KIDS 256
struct kid {
  pid_t pid;  /* the new child */
  pid_t old;  /* the old child it replaces */
  int link;   /* our end of the link */
  int pidfd;
};
static struct kid kids[MAX_KIDS];
static size_t nkids;
static int parent_link = -1;
static int parent_pidfd = -1; /* a child's waits end when its new parent dies (a rollback
                               * kills the new root; the program may replace our
                               * PR_SET_PDEATHSIG with its own) */
static int pending_link[2] = {-1, -1};
static int tree_child_agent(void);

void mcr_update_fault(const char *phase)
{
  size_t n = strlen(phase);
  char action[32];
  if (!fault_spec[0] || strncmp(fault_spec, phase, n) || fault_spec[n] != ':')
    return;
  /* "PHASE:ACTION:child": only in the children of a process tree's new version */
  snprintf(action, sizeof(action), "%s", fault_spec + n + 1);
  char *scope = strchr(action, ':');
  if (scope) {
    *scope++ = 0;
    if (!strcmp(scope, "child") && parent_link < 0)
      return;
  }
  if (!strcmp(action, "hang")) {
    for (;;)
      pause();
  }
  if (!strcmp(action, "delay")) {
    /* a second's wait, then on: widens the window between two phases (the
     * pre-copy and the pause, for tests of what is written meanwhile) */
    struct timespec ts = {1, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
    return;
  }
  kill(getpid(), SIGKILL); /* "crash": nothing of ours or the program's runs */
}

/* The thread classes of this version, parked (threads.h), as "threads N<TAB>CLASS"
 * lines of READY: the old process matches its own classes with them. */
static void put_thread_classes(struct mcr_buf *rep)
{
  size_t max = 64, n;
  struct mcr_thread_class *tc =
      mmap(NULL, max * sizeof(*tc), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  if (tc == MAP_FAILED)
    return;
  n = mcr_threads_classes(tc, max);
  for (size_t i = 0; i < n && i < max; i++)
    mcr_buf_printf(rep, "threads %u\t%s\n", tc[i].n, tc[i].name);
  munmap(tc, max * sizeof(*tc));
}

/* FAIL with lines b to the old partner and, in a child of a tree, to the new
 * parent (which passes them up to the old root's report); then exit. */
static void fail_lines_exit(const struct mcr_buf *b)
{
  if (parent_link >= 0)
    mcr_chan_send(parent_link, MCR_U_FAIL, b);
  mcr_chan_send(chan, MCR_U_FAIL, b);
  _exit(1);
}

static void fail_exit(const char *why)
{
  struct mcr_buf b = {0};
  mcr_buf_printf(&b, "conflict %s\n", why);
  fail_lines_exit(&b);
}

static int env_int(const char *name, int *out)
{
  const char *v = getenv(name);
  char *end;
  if (!v || !*v)
    return -1;
  long x = strtol(v, &end, 10);
  if (*end || x < 0 || x > 1 << 30)
    return -1;
  *out = (int)x;
  return 0;
}

static void list_inherited(int logfd)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  if (!d)
    return;
  while ((e = readdir(d))) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (*end || e->d_name[0] == '.' || fd == dirfd(d) || fd == chan || fd == logfd)
      continue;
    if (ninherited < sizeof(inherited) / sizeof(inherited[0]))
      inherited[ninherited++] = (int)fd;
  }
  closedir(d);
}

/* The descriptors inherited from the old process, before the runtime opens
 * any of its own (the control socket, libunwind's validation pipe). */
__attribute__((constructor(102))) static void update_new_fds(void)
{
  int logfd;
  if (env_int(MCR_ENV_UPDATE_FD, &chan) != 0 || env_int(MCR_ENV_UPDATE_LOG, &logfd) != 0) {
    chan = -1;
    return;
  }
  list_inherited(logfd);
}

/* The old process's other threads' stacks (MCR_UPDATE_STACKS, update_old.c), for
 * the image map: "LO-HI LO-HI ..." in hex. Malformed or missing: none. */
static uintptr_t stack_lo[1024], stack_hi[1024];
static void read_thread_stacks(const char *spec)
{
  size_t n = 0;
  while (spec && *spec && n < 1024) {
    unsigned long lo, hi;
    int used;
    if (sscanf(spec, " %lx-%lx%n", &lo, &hi, &used) != 2 || lo >= hi)
      return; /* all or nothing: a partial list would check some stacks silently */
    stack_lo[n] = lo;
    stack_hi[n] = hi;
    n++;
    spec += used;
    while (*spec == ' ')
      spec++;
  }
  mcr_image_set_thread_stacks(stack_lo, stack_hi, n);
}


static void exit_in_startup(void);

/* After the startup log's constructor (startup.c, 202), before every
 * constructor of the program (default priority) and main. */
__attribute__((constructor(203))) static void update_new_init(void)
{
  int logfd, old;
  struct stat st;
  void *log;
  char err[256];
  const char *f;

  if (env_int(MCR_ENV_UPDATE_FD, &chan) != 0)
    return;
  if (env_int(MCR_ENV_UPDATE_LOG, &logfd) != 0 || env_int(MCR_ENV_UPDATE_OLD, &old) != 0)
    fail_exit("the new version was started without its startup log");
  old_pid = (pid_t)old;
  if ((f = getenv(MCR_ENV_UPDATE_FAULT)))
    snprintf(fault_spec, sizeof(fault_spec), "%s", f);
  {
    int ms;
    if (env_int(MCR_ENV_UPDATE_TIMEOUT, &ms) == 0 && ms > 0)
      wait_startup_ms = (unsigned)(ms - ms / 4);
  }
  if (mcr_renames_parse(&renames, getenv(MCR_ENV_UPDATE_RENAMES), err, sizeof(err)) != 0)
    fail_exit(err);
  mcr_image_set_renames(&renames);
  unsetenv(MCR_ENV_UPDATE_RENAMES);
  read_thread_stacks(getenv(MCR_ENV_UPDATE_STACKS));
  unsetenv(MCR_ENV_UPDATE_STACKS);
  unsetenv(MCR_ENV_UPDATE_FD);
  unsetenv(MCR_ENV_UPDATE_LOG);
  unsetenv(MCR_ENV_UPDATE_OLD);
  unsetenv(MCR_ENV_UPDATE_FAULT);
  unsetenv(MCR_ENV_UPDATE_HEAP);
  unsetenv(MCR_ENV_UPDATE_TIMEOUT);
  mcr_update_fault("startup");

  if (fstat(logfd, &st) != 0 ||
      (log = mmap(NULL, (size_t)st.st_size ? (size_t)st.st_size : 1, PROT_READ, MAP_PRIVATE,
                  logfd, 0)) == MAP_FAILED)
    fail_exit("cannot read the old startup log");
  close(logfd);
  if (mcr_startup_replay_begin(log, (size_t)st.st_size, inherited, ninherited, err,
                               sizeof(err)) != 0)
    fail_exit(err);
  /* the log stays mapped: the replay refers to it */
  __atomic_store_n(&mcr_update_parking, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&mcr_quiescing, 1, __ATOMIC_SEQ_CST);
  atexit(exit_in_startup);
}

/* A startup replay conflict as a structured conflict line (update.h): kind
 * startup, the call as the object, its stack, and what to do about it. */
static void startup_conflict(struct mcr_buf *b, const struct mcr_startup_conflict *k)
{
  const char *call = mcr_startup_kind_name(k->kind);
  const char *object = k->new_detail[0] ? k->new_detail : k->old_detail;
  char msg[sizeof(k->message)], suffix[sizeof(k->stack) + 16];
  size_t n, sn;

  /* the message ends with " (at STACK)": the stack has a field of its own */
  snprintf(msg, sizeof(msg), "%s", k->message);
  snprintf(suffix, sizeof(suffix), " (at %s)", k->stack[0] ? k->stack : "an unknown stack");
  n = strlen(msg);
  sn = strlen(suffix);
  if (n > sn && !strcmp(msg + n - sn, suffix))
    msg[n - sn] = 0;

  mcr_buf_printf(b, "conflict startup\t");
  mcr_conflict_field_put(b, msg);
  mcr_buf_printf(b, "\t");
  mcr_conflict_field_put(b, object);
  mcr_buf_printf(b, "\t\t\t\t\t"); /* no types, no source locations */
  mcr_conflict_field_put(b, k->stack);
  mcr_buf_printf(b, "\t");
  if (!strcmp(call, "fork") && k->old_detail[0]) /* the old fork's child is gone */
    mcr_buf_printf(b, "a child of the old process's startup has exited and no child forked "
                      "later from the same function (a respawned worker) took its place: let "
                      "the server start it again (nginx respawns its workers itself) and "
                      "update then, or restart the server to run the new version");
  else if (!strcmp(call, "fork"))
    mcr_buf_printf(b, "the new version's startup forks where the old one's did not: its child "
                      "would run beside the old process; fork where the old version does, or "
                      "restart the server instead");
  else if (!k->old_detail[0])
    mcr_buf_printf(b, "the new version's startup must not change a descriptor it inherits "
                      "from the old one: make this %s after the startup (once the main thread "
                      "reached its quiescent point), or restart the server instead", call);
  else {
    mcr_buf_printf(b, "the new version's startup must make the same %s as the old one, with "
                      "the same arguments (here: ", call);
    mcr_conflict_field_put(b, k->old_detail);
    mcr_buf_printf(b, "); a changed address, file or option cannot be taken over live: keep "
                      "the old one in this version, or restart the server instead");
  }
  mcr_buf_printf(b, "\n");
}

/* The program exits in its startup (kvstore exits when a fork it needs is
 * refused): the old side would see only an exit status, so the conflicts the
 * replay found, which are why, go first. */
static void exit_in_startup(void)
{
  const struct mcr_startup_conflict *conf;
  size_t nconf;
  struct mcr_buf b = {0};

  if (chan < 0 || !__atomic_load_n(&mcr_startup_on, __ATOMIC_SEQ_CST) ||
      !(nconf = mcr_startup_conflicts(&conf)))
    return;
  for (size_t i = 0; i < nconf && i < 20; i++)
    startup_conflict(&b, &conf[i]);
  fail_lines_exit(&b);
}

/* The renames against both executables (rename.h: what mcr-ctl checked, in case
 * the files changed since or the request came from elsewhere): a conflict of kind
 * image per pair that does not hold, and a note naming those that do. Returns
 * how many do not hold. */
static size_t check_renames(struct mcr_buf *conflicts, struct mcr_buf *notes)
{
  struct mcr_elfsym o, n;
  char path[64], why[400];
  size_t bad = 0;

  if (!renames.n)
    return 0;
  snprintf(path, sizeof(path), "/proc/%d/exe", (int)old_pid);
  if (mcr_elfsym_open(&o, path) != 0) {
    mcr_buf_printf(conflicts, "conflict image\tthe renames cannot be checked: %s has no "
                              "readable symbol table\n", path);
    return 1;
  }
  if (mcr_elfsym_open(&n, "/proc/self/exe") != 0) {
    mcr_elfsym_close(&o);
    mcr_buf_printf(conflicts, "conflict image\tthe renames cannot be checked: /proc/self/exe "
                              "has no readable symbol table\n");
    return 1;
  }
  for (size_t i = 0; i < renames.n; i++) {
    char object[300];
    if (mcr_rename_check(&o, &n, renames.old_name[i], renames.new_name[i], why, sizeof(why)) == 0)
      continue;
    bad++;
    snprintf(object, sizeof(object), "rename %s=%s", renames.old_name[i], renames.new_name[i]);
    const char *f[MCR_CF_COUNT] = {
        [MCR_CF_KIND] = "image",
        [MCR_CF_MESSAGE] = why,
        [MCR_CF_OBJECT] = object,
        [MCR_CF_FIX] = "name a function of the old executable and the one of the new executable "
                       "that replaces it (nm EXECUTABLE shows them), or drop the rename"};
    mcr_buf_printf(conflicts, "conflict ");
    mcr_conflict_fields(conflicts, f);
    mcr_buf_printf(conflicts, "\n");
  }
  mcr_elfsym_close(&o);
  mcr_elfsym_close(&n);
  if (!bad) {
    mcr_buf_printf(notes, "note renamed functions (pointers to the first are translated to the "
                          "second):");
    for (size_t i = 0; i < renames.n; i++)
      mcr_buf_printf(notes, " %s=%s", renames.old_name[i], renames.new_name[i]);
    mcr_buf_printf(notes, "\n");
  }
  return bad;
}

/* ---- process trees (docs/coordinator.md) ---- */

/* The lines of a kid's message into out, each naming the process: a
 * conflict's message and a note get "process OLD (new NEW): " in front;
 * phases become one note. */
static void forward_lines(struct mcr_buf *out, const struct mcr_buf *in, const struct kid *k)
{
  const char *p = (const char *)in->p, *end = p ? p + in->len : NULL;
  char phases[400] = "";
  size_t pl = 0;
  while (p && p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *tab;
    if (n > 9 && !strncmp(p, "conflict ", 9) && (tab = memchr(p, '\t', n))) {
      mcr_buf_printf(out, "%.*sprocess %d (new %d): %.*s\n", (int)(tab + 1 - p), p, (int)k->old,
                     (int)k->pid, (int)(p + n - tab - 1), tab + 1);
    } else if (n > 9 && !strncmp(p, "conflict ", 9)) {
      mcr_buf_printf(out, "conflict other\tprocess %d (new %d): %.*s\n", (int)k->old, (int)k->pid,
                     (int)(n - 9), p + 9);
    } else if (n > 5 && !strncmp(p, "note ", 5)) {
      mcr_buf_printf(out, "note process %d (new %d): %.*s\n", (int)k->old, (int)k->pid,
                     (int)(n - 5), p + 5);
    } else if (n > 6 && !strncmp(p, "phase ", 6)) {
      char name[32];
      unsigned long long ns;
      if (sscanf(p + 6, "%31s %llu", name, &ns) == 2 && pl < sizeof(phases)) {
        int w = snprintf(phases + pl, sizeof(phases) - pl, "%s%s %.1f ms", pl ? ", " : "", name,
                         ns / 1e6);
        if (w > 0)
          pl += (size_t)w;
      }
    } else if (n > 6 && !strncmp(p, "pause ", 6)) {
      unsigned long long us = strtoull(p + 6, NULL, 10);
      mcr_buf_printf(out, "%.*s\n", (int)n, p); /* the longest pause is the tree's */
      mcr_buf_printf(out, "note process %d (new %d): its clients' pause %.1f ms\n", (int)k->old,
                     (int)k->pid, us / 1e3);
    } else if (n > 4 && !strncmp(p, "own ", 4)) {
      mcr_buf_printf(out, "%.*s\n", (int)n, p); /* each process's own part of the pause */
    }
    p = nl ? nl + 1 : NULL;
  }
  if (pl)
    mcr_buf_printf(out, "note process %d (new %d): %s\n", (int)k->old, (int)k->pid, phases);
}

/* How kid k ended, if it did (without reaping it: it is the program's child). */
static void kid_gone(struct mcr_buf *out, const struct kid *k, int e, const char *what)
{
  siginfo_t si;
  memset(&si, 0, sizeof(si));
  if (k->pidfd >= 0) {
    struct timespec ts = {0, 200000000}; /* a closed link: its exit may lag a little */
    for (int i = 0; i < 10 && waitid(P_PID, (id_t)k->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    si.si_pid == 0; i++)
      nanosleep(&ts, NULL);
  }
  if (si.si_pid == k->pid && si.si_code == CLD_EXITED)
    mcr_buf_printf(out, "conflict crash\tprocess %d (new %d): %s: the new process exited with "
                        "status %d\n", (int)k->old, (int)k->pid, what, si.si_status);
  else if (si.si_pid == k->pid)
    mcr_buf_printf(out, "conflict crash\tprocess %d (new %d): %s: the new process was killed by "
                        "signal %d (%s)\n", (int)k->old, (int)k->pid, what, si.si_status,
                   strsignal(si.si_status));
  else
    mcr_buf_printf(out, "conflict %s\tprocess %d (new %d): %s: %s\n",
                   e == ETIMEDOUT ? "timeout" : "crash", (int)k->old, (int)k->pid, what,
                   e == ETIMEDOUT ? "timed out" : strerror(e));
}

/* Waits for every kid's message of type want; their lines go to out. Returns
 * 0, or -1 if one failed or died (out then holds why). */
static int kids_wait(int want, struct mcr_buf *out, const char *what)
{
  int rc = 0;
  for (size_t i = 0; i < nkids; i++) {
    struct mcr_buf m = {0};
    int type;
    if (mcr_chan_recv(kids[i].link, kids[i].pidfd, WAIT_STATE_MS, &type, &m) != 0) {
      kid_gone(out, &kids[i], errno, what);
      rc = -1;
      continue;
    }
    forward_lines(out, &m, &kids[i]);
    if (type != want) {
      if (type != MCR_U_FAIL)
        mcr_buf_printf(out, "conflict other\tprocess %d (new %d): %s: unexpected message %d\n",
                       (int)kids[i].old, (int)kids[i].pid, what, type);
      rc = -1;
    }
    mcr_buf_free(&m);
  }
  return rc;
}

static void kids_send(int type, const struct mcr_buf *b)
{
  for (size_t i = 0; i < nkids; i++)
    mcr_chan_send(kids[i].link, type, b);
}

/* From the parent: the message want (its payload appended to out, if out),
 * else exit (the tree rolls back: our partner resumes when the channel closes). */
static void parent_wait(int want, struct mcr_buf *out)
{
  struct mcr_buf m = {0};
  int type;
  if (mcr_chan_recv(parent_link, parent_pidfd, WAIT_STATE_MS, &type, &m) != 0 || type != want)
    _exit(1);
  if (out)
    mcr_buf_put(out, m.p, m.len);
  mcr_buf_free(&m);
}

/* The tree's pid map ("pid OLD NEW" lines: the parent's, with this process's
 * own and its kids' added) for the transfer: pid_t globals naming another
 * process of the old tree name its successor. */
static void set_pid_map(struct mcr_buf *lines)
{
  static pid_t o[1024], n[1024];
  size_t k = 0;
  mcr_buf_printf(lines, "pid %d %d\n", (int)old_pid, (int)getpid());
  for (size_t i = 0; i < nkids; i++)
    mcr_buf_printf(lines, "pid %d %d\n", (int)kids[i].old, (int)kids[i].pid);
  const char *p = (const char *)lines->p, *end = p ? p + lines->len : NULL;
  while (p && p < end && k < 1024) {
    int a, b;
    if (sscanf(p, "pid %d %d", &a, &b) == 2 && a > 0 && b > 0) {
      o[k] = a;
      n[k++] = b;
    }
    p = memchr(p, '\n', (size_t)(end - p));
    p = p ? p + 1 : NULL;
  }
  mcr_transfer_pid_map(o, n, k);
}

/* Is pid a live child of process parent? */
static int child_of(pid_t pid, pid_t parent)
{
  return parent > 0 && mcr_proc_parent(pid, 1) == parent;
}

int mcr_update_tree_pairable(pid_t old_child)
{
  return chan >= 0 && old_pid > 0 && old_child > 0 && nkids < MAX_KIDS &&
         child_of(old_child, old_pid);
}

int mcr_update_tree_prefork(void)
{
  int sv[2];
  mcr_in_runtime++;
  int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  if (rc == 0) {
    pending_link[0] = mcr_fd_move_high(sv[0]);
    pending_link[1] = mcr_fd_move_high(sv[1]);
  }
  mcr_in_runtime--;
  return rc;
}

/* In the new child, right after the fork: ask the old child to take part
 * (control.proto UpdatePartnerRequest), take its startup log and replay it
 * from here on. Returns 0 or -1 with why. */
static int join_partner(pid_t old_child, uint64_t stack_id, uint32_t ordinal, char *why,
                        size_t len)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  Mcr__Control__Request req = MCR__CONTROL__REQUEST__INIT;
  Mcr__Control__UpdatePartnerRequest up = MCR__CONTROL__UPDATE_PARTNER_REQUEST__INIT;
  unsigned char buf[64];
  struct mcr_buf log = {0};
  int fd, type, n;
  size_t plen;

  n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "mcr/%d", (int)old_child);
  plen = offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, (socklen_t)plen) != 0) {
    snprintf(why, len, "cannot reach the control socket of old process %d: %s", (int)old_child,
             strerror(errno));
    goto fail;
  }
  fd = mcr_fd_move_high(fd);
  up.has_timeout_ms = 1;
  up.timeout_ms = 10000;
  req.kind_case = MCR__CONTROL__REQUEST__KIND_UPDATE_PARTNER;
  req.update_partner = &up;
  size_t rl = mcr__control__request__get_packed_size(&req);
  if (rl + 4 > sizeof(buf))
    goto fail;
  mcr__control__request__pack(&req, buf + 4);
  mcr_control_put_len(buf, (uint32_t)rl);
  if (write(fd, buf, rl + 4) != (ssize_t)(rl + 4)) {
    snprintf(why, len, "cannot write to the control socket of old process %d: %s",
             (int)old_child, strerror(errno));
    goto fail;
  }
  if (mcr_chan_recv(fd, -1, 10000, &type, &log) != 0) {
    snprintf(why, len, "old process %d did not send its startup log: %s", (int)old_child,
             strerror(errno));
    goto fail;
  }
  if (type != MCR_U_LOG) { /* a control Reply (an error): not our framing */
    snprintf(why, len, "old process %d refused to take part in the update (another update or "
                       "quiesce in progress there, or not a child of the old root)",
             (int)old_child);
    goto fail;
  }
  /* "u32 n, n fds, the log": the old child's descriptors, taken now at their
   * numbers (as a spawned new version inherits its old process's) */
  uint32_t nfds = mcr_buf_get_u32(&log);
  if (log.bad || nfds > (log.len - 4) / 4) {
    snprintf(why, len, "old process %d sent a malformed startup log", (int)old_child);
    goto fail;
  }
  int pidfd = (int)syscall(SYS_pidfd_open, old_child, 0);
  if (pidfd >= 0) /* high: a low number is one of the old child's the loop takes */
    pidfd = mcr_fd_move_high(pidfd);
  if (pidfd < 0) {
    snprintf(why, len, "pidfd_open(%d): %s", (int)old_child, strerror(errno));
    goto fail;
  }
  for (uint32_t i = 0; i < nfds; i++) {
    int ofd = (int)mcr_buf_get_u32(&log), got;
    if (ofd == fd)
      continue;
    if (fcntl(ofd, F_GETFD) >= 0 &&
        syscall(SYS_kcmp, getpid(), old_child, KCMP_FILE, ofd, ofd) == 0)
      goto have;
    if (mcr_fd_is_runtime(ofd)) { /* taking it would close one of ours */
      snprintf(why, len, "descriptor %d of old process %d has the number of one of the "
                         "runtime's own descriptors in its new counterpart (they sit at 7/8 of "
                         "RLIMIT_NOFILE when it was read: start the server with a higher limit)",
               ofd, (int)old_child);
      close(pidfd);
      goto fail;
    }
    got = (int)syscall(SYS_pidfd_getfd, pidfd, ofd, 0);
    if (got < 0)
      continue; /* closed meanwhile (a client left): the transfer sees it too */
    if (got != ofd) {
      int cloexec = fcntl(ofd, F_GETFD); /* -1: not open here */
      if (dup3(got, ofd, cloexec > 0 && (cloexec & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
        snprintf(why, len, "cannot take descriptor %d of old process %d: %s", ofd,
                 (int)old_child, strerror(errno));
        close(got);
        close(pidfd);
        goto fail;
      }
      close(got);
    }
  have:
    if (ninherited < sizeof(inherited) / sizeof(inherited[0]))
      inherited[ninherited++] = ofd;
    mcr_startup_replay_inherit(ofd);
  }
  close(pidfd);
  if (mcr_startup_replay_switch(log.p + log.pos, log.len - log.pos, stack_id, ordinal, why,
                                len) != 0)
    goto fail;
  /* the log stays: the replay refers to it */
  chan = fd;
  old_pid = old_child;
  return 0;
fail:
  if (fd >= 0)
    close(fd);
  mcr_buf_free(&log);
  return -1;
}

void mcr_update_tree_forked(pid_t result, pid_t old_child, uint64_t stack_id, uint32_t ordinal)
{
  mcr_in_runtime++;
  if (result > 0) { /* the parent: one more kid to wait for */
    struct kid *k = &kids[nkids++];
    k->pid = result;
    k->old = old_child;
    k->link = pending_link[0];
    k->pidfd = (int)syscall(SYS_pidfd_open, result, 0);
    if (k->pidfd >= 0)
      k->pidfd = mcr_fd_move_high(k->pidfd);
    if (pending_link[1] >= 0)
      close(pending_link[1]);
    pending_link[0] = pending_link[1] = -1;
    mcr_in_runtime--;
    return;
  }
  if (result < 0) {
    for (int i = 0; i < 2; i++)
      if (pending_link[i] >= 0)
        close(pending_link[i]);
    pending_link[0] = pending_link[1] = -1;
    mcr_in_runtime--;
    return;
  }
  /* the child: dies with its new parent (a rollback kills the new root) */
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  parent_pidfd = (int)syscall(SYS_pidfd_open, parent, 0);
  if (getppid() != parent)
    _exit(1);
  if (parent_pidfd >= 0)
    parent_pidfd = mcr_fd_move_high(parent_pidfd);
  parent_link = pending_link[1];
  close(pending_link[0]);
  pending_link[0] = pending_link[1] = -1;
  close(chan); /* the parent's channel, and its kids' links, are not ours */
  chan = -1;
  for (size_t i = 0; i < nkids; i++) {
    close(kids[i].link);
    if (kids[i].pidfd >= 0)
      close(kids[i].pidfd);
  }
  nkids = 0;
  char why[400];
  if (join_partner(old_child, stack_id, ordinal, why, sizeof(why)) != 0) {
    struct mcr_buf b = {0};
    mcr_buf_printf(&b, "conflict other\t");
    mcr_conflict_field_put(&b, why);
    mcr_buf_printf(&b, "\n");
    mcr_chan_send(parent_link, MCR_U_FAIL, &b);
    _exit(1);
  }
  if (tree_child_agent() != 0)
    fail_exit("cannot start the update thread of a child process");
  mcr_in_runtime--;
}

/* Children the old process's startup forked that still run as its children
 * and that no fork of this version's startup replaced (it forks fewer
 * workers): each would be left serving the old version, its parent gone. A
 * conflict each; returns how many. */
static size_t unpaired_children(struct mcr_buf *out)
{
  static struct mcr_startup_entry forks[256];
  size_t n = mcr_startup_old_forks(forks, sizeof(forks) / sizeof(forks[0])), bad = 0;
  for (size_t i = 0; i < n; i++) {
    pid_t c = (pid_t)forks[i].result;
    int paired = 0;
    for (size_t k = 0; k < nkids && !paired; k++)
      paired = kids[k].old == c;
    if (paired || !child_of(c, old_pid))
      continue;
    bad++;
    char msg[400], obj[64];
    snprintf(msg, sizeof(msg), "the old process's child %d, forked by its startup, has no "
                               "counterpart: the new version's startup did not make this fork "
                               "(it would run on the old version, without its parent)", (int)c);
    snprintf(obj, sizeof(obj), "process %d", (int)c);
    const char *f[MCR_CF_COUNT] = {
        [MCR_CF_KIND] = "startup", [MCR_CF_MESSAGE] = msg, [MCR_CF_OBJECT] = obj,
        [MCR_CF_STACK] = forks[i].stack,
        [MCR_CF_FIX] = "the new version's startup must fork as many children at this call "
                       "as the old one (nginx: the same worker_processes), or restart the "
                       "server instead"};
    mcr_buf_printf(out, "conflict ");
    mcr_conflict_fields(out, f);
    mcr_buf_printf(out, "\n");
  }
  return bad;
}

static void *agent(void *arg)
{
  struct mcr_qresult q;
  struct mcr_buf msg = {0}, rep = {0}, up = {0};
  const struct mcr_startup_conflict *conf;
  size_t nconf;
  int type;
  uint64_t t_quiesce = 0;

  (void)arg;
  pthread_setname_np(pthread_self(), "mcr-update");
  /* the program's startup: until the main thread parks at its first point */
  if (mcr_quiesce_begin(parent_link >= 0 ? wait_startup_ms : WAIT_STARTUP_MS, &q) != 0) {
    char why[600];
    snprintf(why, sizeof(why), "the new version did not reach its quiescent points: %s",
             q.error[0] ? q.error : "a thread did not arrive in time");
    for (size_t i = 0; i < q.nthreads; i++)
      if (!q.threads[i].arrived) {
        size_t l = strlen(why);
        snprintf(why + l, sizeof(why) - l, "; thread %d: %s", (int)q.threads[i].tid,
                 q.threads[i].where);
      }
    fail_exit(why);
  }
  mcr_qresult_free(&q);
  /* threads the program created during its startup park at their start, or
   * at their point: wait until every registered thread is parked */
  for (int tries = 0;; tries++) {
    struct mcr_qthread *qs[1024];
    size_t n = mcr_threads_qstates(qs, 1024), parked = 0, live = 0;
    for (size_t i = 0; i < n && i < 1024; i++) {
      if (!__atomic_load_n(&qs[i]->tid, __ATOMIC_SEQ_CST))
        continue;
      live++;
      parked += __atomic_load_n(&qs[i]->state, __ATOMIC_SEQ_CST) == MCR_Q_PARKED;
    }
    if (parked == live)
      break;
    if (tries == 5000) {
      char why[160];
      snprintf(why, sizeof(why), "the new version did not park every thread: %zu of %zu parked",
               parked, live);
      fail_exit(why);
    }
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  nconf = mcr_startup_conflicts(&conf);
  if (nconf) {
    for (size_t i = 0; i < nconf && i < 20; i++)
      startup_conflict(&rep, &conf[i]);
    fail_lines_exit(&rep);
  }
  if (unpaired_children(&rep))
    fail_lines_exit(&rep);
  {
    struct mcr_startup_stats s;
    mcr_startup_stats(&s);
    mcr_buf_printf(&rep, "note startup replay: %u calls replayed, %u run for real, %u startup "
                         "objects\n", s.replayed, s.run, s.allocs);
    if (s.suppressed)
      mcr_buf_printf(&rep, "note startup replay: %u messages to sockets shared with the old "
                           "process not sent (the old startup sent them)\n", s.suppressed);
    if (s.by_args || s.adopted)
      mcr_buf_printf(&rep, "note startup replay: %u calls paired by their arguments at another "
                           "call stack, %u sockets took over the old listening socket bound to "
                           "their address\n", s.by_args, s.adopted);
    const struct mcr_startup_conflict *nt;
    size_t nn = mcr_startup_notes(&nt);
    for (size_t i = 0; i < nn && i < 20; i++)
      mcr_buf_printf(&rep, "note startup replay: %s\n", nt[i].message);
  }
  {
    struct mcr_buf bad = {0};
    if (check_renames(&bad, &rep))
      fail_lines_exit(&bad);
  }
  if (renames.nmove) { /* checked by mcr-ctl against both executables' type tables */
    mcr_buf_printf(&rep, "note fields moved (values and pointers into them go to the new place):");
    for (size_t i = 0; i < renames.nmove; i++)
      mcr_buf_printf(&rep, " %s.%s=%s", renames.move_type[i], renames.move_old[i],
                     renames.move_new[i]);
    mcr_buf_printf(&rep, "\n");
  }
  {
    char err[300];
    uint64_t t0 = mcr_update_now_ns();
    if (mcr_transfer_prepare(old_pid, err, sizeof(err)) != 0)
      fail_exit(err);
    mcr_buf_printf(&rep, "note transfer prepared in %.1f ms (image map, globals, sites)\n",
                   (mcr_update_now_ns() - t0) / 1e6);
  }
  if (parent_link >= 0) /* a child's notes go up the tree; its partner has no reader */
    mcr_buf_put(&up, rep.p, rep.len);
  put_thread_classes(&rep);
  mcr_update_fault("ready");
  if (mcr_chan_send(chan, MCR_U_READY, &rep) != 0)
    _exit(1);
  mcr_buf_free(&rep);

  /* the heap, ahead of the pause */
  if (mcr_chan_recv(chan, parent_pidfd, WAIT_STATE_MS, &type, &msg) != 0 ||
      type != MCR_U_PRECOPY) {
    if (parent_link >= 0 && type == MCR_U_FAIL) /* the partner refused: say why, up */
      mcr_chan_send(parent_link, MCR_U_FAIL, &msg);
    _exit(1); /* rolled back, or the old process died */
  }
  mcr_update_fault("precopy");
  if (mcr_transfer_precopy(&msg, &rep) != 0)
    fail_exit("the pre-copy message is malformed");
  mcr_buf_free(&msg);
  /* a tree's old processes quiesce together: each child waits, pre-copied,
   * until its parent lets it go on, the root until the old root asks */
  if (kids_wait(MCR_U_PRECOPIED, &rep, "its startup and pre-copy") != 0)
    fail_lines_exit(&rep);
  struct mcr_buf pids = {0};
  if (parent_link >= 0) {
    mcr_chan_send(parent_link, MCR_U_PRECOPIED, &rep);
    mcr_buf_free(&rep);
    parent_wait(MCR_U_GO, &pids);
  }
  set_pid_map(&pids);
  kids_send(MCR_U_GO, &pids);
  mcr_buf_free(&pids);
  mcr_update_fault("precopied");
  if (mcr_chan_send(chan, MCR_U_PRECOPIED, &rep) != 0)
    _exit(1);
  mcr_buf_free(&rep);

  /* the old process is quiesced: take over its state */
  if (mcr_chan_recv(chan, parent_pidfd, WAIT_STATE_MS, &type, &msg) != 0 ||
      type != MCR_U_STATE) {
    if (parent_link >= 0 && type == MCR_U_FAIL)
      mcr_chan_send(parent_link, MCR_U_FAIL, &msg);
    _exit(1); /* rolled back, or the old process died */
  }
  if (msg.len >= 16) /* u32 version, u32 pid, u64 when the old process quiesced */
    memcpy(&t_quiesce, msg.p + 8, sizeof(t_quiesce));
  if (mcr_transfer_apply(&msg, inherited, ninherited, &rep) != 0)
    fail_lines_exit(&rep);
  {
    char why[400];
    if (mcr_startup_apply_deferred(why, sizeof(why)) != 0) {
      mcr_buf_printf(&rep, "conflict startup\t");
      mcr_conflict_field_put(&rep, why);
      mcr_buf_printf(&rep, "\t\t\t\t\t\t\tthe registration could not be made in the pause: "
                           "make it after the startup, or restart the server instead\n");
      fail_lines_exit(&rep);
    }
  }
  mcr_buf_free(&msg);
  if (t_quiesce) /* the pause this process's own work took: its old partner's quiesce to here */
    mcr_buf_printf(&rep, "own %llu\n", (unsigned long long)(mcr_update_now_ns() - t_quiesce) / 1000);
  if (parent_link >= 0) { /* the old partner waits for the tree's decision from here */
    if (mcr_chan_send(chan, MCR_U_DONE, &rep) != 0)
      _exit(1);
    mcr_buf_put(&up, rep.p, rep.len);
    mcr_buf_free(&rep);
  }
  if (kids_wait(MCR_U_DONE, parent_link >= 0 ? &up : &rep, "its state transfer") != 0)
    fail_lines_exit(parent_link >= 0 ? &up : &rep);

  if (parent_link >= 0) { /* the tree's decision comes from the parent */
    if (mcr_chan_send(parent_link, MCR_U_DONE, &up) != 0)
      _exit(1);
    mcr_buf_free(&up);
    parent_wait(MCR_U_COMMIT, NULL);
  } else {
    if (mcr_chan_send(chan, MCR_U_DONE, &rep) != 0)
      _exit(1);
    mcr_buf_free(&rep);
    if (mcr_chan_recv(chan, -1, WAIT_STATE_MS, &type, &msg) != 0 || type != MCR_U_COMMIT)
      _exit(1);
    mcr_buf_free(&msg);
  }
  mcr_update_fault("commit");
  /* The kids commit (each tells its old partner to exit, resumes and says
   * when) while this process does: past this point nothing rolls back, so
   * no process's pause waits on another's commit (before, each parent
   * resumed after its kids: nginx's master added 2-7 ms to the tree's). */
  kids_send(MCR_U_COMMIT, NULL);
  if (parent_link >= 0)
    mcr_chan_send(chan, MCR_U_COMMIT, NULL); /* the old partner exits */
  mcr_transfer_commit_epoll(&rep); /* the old partner no longer waits on them */
  mcr_transfer_keep_pieces();
  __atomic_store_n(&mcr_update_parking, 0, __ATOMIC_SEQ_CST);
  mcr_quiesce_end();
  uint64_t resumed = mcr_update_now_ns();
  mcr_buf_printf(&rep, "resumed %llu\n", (unsigned long long)resumed);
  if (parent_link >= 0 && t_quiesce && resumed > t_quiesce)
    mcr_buf_printf(&rep, "pause %llu\n", (unsigned long long)(resumed - t_quiesce) / 1000);
  if (kids_wait(MCR_U_RESUMED, &up, "its commit") != 0) {
    /* too late to roll back: the old partners of the others exited */
    mcr_buf_printf(&up, "note a child process failed after the commit\n");
  }
  mcr_buf_put(&rep, up.p, up.len);
  mcr_buf_free(&up);
  mcr_chan_send(parent_link >= 0 ? parent_link : chan, MCR_U_RESUMED, &rep);
  mcr_buf_free(&rep);
  mcr_transfer_committed();
  close(chan);
  chan = -1;
  if (parent_link >= 0) {
    close(parent_link);
    parent_link = -1;
  }
  if (parent_pidfd >= 0) { /* committed: nothing waits on the parent any more */
    close(parent_pidfd);
    parent_pidfd = -1;
  }
  for (size_t i = 0; i < nkids; i++) {
    close(kids[i].link);
    if (kids[i].pidfd >= 0)
      close(kids[i].pidfd);
  }
  nkids = 0;
  return NULL;
}

static int tree_child_agent(void)
{
  pthread_t t;
  if (mcr_threads_start_internal(&t, agent, NULL) != 0)
    return -1;
  pthread_detach(t);
  return 0;
}

__attribute__((constructor(205))) static void update_new_start(void)
{
  pthread_t t;
  if (chan < 0 || !__atomic_load_n(&mcr_update_parking, __ATOMIC_SEQ_CST))
    return;
  if (mcr_threads_start_internal(&t, agent, NULL) != 0)
    fail_exit("cannot start the update thread");
  pthread_detach(t);
}
