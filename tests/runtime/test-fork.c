/* test-fork.c - fork from a multithreaded process while other threads
 * allocate (as redis BGSAVE does); the child must be able to allocate. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "heap.h"

enum { NTHREADS = 3, NFORKS = 40 };

static atomic_int stop;
static atomic_long ops;

static void *churn(void *arg)
{
  unsigned x = (unsigned)(uintptr_t)arg + 1;
  void *keep[64] = {0};
  while (!atomic_load(&stop)) {
    x = x * 1103515245 + 12345;
    unsigned i = (x >> 8) % 64;
    free(keep[i]);
    size_t sz = (x >> 16) % 7 == 0 ? 40000 + (x >> 4) % 100000 : (x >> 12) % 2000;
    keep[i] = malloc(sz);
    if (keep[i])
      memset(keep[i], 1, sz < 64 ? sz : 64);
    atomic_fetch_add(&ops, 1);
  }
  for (int i = 0; i < 64; i++)
    free(keep[i]);
  return NULL;
}

/* In the child: allocate, free, touch everything. */
static int child_work(void)
{
  alarm(10); /* a deadlocked child dies instead of hanging the test */
  void *ps[2000];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 2000; i++) {
      size_t sz = i % 100 == 0 ? 200000 : (size_t)(i * 13) % 3000;
      ps[i] = malloc(sz);
      if (!ps[i])
        return 2;
      memset(ps[i], 0x33, sz);
    }
    for (int i = 0; i < 2000; i++)
      free(ps[i]);
  }
  char *s = strdup("child");
  if (!s || strcmp(s, "child") != 0)
    return 3;
  free(s);
  struct mcr_heap_stats st;
  mcr_heap_stats(&st);
  return st.live_objects > 0 ? 0 : 4;
}

int main(void)
{
  pthread_t t[NTHREADS];
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)i);
  while (atomic_load(&ops) < 10000)
    usleep(1000);

  int bad = 0, first_status = 0;
  for (int f = 0; f < NFORKS; f++) {
    pid_t pid = fork();
    if (pid == 0)
      _exit(child_work());
    if (pid < 0) {
      bad++;
      continue;
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      first_status = status;
      bad++;
      break; /* one deadlocked child is enough to know */
    }
    usleep(2000);
  }
  CHECK_EQ(bad, 0, "children forked during allocation all allocate and exit 0");
  if (bad)
    printf("  first bad wait status 0x%x\n", first_status);

  atomic_store(&stop, 1);
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_join(t[i], NULL);
  CHECK(atomic_load(&ops) > 10000, "parent threads kept allocating");
  void *p = malloc(100);
  CHECK(p != NULL, "parent allocates after the forks");
  free(p);
  return check_done();
}
