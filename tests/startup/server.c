/*
 * server.c - a small server's startup, recorded by the old version and replayed
 * by the new (tests/startup/run.sh).
 *
 * Built as version 1 and version 2 (-DVERSION=2: a function added, every line
 * moved, optional -DCHANGE_BIND / -DEXTRA_CTL changes). Refactored startups
 * (both versions): -DFILES2 opens a pid file (kept open), /dev/null and the log
 * in setup_files; -DNB_AFTER_LISTEN sets O_NONBLOCK on the listening socket
 * after listen (as redis does). Version 2 only: -DMOVED creates the listening
 * socket in a helper with SOCK_NONBLOCK, listens with another backlog and, with
 * FILES2, opens the pid file and the log from helpers; -DSOCK_NB creates it at
 * the same place with SOCK_NONBLOCK. Usage:
 *   server old DIR PORT NEWBIN  startup, then act as the update would: refresh
 *                               and serialize the log to DIR/log.bin, spawn
 *                               NEWBIN new DIR PORT with every fd inherited, wait
 *   server new DIR PORT         (spawned by the old) replay DIR/log.bin from a
 *                               constructor, then startup
 * Each writes DIR/<role>.txt: "key value" lines the driver checks.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "startup.h"

#ifndef VERSION
#define VERSION 1
#endif

#if VERSION == 2
/* version 2 moves every line below and adds a function */
static int v2_counter;
__attribute__((noinline)) static void v2_only(void)
{
  v2_counter++;
}
#endif

struct config {
  int port;
  char logpath[256];
  char pidpath[256];
};

static struct config *cfg;
static int *table;
static int lfd = -1, ep = -1, logfd = -1, pidfd = -1, nullfd = -1;
static int bind_rc, bind_errno, listen_rc, ctl_rc;
#ifdef EXTRA_CTL
static int extra_efd = -1, extra_ctl_rc = -2;
#endif
#ifdef LOOP
#define LOOP_N 3
static int loop_ep[LOOP_N], loop_efd[LOOP_N], loop_efd2[LOOP_N] = {-1, -1, -1};
#endif
static FILE *out;

#ifdef MOVED
static volatile int listeners;
/* version 2 creates its listening socket here, non-blocking from the start
 * (the counter keeps the call from being a tail call: this frame is in the
 * call stack) */
__attribute__((noinline)) static int new_listener(void)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  listeners++;
  return fd;
}
#endif

__attribute__((noinline)) static int listen_to_port(int port)
{
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  int one = 1, fd;

#ifdef CHANGE_BIND
  sa.sin_addr.s_addr = htonl(0x7f000002); /* 127.0.0.2 */
#else
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
#endif
#ifdef MOVED
  fd = new_listener();
#elif defined(SOCK_NB)
  fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
#endif
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  bind_rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  bind_errno = bind_rc ? errno : 0;
#ifdef MOVED
  listen_rc = listen(fd, 64);
#else
  listen_rc = listen(fd, 16);
#endif
#ifdef NB_AFTER_LISTEN
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
#endif
  return fd;
}

#ifndef FILES2
__attribute__((noinline)) static int open_log(const char *path)
{
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

__attribute__((noinline)) static void write_pidfile(const char *path)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  char buf[32];
  int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

  if (fd >= 0) {
    if (write(fd, buf, (size_t)n) != n)
      perror("pid file");
    close(fd);
  }
}
#endif

#ifdef FILES2
#define PID_FLAGS (O_WRONLY | O_CREAT | O_CLOEXEC)
#define LOG_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)
#ifdef MOVED
static volatile int opened;
__attribute__((noinline)) static int pid_file_open(const char *path)
{
  int fd = open(path, PID_FLAGS, 0644);
  opened++;
  return fd;
}

__attribute__((noinline)) static int log_open(const char *path)
{
  int fd = open(path, LOG_FLAGS, 0644);
  opened++;
  return fd;
}
#endif

/* Version 1 opens the three files here in this order; version 2 (MOVED) opens
 * /dev/null here first (so its ordinal 0 meets version 1's pid file), then the
 * pid file and the log from helpers (call stacks version 1 does not have). */
__attribute__((noinline)) static void setup_files(void)
{
#ifdef MOVED
  nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
  pidfd = pid_file_open(cfg->pidpath);
  logfd = log_open(cfg->logpath);
#else
  pidfd = open(cfg->pidpath, PID_FLAGS, 0644);
  nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
  logfd = open(cfg->logpath, LOG_FLAGS, 0644);
#endif
}
#endif

