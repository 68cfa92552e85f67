/*
 * threads.c - a program whose threads mcr-ctl status must see (tests/e2e/run.sh).
 *   threads pool READY      3 pool threads + 1 from an uninstrumented library,
 *                           then sleeps; writes its pid into READY
 *   threads exit READY GO   pool as above plus 3 short-lived threads that end by
 *                           return, pthread_exit and cancellation once GO exists;
 *                           joins them and writes "joined" into READY.joined
 *   threads daemon READY    forks; the parent exits, the child starts a thread
 *                           and writes its pid into READY
 *   threads fds READY       once the control thread is idle, the program's next
 *                           descriptors are the lowest free ones (then 1 after
 *                           closing 1); writes "PID ok" or "PID bad ..." into READY
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lib_start_worker(void);

static void *pool_worker(void *arg)
{
  (void)arg;
  for (;;)
    sleep(1);
  return NULL;
}

static const char *go_file;

static void wait_go(void)
{
  while (access(go_file, F_OK) != 0)
    usleep(10000);
}

static void *ends_by_return(void *arg)
{
  (void)arg;
  wait_go();
  return NULL;
}

static void *ends_by_exit(void *arg)
{
  (void)arg;
  wait_go();
  pthread_exit(NULL);
}

static void *ends_by_cancel(void *arg)
{
  (void)arg;
  for (;;)
    sleep(1); /* a cancellation point */
  return NULL;
}

static void *child_worker(void *arg)
{
  (void)arg;
  for (;;)
    sleep(1);
  return NULL;
}

/* noinline and not tail calls: each must be a frame of its threads' stacks */
__attribute__((noinline)) static void start_pool(pthread_t *t, int n)
{
  for (int i = 0; i < n; i++)
    if (pthread_create(&t[i], NULL, pool_worker, NULL))
      exit(1);
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void start_short_lived(pthread_t *t)
{
  if (pthread_create(&t[0], NULL, ends_by_return, NULL) ||
      pthread_create(&t[1], NULL, ends_by_exit, NULL) ||
      pthread_create(&t[2], NULL, ends_by_cancel, NULL))
    exit(1);
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void start_in_child(pthread_t *t)
{
  if (pthread_create(t, NULL, child_worker, NULL))
    exit(1);
  __asm__ volatile("" ::: "memory");
}

static void write_file(const char *path, const char *text)
{
  char tmp[4096];
  FILE *f;

  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  f = fopen(tmp, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, path))
    exit(1);
}

int main(int argc, char **argv)
{
  pthread_t pool[3], shortl[3], child;
  char buf[64], path[4096];

  if (argc < 3)
    return 2;
  if (!strcmp(argv[1], "fds")) {
    int a, b, want = 0;
    usleep(300000); /* the control thread is parked by now */
    while (fcntl(want, F_GETFD) >= 0) /* the lowest number not in use */
      want++;
    a = open("/dev/null", O_RDONLY);
    close(STDOUT_FILENO);
    b = open("/dev/null", O_WRONLY);
    snprintf(buf, sizeof(buf), a == want && b == 1 ? "%d ok\n" : "%d bad %d %d (wanted %d, 1)\n",
             (int)getpid(), a, b, want);
    write_file(argv[2], buf);
    for (;;)
      sleep(1);
  }
  if (!strcmp(argv[1], "daemon")) {
    pid_t p = fork();
    if (p < 0)
      return 1;
    if (p > 0)
      _exit(0);
    setsid();
    start_in_child(&child);
  } else {
    start_pool(pool, 3);
    if (lib_start_worker())
      return 1;
    if (!strcmp(argv[1], "exit")) {
      if (argc < 4)
        return 2;
      go_file = argv[3];
      start_short_lived(shortl);
    }
  }
  snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
  write_file(argv[2], buf);
  if (!strcmp(argv[1], "exit")) {
    wait_go();
    pthread_cancel(shortl[2]);
    for (int i = 0; i < 3; i++)
      pthread_join(shortl[i], NULL);
    snprintf(path, sizeof(path), "%s.joined", argv[2]);
    write_file(path, "joined\n");
  }
  for (;;)
    sleep(1);
}
