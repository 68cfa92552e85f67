/*
 * args.c - the process's argument and environment block (args.h).
 */
#define _GNU_SOURCE
#include "args.h"
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static struct mcr_args_block self;
static int self_ok;
static long self_argc;

/* glibc calls the executable's constructors with main's arguments; this runs
 * before any program code can change the block */
__attribute__((constructor(101))) static void args_init(int argc, char **argv, char **envp)
{
  size_t nenv = 0;
  if (argc <= 0 || !argv || !argv[0] || !envp || envp != argv + argc + 1)
    return;
  while (envp[nenv] && strncmp(envp[nenv], "MCR_UPDATE_", 11) != 0)
    nenv++;
  /* the strings: one after the other from argv[0], as the kernel copies them */
  const char *end = argv[0];
  for (int i = 0; i < argc; i++) {
    if (argv[i] != end)
      return;
    end += strlen(argv[i]) + 1;
  }
  for (size_t i = 0; i < nenv; i++) {
    if (envp[i] != end)
      return;
    end += strlen(envp[i]) + 1;
  }
  self.arr = (uintptr_t)argv;
  self.arr_len = ((size_t)argc + 1 + nenv + 1) * sizeof(char *);
  self.str = (uintptr_t)argv[0];
  self.str_len = (size_t)(end - argv[0]);
  self_argc = argc;
  self_ok = 1;
}

int mcr_args_self(struct mcr_args_block *out)
{
  if (!self_ok)
    return -1;
  *out = self;
  return 0;
}

int mcr_args_old(pid_t pid, struct mcr_args_block *out, char *err, size_t errlen)
{
  unsigned long long o[MCR_STAT_FIELDS], m[MCR_STAT_FIELDS];
  long argc = 0;
  if (!self_ok) {
    snprintf(err, errlen, "this process's argument block was not seen at its start");
    return -1;
  }
  if (mcr_proc_stat(pid, NULL, o) != 0 || mcr_proc_stat(getpid(), NULL, m) != 0) {
    snprintf(err, errlen, "/proc/%d/stat: %s", (int)pid, strerror(errno ? errno : EINVAL));
    return -1;
  }
  uintptr_t stack = (uintptr_t)o[MCR_STAT_STARTSTACK], as = (uintptr_t)o[MCR_STAT_ARG_START],
            ae = (uintptr_t)o[MCR_STAT_ARG_END], ms = (uintptr_t)m[MCR_STAT_STARTSTACK],
            mas = (uintptr_t)m[MCR_STAT_ARG_START], mae = (uintptr_t)m[MCR_STAT_ARG_END];
  struct iovec l = {&argc, sizeof(argc)}, r = {(void *)stack, sizeof(argc)};
  if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)sizeof(argc)) {
    snprintf(err, errlen, "reading process %d's argument count: %s", (int)pid, strerror(errno));
    return -1;
  }
  if (argc != self_argc || ae - as != mae - mas || mas != self.str ||
      ms + sizeof(long) != self.arr) {
    snprintf(err, errlen, "process %d's arguments differ from this process's (%ld and %ld, "
             "%zu and %zu bytes)", (int)pid, argc, self_argc, (size_t)(ae - as),
             (size_t)(mae - mas));
    return -1;
  }
  out->arr = stack + sizeof(long);
  out->arr_len = self.arr_len;
  out->str = as;
  out->str_len = self.str_len;
  return 0;
}

ssize_t mcr_args_copy(pid_t pid, char *err, size_t errlen)
{
  struct mcr_args_block o;
  if (mcr_args_old(pid, &o, err, errlen) != 0)
    return -1;
  uintptr_t words[1024];
  if (o.arr_len > sizeof(words)) {
    snprintf(err, errlen, "%zu arguments and environment variables: more than the %zu this "
             "copies", o.arr_len / sizeof(uintptr_t) - 2, sizeof(words) / sizeof(uintptr_t) - 2);
    return -1;
  }
  struct iovec l[2] = {{words, o.arr_len}, {(void *)self.str, o.str_len}};
  struct iovec r[2] = {{(void *)o.arr, o.arr_len}, {(void *)o.str, o.str_len}};
  /* the arrays first, into a buffer (their pointers change); the strings in place */
  if (process_vm_readv(pid, l, 2, r, 2, 0) != (ssize_t)(o.arr_len + o.str_len)) {
    snprintf(err, errlen, "reading process %d's argument block: %s", (int)pid, strerror(errno));
    return -1;
  }
  for (size_t i = 0; i < o.arr_len / sizeof(uintptr_t); i++)
    if (words[i] - o.str < o.str_len)
      words[i] = self.str + (words[i] - o.str);
  memcpy((void *)self.arr, words, o.arr_len);
  return (ssize_t)(o.arr_len + o.str_len);
}
