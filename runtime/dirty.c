/*
 * dirty.c - pages written during the pre-copy (dirty.h).
 *
 * linux-libc-dev 6.1 has neither UFFD_FEATURE_WP_ASYNC nor PAGEMAP_SCAN (both
 * Linux 6.7): their ABI is defined here.
 */
#define _GNU_SOURCE
#include "dirty.h"

#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

struct pm_scan_arg_ {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct page_region_ {
  uint64_t start, end, categories;
};
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PAGE_IS_WRITTEN_ (1ull << 1)
#define PAGE_IS_PRESENT_ (1ull << 3)

#define PAGE 4096ull
#define VEC 4096 /* regions per PAGEMAP_SCAN call */

struct mcr_dirty {
  int uffd, pagemap;
  size_t n, bytes;
  struct { uint64_t lo, hi; } r[]; /* page-aligned, merged */
};


static void *rt_alloc(size_t n)
{
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static size_t dirty_bytes(size_t n)
{
  return sizeof(struct mcr_dirty) + n * 2 * sizeof(uint64_t);
}

struct mcr_dirty *mcr_dirty_start(const struct mcr_heap_range *r, size_t n, char *err,
                                  size_t errlen)
{
  struct mcr_dirty *d = rt_alloc(dirty_bytes(n + 1));
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};

  if (!d) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  d->uffd = d->pagemap = -1;
  d->bytes = dirty_bytes(n + 1);
  for (size_t i = 0; i < n; i++) {
    uint64_t lo = r[i].start & ~(PAGE - 1), hi = (r[i].start + r[i].len + PAGE - 1) & ~(PAGE - 1);
    if (d->n && lo <= d->r[d->n - 1].hi) {
      if (hi > d->r[d->n - 1].hi)
        d->r[d->n - 1].hi = hi;
    } else {
      d->r[d->n].lo = lo;
      d->r[d->n].hi = hi;
      d->n++;
    }
  }
  d->uffd = mcr_fd_move_high((int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (d->uffd < 0) {
    snprintf(err, errlen, "userfaultfd: %s", strerror(errno));
    goto fail;
  }
  if (ioctl(d->uffd, UFFDIO_API, &api) < 0) {
    snprintf(err, errlen, "userfaultfd without asynchronous write-protection (Linux >= 6.7): %s",
             strerror(errno));
    goto fail;
  }
  d->pagemap = mcr_fd_move_high(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (d->pagemap < 0) {
    snprintf(err, errlen, "/proc/self/pagemap: %s", strerror(errno));
    goto fail;
  }
  for (size_t i = 0; i < d->n; i++) {
    struct uffdio_register reg = {.range = {d->r[i].lo, d->r[i].hi - d->r[i].lo},
                                  .mode = UFFDIO_REGISTER_MODE_WP};
    struct uffdio_writeprotect wp = {.range = {d->r[i].lo, d->r[i].hi - d->r[i].lo},
                                     .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(d->uffd, UFFDIO_REGISTER, &reg) < 0 || ioctl(d->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
      snprintf(err, errlen, "write-protecting the heap at 0x%lx-0x%lx: %s",
               (unsigned long)d->r[i].lo, (unsigned long)d->r[i].hi, strerror(errno));
      goto fail;
    }
  }
  return d;
fail:
  mcr_dirty_stop(d);
  return NULL;
}

int mcr_dirty_collect(struct mcr_dirty *d, struct mcr_buf *out, uint64_t *pages)
{
  struct page_region_ *vec = rt_alloc(VEC * sizeof(*vec));
  size_t count_at = out->len;
  uint32_t count = 0;
  int rc = -1;

  *pages = 0;
  if (!vec)
    return -1;
  mcr_buf_u32(out, 0);
  for (size_t i = 0; i < d->n; i++) {
    uint64_t start = d->r[i].lo;
    while (start < d->r[i].hi) {
      /* pages written (no longer protected) or not present (dropped: their
       * copy must read as zeros again) */
      struct pm_scan_arg_ a = {
          .size = sizeof(a), .start = start, .end = d->r[i].hi,
          .vec = (uintptr_t)vec, .vec_len = VEC,
          .category_inverted = PAGE_IS_PRESENT_,
          .category_anyof_mask = PAGE_IS_WRITTEN_ | PAGE_IS_PRESENT_,
          .return_mask = PAGE_IS_WRITTEN_ | PAGE_IS_PRESENT_};
      long got = ioctl(d->pagemap, PAGEMAP_SCAN_, &a);
      if (got < 0)
        goto out;
      for (long k = 0; k < got; k++) {
        mcr_buf_u64(out, vec[k].start);
        mcr_buf_u64(out, vec[k].end);
        *pages += (vec[k].end - vec[k].start) / PAGE;
        count++;
      }
      if (a.walk_end <= start)
        goto out; /* no progress: do not loop */
      start = a.walk_end;
    }
  }
  memcpy(out->p + count_at, &count, sizeof(count));
  rc = out->bad ? -1 : 0;
out:
  munmap(vec, VEC * sizeof(*vec));
  return rc;
}

int mcr_dirty_owns(const struct mcr_dirty *d, int fd)
{
  return d && fd >= 0 && (fd == d->uffd || fd == d->pagemap);
}

void mcr_dirty_stop(struct mcr_dirty *d)
{
  if (!d)
    return;
  if (d->uffd >= 0)
    close(d->uffd); /* unregisters every range: writes are plain writes again */
  if (d->pagemap >= 0)
    close(d->pagemap);
  munmap(d, d->bytes);
}