#ifdef EXTRA_CTL
/* the new version watches one more fd on the epoll instance it shares with the old */
__attribute__((noinline)) static void watch_more(void)
{
  struct epoll_event ev = {.events = EPOLLIN};
  extra_efd = eventfd(0, EFD_CLOEXEC);
  ev.data.fd = extra_efd;
#ifdef EXTRA_CTL_PTR
  ev.data.ptr = malloc(32); /* a heap object of the new startup: no meaning after a transfer */
#endif
  extra_ctl_rc = epoll_ctl(ep, EPOLL_CTL_ADD, extra_efd, &ev);
}
#endif

#ifdef LOOP
/* one notification eventfd and one epoll instance per worker, as memcached's
 * thread setup makes them; with LOOP_EXTRA (version 2, as memcached 1.6.38) a
 * second eventfd per worker, at the same call stack, on the same instance */
__attribute__((noinline)) static void setup_workers(void)
{
  for (int i = 0; i < LOOP_N; i++) {
    struct epoll_event ev = {.events = EPOLLIN};
    loop_efd[i] = eventfd(0, EFD_NONBLOCK);
#ifdef LOOP_EXTRA
    loop_efd2[i] = eventfd(0, EFD_NONBLOCK);
#endif
    loop_ep[i] = epoll_create1(EPOLL_CLOEXEC);
    ev.data.fd = loop_efd[i];
    epoll_ctl(loop_ep[i], EPOLL_CTL_ADD, loop_efd[i], &ev);
#ifdef LOOP_EXTRA
    ev.data.fd = loop_efd2[i];
    epoll_ctl(loop_ep[i], EPOLL_CTL_ADD, loop_efd2[i], &ev);
#endif
  }
}
#endif

static int epoll_targets(int fd);

__attribute__((noinline)) static void init_server(const char *dir, int port)
{
  struct epoll_event ev = {.events = EPOLLIN};
  char *tmp;

  cfg = malloc(sizeof(*cfg));
  cfg->port = port;
  snprintf(cfg->logpath, sizeof(cfg->logpath), "%s/server.log", dir);
  snprintf(cfg->pidpath, sizeof(cfg->pidpath), "%s/server.pid", dir);
  tmp = malloc(100); /* freed in the window: no record */
  free(tmp);
  table = calloc(64, sizeof(int));
#if VERSION == 2
  v2_only();
#endif
  lfd = listen_to_port(port);
  ep = epoll_create1(EPOLL_CLOEXEC);
  ev.data.fd = lfd;
  ctl_rc = epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
#ifdef FILES2
  setup_files();
#else
  logfd = open_log(cfg->logpath);
  write_pidfile(cfg->pidpath);
#endif
#ifdef EXTRA_CTL
  watch_more();
#endif
#ifdef LOOP
  setup_workers();
#endif
}

/* The record of p among the startup allocations. */
static void report_alloc(const char *name, const void *p)
{
  const struct mcr_startup_alloc *a;
  size_t n = mcr_startup_allocs(&a);

  for (size_t i = 0; i < n; i++)
    if (a[i].addr == (uint64_t)(uintptr_t)p) {
      const struct mcr_startup_alloc *o = mcr_startup_old_alloc(a[i].stack_id, a[i].ordinal);
      fprintf(out, "alloc_%s %016llx/%u size %llu addr %#llx\n", name,
              (unsigned long long)a[i].stack_id, a[i].ordinal, (unsigned long long)a[i].size,
              (unsigned long long)a[i].addr);
      if (o)
        fprintf(out, "oldaddr_%s %#llx\n", name, (unsigned long long)o->addr);
      return;
    }
  fprintf(out, "alloc_%s none\n", name);
}

