/*
 * control.h - the client side of a process's control socket (docs/control.md):
 * connect to "@mcr/PID", send one request, read its reply within a timeout.
 */
#ifndef MCR_CTL_CONTROL_H
#define MCR_CTL_CONTROL_H

#include <sys/types.h>

#include "control.pb-c.h"

#define CTL_DEFAULT_TIMEOUT_MS 5000

/* Parses a PID argument; on failure prints one line and returns -1. */
int ctl_parse_pid(const char *s, pid_t *out);

/* Parses a --timeout SEC value (seconds, may have a fraction) into milliseconds;
 * on failure prints one line and returns -1. */
int ctl_parse_timeout(const char *s, int *ms);

/* Sends req to process pid and returns its reply (free with
 * mcr__control__reply__free_unpacked(r, NULL)), or prints one line saying what went
 * wrong (no such process, not an mcr program, another user's, no reply in time, an
 * error reply) and returns NULL. */
Mcr__Control__Reply *ctl_call(pid_t pid, const Mcr__Control__Request *req, int timeout_ms);

/* As ctl_call, but an Error reply is returned to the caller (not printed). */
Mcr__Control__Reply *ctl_call_raw(pid_t pid, const Mcr__Control__Request *req, int timeout_ms);

/* The parent of process pid (from /proc/PID/stat), or 0 if unknown. */
pid_t ctl_parent_of(pid_t pid);

/* 1 if process pid listens on its mcr control socket (seen in /proc/net/unix,
 * without connecting to it), else 0. */
int ctl_runs_mcr(pid_t pid);

#endif /* MCR_CTL_CONTROL_H */
