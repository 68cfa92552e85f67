/*
 * control.h - the per-process control socket (docs/control.md).
 *
 * A runtime-owned thread, started by a constructor (and again in the child after
 * fork), listens on the abstract Unix socket "@mcr/<pid>" and answers
 * length-prefixed protobuf-c requests (proto/control.proto) from clients with the
 * process's uid, or root. It never writes to the program's stdout or stderr and
 * never ends the process; if the socket cannot be made, the program runs on
 * without one.
 */
#ifndef MCR_CONTROL_H
#define MCR_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#define MCR_CONTROL_NAME "mcr/%d"         /* abstract name, after the leading NUL */
#define MCR_CONTROL_MAX_REQUEST (64 << 10) /* longer length prefixes are refused */
#define MCR_CONTROL_MAX_REPLY (64 << 20)   /* what a client should accept */
#define MCR_CONTROL_PROTOCOL 1             /* Reply.protocol */

/* A little-endian length prefix, as on the wire. */
static inline void mcr_control_put_len(unsigned char *p, uint32_t n)
{
  p[0] = (unsigned char)n;
  p[1] = (unsigned char)(n >> 8);
  p[2] = (unsigned char)(n >> 16);
  p[3] = (unsigned char)(n >> 24);
}

static inline uint32_t mcr_control_get_len(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Moves a runtime descriptor up to 900 (or 7/8 of RLIMIT_NOFILE), out of the
 * range the program hands out, close-on-exec. Returns the new descriptor, fd
 * itself when there is no room up there, or -1 (fd closed) when fd would stay
 * in 0-2. */
int mcr_fd_move_high(int fd);

/* Whether fd is one of the runtime's own descriptors (one mcr_fd_move_high
 * returned, still the same open file): an update neither passes it to the new
 * version nor takes it from the old one (pidfds, channels, libunwind's pipe). */
int mcr_fd_is_runtime(int fd);

/* Closes one of the runtime's descriptors and forgets it: a program's file
 * that gets the number later is the program's (anonymous inodes, epoll's
 * included, all have the same st_ino). Returns close()'s result. */
int mcr_fd_close(int fd);

/* Is fd one of the control socket's own descriptors (its socket, a connection
 * being served)? An update neither hands these to the new version nor lists them. */
int mcr_control_fd_is_own(int fd);

#endif /* MCR_CONTROL_H */