static void report(void)
{
  const struct mcr_startup_entry *e;
  const struct mcr_startup_conflict *c;
  struct mcr_startup_stats st;
  size_t n;

  fprintf(out, "pid %d\nversion %d\n", (int)getpid(), VERSION);
  fprintf(out, "fd_listen %d\nfd_epoll %d\nfd_log %d\n", lfd, ep, logfd);
  fprintf(out, "bind_rc %d\nbind_errno %d\nlisten_rc %d\nctl_rc %d\n", bind_rc, bind_errno,
          listen_rc, ctl_rc);
  report_alloc("cfg", cfg);
  report_alloc("table", table);
  {
    /* cfg and table: the freed buffer allocated between them has no record */
    const struct mcr_startup_alloc *a;
    size_t na = mcr_startup_allocs(&a), same_id = 0, cfg_i = na;
    for (size_t i = 0; i < na; i++)
      if (a[i].addr == (uint64_t)(uintptr_t)cfg)
        cfg_i = i;
    for (size_t i = 0; cfg_i < na && i < na; i++)
      same_id += a[i].stack_id == a[cfg_i].stack_id;
    fprintf(out, "allocs_from_init_server %zu\n", same_id);
  }
  n = mcr_startup_entries(&e);
  for (size_t i = 0; i < n; i++)
    fprintf(out, "entry %s %016llx/%u flags %#x result %lld err %d | %s | %s\n",
            mcr_startup_kind_name(e[i].kind), (unsigned long long)e[i].stack_id, e[i].ordinal,
            e[i].flags, (long long)e[i].result, e[i].err, e[i].detail, e[i].stack);
  n = mcr_startup_conflicts(&c);
  for (size_t i = 0; i < n; i++)
    fprintf(out, "conflict %s\n", c[i].message);
  n = mcr_startup_notes(&c);
  for (size_t i = 0; i < n; i++)
    fprintf(out, "note %s\n", c[i].message);
  mcr_startup_stats(&st);
  fprintf(out, "stats replayed %u run %u conflicts %u entries %u allocs %u\n", st.replayed,
          st.run, st.conflicts, st.entries, st.allocs);
  fprintf(out, "by_args %u\nadopted %u\n", st.by_args, st.adopted);
  fprintf(out, "fd_pid %d\nfd_null %d\n", pidfd, nullfd);
  {
    /* the listening socket: which object, its flags */
    struct stat sb;
    int acc = 0, fl = fcntl(lfd, F_GETFL), fdfl = fcntl(lfd, F_GETFD);
    socklen_t l = sizeof(acc);
    getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l);
    fprintf(out, "listen_ino %llu\n", fstat(lfd, &sb) == 0 ? (unsigned long long)sb.st_ino : 0ull);
    fprintf(out, "listen_accepting %d\nlisten_nonblock %d\nlisten_cloexec %d\n", acc,
            fl >= 0 && (fl & O_NONBLOCK) ? 1 : 0, fdfl >= 0 && (fdfl & FD_CLOEXEC) ? 1 : 0);
  }
#ifdef LOOP
  for (int i = 0; i < LOOP_N; i++)
    fprintf(out, "loop_%d efd %d efd2 %d ep %d targets %d\n", i, loop_efd[i], loop_efd2[i],
            loop_ep[i], epoll_targets(loop_ep[i]));
#endif
#ifdef EXTRA_CTL
  /* deferred or refused: the shared epoll instance does not know the eventfd */
  fprintf(out, "extra_ctl_rc %d\n", extra_ctl_rc);
  fprintf(out, "extra_targets %d\n", epoll_targets(ep));
#endif
  {
    /* what the update does in the pause, after the state transfer */
    char why[400] = "";
    int rc = mcr_startup_apply_deferred(why, sizeof(why));
    fprintf(out, "apply_deferred %d%s%s\n", rc, rc ? " " : "", why);
  }
#ifdef LOOP
  for (int i = 0; i < LOOP_N; i++)
    fprintf(out, "loop_%d_applied targets %d\n", i, epoll_targets(loop_ep[i]));
#endif
#ifdef EXTRA_CTL
  fprintf(out, "extra_targets_applied %d\n", epoll_targets(ep));
  if (extra_efd >= 0)
    fprintf(out, "extra_del %s\n", epoll_ctl(ep, EPOLL_CTL_DEL, extra_efd, NULL) == 0
                                       ? "removed" : errno == ENOENT ? "ENOENT" : strerror(errno));
#endif
}

/* The targets registered on the epoll instance fd (from /proc/self/fdinfo). */
static int epoll_targets(int fd)
{
  char path[64], line[256];
  FILE *f;
  int n = 0;

  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
  if (!(f = fopen(path, "r")))
    return -1;
  while (fgets(line, sizeof(line), f))
    if (!strncmp(line, "tfd:", 4))
      n++;
  fclose(f);
  return n;
}

