/*
 * control.c - client of the per-process control socket; see control.h.
 */
#define _GNU_SOURCE
#include "control.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/control.h"
#include "ctl.h"

int ctl_parse_pid(const char *s, pid_t *out)
{
  char *end;
  long v;

  errno = 0;
  v = strtol(s, &end, 10);
  if (!*s || *end || errno || v <= 0 || v > INT_MAX) {
    ctl_err("'%s' is not a process id (expected a positive number)", s);
    return -1;
  }
  *out = (pid_t)v;
  return 0;
}

int ctl_parse_timeout(const char *s, int *ms)
{
  char *end;
  double v;

  errno = 0;
  v = strtod(s, &end);
  if (!*s || *end || errno || !(v > 0) || v > 86400) {
    ctl_err("bad --timeout '%s' (expected seconds, e.g. 5 or 0.5)", s);
    return -1;
  }
  *ms = (int)(v * 1000 + 0.5);
  if (*ms < 1)
    *ms = 1;
  return 0;
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
  for (;;) {
    struct pollfd p = {.fd = fd, .events = events};
    long long left = deadline - now_ms();
    int n;
    if (left <= 0)
      return 0;
    n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (n < 0 && errno == EINTR)
      continue;
    return n < 0 ? -1 : n > 0;
  }
}

/* 1 all read, 0 closed before the first byte, -1 error, -2 timed out, -3 closed midway */
static int read_full(int fd, unsigned char *p, size_t n, long long deadline)
{
  size_t got = 0;

  while (got < n) {
    int w = wait_fd(fd, POLLIN, deadline);
    ssize_t r;
    if (w <= 0)
      return w == 0 ? -2 : -1;
    r = recv(fd, p + got, n - got, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r < 0)
      return errno == ECONNRESET ? (got ? -3 : 0) : -1;
    if (r == 0)
      return got ? -3 : 0;
    got += (size_t)r;
  }
  return 1;
}

pid_t ctl_parent_of(pid_t pid)
{
  char path[64], buf[1024];
  FILE *f;
  size_t n;
  const char *p;
  int ppid = 0;

  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  if (!(f = fopen(path, "re")))
    return 0;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  /* "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses */
  if (!(p = strrchr(buf, ')')) || sscanf(p + 1, " %*c %d", &ppid) != 1)
    return 0;
  return (pid_t)ppid;
}

int ctl_runs_mcr(pid_t pid)
{
  char want[64], line[512];
  FILE *f = fopen("/proc/net/unix", "re");
  int found = 0;

  if (!f)
    return 0;
  snprintf(want, sizeof(want), " @" MCR_CONTROL_NAME "\n", (int)pid);
  while (!found && fgets(line, sizeof(line), f)) {
    size_t n = strlen(line), w = strlen(want);
    found = n >= w && !strcmp(line + n - w, want);
  }
  fclose(f);
  return found;
}

/* The uid that owns process pid, or -1. */
static long owner_uid(pid_t pid)
{
  char path[64];
  struct stat sb;

  snprintf(path, sizeof(path), "/proc/%d", (int)pid);
  return stat(path, &sb) ? -1 : (long)sb.st_uid;
}

static void refused(pid_t pid)
{
  long uid = owner_uid(pid);

  if (uid >= 0 && (uid_t)uid != geteuid() && geteuid() != 0)
    ctl_err("process %d belongs to another user (uid %ld): its control socket answers "
            "only that user or root; run mcr-ctl as that user",
            (int)pid, uid);
  else
    ctl_err("process %d closed the control connection without replying", (int)pid);
}

Mcr__Control__Reply *ctl_call(pid_t pid, const Mcr__Control__Request *req, int timeout_ms)
{
  Mcr__Control__Reply *rep = ctl_call_raw(pid, req, timeout_ms);

  if (rep && rep->kind_case == MCR__CONTROL__REPLY__KIND_ERROR) {
    ctl_err("process %d refused the request: %s", (int)pid,
            rep->error && rep->error->message ? rep->error->message : "(no reason given)");
    mcr__control__reply__free_unpacked(rep, NULL);
    rep = NULL;
  }
  return rep;
}

Mcr__Control__Reply *ctl_call_raw(pid_t pid, const Mcr__Control__Request *req, int timeout_ms)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  Mcr__Control__Reply *rep = NULL;
  unsigned char hdr[4], *buf = NULL;
  long long deadline = now_ms() + timeout_ms;
  size_t n;
  int fd = -1, len, rc;
  uint32_t rlen;

  if (kill(pid, 0) != 0 && errno == ESRCH) {
    ctl_err("no process %d", (int)pid);
    return NULL;
  }
  len = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, MCR_CONTROL_NAME, (int)pid);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ctl_err("cannot create a socket: %s", strerror(errno));
    return NULL;
  }
  if (connect(fd, (struct sockaddr *)&sa,
              (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len))) {
    if (errno == ECONNREFUSED || errno == ENOENT)
      ctl_err("process %d has no mcr control socket (@mcr/%d): it was not built with "
              "mcr-clang, or runs with MCR_CONTROL=off, or in another network namespace",
              (int)pid, (int)pid);
    else if (errno == EPERM || errno == EACCES)
      ctl_err("not allowed to connect to process %d: %s", (int)pid, strerror(errno));
    else
      ctl_err("cannot connect to process %d: %s", (int)pid, strerror(errno));
    goto out;
  }

  n = mcr__control__request__get_packed_size(req);
  buf = malloc(n + 4);
  if (!buf) {
    ctl_err("out of memory");
    goto out;
  }
  mcr_control_put_len(buf, (uint32_t)n);
  mcr__control__request__pack(req, buf + 4);
  for (size_t off = 0; off < n + 4;) {
    ssize_t w;
    if (wait_fd(fd, POLLOUT, deadline) <= 0) {
      ctl_err("process %d did not take the request within %.1f s", (int)pid,
              timeout_ms / 1000.0);
      goto out;
    }
    w = send(fd, buf + off, n + 4 - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      if (errno == EPIPE || errno == ECONNRESET)
        refused(pid);
      else
        ctl_err("cannot send to process %d: %s", (int)pid, strerror(errno));
      goto out;
    }
    off += (size_t)w;
  }
  free(buf);
  buf = NULL;

  rc = read_full(fd, hdr, 4, deadline);
  if (rc == 1) {
    rlen = mcr_control_get_len(hdr);
    if (rlen > MCR_CONTROL_MAX_REPLY) {
      ctl_err("process %d sent a reply of %u bytes (over the limit): not an mcr runtime?",
              (int)pid, rlen);
      goto out;
    }
    buf = malloc(rlen ? rlen : 1);
    if (!buf) {
      ctl_err("out of memory");
      goto out;
    }
    rc = read_full(fd, buf, rlen, deadline);
  }
  if (rc == 0) {
    refused(pid);
    goto out;
  }
  if (rc == -2) {
    ctl_err("no reply from process %d within %.1f s (is it stopped? try --timeout)", (int)pid,
            timeout_ms / 1000.0);
    goto out;
  }
  if (rc != 1) {
    ctl_err("lost the connection to process %d while reading its reply", (int)pid);
    goto out;
  }
  rep = mcr__control__reply__unpack(NULL, rlen, buf);
  if (!rep) {
    ctl_err("process %d sent a reply that does not decode (a different mcr version?)",
            (int)pid);
    goto out;
  }
out:
  free(buf);
  if (fd >= 0)
    close(fd);
  return rep;
}
