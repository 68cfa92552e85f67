/*
 * forker.c - a process that forks a daemon-like child, for mcr-profile's
 * tests. The parent waits on a pipe with poll in its loop for a while, then
 * exits; the child leaves the process group (setsid) and sleeps in its own loop
 * until it is stopped.
 *   forker PIDFILE: the child writes its pid to PIDFILE.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void child_loop(void)
{
  struct timespec ts = {0, 20 * 1000 * 1000};
  for (;;)
    nanosleep(&ts, NULL);
}

static void spawn_child(const char *pidfile)
{
  FILE *f;

  if (fork() != 0)
    return;
  setsid();
  if ((f = fopen(pidfile, "w"))) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
  }
  child_loop();
}

static void parent_loop(int fd)
{
  struct pollfd p = {.fd = fd, .events = POLLIN};
  for (int i = 0; i < 40; i++)
    poll(&p, 1, 25);
}

int main(int argc, char **argv)
{
  int pfd[2];

  if (argc != 2 || pipe(pfd))
    return 1;
  spawn_child(argv[1]);
  parent_loop(pfd[0]);
  return 0;
}
