/*
 * tsd.h - the program threads' thread-specific data (pthread_setspecific) in an
 * update's new version.
 *
 * A thread of the new version parks with the values its startup gave its keys
 * (memcached's per-worker logger). Those that point to startup objects the
 * transfer replaces by the old process's must follow them, as references on the
 * parked stacks do (transfer.c step_stacks); only the thread itself can set its
 * values, so it records them when it parks and sets the rewritten ones when it
 * resumes after the commit. Nothing of this runs outside an update.
 */
#ifndef MCR_TSD_H
#define MCR_TSD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define MCR_TSD_MAX 64

struct mcr_tsd {
  unsigned n;        /* entries recorded */
  unsigned dropped;  /* non-NULL values beyond MCR_TSD_MAX (not rewritten) */
  int changed;       /* some value was rewritten: set them when resuming */
  struct {
    pthread_key_t key;
    uintptr_t value;
  } e[MCR_TSD_MAX];
};

/* The calling thread's non-NULL values, into its own record; returns it. */
struct mcr_tsd *mcr_tsd_record(void);

/* Called by the calling thread when it resumes: sets the values the transfer
 * rewrote. */
void mcr_tsd_apply(struct mcr_tsd *t);

#endif /* MCR_TSD_H */
