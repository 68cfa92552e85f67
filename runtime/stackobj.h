/*
 * stackobj.h - registered stack objects (docs/update.md, "Stack objects").
 *
 * The pass makes every function on a quiescent point's call stack register
 * its local variables whose address escapes (__mcr_stack_push on entry,
 * __mcr_stack_drop before each return; abi.h). A parked thread's registered
 * objects are live state of the old process that a pointer elsewhere may
 * name (nginx's cache manager keeps its timer event on its stack, in the
 * global timer tree). The new process's counterpart thread, parked at the
 * same point, has the same variables at other addresses: an update pairs
 * them by site and order, copies the old values in, and moves the pointers.
 */
#ifndef MCR_STACKOBJ_H
#define MCR_STACKOBJ_H

#include <stdint.h>

#include "update.h"

/* Old side, in the pause: per registered thread (mcr_tls_threads' order and
 * classes) its objects: u32 threads; each: str class, u32 n, n x (u64 addr,
 * u64 size, u32 tag). */
void mcr_stackobj_describe(struct mcr_buf *out);

#endif /* MCR_STACKOBJ_H */
