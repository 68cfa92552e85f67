/*
 * test-rlimit.c - runtime/rlimit.c: an RLIMIT_AS the program sets on itself does
 * not count the heap's reservation, and the program reads back what it set.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static int failures;

static void check(int ok, const char *what)
{
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  failures += !ok;
}

/* The kernel's RLIMIT_AS of this process, from /proc/self/limits (0: unlimited). */
static unsigned long long kernel_limit(void)
{
  char line[256];
  unsigned long long v = 0;
  FILE *f = fopen("/proc/self/limits", "r");
  while (f && fgets(line, sizeof(line), f))
    if (!strncmp(line, "Max address space", 17))
      v = strtoull(line + 26, NULL, 10);
  if (f)
    fclose(f);
  return v;
}

int main(void)
{
  const rlim_t cap = 200u << 20;
  struct rlimit lim = {cap, cap}, got, old;
  void *before = malloc(64); /* the heap reserves its range */

  check(before != NULL, "malloc before the cap");
  check(setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit(RLIMIT_AS, 200 MiB)");
  check(getrlimit(RLIMIT_AS, &got) == 0 && got.rlim_cur == cap && got.rlim_max == cap,
        "getrlimit gives 200 MiB back");
  check(prlimit(0, RLIMIT_AS, NULL, &old) == 0 && old.rlim_cur == cap,
        "prlimit's old value gives 200 MiB back");
  check(kernel_limit() > (1ull << 30), "the kernel holds the cap plus the reservation");
  void *big = malloc(8u << 20);
  check(big != NULL, "malloc of 8 MiB under the cap");
  void *m = mmap(NULL, 8u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(m != MAP_FAILED, "mmap of 8 MiB outside the heap under the cap");
  void *huge = mmap(NULL, 400u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(huge == MAP_FAILED, "mmap of 400 MiB outside the heap is refused: the cap still holds");
  free(before);
  free(big);
  return failures ? 1 : 0;
}