/* The old process's part of an update: log out, new version in, fds shared. */
static int spawn_new(const char *dir, const char *port, const char *newbin)
{
  char path[512], list[4096] = "";
  void *buf;
  size_t len, used = 0;
  int fd, status;
  pid_t pid;
  DIR *d;
  struct dirent *de;

  mcr_startup_refresh();
  if (mcr_startup_serialize(&buf, &len) != 0) {
    perror("serialize");
    return 1;
  }
  snprintf(path, sizeof(path), "%s/log.bin", dir);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
    perror(path);
    return 1;
  }
  close(fd);
  mcr_startup_buffer_free(buf, len);
  /* every fd inherited at its number, as the update spawns the new version */
  d = opendir("/proc/self/fd");
  while (d && (de = readdir(d))) {
    int n = atoi(de->d_name);
    if (de->d_name[0] < '0' || de->d_name[0] > '9' || n == dirfd(d))
      continue;
    fcntl(n, F_SETFD, 0);
    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%d", used ? "," : "", n);
  }
  if (d)
    closedir(d);
  setenv("MCR_TEST_INHERIT", list, 1);
  setenv("MCR_TEST_LOG", path, 1);
  fflush(NULL);
  pid = fork();
  if (pid == 0) {
    execl(newbin, newbin, "new", dir, port, (char *)NULL);
    _exit(127);
  }
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return 1;
  fprintf(out, "new_status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128);
  fprintf(out, "old_epoll_targets %d\n", epoll_targets(ep));
  {
    int acc = 0, fl = fcntl(lfd, F_GETFL);
    socklen_t l = sizeof(acc);
    getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l);
    fprintf(out, "old_listen_after accepting %d nonblock %d\n", acc,
            fl >= 0 && (fl & O_NONBLOCK) ? 1 : 0);
  }
  return 0;
}

/* New process, before main: the old log and the inherited fds. Raw system
 * calls and an anonymous mapping, so the test's own reading is not part of the
 * startup it checks. */
__attribute__((constructor(300))) static void replay_from_env(void)
{
  const char *path = getenv("MCR_TEST_LOG"), *list = getenv("MCR_TEST_INHERIT");
  int fds[1024], nfds = 0, fd;
  char err[512], *buf;
  ssize_t n, len = 0;

  if (!path || !list)
    return;
  buf = mmap(NULL, 1 << 24, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
  while (fd >= 0 && (n = syscall(SYS_read, fd, buf + len, (1 << 24) - len)) > 0)
    len += n;
  syscall(SYS_close, fd);
  for (const char *p = list; *p && nfds < 1024;) {
    fds[nfds++] = atoi(p);
    p += strcspn(p, ",");
    if (*p == ',')
      p++;
  }
  if (mcr_startup_replay_begin(buf, (size_t)len, fds, (size_t)nfds, err, sizeof(err)) != 0)
    fprintf(stderr, "replay_begin: %s\n", err);
  unsetenv("MCR_TEST_LOG");
  unsetenv("MCR_TEST_INHERIT");
}

int main(int argc, char **argv)
{
  char path[512];
  int rc = 0;

  if (argc < 4 || (strcmp(argv[1], "old") && strcmp(argv[1], "new")) ||
      (!strcmp(argv[1], "old") && argc < 5)) {
    fprintf(stderr, "usage: %s old DIR PORT NEWBIN | new DIR PORT\n", argv[0]);
    return 2;
  }
  init_server(argv[2], atoi(argv[3]));
  mcr_startup_end(); /* the lead's code calls it at the first quiescent point */
  snprintf(path, sizeof(path), "%s/%s.txt", argv[2], argv[1]);
  out = fopen(path, "w");
  if (!out)
    return 1;
  report();
  if (!strcmp(argv[1], "new")) {
    /* a connection to the address lfd is bound to: accepted on lfd? */
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), a = -1;
    if (getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0 &&
        connect(c, (struct sockaddr *)&sa, sl) == 0 && poll(&p, 1, 2000) == 1)
      a = accept(lfd, NULL, NULL);
    fprintf(out, "accept_ok %d\n", a >= 0);
    if (a >= 0)
      close(a);
    close(c);
  }
  if (!strcmp(argv[1], "old")) {
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    fprintf(out, "port %d\n", ntohs(sa.sin_port));
    fflush(out);
    rc = spawn_new(argv[2], argv[3], argv[4]);
  }
  fclose(out);
  return rc;
}
