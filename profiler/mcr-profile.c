/*
 * mcr-profile - runs a profiling build under its workload and writes the
 * quiescence config (docs/quiescence.md, "mcr-profile usage").
 *
 *   mcr-profile -o FILE [--duration SEC] [--json] [--keep] -- CMD ARGS...
 *
 * CMD runs in its own process group with MCR_PROFILE_DIR set to a fresh
 * directory, where each of its processes writes <pid>.prof (runtime/profile.c).
 * mcr-profile is a child subreaper, so a server that daemonizes (forks and lets
 * its parent exit) stays its descendant: the run ends when every descendant has
 * exited, when --duration elapses, or on SIGINT/SIGTERM/SIGHUP; then the
 * remaining descendants are stopped (SIGTERM, then SIGKILL), the .prof files
 * are merged, the quiescent points chosen (choose.c) and FILE written.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "profiler.h"

#ifndef MCR_VERSION
#define MCR_VERSION "unknown"
#endif

#define TERM_WAIT_MS 5000    /* after SIGTERM to the command, before the rest */
#define TERM_ALL_WAIT_MS 2000 /* after SIGTERM to every descendant, before SIGKILL */
#define FLUSH_WAIT_MS 1500   /* for each process to rewrite its .prof before the stop */

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define NSTOP (sizeof(stop_signals) / sizeof(stop_signals[0]))

