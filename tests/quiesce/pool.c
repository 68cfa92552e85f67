/*
 * pool.c - an event thread and a pool of workers on a condition variable, for
 * the quiescence tests (run.sh).
 *
 * The main thread waits in epoll_wait (EPOLLONESHOT per connection) and queues
 * a job for each readable connection; WORKERS threads wait in
 * pthread_cond_wait for jobs, read the connection's requests, reply and re-arm
 * it. A maintenance thread sleeps in usleep between rounds.
 *
 * The job queue, its mutex and its condition variable are process-shared, in
 * a shared mapping, so that a child process (the injector) can queue jobs
 * while this process is held by a quiesce: each SIGUSR1 to the injector queues
 * two "injected" jobs 50 ms apart, samples the counters, and appends a line to
 * INJECT-FILE. A worker woken by the first job must park without the mutex
 * (the injector's second lock would otherwise wait for the resume), and the
 * jobs must be run only after the resume.
 *
 * Protocol (load.c): "R ID SEQ" -> "ID SEQ COUNT"; "STATS" -> counters.
 *   pool READY-FILE [INJECT-FILE]: writes "PORT" into READY-FILE, and with
 *   INJECT-FILE the injector's pid into READY-FILE.injector first.
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
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 6
#define QMAX 1024

struct conn {
  int fd;
  unsigned long count; /* requests served; only the worker holding the conn touches it */
  char in[4096];
  size_t nin;
};

/* In the shared mapping. A job with conn == NULL is an injected one. */
struct shared {
  pthread_mutex_t lock;
  pthread_cond_t more;
  struct conn *jobs[QMAX];
  unsigned head, n;
  unsigned long injected_queued, injected_done, conn_jobs, reqs, maint_rounds;
};

static struct shared *sh;
static int ep;

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void push(struct conn *c)
{
  if (sh->n == QMAX) {
    fprintf(stderr, "pool: job queue full\n");
    exit(1);
  }
  sh->jobs[(sh->head + sh->n++) % QMAX] = c;
  pthread_cond_signal(&sh->more);
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

/* Reads what the connection has (non-blocking), replies, re-arms it.
 * Returns the requests served. */
static unsigned long run_conn(struct conn *c)
{
  char out[16384];
  size_t nout = 0;
  unsigned long served = 0;

  for (;;) {
    ssize_t r = recv(c->fd, c->in + c->nin, sizeof(c->in) - 1 - c->nin, MSG_DONTWAIT);
    char *line, *nl;
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno == EAGAIN)
      break;
    if (r <= 0)
      goto closed;
    c->nin += (size_t)r;
    c->in[c->nin] = '\0';
    line = c->in;
    while ((nl = strchr(line, '\n'))) {
      unsigned long id, seq;
      *nl = '\0';
      if (nout > sizeof(out) - 256) {
        if (write_all(c->fd, out, nout))
          goto closed;
        nout = 0;
      }
      if (sscanf(line, "R %lu %lu", &id, &seq) == 2) {
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout, "%lu %lu %lu\n", id, seq, ++c->count);
        served++;
      } else if (!strcmp(line, "STATS")) {
        pthread_mutex_lock(&sh->lock);
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout,
                                 "reqs=%lu conn_jobs=%lu injected_queued=%lu injected_done=%lu "
                                 "maint_rounds=%lu\n",
                                 sh->reqs, sh->conn_jobs, sh->injected_queued, sh->injected_done,
                                 sh->maint_rounds);
        pthread_mutex_unlock(&sh->lock);
      } else {
        nout += (size_t)snprintf(out + nout, sizeof(out) - nout, "ERR\n");
      }
      line = nl + 1;
    }
    c->nin = strlen(line);
    memmove(c->in, line, c->nin);
    if (c->nin == sizeof(c->in) - 1)
      goto closed;
  }
  if (nout && write_all(c->fd, out, nout))
    goto closed;
  {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
      die("epoll_ctl MOD");
  }
  return served;
closed:
  close(c->fd);
  free(c);
  return served;
}

