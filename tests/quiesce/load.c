/*
 * load.c - load generator for the quiescence tests (tests/quiesce/run.sh).
 *
 * Protocol of every test server: a request is the line "R ID SEQ\n"; the reply
 * is "ID SEQ COUNT\n", where COUNT is the number of requests the server has
 * served on this connection, this one included. SEQ counts from 0 on each
 * connection, so a correct reply is exactly "ID SEQ SEQ+1": anything else (a
 * lost, repeated, reordered or garbled request or reply) is a failure.
 *
 *   load -p PORT [-c CONNS] [-n REQS] [-d SEC] [-P DEPTH] [-r RECONNECT] [-s]
 *        [-t STALL_SEC]
 *     CONNS connections (default 4), each with DEPTH requests in flight
 *     (pipelined in one write, default 1); stops after REQS requests in all or
 *     SEC seconds, or on SIGTERM/SIGINT, and then waits for the replies still
 *     due. -r: a connection is closed and opened again after RECONNECT
 *     requests. -s: each batch is written in two parts split inside a line,
 *     so the server sees partial requests. A connection that gets no byte for
 *     STALL_SEC seconds (default 10) while replies are due is a failure (a
 *     lost wake-up in the server). Prints "ok=N failed=N secs=S rps=R" and
 *     exits 0 if every request got its correct reply, 1 otherwise.
 *
 *   load -p PORT -q LINE [-e MS] [-t STALL_SEC]
 *     Sends LINE, prints the one-line reply. -e: the reply must not come
 *     earlier than MS milliseconds after the request (the server is held by a
 *     quiesce): exit 1 if it does. Exit 1 on no reply.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define MAX_DEPTH 64
#define MAX_REPORTS 10 /* failures described on stderr */

struct conn {
  int fd;
  unsigned long id;
  unsigned long sent, acked; /* requests on this connection */
  double last_io;            /* when the last byte came (or the batch went) */
  char in[8192];
  size_t nin;
};