void prof_err(const char *fmt, ...)
{
  va_list ap;

  fputs("mcr-profile: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void prof_warn(const char *fmt, ...)
{
  va_list ap;

  fputs("mcr-profile: warning: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void usage(FILE *f)
{
  fprintf(f,
          "Usage: mcr-profile -o FILE [--duration SEC] [--json] [--keep] -- CMD ARGS...\n"
          "\n"
          "Runs CMD, a build made with 'mcr-clang --mcr-profile', records where its threads\n"
          "block, and writes the quiescence config FILE for 'mcr-clang --mcr-quiescence=FILE'.\n"
          "Run the server's usual workload against it meanwhile.\n"
          "\n"
          "CMD runs until it and every process it started have exited, until SEC seconds\n"
          "have passed, or until mcr-profile gets SIGINT (Ctrl-C), SIGTERM or SIGHUP; the\n"
          "processes still running are then sent SIGTERM, and SIGKILL %d s later.\n"
          "\n"
          "Options:\n"
          "  -o, --output FILE   the quiescence config to write\n"
          "  --duration SEC      stop CMD after SEC seconds (decimals allowed)\n"
          "  --json              print the summary as JSON (CMD's standard output then\n"
          "                      goes to standard error)\n"
          "  --keep              keep the directory of .prof files and print its path\n"
          "  -h, --help          this help;  --version  the version\n"
          "\n"
          "Exit status: 0 config written; 2 bad usage, CMD not found, no profile written\n"
          "(not built with mcr-clang), or no thread class got a quiescent point (FILE is\n"
          "still written with what was seen). Details: docs/quiescence.md.\n",
          (TERM_WAIT_MS + TERM_ALL_WAIT_MS) / 1000);
}

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The executable CMD names: itself if it has a '/', else found on PATH. */
static int resolve(const char *cmd, char *out, size_t len)
{
  const char *path = getenv("PATH");
  struct stat st;

  if (strchr(cmd, '/')) {
    snprintf(out, len, "%s", cmd);
    return stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0 ? 0 : -1;
  }
  for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
    size_t n = strcspn(p, ":");
    snprintf(out, len, "%.*s/%s", (int)n, n ? p : ".", cmd);
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
      return 0;
    p += n;
    if (*p == ':')
      p++;
  }
  return -1;
}

/* ---- processes ---- */

static pid_t cmd_pid;
static int cmd_status = -1; /* wait status once reaped */

/* Reaps what has exited; returns 1 while any child (descendant) is left. */
static int reap(void)
{
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p == cmd_pid)
      cmd_status = st;
    if (p > 0)
      continue;
    return !(p < 0 && errno == ECHILD);
  }
}

/* Waits up to ms for a signal of set; returns it, or 0 on timeout. */
static int wait_signal(const sigset_t *set, uint64_t ms)
{
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
  int s = sigtimedwait(set, NULL, &ts);
  return s > 0 ? s : 0;
}

/* Descendants of this process, from /proc (ppid links). Returns how many. */
static size_t descendants(pid_t *out, size_t max)
{
  struct {
    pid_t pid, ppid;
  } *all = NULL;
  size_t n = 0, cap = 0, found = 0;
  DIR *d = opendir("/proc");
  struct dirent *de;

  if (!d)
    return 0;
  while ((de = readdir(d))) {
    char path[300], buf[512], *rp;
    int fd;
    ssize_t len;
    pid_t ppid;
    if (de->d_name[0] < '1' || de->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
      continue;
    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
      continue;
    buf[len] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses */
    if (!(rp = strrchr(buf, ')')) || sscanf(rp + 1, " %*c %d", &ppid) != 1)
      continue;
    if (n == cap) {
      void *m = realloc(all, (cap = cap ? cap * 2 : 512) * sizeof(*all));
      if (!m)
        break;
      all = m;
    }
    all[n].pid = atoi(de->d_name);
    all[n++].ppid = ppid;
  }
  closedir(d);
  /* breadth first from us */
  pid_t self = getpid();
  for (size_t i = 0; i < n; i++)
    if (all[i].ppid == self && found < max)
      out[found++] = all[i].pid;
  for (size_t k = 0; k < found; k++)
    for (size_t i = 0; i < n; i++)
      if (all[i].ppid == out[k] && found < max)
        out[found++] = all[i].pid;
  free(all);
  return found;
}

static void signal_all(int sig)
{
  pid_t pids[4096];
  size_t n = descendants(pids, 4096);

  for (size_t i = 0; i < n; i++)
    kill(pids[i], sig);
}

/* Waits until no descendant is left (1) or ms passed (0); a stop signal (the
 * user pressing Ctrl-C again) ends the wait (-1). */
static int wait_gone(const sigset_t *set, uint64_t ms)
{
  uint64_t end = now_ms() + ms;

  while (reap()) {
    uint64_t t = now_ms();
    int sig;
    if (t >= end)
      return 0;
    sig = wait_signal(set, end - t);
    if (sig && sig != SIGCHLD)
      return -1;
  }
  return 1;
}

/* Each process still running rewrites its .prof every second: wait for one
 * more round, so the file holds the run up to the stop (a process killed by
 * SIGTERM's default action runs no exit handler). */
static void wait_flush(const char *dir, uint64_t ms)
{
  struct timespec t0;
  uint64_t end = now_ms() + ms;

  clock_gettime(CLOCK_REALTIME, &t0);
  while (now_ms() < end) {
    DIR *d = opendir(dir);
    struct dirent *de;
    int stale = 0;
    if (!d)
      return;
    while ((de = readdir(d)) && !stale) {
      char path[PATH_MAX + 300];
      struct stat st;
      int pid = atoi(de->d_name);
      if (pid <= 0 || !strstr(de->d_name, ".prof") || kill(pid, 0) != 0)
        continue;
      snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
      if (stat(path, &st) == 0 && (st.st_mtim.tv_sec < t0.tv_sec ||
                                   (st.st_mtim.tv_sec == t0.tv_sec && st.st_mtim.tv_nsec < t0.tv_nsec)))
        stale = 1;
    }
    closedir(d);
    if (!stale)
      return;
    struct timespec nap = {0, 50 * 1000000};
    nanosleep(&nap, NULL);
  }
}

/* SIGTERM to the command's process group and to our direct children (a
 * daemon that left the group is one once its parent exited), then to every
 * descendant, then SIGKILL; at once if a stop signal comes again. */
static void stop_all(const sigset_t *set, const char *dir)
{
  pid_t pids[4096];
  size_t n;
  int rc;

  wait_flush(dir, FLUSH_WAIT_MS);
  kill(-cmd_pid, SIGTERM);
  n = descendants(pids, 4096);
  for (size_t i = 0; i < n; i++)
    if (getpgid(pids[i]) != cmd_pid) {
      char path[64], buf[512], *rp;
      int fd, ppid = 0;
      ssize_t len;
      snprintf(path, sizeof(path), "/proc/%d/stat", (int)pids[i]);
      if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        continue;
      len = read(fd, buf, sizeof(buf) - 1);
      close(fd);
      buf[len > 0 ? len : 0] = '\0';
      if ((rp = strrchr(buf, ')')) && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == getpid())
        kill(pids[i], SIGTERM);
    }
  rc = wait_gone(set, TERM_WAIT_MS);
  if (rc == 0) {
    signal_all(SIGTERM);
    rc = wait_gone(set, TERM_ALL_WAIT_MS);
  }
  if (rc <= 0) {
    signal_all(SIGKILL);
    wait_gone(set, 5000);
  }
}

/* Forks and execs the command; returns 0, or -1 with the exec's errno. */
static int start(char **argv, const char *exe, const char *dir, const struct sigaction *old,
                 const sigset_t *oldmask, int json)
{
  int pfd[2], err = 0;
  ssize_t n;

  if (pipe2(pfd, O_CLOEXEC) != 0)
    return -1;
  cmd_pid = fork();
  if (cmd_pid < 0) {
    err = errno;
    close(pfd[0]);
    close(pfd[1]);
    errno = err;
    return -1;
  }
  if (cmd_pid == 0) {
    setpgid(0, 0);
    for (size_t i = 0; i < NSTOP; i++)
      sigaction(stop_signals[i], &old[i], NULL);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    setenv("MCR_PROFILE_DIR", dir, 1);
    if (json) /* our standard output is the JSON alone */
      dup2(2, 1);
    execv(exe, argv);
    err = errno;
    n = write(pfd[1], &err, sizeof(err));
    (void)n;
    _exit(127);
  }
  setpgid(cmd_pid, cmd_pid);
  close(pfd[1]);
  n = read(pfd[0], &err, sizeof(err));
  close(pfd[0]);
  if (n == sizeof(err)) {
    waitpid(cmd_pid, NULL, 0);
    errno = err;
    return -1;
  }
  return 0;
}

static void remove_dir(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *de;

  if (d) {
    while ((de = readdir(d))) {
      char path[PATH_MAX + 300];
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
        continue;
      snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
      unlink(path);
    }
    closedir(d);
  }
  rmdir(dir);
}

static int parse_seconds(const char *s, double *out)
{
  char *end;

  errno = 0;
  *out = strtod(s, &end);
  return !*s || *end || errno || !(*out > 0) || *out > 1e7 ? -1 : 0;
}

int main(int argc, char **argv)
{
  const char *out = NULL, *tmpdir;
  char exe[PATH_MAX], real_exe[PATH_MAX], dir[PATH_MAX], probe[PATH_MAX + 8];
  double duration = 0, seconds;
  int json = 0, keep = 0, i, rc = PROF_EXIT_USAGE, sig = 0, found;
  struct sigaction old[NSTOP], dfl = {.sa_handler = SIG_DFL};
  sigset_t set, oldmask;
  struct profile prof = {0};
  struct calls calls = {0};
  struct run_info run;
  uint64_t t0, deadline = 0;
  FILE *f;

  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (a[0] != '-')
      break;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return PROF_EXIT_OK;
    } else if (!strcmp(a, "--version")) {
      printf("mcr-profile %s\n", MCR_VERSION);
      return PROF_EXIT_OK;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (++i == argc) {
        prof_err("%s needs a FILE: the quiescence config to write", a);
        return PROF_EXIT_USAGE;
      }
      out = argv[i];
    } else if (!strncmp(a, "--output=", 9)) {
      out = a + 9;
    } else if (!strcmp(a, "--duration") || !strncmp(a, "--duration=", 11)) {
      const char *v = a[10] == '=' ? a + 11 : (++i < argc ? argv[i] : NULL);
      if (!v || parse_seconds(v, &duration)) {
        prof_err("bad --duration '%s': expected a number of seconds > 0", v ? v : "");
        return PROF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--keep")) {
      keep = 1;
    } else {
      prof_err("unknown option '%s' (see mcr-profile --help)", a);
      return PROF_EXIT_USAGE;
    }
  }
  if (!out || !*out) {
    prof_err("missing -o FILE: where to write the quiescence config "
             "(usage: mcr-profile -o FILE [--duration SEC] -- CMD ARGS...)");
    return PROF_EXIT_USAGE;
  }
  if (i >= argc) {
    prof_err("no command to profile (usage: mcr-profile -o FILE [--duration SEC] -- CMD ARGS...)");
    return PROF_EXIT_USAGE;
  }
  if (resolve(argv[i], exe, sizeof(exe)) != 0) {
    prof_err("%s: command not found", argv[i]);
    return PROF_EXIT_USAGE;
  }
  if (!realpath(exe, real_exe))
    snprintf(real_exe, sizeof(real_exe), "%s", exe);
  /* find out now, not after the run, that FILE cannot be written */
  snprintf(probe, sizeof(probe), "%s.tmp", out);
  if (!(f = fopen(probe, "w"))) {
    prof_err("cannot write %s: %s", probe, strerror(errno));
    return PROF_EXIT_USAGE;
  }
  fclose(f);
  unlink(probe);

  tmpdir = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%s/mcr-profile.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dir)) {
    prof_err("cannot create a directory for the profiles in %s: %s",
             tmpdir && *tmpdir ? tmpdir : "/tmp", strerror(errno));
    return PROF_EXIT_USAGE;
  }
  /* writable by every process of the server, also those that drop privileges
   * (nginx workers); sticky: none can remove another's file */
  chmod(dir, 01777);
  if (dir[0] != '/') {
    char abs[PATH_MAX];
    if (realpath(dir, abs))
      snprintf(dir, sizeof(dir), "%s", abs);
  }

  /* signals are taken with sigtimedwait: blocked, default action (a shell
   * starts background jobs with SIGINT ignored; ignored signals are dropped) */
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (size_t k = 0; k < NSTOP; k++)
    sigaddset(&set, stop_signals[k]);
  sigprocmask(SIG_BLOCK, &set, &oldmask);
  for (size_t k = 0; k < NSTOP; k++)
    sigaction(stop_signals[k], &dfl, &old[k]);
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  t0 = now_ms();
  if (duration > 0)
    deadline = t0 + (uint64_t)(duration * 1000);
  if (start(argv + i, exe, dir, old, &oldmask, json) != 0) {
    prof_err("cannot run %s: %s", exe, strerror(errno));
    goto out;
  }
  while (reap()) {
    uint64_t t = now_ms();
    if (deadline && t >= deadline)
      break;
    sig = wait_signal(&set, deadline ? deadline - t : 3600 * 1000);
    if (sig == SIGCHLD)
      sig = 0;
    else if (sig)
      break;
  }
  seconds = (double)(now_ms() - t0) / 1000;
  if (reap())
    stop_all(&set, dir);

  found = prof_load(&prof, dir, real_exe);
  if (found < 0)
    goto out;
  if (found == 0 || !prof.nprocs) {
    prof_err("%s wrote no profile: it is not a profiling build (build it with "
             "'mcr-clang --mcr-profile', then run it under mcr-profile again)",
             argv[i]);
    goto out;
  }
  if (cmd_status >= 0 && WIFEXITED(cmd_status) && WEXITSTATUS(cmd_status) != 0 && !sig &&
      !(deadline && now_ms() >= deadline))
    prof_warn("%s exited with status %d", argv[i], WEXITSTATUS(cmd_status));
  if (calls_load(&calls, prof.exe) != 0)
    goto out;
  if (!calls.present)
    prof_warn("%s has no mcr_calls section (not built with mcr-clang --mcr-profile): loops "
              "unknown, quiescent points chosen by time alone",
              prof.exe);
  if (prof.nignored)
    prof_warn("ignored the profiles of %u process%s of other programs (one config per program)",
              prof.nignored, prof.nignored == 1 ? "" : "es");
  choose(&prof, &calls);
  run = (struct run_info){argv + i, seconds, out};
  if (write_config(&prof, &calls, &run) != 0)
    goto out;
  if (json)
    print_json(stdout, &prof, &calls, &run);
  else
    print_summary(stdout, &prof, &calls, &run);
  fflush(stdout);
  if (!classes_with_qp(&prof)) {
    prof_err("no thread class of %s got a quiescent point (%s lists what was seen): run it "
             "under a workload where its threads wait for events",
             prof.program, out);
    goto out;
  }
  rc = PROF_EXIT_OK;
out:
  calls_free(&calls);
  prof_free(&prof);
  if (keep)
    fprintf(stderr, "mcr-profile: profiles kept in %s\n", dir);
  else
    remove_dir(dir);
  return rc;
}
