/*
 * stuck.c - a server with a thread that can be made to block where it has no
 * quiescent point, for the quiescence tests (run.sh): a quiesce must time out,
 * name that thread and what it is doing, and resume everything.
 *
 * The main thread serves connections from epoll_wait (level-triggered). A
 * helper thread wakes every 2 ms (usleep, its quiescent point). After the
 * request "STUCK" it blocks in read() on a pipe instead, from a function that
 * never ran while the server was profiled, so that read() is no quiescent
 * point; "UNSTICK" writes the byte it waits for.
 *
 * Protocol (load.c): "R ID SEQ" -> "ID SEQ COUNT"; "STUCK", "UNSTICK" -> "ok";
 * "STATS" -> "in_read=0|1 rounds=N reqs=N".
 *   stuck READY-FILE: writes the port into READY-FILE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
  int fd;
  unsigned long count;
  char in[4096];
  size_t nin;
};

static int stuck_pipe[2];
static int stuck_requested, in_read; /* atomics */
static unsigned long rounds, n_reqs;

static void die(const char *what)
{
  perror(what);
  exit(1);
}

/* Not inlined, so that the scanned stack of the stuck thread names it. */
__attribute__((noinline)) static void wait_for_unstick(void)
{
  char c;
  __atomic_store_n(&in_read, 1, __ATOMIC_SEQ_CST);
  while (read(stuck_pipe[0], &c, 1) < 0 && errno == EINTR)
    ;
  __atomic_store_n(&in_read, 0, __ATOMIC_SEQ_CST);
}

static void *helper(void *arg)
{
  (void)arg;
  for (;;) {
    usleep(2000);
    __atomic_add_fetch(&rounds, 1, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&stuck_requested, 0, __ATOMIC_SEQ_CST))
      wait_for_unstick();
  }
  return NULL;
}

static void start_helper(void)
{
  pthread_t t;
  if (pthread_create(&t, NULL, helper, NULL))
    die("pthread_create");
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void reply_line(struct conn *c, const char *line, char *out, size_t *nout, size_t cap)
{
  unsigned long id, seq;

  if (sscanf(line, "R %lu %lu", &id, &seq) == 2) {
    n_reqs++;
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "%lu %lu %lu\n", id, seq, ++c->count);
  } else if (!strcmp(line, "STUCK")) {
    __atomic_store_n(&stuck_requested, 1, __ATOMIC_SEQ_CST);
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "ok\n");
  } else if (!strcmp(line, "UNSTICK")) {
    if (write(stuck_pipe[1], "x", 1) != 1)
      die("write");
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "ok\n");
  } else if (!strcmp(line, "STATS")) {
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "in_read=%d rounds=%lu reqs=%lu\n",
                              __atomic_load_n(&in_read, __ATOMIC_SEQ_CST),
                              __atomic_load_n(&rounds, __ATOMIC_SEQ_CST), n_reqs);
  } else {
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "ERR\n");
  }
}

/* -1 when the connection is done. */
static int on_conn(struct conn *c)
{
  char out[16384], *line, *nl;
  size_t nout = 0;
  ssize_t r = read(c->fd, c->in + c->nin, sizeof(c->in) - 1 - c->nin);

  if (r < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  if (r <= 0)
    return -1;
  c->nin += (size_t)r;
  c->in[c->nin] = '\0';
  line = c->in;
  while ((nl = strchr(line, '\n'))) {
    *nl = '\0';
    if (nout > sizeof(out) - 256) {
      if (write_all(c->fd, out, nout))
        return -1;
      nout = 0;
    }
    reply_line(c, line, out, &nout, sizeof(out));
    line = nl + 1;
  }
  c->nin = strlen(line);
  memmove(c->in, line, c->nin);
  if (c->nin == sizeof(c->in) - 1 || (nout && write_all(c->fd, out, nout)))
    return -1;
  return 0;
}

static void serve(int ep, int lfd)
{
  struct epoll_event evs[64];

  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        /* blocking socket: the reply is written whole */
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN};
        if (fd < 0)
          continue;
        if (!(c = calloc(1, sizeof(*c))))
          die("calloc");
        c->fd = fd;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
          die("epoll_ctl");
      } else if (on_conn(c) < 0) {
        close(c->fd);
        free(c);
      }
    }
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  char tmp[4096];
  FILE *f;
  int lfd, ep;

  if (argc != 2) {
    fprintf(stderr, "usage: stuck READY-FILE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (pipe2(stuck_pipe, O_CLOEXEC))
    die("pipe2");
  start_helper();
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
      getsockname(lfd, (struct sockaddr *)&a, &len))
    die("listen");
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
    die("epoll");
  /* written whole, then renamed: the test never reads half a port */
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
  if (!(f = fopen(tmp, "w")) || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) ||
      rename(tmp, argv[1]))
    die(argv[1]);
  serve(ep, lfd);
  return 0;
}
