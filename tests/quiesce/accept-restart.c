/*
 * accept-restart.c - a thread-per-connection server whose main thread blocks
 * in accept(), with its own SIGUSR1 handler installed with SA_RESTART, for the
 * quiescence tests (run.sh).
 *
 * With SA_RESTART the kernel restarts accept() after the server's own handler,
 * so this server treats EINTR from accept() as impossible: it aborts if it ever
 * sees one. The runtime's signal (no SA_RESTART) does interrupt the accept()
 * at the quiescent point; the runtime must park and call again, never return
 * that EINTR. Connection threads block in read() (blocking sockets) and count
 * any EINTR they see (none expected either).
 *
 * Protocol (load.c): "R ID SEQ" -> "ID SEQ COUNT"; "STATS" -> counters,
 * among them usr1=N, the handler runs.
 *   accept-restart READY-FILE: writes the port into READY-FILE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* atomics (lock-free, so safe in a handler that may run on two threads at once) */
static unsigned long usr1, n_conns, n_reqs, n_read_eintr, n_live;

static void on_usr1(int sig)
{
  (void)sig;
  __atomic_add_fetch(&usr1, 1, __ATOMIC_SEQ_CST);
}

static void die(const char *what)
{
  perror(what);
  exit(1);
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

static void *conn_main(void *arg)
{
  int fd = (int)(long)arg;
  unsigned long count = 0;
  char in[4096], out[16384];
  size_t nin = 0;

  __atomic_add_fetch(&n_live, 1, __ATOMIC_SEQ_CST);
  for (;;) {
    ssize_t r = read(fd, in + nin, sizeof(in) - 1 - nin);
    size_t nout = 0;
    char *line, *nl;
    if (r < 0 && errno == EINTR) {
      __atomic_add_fetch(&n_read_eintr, 1, __ATOMIC_SEQ_CST);
      continue;
    }
    if (r <= 0)
      break;
    nin += (size_t)r;
    in[nin] = '\0';
    line = in;
    while ((nl = strchr(line, '\n'))) {
      unsigned long id, seq;
      *nl = '\0';
      if (nout > sizeof(out) - 256) {
        if (write_all(fd, out, nout))
          goto done;
        nout = 0;
      }
      if (sscanf(line, "R %lu %lu", &id, &seq) == 2) {
        __atomic_add_fetch(&n_reqs, 1, __ATOMIC_RELAXED);
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout, "%lu %lu %lu\n", id, seq, ++count);
      } else if (!strcmp(line, "STATS")) {
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout,
                                 "usr1=%lu conns=%lu reqs=%lu read_eintr=%lu live=%lu\n",
                                 __atomic_load_n(&usr1, __ATOMIC_SEQ_CST),
                                 __atomic_load_n(&n_conns, __ATOMIC_SEQ_CST),
                                 __atomic_load_n(&n_reqs, __ATOMIC_SEQ_CST),
                                 __atomic_load_n(&n_read_eintr, __ATOMIC_SEQ_CST),
                                 __atomic_load_n(&n_live, __ATOMIC_SEQ_CST));
      } else {
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout, "ERR\n");
      }
      line = nl + 1;
    }
    nin = strlen(line);
    memmove(in, line, nin);
    if (nin == sizeof(in) - 1 || (nout && write_all(fd, out, nout)))
      break;
  }
done:
  close(fd);
  __atomic_sub_fetch(&n_live, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void serve(int lfd)
{
  pthread_attr_t attr;

  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (;;) {
    pthread_t t;
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0 && errno == EINTR) {
      /* SA_RESTART is set: this can only be a signal that is not ours */
      fprintf(stderr, "accept-restart: accept() returned EINTR\n");
      abort();
    }
    if (fd < 0 && errno == ECONNABORTED)
      continue;
    if (fd < 0)
      die("accept");
    __atomic_add_fetch(&n_conns, 1, __ATOMIC_SEQ_CST);
    if (pthread_create(&t, &attr, conn_main, (void *)(long)fd))
      die("pthread_create");
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  struct sigaction sa;
  char tmp[4096];
  FILE *f;
  int lfd;

  if (argc != 2) {
    fprintf(stderr, "usage: accept-restart READY-FILE\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, NULL))
    die("sigaction");
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
      getsockname(lfd, (struct sockaddr *)&a, &len))
    die("listen");
  /* written whole, then renamed: the test never reads half a port */
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
  if (!(f = fopen(tmp, "w")) || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) ||
      rename(tmp, argv[1]))
    die(argv[1]);
  serve(lfd);
  return 0;
}
