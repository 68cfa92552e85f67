/*
 * dirty.h - which heap pages the old process writes while the new version
 * copies its heap ahead of the pause (docs/update.md, "Pre-copy").
 *
 * The old process write-protects the ranges with userfaultfd in asynchronous
 * mode (UFFD_FEATURE_WP_ASYNC: the kernel lifts the protection itself on the
 * first write, the program never stops) and, once quiesced, asks the kernel
 * which pages were written or dropped since (PAGEMAP_SCAN on its own pagemap).
 * Without either feature (kernels before 6.7) start fails and the update copies
 * the whole heap in the pause.
 */
#ifndef MCR_DIRTY_H
#define MCR_DIRTY_H

#include <stddef.h>
#include <stdint.h>

#include "heap.h"
#include "update.h"

struct mcr_dirty;

/* Write-protects the pages of r[0..n) (rounded out to pages) and starts
 * tracking. Returns the tracker, or NULL with a reason in err. */
struct mcr_dirty *mcr_dirty_start(const struct mcr_heap_range *r, size_t n, char *err,
                                  size_t errlen);

/* Appends to out: u32 count, then count (start, end) page-aligned u64 pairs:
 * every page of the tracked ranges written, or not present, since the start.
 * Returns 0, or -1 (then the caller must treat everything as written). */
int mcr_dirty_collect(struct mcr_dirty *d, struct mcr_buf *out, uint64_t *pages);

/* Is fd one of the tracker's own descriptors (never handed to the new version)? */
int mcr_dirty_owns(const struct mcr_dirty *d, int fd);

/* Stops tracking (the protection goes with the userfaultfd) and frees d. */
void mcr_dirty_stop(struct mcr_dirty *d);

#endif /* MCR_DIRTY_H */
