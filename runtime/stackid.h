/*
 * stackid.h - call-stack IDs: a hash of the function names on the calling
 * thread's stack, stable across builds (docs/update.md, "Startup log and replay").
 *
 * Names, not addresses: the same code path in the old and the new version of a
 * server (other load addresses, other line numbers, a function added elsewhere)
 * gives the same ID. The stack is walked with unw_backtrace; each return address
 * is symbolized once (elfsym.h) and memoized in a lock-free table in
 * runtime-private memory, so a stack seen before costs about a microsecond.
 *
 * Also the runtime's shared unwinder (threads.c, profile.c) and the per-thread
 * "runtime code" flag that keeps the runtime's own calls out of the startup log.
 */
#ifndef MCR_STACKID_H
#define MCR_STACKID_H

#include <stddef.h>
#include <stdint.h>

/* Nonzero while the calling thread runs runtime code (a runtime-owned thread,
 * or the startup log's own bookkeeping): its allocations and wrapped calls are
 * not recorded. A counter, so guards nest. */
extern __thread int mcr_in_runtime;

/* The unwinder: libunwind's unw_backtrace, loaded with dlopen(RTLD_LOCAL) on
 * first use (linked, libunwind.so.8 would put its _Unwind_* definitions into
 * the program's global scope ahead of libgcc_s), or glibc's backtrace without
 * it. buf[0] is the return address into the unwinder's caller. */
typedef int (*mcr_backtrace_fn)(void **buf, int max);
mcr_backtrace_fn mcr_unwinder(void);
/* The file name (no directory) of the unwinder's object, or "". */
const char *mcr_unwinder_object(void);

/* The ID of the calling thread's stack, from the function that calls
 * mcr_stack_id outward to the thread's base, with the `skip` innermost of those
 * frames dropped: a wrapper called by the program calls mcr_stack_id(1) to hash
 * from its caller. 0 only if the stack could not be walked. */
uint64_t mcr_stack_id(unsigned skip);

/* The same for the stack above return address ra (a wrapper's
 * __builtin_return_address(0)): the first frame hashed is the one ra returns
 * into. Robust to inlining in the runtime. */
uint64_t mcr_stack_id_at(uintptr_t ra);

/* The same, but a frame of `function` where ra returns to is left out: the ID
 * of a call in `function` seen from its callers. For a call in a static inline
 * helper (ngx_array_init) the compiler inlines into some of its callers and
 * not into others, and into other ones in another version of the program:
 * inlined, the helper has no frame; kept out of line, it has one. Without it,
 * the calls a caller makes through the helper get one ID where it was inlined
 * and another where not, and their ordinals shift between versions. */
uint64_t mcr_stack_id_outside(uintptr_t ra, const char *function);

/* The calling thread's stack from the function calling this outward, as names,
 * outermost first, joined by " > ", ending at main or at the thread's start
 * routine ("main > initServer > listenToPort"). Returns the length written
 * (truncated at the outer end, marked "... > "), or -1. */
int mcr_stack_describe(char *buf, size_t len);
int mcr_stack_describe_at(uintptr_t ra, char *buf, size_t len);

/* Both at once, one walk: the ID and the description. */
uint64_t mcr_stack_id_describe_at(uintptr_t ra, char *buf, size_t len);

/* The name hash of one frame (FNV-1a 64 of the normalized function name);
 * exposed for tests. */
uint64_t mcr_stack_name_hash(const char *name);

/* Unwinds that did not find the caller's frame, symbolizations that found no
 * name, memo table entries in use. */
struct mcr_stackid_stats {
  unsigned long misses, unnamed, memo_used;
};
void mcr_stackid_stats(struct mcr_stackid_stats *out);

#endif /* MCR_STACKID_H */
