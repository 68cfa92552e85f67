/*
 * qwaits.c - fd waits with timeouts at quiescent points, for e2e-quiesce-waits.
 *
 * The quiescent-point records are written by hand (section mcr_qps, as the pass
 * would emit them) so that this tests the runtime's wrappers alone: a wait that
 * is interrupted by a quiesce must still return as the real call would, with
 * no event and empty result sets when nothing is ready, and never before its
 * timeout (the runtime may only add time, the hold). Prints its pid, then
 * "done" or what went wrong; exits 1 on a wrong result.
 */
#define _GNU_SOURCE
#include <mcr/qp.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#define QP(name, fn, stack)                                                                \
  __attribute__((section("mcr_qps"), used)) struct mcr_qp name = {                       \
      MCR_QP_MAGIC, MCR_QP_VERSION, fn, 0, __LINE__, "main", stack, "main", "", "qwaits.c"}

QP(qp_select, MCR_BLOCK_SELECT, "main > select");
QP(qp_poll, MCR_BLOCK_POLL, "main > poll");
QP(qp_epoll, MCR_BLOCK_EPOLL_WAIT, "main > epoll_wait");

#define TIMEOUT_MS 100
#define SLACK_MS 5 /* the runtime measures the time left with the coarse clock */

static long ms_since(const struct timespec *t0)
{
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(int argc, char **argv)
{
  int p[2], ep, rounds = argc > 1 ? atoi(argv[1]) : 20;
  struct epoll_event ev = {.events = EPOLLIN};

  if (pipe(p) || (ep = epoll_create1(0)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
    return 1;
  printf("%d\n", (int)getpid());
  fflush(stdout);
  for (int i = 0; i < rounds; i++) {
    const struct mcr_qp *prev;
    struct timespec t0;
    long ms;
    int n;

    fd_set r;
    struct timeval tv = {0, TIMEOUT_MS * 1000};
    FD_ZERO(&r);
    FD_SET(p[0], &r);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prev = __mcr_qp_enter(&qp_select);
    n = select(p[0] + 1, &r, NULL, NULL, &tv);
    __mcr_qp_exit(prev);
    ms = ms_since(&t0);
    if (n != 0 || FD_ISSET(p[0], &r) || ms < TIMEOUT_MS - SLACK_MS) {
      printf("select: returned %d, set %d, after %ld ms\n", n, FD_ISSET(p[0], &r), ms);
      return 1;
    }

    struct pollfd pf = {.fd = p[0], .events = POLLIN, .revents = -1};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prev = __mcr_qp_enter(&qp_poll);
    n = poll(&pf, 1, TIMEOUT_MS);
    __mcr_qp_exit(prev);
    ms = ms_since(&t0);
    if (n != 0 || pf.revents != 0 || ms < TIMEOUT_MS - SLACK_MS) {
      printf("poll: returned %d, revents %d, after %ld ms\n", n, pf.revents, ms);
      return 1;
    }

    struct epoll_event out;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prev = __mcr_qp_enter(&qp_epoll);
    n = epoll_wait(ep, &out, 1, TIMEOUT_MS);
    __mcr_qp_exit(prev);
    ms = ms_since(&t0);
    if (n != 0 || ms < TIMEOUT_MS - SLACK_MS) {
      printf("epoll_wait: returned %d after %ld ms\n", n, ms);
      return 1;
    }
  }
  printf("done\n");
  return 0;
}
