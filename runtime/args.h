/*
 * args.h - the process's argument and environment block.
 *
 * The kernel puts a new process's argv and envp pointer arrays, and the strings
 * they point to, at the top of its first stack. Programs keep pointers into it:
 * nginx's ngx_os_argv and ngx_os_environ (a respawned worker walks them), its
 * prefix and configuration file names (pointers into the argv strings), and
 * process titles written over the strings (setproctitle). The new version of an
 * update is started with the old process's startup arguments and environment,
 * plus its MCR_UPDATE_* variables at the end, so the two blocks hold the same
 * arrays and strings at different addresses: the part they share is translated
 * by offset (runtime/image.c) and its contents copied from the old process in
 * the pause (runtime/transfer.c), so the new process sees what the old one had
 * made of it.
 */
#ifndef MCR_ARGS_H
#define MCR_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mcr_args_block {
  uintptr_t arr;  /* argv[0]'s slot: argv, NULL, envp (the program's part), NULL */
  size_t arr_len; /* bytes */
  uintptr_t str;  /* the first argument string */
  size_t str_len; /* bytes of the argument and environment strings (the program's part) */
};

/* This process's block as it was at start, less the environment variables that
 * start with MCR_UPDATE_ (they are the last ones). 0, or -1 if it was not seen
 * or its strings are not laid out as the kernel does it (then nothing of it is
 * translated). */
int mcr_args_self(struct mcr_args_block *out);

/* The old process's block of the same shape as this one's: 0, or -1 with a
 * reason in err (its /proc stat is unreadable, another argument count). */
int mcr_args_old(pid_t pid, struct mcr_args_block *out, char *err, size_t errlen);

/* In the pause: copies the old process's block over this one's, its pointers
 * into the old block's strings given the new block's. The number of bytes
 * copied, or -1 with a reason in err. */
ssize_t mcr_args_copy(pid_t pid, char *err, size_t errlen);

#endif /* MCR_ARGS_H */
