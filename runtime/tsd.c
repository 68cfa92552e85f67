/*
 * tsd.c - the program threads' thread-specific data in an update's new version
 * (tsd.h).
 */
#include "tsd.h"

#include <limits.h>

static __thread struct mcr_tsd tsd;

/* Keys are small integers handed out from 0 (glibc: PTHREAD_KEYS_MAX of them);
 * pthread_getspecific returns NULL for a key not created or deleted since. */
struct mcr_tsd *mcr_tsd_record(void)
{
  tsd.n = tsd.dropped = 0;
  tsd.changed = 0;
  for (pthread_key_t k = 0; k < PTHREAD_KEYS_MAX; k++) {
    void *v = pthread_getspecific(k);
    if (!v)
      continue;
    if (tsd.n == MCR_TSD_MAX) {
      tsd.dropped++;
      continue;
    }
    tsd.e[tsd.n].key = k;
    tsd.e[tsd.n].value = (uintptr_t)v;
    tsd.n++;
  }
  return &tsd;
}

void mcr_tsd_apply(struct mcr_tsd *t)
{
  if (!t || !t->changed)
    return;
  for (unsigned i = 0; i < t->n; i++)
    if (pthread_getspecific(t->e[i].key) != (void *)t->e[i].value)
      pthread_setspecific(t->e[i].key, (void *)t->e[i].value);
  t->changed = 0;
}
