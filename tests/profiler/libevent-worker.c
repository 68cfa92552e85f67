/*
 * libevent-worker.c - a worker thread in libevent's event_base_loop (as
 * memcached's workers), fed through a pipe by the main thread; for
 * mcr-profile's tests. The loop is inside the library, which has no call table:
 * mcr-profile assumes it there.
 */
#include <event2/event.h>
#include <pthread.h>
#include <unistd.h>

static int pfd[2];

static void on_read(evutil_socket_t fd, short what, void *arg)
{
  char b[8];
  (void)what;
  (void)arg;
  if (read(fd, b, 1) != 1)
    return;
}

static void *worker_libevent(void *arg)
{
  event_base_loop(arg, 0);
  return NULL;
}

static void start_worker(struct event_base *base)
{
  pthread_t t;
  pthread_create(&t, NULL, worker_libevent, base);
}

static void feed(void)
{
  for (int i = 0; i < 40; i++) {
    usleep(20 * 1000);
    if (write(pfd[1], "x", 1) != 1)
      return;
  }
}

int main(void)
{
  struct event_base *base;
  struct event *ev;

  if (pipe(pfd) || !(base = event_base_new()))
    return 1;
  ev = event_new(base, pfd[0], EV_READ | EV_PERSIST, on_read, NULL);
  event_add(ev, NULL);
  start_worker(base);
  feed();
  return 0;
}
