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
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "elfsym.h"
#include "image.h"
#include "quiesce.h"
#include "rename.h"
#include "startup.h"
#include "threads.h"
#include "transfer.h"

int mcr_update_parking;

#define WAIT_STARTUP_MS 60000u  /* the old side enforces its own, shorter, timeout */
#define WAIT_STATE_MS 600000u

static int chan = -1;
static pid_t old_pid;
static char fault_spec[128];
static struct mcr_renames renames; /* mcr-ctl update --rename: for image.c */
static int inherited[8192];
static size_t ninherited;

void mcr_update_fault(const char *phase)
{
  size_t n = strlen(phase);
  if (!fault_spec[0] || strncmp(fault_spec, phase, n) || fault_spec[n] != ':')
    return;
  if (!strcmp(fault_spec + n + 1, "hang")) {
    for (;;)
      pause();
  }
  if (!strcmp(fault_spec + n + 1, "delay")) {
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

static void fail_exit(const char *why)
{
  struct mcr_buf b = {0};
  mcr_buf_printf(&b, "conflict %s\n", why);
  mcr_chan_send(chan, MCR_U_FAIL, &b);
  _exit(1);
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
  if (mcr_renames_parse(&renames, getenv(MCR_ENV_UPDATE_RENAMES), err, sizeof(err)) != 0)
    fail_exit(err);
  mcr_image_set_renames(&renames);
  unsetenv(MCR_ENV_UPDATE_RENAMES);
  unsetenv(MCR_ENV_UPDATE_FD);
  unsetenv(MCR_ENV_UPDATE_LOG);
  unsetenv(MCR_ENV_UPDATE_OLD);
  unsetenv(MCR_ENV_UPDATE_FAULT);
  unsetenv(MCR_ENV_UPDATE_HEAP);
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
  if (!strcmp(call, "fork"))
    mcr_buf_printf(b, "a process that goes on after forking (a parent that keeps running) "
                      "cannot be updated yet: restart it instead");
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

static void *agent(void *arg)
{
  struct mcr_qresult q;
  struct mcr_buf msg = {0}, rep = {0};
  const struct mcr_startup_conflict *conf;
  size_t nconf;
  int type;

  (void)arg;
  pthread_setname_np(pthread_self(), "mcr-update");
  /* the program's startup: until the main thread parks at its first point */
  if (mcr_quiesce_begin(WAIT_STARTUP_MS, &q) != 0) {
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
    mcr_chan_send(chan, MCR_U_FAIL, &rep);
    _exit(1);
  }
  {
    struct mcr_startup_stats s;
    mcr_startup_stats(&s);
    mcr_buf_printf(&rep, "note startup replay: %u calls replayed, %u run for real, %u startup "
                         "objects\n", s.replayed, s.run, s.allocs);
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
    if (check_renames(&bad, &rep)) {
      mcr_chan_send(chan, MCR_U_FAIL, &bad);
      _exit(1);
    }
  }
  {
    char err[300];
    uint64_t t0 = mcr_update_now_ns();
    if (mcr_transfer_prepare(old_pid, err, sizeof(err)) != 0)
      fail_exit(err);
    mcr_buf_printf(&rep, "note transfer prepared in %.1f ms (image map, globals, sites)\n",
                   (mcr_update_now_ns() - t0) / 1e6);
  }
  put_thread_classes(&rep);
  mcr_update_fault("ready");
  if (mcr_chan_send(chan, MCR_U_READY, &rep) != 0)
    _exit(1);
  mcr_buf_free(&rep);

  /* the heap, ahead of the pause */
  if (mcr_chan_recv(chan, -1, WAIT_STATE_MS, &type, &msg) != 0 || type != MCR_U_PRECOPY)
    _exit(1); /* rolled back, or the old process died */
  mcr_update_fault("precopy");
  if (mcr_transfer_precopy(&msg, &rep) != 0)
    fail_exit("the pre-copy message is malformed");
  mcr_buf_free(&msg);
  mcr_update_fault("precopied");
  if (mcr_chan_send(chan, MCR_U_PRECOPIED, &rep) != 0)
    _exit(1);
  mcr_buf_free(&rep);

  /* the old process is quiesced: take over its state */
  if (mcr_chan_recv(chan, -1, WAIT_STATE_MS, &type, &msg) != 0 || type != MCR_U_STATE)
    _exit(1); /* rolled back, or the old process died */
  if (mcr_transfer_apply(&msg, inherited, ninherited, &rep) != 0) {
    mcr_chan_send(chan, MCR_U_FAIL, &rep);
    _exit(1);
  }
  mcr_buf_free(&msg);
  if (mcr_chan_send(chan, MCR_U_DONE, &rep) != 0)
    _exit(1);
  mcr_buf_free(&rep);

  if (mcr_chan_recv(chan, -1, WAIT_STATE_MS, &type, &msg) != 0 || type != MCR_U_COMMIT)
    _exit(1);
  mcr_buf_free(&msg);
  mcr_update_fault("commit");
  __atomic_store_n(&mcr_update_parking, 0, __ATOMIC_SEQ_CST);
  mcr_quiesce_end();
  mcr_buf_printf(&rep, "resumed %llu", (unsigned long long)mcr_update_now_ns());
  mcr_chan_send(chan, MCR_U_RESUMED, &rep);
  mcr_buf_free(&rep);
  mcr_transfer_committed();
  close(chan);
  chan = -1;
  return NULL;
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
