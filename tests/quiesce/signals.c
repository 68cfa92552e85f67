/*
 * signals.c - a server with its own signal handlers and masks, for the
 * quiescence tests (run.sh).
 *
 * The main thread serves connections from epoll_wait (level-triggered,
 * non-blocking sockets). Handlers for SIGUSR1, SIGUSR2 and SIGALRM (an
 * interval timer every TIMER_US) are installed WITHOUT SA_RESTART, so
 * epoll_wait returns EINTR after each: the server takes that as a wake-up, and
 * checks that each EINTR is explained by one of its own handlers having run on
 * the main thread during that call (the runtime's signal must never show).
 * Other threads block every signal (pthread_sigmask with a full set):
 *   condw:  waits in pthread_cond_wait for a job, queued per request batch;
 *   ppollw: waits in ppoll() on a pipe, with a full signal mask argument;
 *   pollw:  (only with the argument "pollw") waits in poll() on a pipe with no
 *           timeout: the runtime's signal cannot interrupt it.
 * Each thread checks that its signal mask is still what it set.
 *
 * Protocol (load.c): "R ID SEQ" -> "ID SEQ COUNT"; "STATS" -> counters.
 *   signals READY-FILE [pollw]: writes the port into READY-FILE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TIMER_US 2000

struct conn {
  int fd;
  unsigned long count;
  char in[4096];
  size_t nin;
};

/* handler runs: atomics (lock-free, safe in a handler) */
static unsigned long n_usr1, n_usr2, n_alrm;
static __thread unsigned long my_handler_runs; /* on this thread (the main thread) */
/* the main thread's */
static unsigned long n_eintr, n_unexplained, n_reqs, n_mask_changed;
/* the other threads' (atomics) */
static unsigned long cond_jobs, ppoll_wakes, poll_wakes, worker_mask_changed;
static struct timespec started;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static unsigned long pending_jobs;
static int ppoll_pipe[2], poll_pipe[2] = {-1, -1};

static void die(const char *what)
{
  perror(what);
  exit(1);
}

static void on_signal(int sig)
{
  my_handler_runs++;
  if (sig == SIGUSR1)
    __atomic_add_fetch(&n_usr1, 1, __ATOMIC_SEQ_CST);
  else if (sig == SIGUSR2)
    __atomic_add_fetch(&n_usr2, 1, __ATOMIC_SEQ_CST);
  else if (sig == SIGALRM)
    __atomic_add_fetch(&n_alrm, 1, __ATOMIC_SEQ_CST);
}

static const int own_signals[] = {SIGUSR1, SIGUSR2, SIGALRM};

/* Whether our handlers are still installed as we installed them. */
static int handlers_intact(void)
{
  for (size_t i = 0; i < sizeof(own_signals) / sizeof(own_signals[0]); i++) {
    struct sigaction sa;
    if (sigaction(own_signals[i], NULL, &sa) || sa.sa_handler != on_signal ||
        (sa.sa_flags & (SA_RESTART | SA_SIGINFO)))
      return 0;
  }
  return 1;
}

/* Blocks every signal in the calling thread; returns the mask to compare with. */
static sigset_t block_all(void)
{
  sigset_t all, now;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  pthread_sigmask(SIG_SETMASK, NULL, &now); /* what the kernel kept of it */
  return now;
}

static void check_mask(const sigset_t *want, unsigned long *changed)
{
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  for (int s = 1; s < NSIG; s++)
    if (sigismember(&now, s) != sigismember(want, s)) {
      __atomic_add_fetch(changed, 1, __ATOMIC_SEQ_CST);
      return;
    }
}

static void *condw(void *arg)
{
  sigset_t mine = block_all();
  (void)arg;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (!pending_jobs)
      pthread_cond_wait(&more, &lock);
    pending_jobs = 0;
    __atomic_add_fetch(&cond_jobs, 1, __ATOMIC_SEQ_CST);
    check_mask(&mine, &worker_mask_changed);
  }
  return NULL;
}

static void drain(int fd)
{
  char buf[512];
  while (read(fd, buf, sizeof(buf)) > 0)
    ;
}

static void *ppollw(void *arg)
{
  sigset_t mine = block_all();
  (void)arg;
  for (;;) {
    struct pollfd p = {.fd = ppoll_pipe[0], .events = POLLIN};
    /* the full mask as the wait's mask: the runtime has to let its own signal in */
    if (ppoll(&p, 1, NULL, &mine) > 0) {
      drain(ppoll_pipe[0]);
      __atomic_add_fetch(&ppoll_wakes, 1, __ATOMIC_SEQ_CST);
    }
    check_mask(&mine, &worker_mask_changed);
  }
  return NULL;
}

static void *pollw(void *arg)
{
  sigset_t mine = block_all();
  (void)arg;
  for (;;) {
    struct pollfd p = {.fd = poll_pipe[0], .events = POLLIN};
    if (poll(&p, 1, -1) > 0) {
      drain(poll_pipe[0]);
      __atomic_add_fetch(&poll_wakes, 1, __ATOMIC_SEQ_CST);
    }
    check_mask(&mine, &worker_mask_changed);
  }
  return NULL;
}

static void start_workers(int with_pollw)
{
  pthread_t t;
  if (pthread_create(&t, NULL, condw, NULL) || pthread_create(&t, NULL, ppollw, NULL))
    die("pthread_create");
  if (with_pollw && pthread_create(&t, NULL, pollw, NULL))
    die("pthread_create");
}

