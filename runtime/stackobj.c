/*
 * stackobj.c - registered stack objects; see stackobj.h.
 *
 * Each registered thread keeps its own in its quiescence record (quiesce.h),
 * written only by itself, read by the update while it is parked. A thread the
 * registry does not know (mcr_qself NULL) registers nothing; past
 * MCR_STACK_OBJS objects the rest are counted, not kept.
 */
#define _GNU_SOURCE
#include "stackobj.h"

#include <stddef.h>
#include <sys/mman.h>

#include "heap.h"
#include "quiesce.h"
#include "threads.h"
#include "tls.h"
#include "types.h"

void __mcr_stack_push(void *addr, struct mcr_site *site, uint64_t size)
{
  struct mcr_qthread *q = mcr_qself;
  if (!q || !addr || !site)
    return;
  if (q->nobjs == MCR_STACK_OBJS) {
    q->objs_lost++;
    return;
  }
  q->objs[q->nobjs] = (struct mcr_stack_obj){(uintptr_t)addr, size, mcr_site_id_of(site)};
  q->nobjs++;
}

void __mcr_stack_drop(void *addr)
{
  struct mcr_qthread *q = mcr_qself;
  if (!q)
    return;
  /* the innermost one of that address, and any registered after it (a
   * function left without its drops: longjmp) */
  for (unsigned i = q->nobjs; i-- > 0;)
    if (q->objs[i].addr == (uintptr_t)addr) {
      q->nobjs = i;
      return;
    }
  if (q->objs_lost)
    q->objs_lost--; /* one that did not fit */
}

void mcr_stackobj_describe(struct mcr_buf *out)
{
  enum { MAX = 1024 };
  static struct mcr_tls_thread *t;
  struct mcr_qthread *qs[MAX];
  size_t nq = mcr_threads_qstates(qs, MAX), n = 0;

  if (!t) {
    void *m = mmap(NULL, MAX * sizeof(*t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m != MAP_FAILED)
      t = m;
  }
  if (t)
    n = mcr_tls_threads(t, MAX);
  if (n > MAX)
    n = MAX;
  if (nq > MAX)
    nq = MAX;
  mcr_buf_u32(out, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    const struct mcr_qthread *q = NULL;
    for (size_t k = 0; k < nq && !q; k++)
      if (qs[k]->tid == t[i].tid)
        q = qs[k];
    unsigned m = q ? q->nobjs : 0;
    mcr_buf_str(out, t[i].cls);
    mcr_buf_u32(out, m);
    for (unsigned k = 0; k < m; k++) {
      mcr_buf_u64(out, q->objs[k].addr);
      mcr_buf_u64(out, q->objs[k].size);
      mcr_buf_u32(out, q->objs[k].tag);
    }
  }
}
