/* test-libc.c - an ordinary program using glibc functions that allocate
 * internally (strdup, printf, qsort, getline, asprintf, fopen, opendir) works
 * on the tagged heap, and glibc's allocations land in it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "heap.h"
#include "mcr/abi.h"

static int cmp_int(const void *a, const void *b)
{
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
  struct mcr_object o;
  char *s = strdup("hello, heap");
  CHECK(s && strcmp(s, "hello, heap") == 0, "strdup copies");
  CHECK_EQ(mcr_heap_find(s, &o), 0, "glibc's strdup allocates from the tagged heap");
  CHECK_EQ(o.tag, MCR_TAG_UNTYPED, "strdup's object is UNTYPED");
  char *n = strndup("abcdef", 3);
  CHECK(n && strcmp(n, "abc") == 0 && mcr_heap_find(n, &o) == 0, "strndup");
  free(s);
  free(n);

  char *a = NULL;
  int len = asprintf(&a, "%d-%s-%.3f", 42, "x", 1.5);
  CHECK(len == 10 && strcmp(a, "42-x-1.500") == 0, "asprintf formats");
  CHECK_EQ(mcr_heap_find(a, &o), 0, "asprintf allocates from the tagged heap");
  free(a);

  /* qsort of a large array uses malloc for its buffer */
  enum { N = 200000 };
  int *v = malloc(N * sizeof(int));
  unsigned x = 1;
  for (int i = 0; i < N; i++) {
    x = x * 1103515245 + 12345;
    v[i] = (int)(x >> 1);
  }
  qsort(v, N, sizeof(int), cmp_int);
  int sorted = 1;
  for (int i = 1; i < N; i++)
    sorted &= v[i - 1] <= v[i];
  CHECK(sorted, "qsort of 200000 ints");
  free(v);

  char *words[1000];
  for (int i = 0; i < 1000; i++) {
    char buf[32];
    snprintf(buf, sizeof(buf), "w%07d", (i * 7919) % 1000);
    words[i] = strdup(buf);
  }
  qsort(words, 1000, sizeof(char *), cmp_str);
  CHECK(strcmp(words[0], "w0000000") == 0 && strcmp(words[999], "w0000999") == 0,
        "qsort of strdup'd strings");
  for (int i = 0; i < 1000; i++)
    free(words[i]);

  /* stdio: fopen/getline/fclose allocate and free FILE and buffers */
  char path[] = "/tmp/mcr-test-libc-XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fdopen(fd, "w+");
  for (int i = 0; i < 1000; i++)
    fprintf(f, "line %d %s\n", i, i % 10 ? "" : "a somewhat longer line to grow the buffer");
  rewind(f);
  char *line = NULL;
  size_t cap = 0;
  int lines = 0;
  while (getline(&line, &cap, f) > 0)
    lines++;
  CHECK_EQ(lines, 1000, "getline reads every line");
  CHECK_EQ(mcr_heap_find(line, &o), 0, "getline's buffer is on the tagged heap");
  free(line);
  fclose(f);
  remove(path);

  DIR *d = opendir("/");
  int entries = 0;
  while (d && readdir(d))
    entries++;
  if (d)
    closedir(d);
  CHECK(entries > 2, "opendir/readdir/closedir");

  time_t now = time(NULL);
  struct tm tm;
  char tbuf[64];
  localtime_r(&now, &tm); /* loads the time zone: more allocations */
  CHECK(strftime(tbuf, sizeof(tbuf), "%Y-%m-%d", &tm) == 10, "localtime/strftime");

  printf("  printf of a long string: %s\n", "0123456789abcdef0123456789abcdef0123456789abcdef");
  CHECK(1, "printf works");
  return check_done();
}
