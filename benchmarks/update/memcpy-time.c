/*
 * memcpy-time.c - how long copying BYTES of memory takes on this machine: the
 * floor for any live update that moves a heap of that size.
 *
 *   memcpy-time BYTES [--copies K]
 *
 * Prints one JSON object: bytes, copies, and the median and minimum in ms of
 *   warm  memcpy into a destination whose pages are already mapped;
 *   cold  memcpy into a fresh anonymous mapping (page faults included: what a
 *         new process that receives a heap pays).
 * The source is filled first (its pages are resident, as a live heap's are).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n)
{
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *map(size_t n)
{
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv)
{
  size_t bytes = 0;
  int copies = 7, rc = 1;
  char *src = NULL, *dst = NULL, *end;
  double warm[64], cold[64];

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--copies") && i + 1 < argc) {
      copies = atoi(argv[++i]);
    } else if (!bytes) {
      errno = 0;
      bytes = strtoull(argv[i], &end, 10);
      if (errno || *end || !bytes) {
        fprintf(stderr, "memcpy-time: bad byte count '%s'\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "usage: memcpy-time BYTES [--copies K]\n");
      return 2;
    }
  }
  if (!bytes || copies < 1 || copies > 64) {
    fprintf(stderr, "usage: memcpy-time BYTES [--copies K (1-64)]\n");
    return 2;
  }
  src = map(bytes);
  dst = map(bytes);
  if (!src || !dst) {
    fprintf(stderr, "memcpy-time: mmap of %zu bytes: %s\n", bytes, strerror(errno));
    goto out;
  }
  for (size_t i = 0; i < bytes; i++)
    src[i] = (char)(i * 131 + (i >> 12));
  memset(dst, 1, bytes);
  for (int k = 0; k < copies; k++) {
    double t0 = now_ms();
    memcpy(dst, src, bytes);
    warm[k] = now_ms() - t0;
  }
  for (int k = 0; k < copies; k++) {
    char *fresh = map(bytes);
    if (!fresh) {
      fprintf(stderr, "memcpy-time: mmap of %zu bytes: %s\n", bytes, strerror(errno));
      goto out;
    }
    double t0 = now_ms();
    memcpy(fresh, src, bytes);
    cold[k] = now_ms() - t0;
    /* Keeps the copy from being optimised away. */
    if (fresh[bytes / 2] != src[bytes / 2])
      fprintf(stderr, "memcpy-time: copy mismatch\n");
    munmap(fresh, bytes);
  }
  if (dst[bytes - 1] != src[bytes - 1])
    fprintf(stderr, "memcpy-time: copy mismatch\n");
  {
    double wmin = warm[0], cmin = cold[0];
    for (int k = 1; k < copies; k++) {
      if (warm[k] < wmin) wmin = warm[k];
      if (cold[k] < cmin) cmin = cold[k];
    }
    printf("{\"bytes\": %zu, \"copies\": %d, \"warm_median_ms\": %.3f, \"warm_min_ms\": %.3f, "
           "\"cold_median_ms\": %.3f, \"cold_min_ms\": %.3f}\n",
           bytes, copies, median(warm, copies), wmin, median(cold, copies), cmin);
  }
  rc = 0;
out:
  if (src) munmap(src, bytes);
  if (dst) munmap(dst, bytes);
  return rc;
}
