/*
 * epoll-et.c - a single-threaded server on edge-triggered epoll (EPOLLET) with
 * non-blocking sockets, for the quiescence tests (run.sh).
 *
 * Edge-triggered epoll reports readiness once: an event taken from the kernel
 * and then dropped is never reported again, and the client waits forever. So
 * this server is where a quiesce that lost an event shows up as a hung client.
 * The listener is edge-triggered too (accept until EAGAIN).
 *
 * Protocol (load.c): "R ID SEQ" -> "ID SEQ COUNT", COUNT being the requests
 * served on this connection; "STATS" -> counters.
 *   epoll-et READY-FILE: listens on 127.0.0.1 (a free port), writes the port
 *   into READY-FILE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
  int fd;
  unsigned long count; /* requests served on this connection */
  char in[4096];
  size_t nin;
  char out[65536];
  size_t nout, off;
};

static unsigned long n_conns, n_reqs, n_partial, n_again_out;

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static void reply_line(struct conn *c, const char *line)
{
  char buf[256];
  unsigned long id, seq;
  int n;

  if (sscanf(line, "R %lu %lu", &id, &seq) == 2) {
    n_reqs++;
    n = snprintf(buf, sizeof(buf), "%lu %lu %lu\n", id, seq, ++c->count);
  } else if (!strcmp(line, "STATS")) {
    n = snprintf(buf, sizeof(buf), "conns=%lu reqs=%lu partial_reads=%lu out_again=%lu\n",
                 n_conns, n_reqs, n_partial, n_again_out);
  } else {
    n = snprintf(buf, sizeof(buf), "ERR\n");
  }
  if (c->nout + (size_t)n > sizeof(c->out)) {
    fprintf(stderr, "epoll-et: output buffer full\n");
    exit(1);
  }
  memcpy(c->out + c->nout, buf, (size_t)n);
  c->nout += (size_t)n;
}

/* Writes what it can; the rest goes when EPOLLOUT comes. */
static int flush(struct conn *c)
{
  while (c->off < c->nout) {
    ssize_t w = write(c->fd, c->out + c->off, c->nout - c->off);
    if (w < 0 && errno == EAGAIN) {
      n_again_out++;
      return 0;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    c->off += (size_t)w;
  }
  c->off = c->nout = 0;
  return 0;
}

static void close_conn(struct conn *c)
{
  close(c->fd); /* also removes it from the epoll set */
  free(c);
}

/* Edge-triggered: read until EAGAIN, or the next request may never be seen. */
static void on_conn(struct conn *c, unsigned events)
{
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    for (;;) {
      ssize_t r = read(c->fd, c->in + c->nin, sizeof(c->in) - 1 - c->nin);
      char *line, *nl;
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0 && errno == EAGAIN)
        break;
      if (r <= 0) {
        close_conn(c);
        return;
      }
      c->nin += (size_t)r;
      c->in[c->nin] = '\0';
      line = c->in;
      while ((nl = strchr(line, '\n'))) {
        *nl = '\0';
        reply_line(c, line);
        line = nl + 1;
      }
      c->nin = strlen(line);
      if (c->nin)
        n_partial++;
      memmove(c->in, line, c->nin);
      if (c->nin == sizeof(c->in) - 1) {
        close_conn(c);
        return;
      }
    }
  }
  if (flush(c) != 0)
    close_conn(c);
}

static void accept_all(int ep, int lfd)
{
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
    struct conn *c;
    if (fd < 0) {
      if (errno == EAGAIN)
        return;
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      die("accept4");
    }
    if (!(c = calloc(1, sizeof(*c))))
      die("calloc");
    c->fd = fd;
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
      die("epoll_ctl");
    n_conns++;
  }
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
      if (evs[i].data.ptr == NULL)
        accept_all(ep, lfd);
      else
        on_conn(evs[i].data.ptr, evs[i].events);
    }
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
  int lfd, ep;
  char tmp[4096];
  FILE *f;

  if (argc != 2) {
    fprintf(stderr, "usage: epoll-et READY-FILE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
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