static void start_timer(void)
{
  struct itimerval it = {{0, TIMER_US}, {0, TIMER_US}};
  if (setitimer(ITIMER_REAL, &it, NULL))
    die("setitimer");
}

static int timer_armed(void)
{
  struct itimerval it;
  return !getitimer(ITIMER_REAL, &it) && it.it_interval.tv_usec == TIMER_US &&
         (it.it_value.tv_sec || it.it_value.tv_usec);
}

static long uptime_ms(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - started.tv_sec) * 1000 + (now.tv_nsec - started.tv_nsec) / 1000000;
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EAGAIN) { /* the client reads slowly: wait for room */
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      poll(&pf, 1, 1000);
      continue;
    }
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
  } else if (!strcmp(line, "STATS")) {
    *nout += (size_t)snprintf(
        out + *nout, cap - *nout,
        "usr1=%lu usr2=%lu alrm=%lu uptime_ms=%ld eintr=%lu unexplained_eintr=%lu "
        "mask_changed=%lu worker_mask_changed=%lu handlers_intact=%d timer_armed=%d "
        "cond_jobs=%lu ppoll_wakes=%lu poll_wakes=%lu reqs=%lu\n",
        __atomic_load_n(&n_usr1, __ATOMIC_SEQ_CST), __atomic_load_n(&n_usr2, __ATOMIC_SEQ_CST),
        __atomic_load_n(&n_alrm, __ATOMIC_SEQ_CST), uptime_ms(), n_eintr, n_unexplained,
        n_mask_changed, __atomic_load_n(&worker_mask_changed, __ATOMIC_SEQ_CST), handlers_intact(),
        timer_armed(), __atomic_load_n(&cond_jobs, __ATOMIC_SEQ_CST),
        __atomic_load_n(&ppoll_wakes, __ATOMIC_SEQ_CST),
        __atomic_load_n(&poll_wakes, __ATOMIC_SEQ_CST), n_reqs);
  } else {
    *nout += (size_t)snprintf(out + *nout, cap - *nout, "ERR\n");
  }
}

/* Returns the number of requests served, -1 when the connection closed. */
static int on_conn(struct conn *c)
{
  char out[16384], *line, *nl;
  size_t nout = 0;
  int served = 0;
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
    if (nout > sizeof(out) - 512) {
      if (write_all(c->fd, out, nout))
        return -1;
      nout = 0;
    }
    reply_line(c, line, out, &nout, sizeof(out));
    served++;
    line = nl + 1;
  }
  c->nin = strlen(line);
  memmove(c->in, line, c->nin);
  if (c->nin == sizeof(c->in) - 1 || (nout && write_all(c->fd, out, nout)))
    return -1;
  return served;
}

/* Work for the other threads: a job for condw, a byte for ppollw (and pollw). */
static void hand_out(void)
{
  pthread_mutex_lock(&lock);
  pending_jobs++;
  pthread_cond_signal(&more);
  pthread_mutex_unlock(&lock);
  if (write(ppoll_pipe[1], "x", 1) < 0 && errno != EAGAIN)
    die("write");
  if (poll_pipe[1] >= 0 && write(poll_pipe[1], "x", 1) < 0 && errno != EAGAIN)
    die("write");
}

static void serve(int ep, int lfd)
{
  struct epoll_event evs[64];
  sigset_t mine;

  pthread_sigmask(SIG_SETMASK, NULL, &mine);
  for (;;) {
    unsigned long runs_before = my_handler_runs;
    int n = epoll_wait(ep, evs, 64, -1), served = 0;
    if (n < 0 && errno == EINTR) {
      /* a wake-up like any other, but one of our handlers must have run */
      n_eintr++;
      if (my_handler_runs == runs_before)
        n_unexplained++;
      continue;
    }
    if (n < 0)
      die("epoll_wait");
    check_mask(&mine, &n_mask_changed);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN};
        if (fd < 0)
          continue;
        if (!(c = calloc(1, sizeof(*c))))
          die("calloc");
        c->fd = fd;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
          die("epoll_ctl");
        continue;
      }
      int r = on_conn(c);
      if (r < 0) {
        close(c->fd);
        free(c);
      } else {
        served += r;
      }
    }
    if (served)
      hand_out();
  }
}

static void make_pipe(int p[2])
{
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
    die("pipe2");
}

int main(int argc, char **argv)
{
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  struct sigaction sa;
  char tmp[4096];
  FILE *f;
  int lfd, ep, with_pollw = argc == 3 && !strcmp(argv[2], "pollw");

  if (argc != 2 && !with_pollw) {
    fprintf(stderr, "usage: signals READY-FILE [pollw]\n");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &started);
  signal(SIGPIPE, SIG_IGN);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sa.sa_flags = 0; /* no SA_RESTART: epoll_wait returns EINTR after each */
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof(own_signals) / sizeof(own_signals[0]); i++)
    if (sigaction(own_signals[i], &sa, NULL))
      die("sigaction");
  make_pipe(ppoll_pipe);
  if (with_pollw)
    make_pipe(poll_pipe);
  start_workers(with_pollw); /* they block every signal: ours all go to the main thread */
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 128) ||
      getsockname(lfd, (struct sockaddr *)&a, &len))
    die("listen");
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
    die("epoll");
  start_timer();
  /* written whole, then renamed: the test never reads half a port */
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
  if (!(f = fopen(tmp, "w")) || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) ||
      rename(tmp, argv[1]))
    die(argv[1]);
  serve(ep, lfd);
  return 0;
}
