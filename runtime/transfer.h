/*
 * transfer.h - moving a quiesced old process's program state into the new
 * version (docs/update.md, "State transfer").
 *
 * The old side describes (heap layout, allocation sites, descriptors); the new
 * side does all the work, reading the old memory with process_vm_readv while the
 * old process stays quiesced and unchanged (so a rollback loses nothing):
 *   heap     the old heap's used ranges copied to the same addresses, then
 *            adopted (heap.h); object tags renumbered to this process's sites
 *   globals  each of the program's globals copied by symbol name, except fields
 *            this process must keep (pthread objects, thread ids), pid_t fields
 *            holding the old pid set to the new one
 *   tls      the executable's thread-local variables likewise, from each old
 *            thread to the new thread paired with it (tls.h)
 *   image    every word of the copied heap and globals that points into the old
 *            executable or a library rewritten to the new address (image.h)
 *   stacks   references on the parked threads' stacks (and in this process's
 *            other startup objects) to its own startup objects rewritten to the
 *            old process's matching objects (same allocation call-stack ID)
 *   fds      the old descriptor table reproduced at the same numbers
 */
#ifndef MCR_TRANSFER_H
#define MCR_TRANSFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "update.h"

struct mcr_dirty;

/* Old side, still serving: appends to out the heap ranges as they are now, for
 * the new version to copy before the pause, and starts tracking which pages
 * are written from then on (*dirty; NULL if the kernel cannot: then the pause
 * copies everything). */
int mcr_transfer_precopy_ranges(struct mcr_buf *out, struct mcr_dirty **dirty, char *note,
                                size_t notelen);

/* Old side, quiesced: appends the description to out. fds: the program's
 * descriptors (not the runtime's); dirty: the tracker of the pre-copy. */
int mcr_transfer_describe(struct mcr_buf *out, uint64_t t_quiesce, const int *fds, size_t nfds,
                          struct mcr_dirty *dirty, char *err, size_t errlen);

/* New side, before the pause: copies the ranges of a pre-copy message to the
 * same addresses and rewrites their pointers into the old program image.
 * Appends a "phase" line to report. */
int mcr_transfer_precopy(struct mcr_buf *msg, struct mcr_buf *report);

/* New side, before the pause: pairs the two processes' executables and
 * libraries, plans the globals, indexes this version's allocation sites. */
int mcr_transfer_prepare(pid_t old_pid, char *err, size_t errlen);

/* New side, before mcr_transfer_apply, in an update of a process tree
 * (docs/coordinator.md): the other processes' pids, old[i] replaced by new[i]
 * (the parent, the children, the siblings). pid_t fields of globals holding an
 * old pid get the new one, as the process's own pid does. Copied. */
void mcr_transfer_pid_map(const pid_t *old, const pid_t *new, size_t n);

/* New side, every program thread parked: takes the state over. Appends "phase",
 * "note" and "conflict" lines (update.h) to report. Returns 0, or -1 when the
 * update must roll back (the conflict lines say why). */
int mcr_transfer_apply(struct mcr_buf *state, const int *inherited, size_t ninherited,
                       struct mcr_buf *report);

/* New side, after the commit (threads running): the startup allocation
 * records name the objects in use now (the old process's), for the next update. */
void mcr_transfer_committed(void);

/* Committed, the program still parked: the old process's pool pieces that stay
 * pieces are recorded here (pieces.h), so that the next update knows them.
 * Before the program runs: a pool freed meanwhile would leave stale records. */
void mcr_transfer_keep_pieces(void);

/* After the commit, before the threads resume: the epoll registrations whose
 * data pointed into the old program image get the new address (EPOLL_CTL_MOD;
 * the instances were shared with the old process until the commit). A failure
 * is a note in report. */
void mcr_transfer_commit_epoll(struct mcr_buf *report);

#endif /* MCR_TRANSFER_H */
