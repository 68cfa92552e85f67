/*
 * mem.c - growing arrays and formatted strings, shared by the mcr-ctl commands.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"

int ctl_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
  void *p;
  size_t ncap;

  if (need <= *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 16;
  while (ncap < need)
    ncap *= 2;
  p = realloc(*arr, ncap * elem);
  if (!p)
    return -1;
  *arr = p;
  *cap = ncap;
  return 0;
}

char *ctl_fmt(const char *f, ...)
{
  va_list ap;
  char *s = NULL;

  va_start(ap, f);
  if (vasprintf(&s, f, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}
