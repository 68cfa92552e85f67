/*
 * classmatch.c - which new thread class an old one is; see classmatch.h.
 */
#include "classmatch.h"

#include <string.h>

/* The start routine's part of a class: " (routine)" at its end, else "" (the
 * main thread). *stack_len gets the length of the stack before it. */
static const char *routine(const char *cls, size_t *stack_len)
{
  size_t n = strlen(cls);
  const char *open = n && cls[n - 1] == ')' ? strrchr(cls, '(') : NULL;

  if (open && open > cls && open[-1] == ' ') {
    *stack_len = (size_t)(open - 1 - cls);
    return open;
  }
  *stack_len = n;
  return "";
}

/* The frame of s[0..len) that starts at *pos, advancing *pos past it and its
 * " > ". Returns the frame's length; 0 at the end. */
static size_t frame(const char *s, size_t len, size_t *pos, const char **start)
{
  size_t i = *pos, n;

  if (i >= len)
    return 0;
  *start = s + i;
  for (n = 0; i + n < len && !(i + n + 3 <= len && !memcmp(s + i + n, " > ", 3)); n++)
    ;
  *pos = i + n + 3;
  return n;
}

/* Whether the frames of a[0..alen) are a subsequence of b[0..blen)'s. */
static int subsequence(const char *a, size_t alen, const char *b, size_t blen)
{
  size_t pa = 0, pb = 0, na, nb;
  const char *fa, *fb;

  while ((na = frame(a, alen, &pa, &fa)) > 0) {
    for (;;) {
      if ((nb = frame(b, blen, &pb, &fb)) == 0)
        return 0;
      if (nb == na && !memcmp(fa, fb, na))
        break;
    }
  }
  return 1;
}

int mcr_class_like(const char *old, const char *new_)
{
  size_t ol, nl;
  const char *orou = routine(old, &ol), *nrou = routine(new_, &nl);

  if (strcmp(orou, nrou))
    return 0;
  return subsequence(old, ol, new_, nl) || subsequence(new_, nl, old, ol);
}

static int listed(const char *name, const char *const *names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!strcmp(names[i], name))
      return 1;
  return 0;
}

long mcr_class_pick(const char *old, const char *const *olds, size_t nold,
                    const char *const *news, size_t nnew)
{
  long like = -1;

  for (size_t i = 0; i < nnew; i++)
    if (!strcmp(news[i], old))
      return (long)i;
  for (size_t i = 0; i < nnew; i++)
    if (!listed(news[i], olds, nold) && mcr_class_like(old, news[i])) {
      if (like >= 0)
        return -1;
      like = (long)i;
    }
  return like;
}
