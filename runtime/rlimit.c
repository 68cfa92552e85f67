/*
 * rlimit.c: the program's RLIMIT_AS, less the heap's reservation.
 *
 * The heap reserves its whole address range on first use (heap.c: about 1 TiB,
 * PROT_NONE and MAP_NORESERVE), and the kernel counts a reservation against
 * RLIMIT_AS like any mapping. A program that caps its own address space after
 * that (vsftpd caps each session process at 200 MB) would get ENOMEM from every
 * later mmap, malloc's large objects and thread stacks included. So a
 * setrlimit or prlimit of RLIMIT_AS on the process itself adds the
 * reservation's size to both limits (saturating at RLIM_INFINITY): the cap then
 * bounds the address space outside the heap, as the program meant it; its heap
 * objects live inside the reservation, bounded by the heap's own sizes. Reads
 * (getrlimit, prlimit's old value) of a limit raised so give the program's own
 * value back: the program sees what it set. Other resources and other processes
 * pass through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include "heap.h"

#define MCR_EXPORT __attribute__((visibility("default")))

typedef int (*prlimit_fn)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *);

/* libc's prlimit (setrlimit is prlimit(0, ...) in the kernel too) */
static prlimit_fn real_prlimit(void)
{
  static prlimit_fn fn;

  if (!fn)
    fn = (prlimit_fn)dlsym(RTLD_NEXT, "prlimit");
  return fn;
}

/* What this process's RLIMIT_AS was raised by (0: not raised by us). */
static size_t raised_by;

static rlim_t raise_by(rlim_t v, size_t by)
{
  if (v == RLIM_INFINITY || v > RLIM_INFINITY - by)
    return RLIM_INFINITY;
  return v + by;
}

/* A read of RLIMIT_AS of this process: the program's own value. */
static void lower(pid_t pid, int r, struct rlimit *v)
{
  if (!v || r != RLIMIT_AS || !raised_by || (pid != 0 && pid != getpid()))
    return;
  if (v->rlim_cur != RLIM_INFINITY && v->rlim_cur >= raised_by)
    v->rlim_cur -= raised_by;
  if (v->rlim_max != RLIM_INFINITY && v->rlim_max >= raised_by)
    v->rlim_max -= raised_by;
}

/* The limit to give the kernel for the program's *lim on resource r of pid. */
static const struct rlimit *adjust(pid_t pid, int r, const struct rlimit *lim, struct rlimit *tmp)
{
  uintptr_t base;
  size_t size;

  if (!lim || r != RLIMIT_AS || (pid != 0 && pid != getpid()))
    return lim;
  if (mcr_heap_reservation(&base, &size) != 0 || size == 0)
    return lim;
  tmp->rlim_cur = raise_by(lim->rlim_cur, size);
  tmp->rlim_max = raise_by(lim->rlim_max, size);
  return tmp;
}

/* Whether lim was raised on its way to the kernel (adjust gave tmp). */
static void note_raised(const struct rlimit *lim, const struct rlimit *given, int rc)
{
  uintptr_t base;
  size_t size;

  if (rc == 0 && lim && given != lim && mcr_heap_reservation(&base, &size) == 0)
    raised_by = size;
}

static int set(pid_t pid, int r, const struct rlimit *lim, struct rlimit *old)
{
  prlimit_fn fn = real_prlimit();
  struct rlimit tmp;

  if (!fn) {
    errno = ENOSYS;
    return -1;
  }
  const struct rlimit *given = adjust(pid, r, lim, &tmp);
  int rc = fn(pid, (__rlimit_resource_t)r, given, old);
  if (rc == 0)
    lower(pid, r, old); /* the value before: as the program set it */
  note_raised(lim, given, rc);
  return rc;
}

MCR_EXPORT int getrlimit(__rlimit_resource_t r, struct rlimit *lim)
{
  return set(0, (int)r, NULL, lim);
}

MCR_EXPORT int getrlimit64(__rlimit_resource_t r, struct rlimit64 *lim)
{
  return set(0, (int)r, NULL, (struct rlimit *)lim);
}

MCR_EXPORT int setrlimit(__rlimit_resource_t r, const struct rlimit *lim)
{
  return set(0, (int)r, lim, NULL);
}

MCR_EXPORT int setrlimit64(__rlimit_resource_t r, const struct rlimit64 *lim)
{
  return set(0, (int)r, (const struct rlimit *)lim, NULL);
}

MCR_EXPORT int prlimit(pid_t pid, __rlimit_resource_t r, const struct rlimit *lim,
                       struct rlimit *old)
{
  return set(pid, (int)r, lim, old);
}

MCR_EXPORT int prlimit64(pid_t pid, __rlimit_resource_t r, const struct rlimit64 *lim,
                         struct rlimit64 *old)
{
  return set(pid, (int)r, (const struct rlimit *)lim, (struct rlimit *)old);
}
