/*
 * ids.c - call-stack IDs (runtime/stackid.h): the same path gives the same ID in
 * main, in threads, in a constructor's repeat and in a fork child; different
 * paths give different IDs; the description names the path; a repeated stack is
 * cheap. Prints "path_a ID" for run.sh to compare across two builds (-DVERSION=2
 * adds functions and moves every line).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stackid.h"

#ifndef VERSION
#define VERSION 1
#endif

static int failures;
#define CHECK(cond, ...)                                                                       \
  do {                                                                                        \
    if (cond) {                                                                               \
      printf("ok: " __VA_ARGS__);                                                             \
    } else {                                                                                  \
      printf("FAIL: " __VA_ARGS__);                                                           \
      failures++;                                                                             \
    }                                                                                         \
    printf("\n");                                                                             \
  } while (0)

#if VERSION == 2
__attribute__((noinline)) static int unrelated(int x)
{
  return x * 3 + 1; /* only in version 2: moves everything below */
}
#endif

__attribute__((noinline)) static uint64_t probe(char *desc, size_t len)
{
  uint64_t id = mcr_stack_id(0);
  if (desc)
    mcr_stack_describe(desc, len);
  __asm__ volatile("" ::: "memory"); /* not a tail call */
  return id;
}

__attribute__((noinline)) static uint64_t path_a(char *desc, size_t len)
{
  uint64_t id = probe(desc, len);
  __asm__ volatile("" ::: "memory");
  return id;
}

__attribute__((noinline)) static uint64_t path_b(char *desc, size_t len)
{
  uint64_t id = probe(desc, len);
  __asm__ volatile("" ::: "memory");
  return id;
}

static uint64_t ctor_a1, ctor_a2;

__attribute__((constructor(300))) static void early(void)
{
  ctor_a1 = path_a(NULL, 0);
  ctor_a2 = path_a(NULL, 0);
}

struct tres {
  uint64_t a;
  char desc[256];
};

static void *thread_fn(void *p)
{
  struct tres *r = p;
  r->a = path_a(r->desc, sizeof(r->desc));
  return NULL;
}

static double now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(void)
{
  char da[256], db[256];
  uint64_t a1, a2, b;
  struct tres t1 = {0}, t2 = {0};
  pthread_t th1, th2;
  int status;
  pid_t pid;
  double t0, per;

#if VERSION == 2
  if (unrelated(2) != 7)
    return 1;
#endif
  a1 = path_a(da, sizeof(da));
  a2 = path_a(NULL, 0);
  b = path_b(db, sizeof(db));
  printf("path_a %016llx\npath_b %016llx\n", (unsigned long long)a1, (unsigned long long)b);
  CHECK(a1 != 0 && a1 == a2, "the same path twice: the same ID");
  CHECK(a1 != b, "two paths: two IDs");
  CHECK(!strcmp(da, "main > path_a > probe"), "description '%s'", da);
  CHECK(!strcmp(db, "main > path_b > probe"), "description '%s'", db);
  CHECK(ctor_a1 != 0 && ctor_a1 == ctor_a2 && ctor_a1 != a1,
        "in a constructor: stable, and not main's path");

  pthread_create(&th1, NULL, thread_fn, &t1);
  pthread_join(th1, NULL);
  pthread_create(&th2, NULL, thread_fn, &t2);
  pthread_join(th2, NULL);
  CHECK(t1.a != 0 && t1.a == t2.a && t1.a != a1, "two threads, one path: one ID (not main's)");
  CHECK(!strcmp(t1.desc, "thread_fn > path_a > probe"), "thread description '%s'", t1.desc);

  fflush(stdout);
  pid = fork();
  if (pid == 0)
    _exit(path_a(NULL, 0) == a1 ? 0 : 1);
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0,
        "after fork: the child computes the parent's ID");

  t0 = now_us();
  for (int i = 0; i < 20000; i++)
    if (path_a(NULL, 0) != a1)
      failures++;
  per = (now_us() - t0) / 20000;
  printf("cost %.2f us per ID\n", per);
  CHECK(per < 25, "a stack seen before costs little (%.2f us)", per);
  return failures ? 1 : 0;
}