static volatile sig_atomic_t stop_requested;
static int port;
static unsigned long ok, failed, reports;
static double stall_sec = 10;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static void failure(const char *fmt, ...)
{
  va_list ap;

  failed++;
  if (reports++ >= MAX_REPORTS)
    return;
  va_start(ap, fmt);
  fputs("load: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int dial(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  /* small writes go out at once: a split batch reaches the server in parts */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
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

static int open_conn(struct conn *c)
{
  c->fd = dial();
  c->sent = c->acked = 0;
  c->nin = 0;
  c->last_io = now();
  if (c->fd < 0) {
    failure("connection %lu: connect: %s", c->id, strerror(errno));
    return -1;
  }
  return 0;
}

static void close_conn(struct conn *c)
{
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

/* Writes the next batch of depth requests. */
static int send_batch(struct conn *c, int depth, int split)
{
  char buf[MAX_DEPTH * 64];
  size_t n = 0, half;

  for (int i = 0; i < depth; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "R %lu %lu\n", c->id, c->sent + (unsigned long)i);
  half = split ? n / 2 + 1 : n; /* +1: never on a line boundary when n is even */
  if (write_all(c->fd, buf, half) || (half < n && write_all(c->fd, buf + half, n - half))) {
    failure("connection %lu: write: %s", c->id, strerror(errno));
    return -1;
  }
  c->sent += (unsigned long)depth;
  c->last_io = now();
  return 0;
}

/* Reads what is there; checks each complete reply. -1: the connection failed
 * (its missing replies are counted as failed). */
static int receive(struct conn *c)
{
  ssize_t r = read(c->fd, c->in + c->nin, sizeof(c->in) - 1 - c->nin);
  char *line, *nl;

  if (r < 0 && errno == EINTR)
    return 0;
  if (r <= 0) {
    failure("connection %lu: %s with %lu replies due", c->id, r ? strerror(errno) : "closed by the server",
            c->sent - c->acked);
    failed += c->sent - c->acked - 1; /* failure() counted one */
    return -1;
  }
  c->last_io = now();
  c->nin += (size_t)r;
  c->in[c->nin] = '\0';
  line = c->in;
  while ((nl = strchr(line, '\n'))) {
    char want[64];
    *nl = '\0';
    snprintf(want, sizeof(want), "%lu %lu %lu", c->id, c->acked, c->acked + 1);
    if (c->acked >= c->sent) {
      failure("connection %lu: unexpected reply '%s'", c->id, line);
      return -1;
    }
    if (strcmp(line, want) != 0)
      failure("connection %lu: reply '%s', expected '%s'", c->id, line, want);
    else
      ok++;
    c->acked++;
    line = nl + 1;
  }
  c->nin = strlen(line);
  memmove(c->in, line, c->nin);
  if (c->nin == sizeof(c->in) - 1) {
    failure("connection %lu: reply line too long", c->id);
    return -1;
  }
  return 0;
}

static int query(const char *line, long early_ms)
{
  char buf[4096], req[1024];
  size_t n = 0;
  double t0;
  int fd = dial();

  if (fd < 0) {
    fprintf(stderr, "load: connect to port %d: %s\n", port, strerror(errno));
    return 1;
  }
  snprintf(req, sizeof(req), "%s\n", line);
  t0 = now();
  if (write_all(fd, req, strlen(req))) {
    fprintf(stderr, "load: write: %s\n", strerror(errno));
    return 1;
  }
  while (!memchr(buf, '\n', n)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t r;
    if (poll(&p, 1, (int)(stall_sec * 1000)) <= 0) {
      fprintf(stderr, "load: no reply to '%s' in %.0f s\n", line, stall_sec);
      return 1;
    }
    r = read(fd, buf + n, sizeof(buf) - 1 - n);
    if (r <= 0) {
      fprintf(stderr, "load: no reply to '%s': %s\n", line, r ? strerror(errno) : "connection closed");
      return 1;
    }
    n += (size_t)r;
  }
  buf[n] = '\0';
  *strchr(buf, '\n') = '\0';
  printf("%s\n", buf);
  if (early_ms >= 0 && (now() - t0) * 1000 < (double)early_ms) {
    fprintf(stderr, "load: the reply came after %.1f ms, expected %ld ms or more (the server was not held)\n",
            (now() - t0) * 1000, early_ms);
    return 1;
  }
  close(fd);
  return 0;
}

static void usage(void)
{
  fprintf(stderr, "usage: load -p PORT [-c CONNS] [-n REQS] [-d SEC] [-P DEPTH] [-r RECONNECT] [-s] "
                  "[-t STALL_SEC]\n       load -p PORT -q LINE [-e MS]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  static struct conn conns[MAX_CONNS];
  struct pollfd pfd[MAX_CONNS];
  int nconns = 4, depth = 1, split = 0, opt, stopping = 0;
  unsigned long max_reqs = 0, reconnect = 0, issued = 0;
  double duration = 0, t0, elapsed;
  const char *q = NULL;
  long early_ms = -1;
  struct sigaction sa;

  while ((opt = getopt(argc, argv, "p:c:n:d:P:r:st:q:e:")) != -1) {
    switch (opt) {
    case 'p': port = atoi(optarg); break;
    case 'c': nconns = atoi(optarg); break;
    case 'n': max_reqs = strtoul(optarg, NULL, 10); break;
    case 'd': duration = atof(optarg); break;
    case 'P': depth = atoi(optarg); break;
    case 'r': reconnect = strtoul(optarg, NULL, 10); break;
    case 's': split = 1; break;
    case 't': stall_sec = atof(optarg); break;
    case 'q': q = optarg; break;
    case 'e': early_ms = atol(optarg); break;
    default: usage();
    }
  }
  if (port <= 0 || port > 65535 || nconns < 1 || nconns > MAX_CONNS || depth < 1 ||
      depth > MAX_DEPTH || stall_sec <= 0 || optind != argc)
    usage();
  signal(SIGPIPE, SIG_IGN);
  if (q)
    return query(q, early_ms);

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  t0 = now();
  for (int i = 0; i < nconns; i++) {
    conns[i].id = (unsigned long)i;
    if (open_conn(&conns[i]) == 0 && send_batch(&conns[i], depth, split) == 0)
      issued += (unsigned long)depth;
    else
      close_conn(&conns[i]);
  }
  for (;;) {
    int live = 0;
    double t = now();

    if (!stopping && (stop_requested || (duration > 0 && t - t0 >= duration) ||
                      (max_reqs && issued >= max_reqs)))
      stopping = 1;
    for (int i = 0; i < nconns; i++) {
      struct conn *c = &conns[i];
      if (c->fd < 0)
        continue;
      if (c->acked == c->sent) { /* batch complete: next one, or done */
        if (stopping) {
          close_conn(c);
          continue;
        }
        if (reconnect && c->sent >= reconnect) {
          close_conn(c);
          if (open_conn(c) != 0)
            continue;
        }
        if (send_batch(c, depth, split) != 0) {
          close_conn(c);
          continue;
        }
        issued += (unsigned long)depth;
      } else if (t - c->last_io > stall_sec) {
        failure("connection %lu: no reply for %.0f s with %lu due (lost wake-up?)", c->id,
                stall_sec, c->sent - c->acked);
        failed += c->sent - c->acked - 1;
        close_conn(c);
        continue;
      }
      pfd[live].fd = c->fd;
      pfd[live].events = POLLIN;
      live++;
    }
    if (!live)
      break;
    if (poll(pfd, (nfds_t)live, 100) < 0 && errno != EINTR) {
      perror("load: poll");
      return 1;
    }
    for (int k = 0; k < live; k++) {
      if (!pfd[k].revents)
        continue;
      for (int i = 0; i < nconns; i++)
        if (conns[i].fd == pfd[k].fd) {
          if (receive(&conns[i]) != 0)
            close_conn(&conns[i]);
          break;
        }
    }
  }
  elapsed = now() - t0;
  printf("ok=%lu failed=%lu secs=%.2f rps=%.0f\n", ok, failed, elapsed, (double)ok / elapsed);
  return failed || !ok ? 1 : 0;
}
