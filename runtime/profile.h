/*
 * profile.h - blocking-call profiling (mcr-profile; docs/quiescence.md).
 *
 * When the program runs under mcr-profile (env MCR_PROFILE_DIR set), every
 * wrapped blocking call (mcr/qp.h) reports itself here with its duration and its
 * caller; the profiler keeps, per thread class, each distinct blocking call stack
 * with hits and time blocked, and writes them to MCR_PROFILE_DIR/<pid>.prof.
 */
#ifndef MCR_PROFILE_H
#define MCR_PROFILE_H

#include <stdint.h>

#include "mcr/qp.h"

/* Nonzero when profiling is on in this process (read on every wrapped call). */
extern int mcr_profiling;

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mcr_now_ns(void);

/* A wrapped blocking call to fn returned: it started at start_ns and ended at
 * end_ns (mcr_now_ns); ra is the wrapper's return address (into its caller), so
 * the recorded stack starts at the program's call of fn. */
void mcr_profile_record(enum mcr_blockfn fn, uint64_t start_ns, uint64_t end_ns, uintptr_t ra);

/* Optional, before the real call (same fn and ra as the mcr_profile_record that
 * follows): the call is then counted while it is still blocked, so a thread that
 * waits through the whole run (an idle server, a maintenance thread on a
 * condition nobody signals) still shows where it waits. The stack walked here is
 * reused by mcr_profile_record: no extra cost per call. */
void mcr_profile_begin(enum mcr_blockfn fn, uint64_t start_ns, uintptr_t ra);

#endif /* MCR_PROFILE_H */
