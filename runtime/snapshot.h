/*
 * snapshot.h - the executable's writable data as it was when the startup ended.
 *
 * An update with reinitialized startup state (docs/update.md, "Reinitialized
 * startup state") takes a global's value from the new version's startup when
 * the old program never changed it after its own startup: this copy is what
 * "never changed" is measured against.
 */
#ifndef MCR_SNAPSHOT_H
#define MCR_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

/* Copies the executable's writable segment (.data, .bss) into a private
 * mapping, replacing an earlier copy (a forked child's, inherited). Pages that
 * are all zero are not written (they cost nothing). Failures leave no copy. */
void mcr_snapshot_take(void);

/* After an update with --reinit: the global at [addr, addr+len) kept the new
 * startup's value (its pointers to replaced objects rewritten): the copy takes
 * its value now, so that the next update still finds it unchanged. */
void mcr_snapshot_refresh(uintptr_t addr, size_t len);

#endif /* MCR_SNAPSHOT_H */