static void *worker(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&sh->lock);
  for (;;) {
    struct conn *c;
    while (sh->n == 0)
      pthread_cond_wait(&sh->more, &sh->lock);
    c = sh->jobs[sh->head];
    sh->head = (sh->head + 1) % QMAX;
    sh->n--;
    if (!c) {
      sh->injected_done++;
      continue;
    }
    sh->conn_jobs++;
    pthread_mutex_unlock(&sh->lock);
    unsigned long served = run_conn(c);
    pthread_mutex_lock(&sh->lock);
    sh->reqs += served;
  }
  return NULL;
}

static void *maintenance(void *arg)
{
  (void)arg;
  for (;;) {
    usleep(5000);
    pthread_mutex_lock(&sh->lock);
    sh->maint_rounds++;
    pthread_mutex_unlock(&sh->lock);
  }
  return NULL;
}

static void start_pool(void)
{
  for (int i = 0; i < WORKERS; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL))
      die("pthread_create");
  }
}

static void start_maintenance(void)
{
  pthread_t t;
  if (pthread_create(&t, NULL, maintenance, NULL))
    die("pthread_create");
}

/* The injector child: on each SIGUSR1, two jobs 50 ms apart, then a report
 * line "inject lock1_ms=.. lock2_ms=.. done_before=.. done_after=.. queued=..". */
static void inject_once(FILE *report)
{
  struct timespec gap = {0, 50 * 1000 * 1000};
  unsigned long done_before, done_after, queued;
  double t, lock1, lock2;

  t = now_ms();
  pthread_mutex_lock(&sh->lock);
  lock1 = now_ms() - t;
  done_before = sh->injected_done;
  sh->injected_queued++;
  push(NULL);
  pthread_mutex_unlock(&sh->lock);
  nanosleep(&gap, NULL); /* a worker wakes up meanwhile, and must park without the lock */
  t = now_ms();
  pthread_mutex_lock(&sh->lock);
  lock2 = now_ms() - t;
  sh->injected_queued++;
  push(NULL);
  pthread_mutex_unlock(&sh->lock);
  nanosleep(&gap, NULL);
  pthread_mutex_lock(&sh->lock);
  done_after = sh->injected_done;
  queued = sh->n;
  pthread_mutex_unlock(&sh->lock);
  fprintf(report, "inject lock1_ms=%.1f lock2_ms=%.1f done_before=%lu done_after=%lu queued=%lu\n",
          lock1, lock2, done_before, done_after, queued);
  fflush(report);
}

static void injector(const char *path)
{
  FILE *report = fopen(path, "a");
  sigset_t set;
  int sig;

  if (!report)
    die(path);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  for (;;) {
    if (sigwait(&set, &sig) == 0)
      inject_once(report);
  }
}

static void write_file(const char *path, int value)
{
  char tmp[4096];
  FILE *f;

  /* written whole, then renamed: the test never reads half a number */
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (!(f = fopen(tmp, "w")) || fprintf(f, "%d\n", value) < 0 || fclose(f) || rename(tmp, path))
    die(path);
}

static void serve(int lfd)
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
      if (c) { /* one-shot: no other event for it until the worker re-arms it */
        pthread_mutex_lock(&sh->lock);
        push(c);
        pthread_mutex_unlock(&sh->lock);
        continue;
      }
      int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0)
        continue;
      if (!(c = calloc(1, sizeof(*c))))
        die("calloc");
      c->fd = fd;
      struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl ADD");
    }
  }
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  pthread_mutexattr_t ma;
  pthread_condattr_t ca;
  sigset_t usr1;
  int lfd;

  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: pool READY-FILE [INJECT-FILE]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED)
    die("mmap");
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_init(&sh->lock, &ma);
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_cond_init(&sh->more, &ca);

  if (argc == 3) {
    char path[4096];
    pid_t child;
    /* blocked before the fork: a SIGUSR1 sent early waits for sigwait */
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    child = fork();
    if (child < 0)
      die("fork");
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the server */
      injector(argv[2]);
    }
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    snprintf(path, sizeof(path), "%s.injector", argv[1]);
    write_file(path, (int)child);
  }

  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
      getsockname(lfd, (struct sockaddr *)&a, &len))
    die("listen");
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
    die("epoll");
  start_pool();
  start_maintenance();
  write_file(argv[1], ntohs(a.sin_port));
  serve(lfd);
  return 0;
}
