/*
 * snapshot.c - the executable's writable data when the startup ended (snapshot.h).
 */
#define _GNU_SOURCE
#include "snapshot.h"

#include "startup.h"

#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE 4096u
#define SNAPSHOT_MAX ((uint64_t)256 << 20) /* larger data segments get no copy */

static struct mcr_startup_snapshot snap;

struct seg {
  uintptr_t lo, hi;
};

/* The executable's (the first object's) writable PT_LOAD segment. */
static int exe_data(struct dl_phdr_info *info, size_t size, void *arg)
{
  struct seg *s = arg;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
      s->lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(PAGE - 1);
      s->hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
      break;
    }
  }
  return 1; /* the executable comes first */
}

static int zero_page(const unsigned char *p)
{
  const uint64_t *w = (const uint64_t *)p;
  for (unsigned i = 0; i < PAGE / 8; i++)
    if (w[i])
      return 0;
  return 1;
}

void mcr_snapshot_take(void)
{
  struct seg s = {0, 0};
  if (snap.copy)
    munmap((void *)(uintptr_t)snap.copy, snap.len);
  memset(&snap, 0, sizeof(snap));
  dl_iterate_phdr(exe_data, &s);
  if (s.hi <= s.lo || s.hi - s.lo > SNAPSHOT_MAX)
    return;
  size_t len = s.hi - s.lo;
  unsigned char *copy = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (copy == MAP_FAILED)
    return;
  for (size_t off = 0; off < len; off += PAGE)
    if (!zero_page((const unsigned char *)(s.lo + off)))
      memcpy(copy + off, (const void *)(s.lo + off), PAGE);
  /* what was copied no longer changes: read-only keeps it so */
  mprotect(copy, len, PROT_READ);
  snap = (struct mcr_startup_snapshot){(uint64_t)(uintptr_t)copy, len, s.lo};
}

void mcr_snapshot_refresh(uintptr_t addr, size_t len)
{
  if (!snap.copy || addr < snap.data || len > snap.len || addr - snap.data > snap.len - len)
    return;
  uintptr_t lo = (snap.copy + (addr - snap.data)) & ~(uintptr_t)(PAGE - 1);
  uintptr_t hi = (snap.copy + (addr - snap.data) + len + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
  if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) != 0)
    return;
  memcpy((void *)(uintptr_t)(snap.copy + (addr - snap.data)), (const void *)addr, len);
  mprotect((void *)lo, hi - lo, PROT_READ);
}

void mcr_startup_snapshot_of(struct mcr_startup_snapshot *out)
{
  *out = snap;
}
