/*
 * transfer.c - the state transfer of a live update (transfer.h).
 */
#define _GNU_SOURCE
#include "transfer.h"
#include "tsd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "args.h"
#include "classmatch.h"
#include "control.h"
#include "dirty.h"
#include "fnv.h"
#include "heap.h"
#include "pieces.h"
#include "image.h"
#include "quiesce.h"
#include "rename.h"
#include "snapshot.h"
#include "stackobj.h"
#include "startup.h"
#include "threads.h"
#include "tls.h"
#include "typetab.h"
#include "types.h"
#include "xform.h"

#define STATE_VERSION 5
#define KCMP_FILE 0

/* The executable's allocation sites (linker-defined bounds of the section). */
extern struct mcr_site __start_mcr_sites[] __attribute__((weak, visibility("hidden")));
extern struct mcr_site __stop_mcr_sites[] __attribute__((weak, visibility("hidden")));

/* ---- sites: the same allocation site in both versions ----
 * Keyed by (source module, enclosing function, callee, ordinal among the
 * module's sites with that function and callee; types.h mcr_site_key): line
 * numbers move with any code change, these do not. */

/* ---- old side ---- */

#define WAIT_BUFFERS_MAX 1024

/* The output buffers of the waits this process's threads are in at their
 * quiescent points (quiesce.h out_lo/out_hi), lo/hi pairs into v (room for
 * WAIT_BUFFERS_MAX); how many. Both sides use them (read_dead). */
static size_t wait_buffers(uint64_t *v)
{
  struct mcr_qthread *qs[WAIT_BUFFERS_MAX];
  size_t n = mcr_threads_qstates(qs, WAIT_BUFFERS_MAX), k = 0;
  for (size_t i = 0; i < n && i < WAIT_BUFFERS_MAX; i++)
    if (qs[i]->out_hi > qs[i]->out_lo) {
      v[2 * k] = qs[i]->out_lo;
      v[2 * k + 1] = qs[i]->out_hi;
      k++;
    }
  return k;
}

/* The site key of every site id in use (old side; build_tag_map reads it). */
static int put_piece(const struct mcr_piece *p, void *arg)
{
  mcr_buf_put(arg, p, sizeof(*p));
  return 0;
}

static void put_site_keys(struct mcr_buf *out)
{
  char key[1024];
  uint32_t limit = mcr_site_id_limit();
  mcr_buf_u32(out, limit);
  for (uint32_t id = MCR_TAG_FIRST_SITE; id < limit; id++) {
    struct mcr_site *s = mcr_site_by_id(id);
    mcr_buf_str(out, s && mcr_site_key(s, key, sizeof(key)) == 0 ? key : "");
  }
}

int mcr_transfer_precopy_ranges(struct mcr_buf *out, struct mcr_dirty **dirty, char *note,
                                size_t notelen)
{
  struct mcr_heap_state st;
  struct mcr_heap_range *r = NULL;
  size_t max = 1024, n = 0;

  *dirty = NULL;
  note[0] = 0;
  /* the thread classes the pause sends with the thread-local variables:
   * symbolized now, while the program runs */
  if (mcr_tls_program_has_vars())
    (void)mcr_tls_threads(NULL, 0);
  /* a snapshot while the program runs: only a hint of what to copy early.
   * pid 0: the ranges must not come from the page map, which changes meanwhile */
  if (mcr_heap_export(&st) != 0)
    goto none;
  st.pid = 0;
  for (;;) {
    r = mmap(NULL, max * sizeof(*r), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
      r = NULL;
      goto none;
    }
    n = mcr_heap_ranges(&st, r, max);
    if (n <= max)
      break;
    munmap(r, max * sizeof(*r));
    max = n + 64;
  }
  if (!(*dirty = mcr_dirty_start(r, n, note, notelen)))
    goto none;
  mcr_buf_u32(out, (uint32_t)n);
  mcr_buf_put(out, r, n * sizeof(*r));
  munmap(r, max * sizeof(*r));
  /* for converting objects of changed types ahead of the pause: the state the
   * ranges describe and the site numbering of its tags */
  mcr_buf_u32(out, (uint32_t)sizeof(st));
  mcr_buf_put(out, &st, sizeof(st));
  put_site_keys(out);
  return out->bad ? -1 : 0;
none:
  if (r)
    munmap(r, max * sizeof(*r));
  mcr_buf_u32(out, 0);
  return out->bad ? -1 : 0;
}

int mcr_transfer_describe(struct mcr_buf *out, uint64_t t_quiesce, const int *fds, size_t nfds,
                          struct mcr_dirty *dirty, char *err, size_t errlen)
{
  struct mcr_heap_state st;

  if (mcr_heap_export(&st) != 0) {
    snprintf(err, errlen, "the heap could not be described");
    return -1;
  }
  mcr_buf_u32(out, STATE_VERSION);
  mcr_buf_u32(out, (uint32_t)getpid());
  mcr_buf_u64(out, t_quiesce);
  mcr_buf_u32(out, (uint32_t)sizeof(st));
  mcr_buf_put(out, &st, sizeof(st));
  /* the ranges: only this process can tell its free page runs */
  {
    size_t max = 1024, n;
    struct mcr_heap_range *r = NULL;
    for (;;) {
      r = mmap(NULL, max * sizeof(*r), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (r == MAP_FAILED) {
        snprintf(err, errlen, "out of memory describing the heap");
        return -1;
      }
      n = mcr_heap_ranges(&st, r, max);
      if (n <= max)
        break;
      munmap(r, max * sizeof(*r));
      max = n + 64;
    }
    mcr_buf_u32(out, (uint32_t)n);
    mcr_buf_put(out, r, n * sizeof(*r));
    munmap(r, max * sizeof(*r));
  }
  /* the pages written since the pre-copy (0xffffffff: unknown, copy all) */
  {
    uint64_t pages;
    size_t at = out->len;
    if (!dirty || mcr_dirty_collect(dirty, out, &pages) != 0) {
      out->len = at;
      mcr_buf_u32(out, 0xffffffffu);
    }
  }
  put_site_keys(out);
  mcr_stackobj_describe(out);
  mcr_tls_describe(out);
  /* the output buffers of the waits the threads are parked in (quiesce.h) */
  {
    uint64_t v[2 * WAIT_BUFFERS_MAX];
    size_t k = wait_buffers(v);
    mcr_buf_u32(out, (uint32_t)k);
    mcr_buf_put(out, v, k * 2 * sizeof(uint64_t));
  }
  /* the sites that handed out pool pieces after the startup (heap.h) that
   * are not all recorded, then the recorded ones (pieces.h) */
  {
    uint32_t nbytes = (mcr_site_id_limit() + 7) / 8;
    uint8_t bits[MCR_PIECE_SITES_BYTES];
    if (nbytes > MCR_PIECE_SITES_BYTES)
      nbytes = MCR_PIECE_SITES_BYTES;
    memcpy(bits, mcr_heap_piece_sites(), nbytes);
    for (uint32_t t = 0; t < nbytes * 8; t++)
      if ((bits[t >> 3] & (1u << (t & 7))) && mcr_pieces_complete(t))
        bits[t >> 3] &= (uint8_t)~(1u << (t & 7));
    mcr_buf_u32(out, nbytes);
    mcr_buf_put(out, bits, nbytes);
    size_t at = out->len;
    mcr_buf_u32(out, 0);
    uint32_t n = (uint32_t)mcr_pieces_foreach(put_piece, out);
    if (!out->bad)
      memcpy(out->p + at, &n, sizeof(n));
  }
  mcr_buf_u32(out, (uint32_t)nfds);
  for (size_t i = 0; i < nfds; i++) {
    int fl = fcntl(fds[i], F_GETFD);
    mcr_buf_u32(out, (uint32_t)fds[i] | (fl >= 0 && (fl & FD_CLOEXEC) ? 0x80000000u : 0));
  }
  if (out->bad) {
    snprintf(err, errlen, "out of memory describing the state");
    return -1;
  }
  return 0;
}

/* ---- new side ---- */

struct epoll_fix; /* step_epoll */

struct ctx {
  pid_t old_pid;
  struct mcr_arena *arena;
  struct mcr_image_map *image;
  struct mcr_buf *report;
  int conflicts;
  uint32_t *tag_map; /* old tag -> new tag */
  uint32_t tag_limit;
  /* statistics */
  uint64_t image_words, image_failed;
  size_t where_off; /* offset of the word translate_words is given, for its message */
  /* heap words whose image pointer has no counterpart: a conflict only if the
   * word is inside a live object (free memory holds stale values, e.g. a
   * control reply's pointers into the quiescent-point table), checked once the
   * heap is adopted */
  uintptr_t *suspect;
  size_t nsuspect, suspect_cap, suspect_lost;
  /* what the pause copied (NULL: everything) and the old heap's final state,
   * for the type transform */
  const struct mcr_heap_range *fresh;
  size_t nfresh;
  const struct mcr_heap_state *hs;
  /* the new threads' thread-local variables, roots for the type transform */
  struct mcr_xform_region *tls_regions;
  size_t ntls_regions;
  /* --reinit: image pointers with no counterpart left in old startup objects
   * that the new startup has no counterpart of and the old process never
   * changed (in_unchanged_orphan) */
  size_t orphan_words;
  /* the data words of the old process's epoll registrations (step_epoll), and
   * the registrations they are of */
  uintptr_t *epoll_words;
  struct epoll_fix *epoll_regs;
  size_t nepoll_words;
};

static void suspect(struct ctx *c, uintptr_t *where)
{
  if (c->nsuspect < c->suspect_cap)
    c->suspect[c->nsuspect++] = (uintptr_t)where;
  else
    c->suspect_lost++;
}

#define conflict(c, ...)                                                                  \
  do {                                                                                    \
    (c)->conflicts++;                                                                     \
    if ((c)->conflicts <= 20) {                                                           \
      mcr_buf_printf((c)->report, "conflict ");                                           \
      mcr_buf_printf((c)->report, __VA_ARGS__);                                           \
      mcr_buf_printf((c)->report, "\n");                                                  \
    }                                                                                     \
  } while (0)

static void phase(struct ctx *c, const char *name, uint64_t t0, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void phase(struct ctx *c, const char *name, uint64_t t0, const char *fmt, ...)
{
  char d[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d, sizeof(d), fmt, ap);
  va_end(ap);
  mcr_buf_printf(c->report, "phase %s %llu %s\n", name,
                 (unsigned long long)(mcr_update_now_ns() - t0), d);
}

/* Reads [addr, addr+len) of the old process into the same range here. */
static int copy_same(pid_t pid, uintptr_t addr, size_t len)
{
  while (len) {
    struct iovec l = {(void *)addr, len}, r = {(void *)addr, len};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (n == 0) {
      errno = EFAULT;
      return -1;
    }
    addr += (size_t)n;
    len -= (size_t)n;
  }
  return 0;
}

static uint32_t map_tag(uint32_t tag, void *arg)
{
  struct ctx *c = arg;
  if (tag < MCR_TAG_FIRST_SITE)
    return tag;
  return tag < c->tag_limit && c->tag_map[tag] ? c->tag_map[tag] : MCR_TAG_UNTYPED;
}

/* One global of the program, planned before the pause: where it is in both
 * processes, which bytes this process keeps (its own threads' pthread objects
 * and ids), where pid_t fields are. */
struct gplan {
  const char *name;
  uintptr_t oa, na;
  size_t size;  /* the new global's */
  size_t osize; /* the old one's */
  const struct mcr_xplan *xplan; /* the type changed: convert with it */
  const struct mcr_typetab *tt;  /* the new type, for the transform's pointer scan */
  uint32_t type;
  const char *bad;              /* the change cannot be converted: the conflict, unless... */
  const unsigned char *oinit;   /* ...the old value is still this initial one (a static table) */
  unsigned char *keep; /* NULL: nothing kept */
  uint32_t *pids;      /* offsets of pid_t fields */
  uint32_t npids;
  int reinit;          /* --reinit: kept the new startup's value (step_globals) */
};

static struct {
  struct mcr_arena *arena;
  struct mcr_image_map *image;
  pid_t old_pid;
  struct gplan *g;
  size_t ng, fresh, missing, kept_new;
  char err[256];
  int conflicts; /* changes that cannot be converted: reported at the transfer */
  char conflict[8][2048];
  int xform_ok;       /* the old type tables were read */
  char xform_err[256];
  size_t changed, matched; /* globals of changed types; of them matched by content */
  struct mcr_heap_range *pre; /* copied before the pause (sorted) */
  uint32_t npre;
  uintptr_t *suspect;         /* heap words the pre-copy could not translate (see ctx) */
  size_t nsuspect, suspect_cap, suspect_lost;
  /* the program's thread-local variables (tls.h): oa and na are offsets in the
   * executable's TLS block of the old and of this process */
  struct gplan *tv;
  size_t ntv, tvcap, tls_fresh, tls_missing;
  struct mcr_tls_syms *tls_syms[2]; /* old, new */
  int tls_bad;                      /* the symbol tables could not be read */
  /* --reinit: the old process's writable data when its startup ended */
  unsigned char *snap;
  uint64_t snap_data, snap_len;
} plan;

/* The new version's sites by key, built before the pause (mcr_transfer_prepare):
 * an open-addressing table in runtime-private memory. */
static struct {
  struct mcr_arena *arena;
  size_t cap;
  const char **key;
  struct mcr_site **site;
} sites;

static uint64_t str_hash(const char *s)
{
  return mcr_fnv(MCR_FNV_OFFSET, s, strlen(s));
}

/* An old image address to the new one: a changed global's field first
 * (xform.c remaps by field or element), then the image map. */
static int translate(struct mcr_image_map *im, uintptr_t v, uintptr_t *nv, char *why, size_t len)
{
  int r = mcr_xform_translate(v, nv, why, len);
  if (r)
    return r > 0 ? 0 : -1;
  return mcr_image_translate(im, v, nv, why, len);
}

/* The old threads' registered stack objects paired with this process's (the
 * same site, the same order among that site's, the same size, a type that did
 * not change), read with the sites (read_stack_objects): pointers into them
 * translate to their counterparts (image.h), and step_stack_objects copies
 * their values. */
static struct {
  uintptr_t *old_lo, *new_lo;
  uint64_t *size;
  uint32_t *tag; /* the new site */
  uint8_t *used; /* a pointer into it was translated: its value is copied */
  size_t n;
  size_t unpaired, changed; /* old objects with no counterpart, or of a changed type */
  /* those old objects, for the conflicts of pointers into them (stack_refusal) */
  uintptr_t *no_lo;
  uint64_t *no_size;
  const char **no_why;
  size_t nno;
  struct mcr_xform_region *regions; /* the copies, for the type transform (by type) */
  size_t nregions;
} sobj;

/* A pointer into an old registered stack object that was not paired: why, in
 * place of the image map's general reason. */
static void stack_refusal(uintptr_t v, char *why, size_t len)
{
  for (size_t i = 0; i < sobj.nno; i++)
    if (v >= sobj.no_lo[i] && v - sobj.no_lo[i] < sobj.no_size[i]) {
      snprintf(why, len, "0x%lx is %lu bytes into %s", (unsigned long)v,
               (unsigned long)(v - sobj.no_lo[i]), sobj.no_why[i]);
      return;
    }
}

static int plan_globals(void);
static void warm_globals(void);
static int read_stack_objects(struct ctx *c, struct mcr_buf *st);
static size_t rewrite(uintptr_t *w, size_t nwords);
static int reinit_on(void);
static void read_old_snapshot(void);
static int global_unchanged(uintptr_t oa, const unsigned char *val, size_t len);
static int global_reinit_ok(const unsigned char *oval, const unsigned char *nval, size_t len,
                            int same_layout);
static size_t redirect(uintptr_t *w, size_t nwords);
static int in_unchanged_orphan(struct ctx *c, uintptr_t a);
static int read_dead(struct ctx *c, struct mcr_buf *st);
static int read_pieces(struct ctx *c, struct mcr_buf *st);
static int plan_pairs(void);
static int plan_sync(void);

/* Before the pause: gives pages to the parts of the heap reservation that the
 * old process uses now (its read-write mappings there), so that the copy in
 * the pause runs at memory speed instead of taking a page fault per page
 * (175 MB: 150 ms of faults). Only a hint: what the heap uses at the quiesce
 * is copied either way; pages populated in vain hold zeros until trimmed. */
static void prefault_old_heap(pid_t old_pid)
{
  uintptr_t base;
  size_t size;
  char path[64], line[512];
  FILE *f;

  if (mcr_heap_reservation(&base, &size) != 0)
    return;
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)old_pid);
  if (!(f = fopen(path, "re")))
    return;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' || perms[1] != 'w')
      continue;
    if (lo < base || hi > base + size)
      continue;
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) == 0)
      madvise((void *)lo, hi - lo, 23 /* MADV_POPULATE_WRITE */);
  }
  fclose(f);
}

int mcr_transfer_prepare(pid_t old_pid, char *err, size_t errlen)
{
  size_t nnew = (size_t)(__stop_mcr_sites - __start_mcr_sites);
  char key[1024];

  if (sites.arena)
    return 0;
  plan.old_pid = old_pid;
  if (!(plan.arena = mcr_arena_create())) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (mcr_image_map_open(&plan.image, old_pid, plan.arena, err, errlen) != 0)
    return -1;
  if (mcr_xform_open(old_pid, plan.arena, plan.xform_err, sizeof(plan.xform_err)) != 0)
    plan.xform_ok = 0; /* changed types are then conflicts (plan_globals says so) */
  else
    plan.xform_ok = 1;
  if (plan_globals() != 0) {
    snprintf(err, errlen, "out of memory planning the globals");
    return -1;
  }
  plan.matched = mcr_xform_match_content(old_pid, plan.image);
  if (plan.ntv)
    (void)mcr_tls_threads(NULL, 0); /* the threads' classes, symbolized outside the pause */
  prefault_old_heap(old_pid);
  warm_globals();
  if (reinit_on())
    read_old_snapshot();
  if (plan_pairs() != 0 || plan_sync() != 0) {
    snprintf(err, errlen, "out of memory planning the transfer");
    return -1;
  }
  if (!(sites.arena = mcr_arena_create()))
    return -1;
  sites.cap = 64;
  while (sites.cap < 2 * nnew + 2)
    sites.cap *= 2;
  sites.key = mcr_arena_alloc(sites.arena, sites.cap * sizeof(char *), 8);
  sites.site = mcr_arena_alloc(sites.arena, sites.cap * sizeof(*sites.site), 8);
  if (!sites.key || !sites.site)
    return -1;
  for (size_t i = 0; i < nnew; i++) {
    if (mcr_site_key(&__start_mcr_sites[i], key, sizeof(key)) != 0)
      continue;
    size_t h = str_hash(key) & (sites.cap - 1);
    while (sites.key[h] && strcmp(sites.key[h], key))
      h = (h + 1) & (sites.cap - 1);
    if (sites.key[h])
      continue; /* the same key twice: keep the first */
    sites.key[h] = mcr_arena_strdup(sites.arena, key);
    sites.site[h] = &__start_mcr_sites[i];
    if (plan.xform_ok && mcr_xform_site(key, &__start_mcr_sites[i]) < 0)
      return -1;
  }
  return 0;
}

static struct mcr_site *site_by_key(const char *key)
{
  if (!sites.cap)
    return NULL;
  size_t h = str_hash(key) & (sites.cap - 1);
  for (; sites.key[h]; h = (h + 1) & (sites.cap - 1))
    if (!strcmp(sites.key[h], key))
      return sites.site[h];
  return NULL;
}

static int build_tag_map(struct ctx *c, struct mcr_buf *st)
{
  uint32_t limit = mcr_buf_get_u32(st);
  size_t matched = 0, total = 0;

  if (st->bad || limit > MCR_TAG_MAX + 1 || !sites.arena)
    return -1;
  c->tag_limit = limit;
  c->tag_map = mcr_arena_alloc(c->arena, (limit + 1) * sizeof(uint32_t), 8);
  if (!c->tag_map)
    return -1;
  memset(c->tag_map, 0, (limit + 1) * sizeof(uint32_t));
  for (uint32_t id = MCR_TAG_FIRST_SITE; id < limit; id++) {
    const char *k = mcr_buf_get_str(st);
    struct mcr_site *s;
    if (!*k)
      continue;
    total++;
    if ((s = site_by_key(k))) {
      c->tag_map[id] = mcr_site_id_of(s);
      mcr_xform_tag(c->tag_map[id], k);
      matched++;
    }
  }
  if (total > matched)
    mcr_buf_printf(c->report, "note %zu of %zu allocation sites of the old version have no "
                              "counterpart: their objects are kept, untyped\n",
                   total - matched, total);
  return st->bad ? -1 : 0;
}

/* The fix of a pointer into the old main thread's stack (image.c). */
#define STACK_FIX                                                                         \
  "mcr moves pointers into a stack only to the registered local variables of the "       \
  "functions on a quiescent point's call stack (docs/update.md, \"Stack objects\"): the " \
  "variable is of a function not on that stack, one of more than 16, or its type "      \
  "changed; update when no global or live object points to it, or restart the server"

/* Rewrites the words of [p, p+len) that point into the old program image. */
static void translate_words(struct ctx *c, uintptr_t *p, size_t nwords, const char *where)
{
  for (size_t i = 0; i < nwords; i++) {
    uintptr_t v = p[i], nv;
    char why[256];
    if (!mcr_image_is_old(c->image, v))
      continue;
    if (translate(c->image, v, &nv, why, sizeof(why)) == 0) {
      p[i] = nv;
      c->image_words++;
    } else if (!where) {
      suspect(c, &p[i]); /* heap: decided after the adoption */
    } else if (mcr_image_in_old_stack(c->image, v)) {
      c->image_failed++;
      stack_refusal(v, why, sizeof(why));
      conflict(c, "image\t%s+%zu holds a pointer into a stack: %s\tglobal %s\t\t\t\t\t\t" STACK_FIX,
               where, c->where_off + i * sizeof(uintptr_t), why, where);
    } else {
      c->image_failed++;
      conflict(c, "image\t%s+%zu holds 0x%lx, a pointer into the old program with no "
                  "counterpart in the new one: %s\tglobal %s",
               where, c->where_off + i * sizeof(uintptr_t), (unsigned long)v, why, where);
    }
  }
}

/* After the adoption: the suspects inside live objects are conflicts. A word can
 * be in both lists (found by the pre-copy, its page written and copied again):
 * reported once (done[], the words reported so far). */
static void judge_suspects(struct ctx *c, const uintptr_t *list, size_t n, size_t lost,
                           uintptr_t *done, size_t *ndone, size_t maxdone)
{
  for (size_t i = 0; i < n; i++) {
    struct mcr_object o;
    uintptr_t *w = (uintptr_t *)list[i], nv;
    char why[256];
    int seen = 0;
    for (size_t k = 0; k < *ndone && !seen; k++)
      seen = done[k] == list[i];
    if (seen || mcr_heap_find(w, &o) != 0 || o.tag == MCR_TAG_RELEASED ||
        !mcr_image_is_old(c->image, *w))
      continue; /* reported, free memory (the heap's or the program's), or rewritten since */
    if (translate(c->image, *w, &nv, why, sizeof(why)) == 0) {
      *w = nv;
      continue;
    }
    if (in_unchanged_orphan(c, list[i])) {
      c->orphan_words++; /* --reinit: in configuration the new startup did not build */
      continue;
    }
    c->image_failed++;
    if (*ndone < maxdone)
      done[(*ndone)++] = list[i];
    if (mcr_image_in_old_stack(c->image, *w)) {
      stack_refusal(*w, why, sizeof(why));
      conflict(c, "image\tholds at +%zu a pointer into a stack: %s\theap object 0x%lx (%zu "
                  "bytes, tag %u)\t\t\t\t\t\t" STACK_FIX,
               (size_t)((uintptr_t)w - (uintptr_t)o.base), why, (unsigned long)(uintptr_t)o.base,
               o.size, o.tag);
      continue;
    }
    conflict(c, "image\tholds at +%zu the address 0x%lx, a pointer into the old program with no "
                "counterpart in the new one: %s\theap object 0x%lx (%zu bytes, tag %u)"
                "\t\t\t\t\t\tif the new version renamed that function or replaced it by one "
                "of the same meaning, name it: mcr-ctl update --rename OLD=NEW; else keep it "
                "in the new version (an alias of the same name will do), or let no live object "
                "point to it when updating",
             (size_t)((uintptr_t)w - (uintptr_t)o.base), (unsigned long)*w, why,
             (unsigned long)(uintptr_t)o.base, o.size, o.tag);
  }
  if (lost) {
    c->image_failed += lost;
    conflict(c, "%zu more heap words point into the old program with no counterpart in the new "
                "one (not all could be checked)", lost);
  }
}

#define SCAN_CHUNK ((uint64_t)4 << 20)

/* The scan for pointers into the old image, one chunk behind the copy. */
struct scan {
  struct ctx c; /* its own report and counters */
  struct mcr_buf report;
  const struct mcr_heap_range *r;
  uint32_t n;
  uint64_t copied; /* range << 32 | chunks of it copied (atomic) */
  int failed;
  size_t *idx;     /* SCAN_CHUNK / 8 entries (the arena is not thread-safe) */
};

static void *scanner(void *p)
{
  struct scan *sc = p;
  size_t *idx = sc->idx;
  for (uint32_t i = 0; i < sc->n; i++) {
    uint64_t nchunks = (sc->r[i].len + SCAN_CHUNK - 1) / SCAN_CHUNK;
    for (uint64_t j = 0; j < nchunks; j++) {
      uint64_t want = (uint64_t)i << 32 | (j + 1);
      while (__atomic_load_n(&sc->copied, __ATOMIC_ACQUIRE) < want) {
        if (__atomic_load_n(&sc->failed, __ATOMIC_SEQ_CST))
          return NULL;
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
      }
      uint64_t off = j * SCAN_CHUNK;
      uint64_t len = sc->r[i].len - off < SCAN_CHUNK ? sc->r[i].len - off : SCAN_CHUNK;
      uintptr_t *w = (uintptr_t *)(uintptr_t)(sc->r[i].start + off);
      size_t k = mcr_image_scan(sc->c.image, w, len / sizeof(uintptr_t), idx);
      for (size_t x = 0; x < k; x++)
        translate_words(&sc->c, w + idx[x], 1, NULL);
    }
  }
  return NULL;
}

/* After the pre-copy: objects of changed types converted on the copy, ahead of
 * the pause (xform_heap.c), when every range was copied. The message's tail
 * (the old heap's state and site keys) is optional. */
static void precopy_transform(struct mcr_buf *msg, struct mcr_buf *report)
{
  struct mcr_heap_state ost;
  uint32_t *map;

  if (!mcr_xform_changed_sites())
    return;
  for (uint32_t i = 0; i < plan.npre; i++)
    if (!plan.pre[i].len)
      return; /* a range the copy missed: the pause does it all */
  if (mcr_buf_get_u32(msg) != sizeof(ost) || mcr_buf_get(msg, &ost, sizeof(ost)) != 0)
    return;
  uint32_t limit = mcr_buf_get_u32(msg);
  if (msg->bad || limit > MCR_TAG_MAX + 1 ||
      !(map = mcr_arena_alloc(plan.arena, ((size_t)limit + 1) * sizeof(*map), 8)))
    return;
  memset(map, 0, ((size_t)limit + 1) * sizeof(*map));
  for (uint32_t id = MCR_TAG_FIRST_SITE; id < limit; id++) {
    const char *k = mcr_buf_get_str(msg);
    struct mcr_site *s;
    if (*k && (s = site_by_key(k))) {
      map[id] = mcr_site_id_of(s);
      mcr_xform_tag(map[id], k);
    }
  }
  if (!msg->bad)
    mcr_xform_precopy(&ost, map, limit, report);
}

int mcr_transfer_precopy(struct mcr_buf *msg, struct mcr_buf *report)
{
  uint64_t t = mcr_update_now_ns(), bytes = 0;
  uint32_t n = mcr_buf_get_u32(msg);
  enum { WORDS = SCAN_CHUNK / sizeof(uintptr_t) };
  size_t *idx;

  if (msg->bad || n > (1u << 24) || !plan.arena)
    return -1;
  plan.pre = mcr_arena_alloc(plan.arena, ((size_t)n + 1) * sizeof(*plan.pre), 8);
  plan.suspect_cap = 4096;
  plan.suspect = mcr_arena_alloc(plan.arena, plan.suspect_cap * sizeof(uintptr_t), 8);
  if (!plan.suspect)
    return -1;
  idx = mcr_arena_alloc(plan.arena, WORDS * sizeof(size_t), 8);
  if (!plan.pre || !idx || mcr_buf_get(msg, plan.pre, (size_t)n * sizeof(*plan.pre)) != 0)
    return -1;
  for (uint32_t i = 0; i < n; i++) {
    uintptr_t lo = plan.pre[i].start & ~(uintptr_t)4095;
    uintptr_t hi = (plan.pre[i].start + plan.pre[i].len + 4095) & ~(uintptr_t)4095;
    /* the pages are the old heap's: read-write here too (prefault_old_heap
     * did most); a failure leaves the range to the pause */
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) != 0 ||
        copy_same(plan.old_pid, plan.pre[i].start, plan.pre[i].len) != 0) {
      plan.pre[i].len = 0;
      continue;
    }
    bytes += plan.pre[i].len;
    uintptr_t *w = (uintptr_t *)(uintptr_t)plan.pre[i].start;
    size_t nw = plan.pre[i].len / sizeof(uintptr_t);
    for (size_t off = 0; off < nw; off += WORDS) {
      size_t m = nw - off < WORDS ? nw - off : WORDS;
      size_t k = mcr_image_scan(plan.image, w + off, m, idx);
      for (size_t j = 0; j < k; j++) {
        uintptr_t nv;
        char why[256];
        if (translate(plan.image, w[off + idx[j]], &nv, why, sizeof(why)) == 0) {
          w[off + idx[j]] = nv;
        } else if (plan.nsuspect < plan.suspect_cap) {
          plan.suspect[plan.nsuspect++] = (uintptr_t)(w + off + idx[j]);
        } else {
          plan.suspect_lost++;
        }
      }
    }
  }
  plan.npre = n;
  mcr_buf_printf(report, "phase precopy %llu %.1f MB copied before the pause (pages written "
                         "meanwhile are copied again in it)\n",
                 (unsigned long long)(mcr_update_now_ns() - t), bytes / 1e6);
  precopy_transform(msg, report);
  return 0;
}

/* Appends [lo, hi) to the copy list. */
static int add_piece(struct ctx *c, struct mcr_heap_range **v, size_t *n, size_t *cap, uint64_t lo,
                     uint64_t hi)
{
  if (hi <= lo)
    return 0;
  if (*n && (*v)[*n - 1].start + (*v)[*n - 1].len == lo) {
    (*v)[*n - 1].len += hi - lo;
    return 0;
  }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 1024;
    struct mcr_heap_range *nv = mcr_arena_alloc(c->arena, nc * sizeof(*nv), 8);
    if (!nv)
      return -1;
    if (*n)
      memcpy(nv, *v, *n * sizeof(*nv));
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = (struct mcr_heap_range){lo, hi - lo};
  return 0;
}

/* What the pause must copy of the final ranges r: everything not pre-copied,
 * and of what was, the pages written since (d: sorted page regions). */
static struct mcr_heap_range *copy_list(struct ctx *c, const struct mcr_heap_range *r, uint32_t n,
                                        const uint64_t *d, uint32_t nd, int all, size_t *out_n)
{
  struct mcr_heap_range *v = NULL;
  size_t nv = 0, cap = 0, pi = 0, di = 0;

  for (uint32_t i = 0; i < n; i++) {
    uint64_t a = r[i].start, b = r[i].start + r[i].len, x = a;
    if (all || !plan.npre) {
      if (add_piece(c, &v, &nv, &cap, a, b) != 0)
        return NULL;
      continue;
    }
    while (pi < plan.npre && plan.pre[pi].start + plan.pre[pi].len <= a)
      pi++;
    for (size_t p = pi; p < plan.npre && plan.pre[p].start < b; p++) {
      uint64_t plo = plan.pre[p].start, phi = plan.pre[p].start + plan.pre[p].len;
      if (!plan.pre[p].len)
        continue; /* the pre-copy failed there */
      if (plo > x && add_piece(c, &v, &nv, &cap, x, plo < b ? plo : b) != 0)
        return NULL;
      uint64_t lo = plo > a ? plo : a, hi = phi < b ? phi : b;
      while (di < nd && d[2 * di + 1] <= lo)
        di++;
      for (size_t k = di; k < nd && d[2 * k] < hi; k++) {
        uint64_t s = d[2 * k] > lo ? d[2 * k] : lo, e = d[2 * k + 1] < hi ? d[2 * k + 1] : hi;
        if (add_piece(c, &v, &nv, &cap, s, e) != 0)
          return NULL;
      }
      if (hi > x)
        x = hi;
    }
    if (add_piece(c, &v, &nv, &cap, x, b) != 0)
      return NULL;
  }
  *out_n = nv;
  if (!v)
    v = mcr_arena_alloc(c->arena, sizeof(*v), 8);
  return v;
}

static int step_heap(struct ctx *c, struct mcr_buf *st, const struct mcr_heap_state *hs)
{
  struct mcr_heap_range *r;
  uint32_t n = mcr_buf_get_u32(st);
  uint64_t t = mcr_update_now_ns(), bytes = 0;
  char why[256];

  if (st->bad || n > (1u << 24) ||
      !(r = mcr_arena_alloc(c->arena, ((size_t)n + 1) * sizeof(*r), 8)) ||
      mcr_buf_get(st, r, (size_t)n * sizeof(*r)) != 0) {
    conflict(c, "the old heap's ranges could not be read");
    return -1;
  }
  {
    uint32_t nd = mcr_buf_get_u32(st);
    int all = nd == 0xffffffffu;
    uint64_t *d = NULL;
    size_t np = 0;
    if (!all) {
      if (st->bad || nd > (1u << 26) ||
          !(d = mcr_arena_alloc(c->arena, ((size_t)nd + 1) * 2 * sizeof(uint64_t), 8)) ||
          mcr_buf_get(st, d, (size_t)nd * 2 * sizeof(uint64_t)) != 0) {
        conflict(c, "the old heap's written pages could not be read");
        return -1;
      }
    }
    struct mcr_heap_range *pieces = copy_list(c, r, n, d, nd, all, &np);
    if (!pieces) {
      conflict(c, "out of memory listing what to copy");
      return -1;
    }
    uint64_t total = 0, again = 0;
    for (uint32_t i = 0; i < n; i++)
      total += r[i].len;
    for (size_t i = 0; i < np; i++)
      again += pieces[i].len;
    mcr_buf_printf(c->report, "note the pause copies %.1f of the heap's %.1f MB (%s)\n",
                   again / 1e6, total / 1e6,
                   all ? "no pre-copy" : "written since the pre-copy, or not pre-copied");
    r = pieces;
    n = (uint32_t)np;
    c->fresh = all ? NULL : pieces;
    c->nfresh = np;
    c->hs = hs;
  }
  if (mcr_heap_update_ready(why, sizeof(why)) != 0) {
    conflict(c, "%s", why);
    return -1;
  }
  if (mcr_heap_adopt_prepare(hs) != 0) {
    conflict(c, "%s", mcr_heap_adopt_error());
    return -1;
  }
  /* The copy, and on a second thread (this machine's other CPU: the old
   * process is quiesced) the scan for pointers into the old program image,
   * a chunk behind the copy. */
  struct scan scan = {.c = *c, .r = r, .n = n};
  scan.c.nsuspect = scan.c.suspect_lost = 0;
  scan.c.suspect_cap = 4096;
  if (!(scan.c.suspect = mcr_arena_alloc(c->arena, scan.c.suspect_cap * sizeof(uintptr_t), 8))) {
    conflict(c, "out of memory for the pointer scan");
    return -1;
  }
  if (!(scan.idx = mcr_arena_alloc(c->arena, SCAN_CHUNK / sizeof(uintptr_t) * sizeof(size_t), 8))) {
    conflict(c, "out of memory for the pointer scan");
    return -1;
  }
  scan.c.report = &scan.report;
  scan.c.conflicts = 0;
  pthread_t th;
  int threaded = mcr_threads_start_internal(&th, scanner, &scan) == 0;
  for (uint32_t i = 0; i < n; i++) {
    for (uint64_t off = 0; off < r[i].len; off += SCAN_CHUNK) {
      uint64_t len = r[i].len - off < SCAN_CHUNK ? r[i].len - off : SCAN_CHUNK;
      /* pages first, in one call, rather than a fault per page in the copy
       * (MADV_POPULATE_WRITE, Linux 5.14; most were populated before the
       * pause, see prefault_old_heap) */
      madvise((void *)(uintptr_t)(r[i].start + off), len, 23 /* MADV_POPULATE_WRITE */);
      if (copy_same(c->old_pid, r[i].start + off, len) != 0) {
        conflict(c, "reading the old heap at 0x%lx (%lu bytes): %s",
                 (unsigned long)(r[i].start + off), (unsigned long)len, strerror(errno));
        __atomic_store_n(&scan.failed, 1, __ATOMIC_SEQ_CST);
        break;
      }
      __atomic_store_n(&scan.copied, (uint64_t)i << 32 | (off + len) / SCAN_CHUNK, __ATOMIC_RELEASE);
    }
    if (c->conflicts)
      break;
    bytes += r[i].len;
  }
  __atomic_store_n(&scan.copied, (uint64_t)n << 32, __ATOMIC_RELEASE);
  uint64_t dt = mcr_update_now_ns() - t;
  phase(c, "heap-copy", t, "%.1f MB in %u ranges, %.2f GB/s", bytes / 1e6, n,
        dt ? bytes / (double)dt : 0.0);
  if (!threaded)
    scanner(&scan);
  if (c->conflicts) {
    if (threaded)
      pthread_join(th, NULL);
    mcr_buf_free(&scan.report);
    return -1;
  }
  t = mcr_update_now_ns();
  if (build_tag_map(c, st) != 0) {
    conflict(c, "the old version's allocation sites could not be read");
    return -1;
  }
  if (read_stack_objects(c, st) != 0)
    return -1;
  if (mcr_heap_adopt(hs, map_tag, c) != 0) {
    conflict(c, "the old heap could not be adopted: %s", mcr_heap_adopt_error());
    return -1;
  }
  phase(c, "heap-adopt", t, "%u tags renumbered", c->tag_limit);
  t = mcr_update_now_ns();
  if (threaded)
    pthread_join(th, NULL);
  /* (after the scan: the map it reads is not locked) */
  mcr_image_set_stack_objects(sobj.old_lo, sobj.new_lo, sobj.size, sobj.used, sobj.n);
  c->image_words += scan.c.image_words;
  c->image_failed += scan.c.image_failed;
  c->conflicts += scan.c.conflicts;
  {
    size_t maxdone = plan.nsuspect + scan.c.nsuspect + 1, ndone = 0;
    uintptr_t *done = mcr_arena_alloc(c->arena, maxdone * sizeof(uintptr_t), 8);
    judge_suspects(c, plan.suspect, plan.nsuspect, plan.suspect_lost, done, &ndone,
                   done ? maxdone : 0);
    judge_suspects(c, scan.c.suspect, scan.c.nsuspect, scan.c.suspect_lost, done, &ndone,
                   done ? maxdone : 0);
  }
  if (scan.report.len)
    mcr_buf_put(c->report, scan.report.p, scan.report.len);
  mcr_buf_free(&scan.report);
  phase(c, "heap-pointers", t, "%llu pointers into the program image rewritten (the scan ran "
                               "beside the copy; this is the wait for its end)",
        (unsigned long long)c->image_words);
  if (c->orphan_words)
    mcr_buf_printf(c->report, "note --reinit: %zu pointers into the old program with no "
                              "counterpart were left as they are: they are in startup objects "
                              "the old process never changed and the new startup did not build "
                              "(configuration of code the new version lacks)\n",
                   c->orphan_words);
  return c->conflicts ? -1 : 0;
}

/* ---- globals ---- */

static int keep_type_name(const char *n)
{
  static const char *const keep[] = {
      "pthread_mutex_t", "pthread_cond_t",     "pthread_rwlock_t",   "pthread_spinlock_t",
      "pthread_barrier_t", "pthread_t",        "pthread_once_t",     "pthread_key_t",
      "pthread_attr_t",  "pthread_mutexattr_t", "pthread_condattr_t", "sem_t",
  };
  for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
    if (!strcmp(n, keep[i]))
      return 1;
  return 0;
}


/* Marks in keep[] the bytes of type t at off that this process keeps, and
 * collects the offsets of pid_t fields. depth bounds the walk. */
static void walk_type(const struct mcr_typetab *tt, uint32_t t, uint64_t off, struct gplan *g,
                      int depth)
{
  struct mcr_type_rec tr;
  if (depth > 24 || t == MCR_NO_TYPE || mcr_typetab_type(tt, t, &tr) != 0 || off >= g->size)
    return;
  const char *name = mcr_typetab_str(tt, tr.name);
  switch (tr.kind) {
  case MCR_TYPE_TYPEDEF:
    if (name && keep_type_name(name)) {
      struct mcr_type_rec u = tr;
      for (int i = 0; i < 8 && u.kind == MCR_TYPE_TYPEDEF && u.target != MCR_NO_TYPE; i++)
        if (mcr_typetab_type(tt, u.target, &u) != 0)
          break;
      if (u.size && off + u.size <= g->size) {
        if (!g->keep && !(g->keep = mcr_arena_alloc(plan.arena, g->size, 1)))
          return;
        memset(g->keep + off, 1, u.size);
      }
      return;
    }
    if (name && (!strcmp(name, "pid_t") || !strcmp(name, "__pid_t")) && off + 4 <= g->size) {
      if (g->npids % 16 == 0) {
        uint32_t *n = mcr_arena_alloc(plan.arena, (g->npids + 16) * sizeof(uint32_t), 4);
        if (!n)
          return;
        if (g->npids)
          memcpy(n, g->pids, g->npids * sizeof(uint32_t));
        g->pids = n;
      }
      g->pids[g->npids++] = (uint32_t)off;
      return;
    }
    walk_type(tt, tr.target, off, g, depth + 1);
    return;
  case MCR_TYPE_STRUCT:
  case MCR_TYPE_UNION:
    for (uint32_t i = 0; i < tr.count; i++) {
      struct mcr_member_rec m;
      if (mcr_typetab_member(tt, tr.first_member + i, &m) == 0 && !m.bit_size)
        walk_type(tt, m.type, off + m.offset_bits / 8, g, depth + 1);
    }
    return;
  case MCR_TYPE_ARRAY: {
    struct mcr_type_rec e;
    if (mcr_typetab_type(tt, tr.target, &e) != 0)
      return;
    /* arrays of scalars and pointers hold nothing to keep: skip the walk */
    for (int i = 0; i < 8 && e.kind == MCR_TYPE_TYPEDEF; i++) {
      const char *en = mcr_typetab_str(tt, e.name);
      if (en && (keep_type_name(en) || !strcmp(en, "pid_t")))
        break;
      if (mcr_typetab_type(tt, e.target, &e) != 0)
        return;
    }
    if (e.kind != MCR_TYPE_STRUCT && e.kind != MCR_TYPE_UNION && e.kind != MCR_TYPE_ARRAY &&
        e.kind != MCR_TYPE_TYPEDEF)
      return;
    struct mcr_type_rec u = e;
    for (int i = 0; i < 8 && u.kind == MCR_TYPE_TYPEDEF; i++)
      if (mcr_typetab_type(tt, u.target, &u) != 0)
        return;
    if (!u.size)
      return;
    for (uint32_t i = 0; i < tr.count && off + (uint64_t)i * u.size < g->size; i++)
      walk_type(tt, tr.target, off + (uint64_t)i * u.size, g, depth + 1);
    return;
  }
  default:
    return;
  }
}

static int in_exe(const void *p)
{
  Dl_info info;
  struct link_map *lm = NULL;
  if (!dladdr1(p, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
    return 0;
  return lm->l_name == NULL || lm->l_name[0] == 0;
}

/* Before the pause: pairs every writable global of the executable's type
 * tables with the old process's by symbol name. */
static int plan_globals(void)
{
  const struct mcr_module *mods;
  size_t nmods = mcr_types_modules(&mods), cap = 0;

  for (size_t m = 0; m < nmods; m++) {
    if (!in_exe(mods[m].start))
      continue; /* instrumented shared objects: their globals stay the new version's */
    size_t pos = 0;
    const void *blob;
    size_t blen;
    while (mcr_typetab_next(mods[m].start, (size_t)(mods[m].stop - mods[m].start), &pos, &blob,
                            &blen, NULL) == 1) {
      struct mcr_typetab tt;
      const struct mcr_typetab *blob_copy = NULL;
      if (mcr_typetab_open(&tt, blob, blen, NULL) != 0)
        continue;
      for (uint32_t gi = 0; gi < mcr_typetab_nglobals(&tt); gi++) {
        struct mcr_global_rec gr;
        uintptr_t oa, na;
        size_t os, ns;
        if (mcr_typetab_global(&tt, gi, &gr) != 0 || (gr.flags & MCR_GF_CONST))
          continue;
        const char *sym = mcr_typetab_str(&tt, gr.symbol);
        const char *file = mcr_typetab_str(&tt, tt.hdr.module);
        int tls = (gr.flags & MCR_GF_TLS) != 0;
        if (!sym || !*sym)
          continue;
        if (tls) { /* offsets in the TLS block, per thread in the pause (step_tls) */
          if (!plan.tls_syms[0] && !plan.tls_bad) {
            char exe[64];
            snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)plan.old_pid);
            plan.tls_syms[0] = mcr_tls_syms_open(plan.arena, exe);
            plan.tls_syms[1] = mcr_tls_syms_open(plan.arena, "/proc/self/exe");
            plan.tls_bad = !plan.tls_syms[0] || !plan.tls_syms[1];
          }
          if (plan.tls_bad || mcr_tls_sym(plan.tls_syms[1], sym, file, &na, &ns) != 0) {
            plan.tls_missing++;
            continue;
          }
          if (mcr_tls_sym(plan.tls_syms[0], sym, file, &oa, &os) != 0) {
            plan.tls_fresh++;
            continue; /* a new variable: each thread keeps its initial value */
          }
        } else if (mcr_image_symbol(plan.image, 1, sym, file, &na, &ns) != 0) {
          plan.missing++; /* not in this executable's symbol table */
          continue;
        } else if (mcr_image_symbol(plan.image, 0, sym, file, &oa, &os) != 0) {
          plan.fresh++; /* a new global: keeps its value */
          int written = mcr_xform_new_written(sym, na, ns);
          if (written && (mcr_renames_keeps(mcr_image_renames(), sym) || reinit_on())) {
            plan.kept_new++;
          } else if (written) {
            if (plan.conflicts < 8)
              snprintf(plan.conflict[plan.conflicts], sizeof(plan.conflict[0]),
                       "global\tnew in this version, and its startup changed it from its "
                       "initial value: it holds state built at startup that nothing in the old "
                       "process corresponds to, while the state it goes with comes from the "
                       "old process (a new module's index with no configuration of that "
                       "module in the old state, a pointer to the new startup's heap, which "
                       "the old heap replaces). If the new startup's value is right with the "
                       "old state (a cache, a table of the new code), say so: mcr-ctl update "
                       "--keep-new %s\tglobal %s\t\t\t\t%s:%u\t\tif the new startup's value "
                       "is right with the old process's state, keep it: mcr-ctl update "
                       "--keep-new %s (or a line 'keep-new %s' in a --rename-file); if it "
                       "belongs to state only the new startup builds (a module's index and "
                       "the configuration sized by the module count), take that state from "
                       "the new startup: mcr-ctl update --reinit (docs/update.md, "
                       "\"Reinitialized startup state\")",
                       sym,
                       sym, mcr_typetab_str(&tt, gr.file), gr.line, sym, sym);
            plan.conflicts++;
          }
          continue;
        }
        const struct mcr_xplan *xp = NULL;
        char why[2048];
        int ch;
        if (plan.xform_ok) {
          ch = mcr_xform_global(&tt, &gr, os, ns, &xp, why, sizeof(why));
        } else if (os != ns) {
          ch = -1;
          snprintf(why, sizeof(why),
                   "global\tchanged size from %zu to %zu bytes and the old version's types "
                   "could not be read: %s\tglobal %s\t\t\t\t%s:%u",
                   os, ns, plan.xform_err, sym, mcr_typetab_str(&tt, gr.file), gr.line);
        } else {
          ch = 0;
        }
        /* (a thread-local variable's initial value is not at oa: no static tables) */
        const unsigned char *oinit = ch && !tls ? mcr_xform_initial(sym, oa, os) : NULL;
        if (ch < 0 && !oinit) {
          if (plan.conflicts < 8)
            snprintf(plan.conflict[plan.conflicts], sizeof(plan.conflict[0]), "%s", why);
          plan.conflicts++;
          continue;
        }
        if (!ns)
          continue;
        struct gplan **v = tls ? &plan.tv : &plan.g;
        size_t *nv = tls ? &plan.ntv : &plan.ng, *vcap = tls ? &plan.tvcap : &cap;
        if (*nv == *vcap) {
          size_t nc = *vcap ? 2 * *vcap : 256;
          struct gplan *n = mcr_arena_alloc(plan.arena, nc * sizeof(*n), 8);
          if (!n)
            return -1;
          if (*vcap)
            memcpy(n, *v, *vcap * sizeof(*n));
          *v = n;
          *vcap = nc;
        }
        struct gplan *g = &(*v)[(*nv)++];
        memset(g, 0, sizeof(*g));
        g->name = mcr_arena_strdup(plan.arena, sym);
        g->oa = oa;
        g->na = na;
        g->size = ns;
        g->osize = os;
        g->xplan = xp;
        g->oinit = oinit;
        if (ch < 0 && !(g->bad = mcr_arena_strdup(plan.arena, why)))
          return -1;
        g->type = gr.type;
        if (!blob_copy || blob_copy->base != tt.base) {
          struct mcr_typetab *cp = mcr_arena_alloc(plan.arena, sizeof(*cp), 8);
          if (!cp)
            return -1;
          *cp = tt;
          blob_copy = cp;
        }
        g->tt = blob_copy;
        walk_type(&tt, gr.type, 0, g, 0);
        if (xp && !tls) { /* (pointers into a thread-local variable: not remapped) */
          plan.changed++;
          if (mcr_xform_add_global(g->name, oa, os, na, ns, xp) != 0)
            return -1;
          mcr_xform_global_shape(na, &tt, gr.type);
        }
      }
    }
  }
  return 0;
}

/* Before the pause: translates the pointers into the program image that the
 * old globals hold now. Most are set at startup and never change (dispatch
 * tables, config names, dict types): in the pause their translation is then a
 * memo hit instead of a symbol or string search. */
static void warm_globals(void)
{
  char why[256];
  for (size_t i = 0; i < plan.ng; i++) {
    struct gplan *g = &plan.g[i];
    unsigned char *val = mcr_arena_alloc(plan.arena, g->size + 8, 16);
    struct iovec l = {val, g->size}, r = {(void *)g->oa, g->size};
    if (!val || process_vm_readv(plan.old_pid, &l, 1, &r, 1, 0) != (ssize_t)g->size)
      continue;
    for (size_t off = (sizeof(uintptr_t) - g->na % sizeof(uintptr_t)) % sizeof(uintptr_t);
         off + sizeof(uintptr_t) <= g->size; off += sizeof(uintptr_t)) {
      uintptr_t v, nv;
      memcpy(&v, val + off, sizeof(v));
      if (mcr_image_is_old(plan.image, v))
        (void)translate(plan.image, v, &nv, why, sizeof(why));
    }
  }
}

/* The tree's pids (mcr_transfer_pid_map). */
#define PID_MAP_MAX 1024
static pid_t pid_map_old[PID_MAP_MAX], pid_map_new[PID_MAP_MAX];
static size_t npid_map, npids_mapped;

void mcr_transfer_pid_map(const pid_t *old, const pid_t *new, size_t n)
{
  npid_map = n < PID_MAP_MAX ? n : PID_MAP_MAX;
  memcpy(pid_map_old, old, npid_map * sizeof(pid_t));
  memcpy(pid_map_new, new, npid_map * sizeof(pid_t));
}

/* One old thread's TLS block and its new thread's (step_tls). */
struct tls_pair {
  uintptr_t ob, nb;
};

/* A word of a thread-local variable that points into its own thread's old
 * block (a variable pointing to another of the thread's variables) points to
 * the same place in the new thread's. Returns 1 if it did. */
static int tls_self(const struct tls_pair *p, uintptr_t *w)
{
  if (!p || *w < p->ob)
    return 0;
  uintptr_t off = *w - p->ob;
  for (size_t i = 0; i < plan.ntv; i++) {
    const struct gplan *t = &plan.tv[i];
    if (off >= t->oa && off < t->oa + t->osize) {
      /* into a variable of changed type: its start only (fields may have moved) */
      if (!t->xplan || off == t->oa) {
        *w = p->nb + t->na + (off - t->oa);
        return 1;
      }
      return 0;
    }
  }
  return 0;
}

/* Writes the old value val of global or thread-local variable g (g->osize
 * bytes, the old layout; changed in place) to dst in this process: pointers
 * into the old image translated, the type converted, pid_t fields holding the
 * old pid set to this one's, the bytes this process keeps left alone. self: the
 * thread blocks of a thread-local variable (NULL for a global). Returns 0, 1
 * when the value was refused (a conflict), -1 when out of memory. */
static int put_value(struct ctx *c, const struct gplan *g, unsigned char *val, unsigned char *dst,
                     const struct tls_pair *self)
{
  if (g->bad) {
    conflict(c, "%s", g->bad);
    return 1;
  }
  /* pointers into the old image, word by word (the old layout), kept bytes
   * excluded when the layout is the same */
  for (size_t off = (sizeof(uintptr_t) - g->oa % sizeof(uintptr_t)) % sizeof(uintptr_t);
       off + sizeof(uintptr_t) <= g->osize; off += sizeof(uintptr_t)) {
    int skip = 0;
    for (size_t k = 0; !g->xplan && g->keep && k < sizeof(uintptr_t); k++)
      skip |= g->keep[off + k];
    c->where_off = off;
    if (!skip && !tls_self(self, (uintptr_t *)(val + off)))
      translate_words(c, (uintptr_t *)(val + off), 1, g->name);
  }
  if (g->xplan) {
    /* the new layout, over the new version's initial value (what no old field
     * fills keeps it) */
    struct mcr_xerror xe;
    unsigned char *nv = mcr_arena_alloc(c->arena, g->size + 16, 16);
    if (!nv)
      return -1;
    memcpy(nv, dst, g->size);
    if (mcr_xplan_apply(g->xplan, val, g->osize, nv, g->size, &xe) != 0) {
      conflict(c, "narrowing\tfield %s: %s\t%s %s", xe.path, xe.msg,
               self ? "thread-local variable" : "global", g->name);
      return 1;
    }
    int (*hook)(void *, size_t, const void *, size_t) = mcr_xform_global_hook(g->name);
    if (hook && hook(nv, g->size, val, g->osize) != 0) {
      conflict(c, "hook\tmcr_transform_global_%s refused the old value\t%s %s", g->name,
               self ? "thread-local variable" : "global", g->name);
      return 1;
    }
    val = nv;
  }
  for (uint32_t k = 0; k < g->npids; k++) {
    int32_t v;
    memcpy(&v, val + g->pids[k], 4);
    if (v == (int32_t)c->old_pid) {
      v = (int32_t)getpid();
      memcpy(val + g->pids[k], &v, 4);
    } else if (v > 0) {
      for (size_t m = 0; m < npid_map; m++)
        if (v == (int32_t)pid_map_old[m]) {
          v = (int32_t)pid_map_new[m];
          memcpy(val + g->pids[k], &v, 4);
          npids_mapped++;
          break;
        }
    }
  }
  if (!g->keep) {
    memcpy(dst, val, g->size);
  } else {
    for (size_t k = 0; k < g->size; k++)
      if (!g->keep[k])
        dst[k] = val[k];
  }
  return 0;
}

/* The aligned words of global g in this process: the first, their count in *n. */
static uintptr_t *global_words(const struct gplan *g, size_t *n)
{
  uintptr_t lo = (g->na + 7) & ~(uintptr_t)7, hi = (g->na + g->size) & ~(uintptr_t)7;
  *n = hi > lo ? (hi - lo) / sizeof(uintptr_t) : 0;
  return (uintptr_t *)lo;
}

/* In the pause: copies the planned globals. */
static int step_globals(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns(), bytes = 0;
  unsigned char *val;
  size_t converted = 0, kept = 0;

  for (int i = 0; i < plan.conflicts && i < 8; i++)
    conflict(c, "%s", plan.conflict[i]);
  if (plan.conflicts > 8)
    conflict(c, "global\t%d more globals changed in ways that cannot be converted",
             plan.conflicts - 8);
  if (plan.conflicts)
    return -1;
  size_t total = 0;
  for (size_t i = 0; i < plan.ng; i++)
    total += (plan.g[i].osize + 15) & ~(size_t)15;
  unsigned char *all = mcr_arena_alloc(c->arena, total + 16, 16);
  struct iovec *lv = mcr_arena_alloc(c->arena, (plan.ng + 1) * sizeof(*lv), 8);
  struct iovec *rv = mcr_arena_alloc(c->arena, (plan.ng + 1) * sizeof(*rv), 8);
  if (!all || !lv || !rv)
    return -1;
  /* every global in a few process_vm_readv calls (IOV_MAX each), not one each */
  total = 0;
  for (size_t i = 0; i < plan.ng; i++) {
    lv[i] = (struct iovec){all + total, plan.g[i].osize};
    rv[i] = (struct iovec){(void *)plan.g[i].oa, plan.g[i].osize};
    total += (plan.g[i].osize + 15) & ~(size_t)15;
  }
  for (size_t i = 0; i < plan.ng; i += 1024) {
    size_t k = plan.ng - i < 1024 ? plan.ng - i : 1024, want = 0;
    for (size_t j = 0; j < k; j++)
      want += lv[i + j].iov_len;
    if (process_vm_readv(c->old_pid, lv + i, k, rv + i, k, 0) != (ssize_t)want) {
      conflict(c, "reading the old version's globals: %s", strerror(errno));
      return -1;
    }
  }
  size_t reinit_kept = 0, reinit_refused = 0, redirected = 0, nw;
  for (size_t i = 0; i < plan.ng; i++) {
    struct gplan *g = &plan.g[i];
    unsigned char *dst = (unsigned char *)g->na;
    val = lv[i].iov_base;
    if (plan.snap && global_unchanged(g->oa, val, g->osize)) {
      /* never changed since the old startup: the new startup's value, unless
       * it points elsewhere than the old one does (docs/update.md) */
      if (global_reinit_ok(val, dst, g->osize < g->size ? g->osize : g->size,
                           !g->xplan && g->osize == g->size)) {
        reinit_kept++;
        g->reinit = 1;
        uintptr_t *w = global_words(g, &nw);
        rewrite(w, nw);
        continue;
      }
      reinit_refused++;
    }
    if (g->xplan && mcr_xform_global_kept(g->na)) {
      kept++; /* a static table matched by content: the new one is the same */
      continue;
    }
    if ((g->xplan || g->bad) &&
        mcr_xform_unmodified(g->oinit, g->oa, val, g->osize, c->image)) {
      kept++; /* never written by the old program: no state, the new table stays */
      continue;
    }
    int r = put_value(c, g, val, dst, NULL);
    if (r < 0)
      return -1;
    if (r == 0 && reinit_on()) {
      uintptr_t *w = global_words(g, &nw);
      redirected += redirect(w, nw);
    }
    converted += r == 0 && g->xplan;
    bytes += r == 0 ? g->size : 0;
  }
  /* the argument block: the old process's arrays and strings (args.h) */
  char why[256];
  ssize_t ab = mcr_args_copy(c->old_pid, why, sizeof(why));
  if (ab >= 0)
    mcr_buf_printf(c->report, "note the argument and environment block (%zd bytes) copied from "
                              "the old process\n", ab);
  else
    mcr_buf_printf(c->report, "note the argument and environment block is this process's own, "
                              "not the old one's: %s\n", why);
  phase(c, "globals", t,
        "%zu globals (%.1f kB) copied, %zu of changed type converted, %zu static tables of "
        "changed type kept as the new version has them, %zu new ones keep their initial value",
        plan.ng, bytes / 1e3, converted, kept, plan.fresh);
  if (plan.kept_new)
    mcr_buf_printf(c->report, "note %zu new globals keep the value the new startup set "
                              "(--keep-new%s)\n", plan.kept_new, reinit_on() ? ", --reinit" : "");
  if (reinit_on())
    mcr_buf_printf(c->report, "note --reinit: %zu globals the old process never changed since "
                              "its startup keep the new startup's value%s, %zu such globals held "
                              "pointers to old state the new value does not match and were "
                              "copied; %zu pointers in copied globals moved to reinitialized "
                              "startup objects\n",
                   reinit_kept, plan.snap ? "" : " (none: the old process has no snapshot of "
                                                 "its data)",
                   reinit_refused, redirected);
  if (npids_mapped)
    mcr_buf_printf(c->report, "note %zu pid_t fields of globals named another process of the "
                              "tree: given its new pid\n", npids_mapped);
  return c->conflicts ? -1 : 0;
}

#define TLS_THREADS 1024 /* (the threads read, here and in step_tls) */

/* The distinct classes of the new threads nt[0..nn), in order: their number. */
static size_t new_classes(const struct mcr_tls_thread *nt, size_t nn, const char **classes)
{
  size_t nclasses = 0;
  for (size_t j = 0; j < nn; j++) {
    size_t q = 0;
    while (q < nclasses && strcmp(classes[q], nt[j].cls))
      q++;
    if (q == nclasses)
      classes[nclasses++] = nt[j].cls;
  }
  return nclasses;
}

/* The new thread paired with old thread i: the k-th old thread of its class
 * and the k-th new one of the class it is in the new version (classmatch.h:
 * the same name, or one inlined differently). nn if none. */
static size_t new_thread_of(uint32_t i, const char **ocls, uint32_t n,
                            const struct mcr_tls_thread *nt, size_t nn, const char **classes,
                            size_t nclasses)
{
  unsigned k = 0;
  for (uint32_t p = 0; p < i; p++)
    k += !strcmp(ocls[p], ocls[i]);
  long q = mcr_class_pick(ocls[i], ocls, n, classes, nclasses);
  if (q >= 0)
    for (size_t j = 0; j < nn; j++)
      if (!strcmp(nt[j].cls, classes[q]) && k-- == 0)
        return j;
  return nn;
}

/* ---- registered stack objects (stackobj.h) ---- */

static int read_stack_objects(struct ctx *c, struct mcr_buf *st)
{
  uint32_t n = mcr_buf_get_u32(st);
  size_t total = 0;

  memset(&sobj, 0, sizeof(sobj));
  if (st->bad || n > TLS_THREADS) {
    conflict(c, "the old version's stack objects could not be read");
    return -1;
  }
  const char **ocls = mcr_arena_alloc(c->arena, (n + 1) * sizeof(*ocls), 8);
  uint32_t *on = mcr_arena_alloc(c->arena, (n + 1) * sizeof(*on), 8);
  struct mcr_stack_obj *oo =
      mcr_arena_alloc(c->arena, ((size_t)n * MCR_STACK_OBJS + 1) * sizeof(*oo), 8);
  if (!ocls || !on || !oo)
    return -1;
  for (uint32_t i = 0; i < n; i++) {
    ocls[i] = mcr_buf_get_str(st);
    on[i] = mcr_buf_get_u32(st);
    if (on[i] > MCR_STACK_OBJS)
      st->bad = 1;
    for (uint32_t k = 0; k < on[i] && !st->bad; k++) {
      struct mcr_stack_obj *o = &oo[i * MCR_STACK_OBJS + k];
      o->addr = (uintptr_t)mcr_buf_get_u64(st);
      o->size = mcr_buf_get_u64(st);
      o->tag = mcr_buf_get_u32(st);
    }
    total += on[i];
  }
  if (st->bad) {
    conflict(c, "the old version's stack objects could not be read");
    return -1;
  }
  if (!total)
    return 0;
  sobj.old_lo = mcr_arena_alloc(c->arena, total * sizeof(*sobj.old_lo), 8);
  sobj.new_lo = mcr_arena_alloc(c->arena, total * sizeof(*sobj.new_lo), 8);
  sobj.size = mcr_arena_alloc(c->arena, total * sizeof(*sobj.size), 8);
  sobj.tag = mcr_arena_alloc(c->arena, total * sizeof(*sobj.tag), 8);
  sobj.used = mcr_arena_alloc(c->arena, total, 8);
  struct mcr_tls_thread *nt = mcr_arena_alloc(c->arena, TLS_THREADS * sizeof(*nt), 8);
  struct mcr_qthread **qs = mcr_arena_alloc(c->arena, TLS_THREADS * sizeof(*qs), 8);
  const char **classes = mcr_arena_alloc(c->arena, (TLS_THREADS + 1) * sizeof(*classes), 8);
  if (!sobj.old_lo || !sobj.new_lo || !sobj.size || !sobj.tag || !sobj.used || !nt || !qs ||
      !classes)
    return -1;
  memset(sobj.used, 0, total);
  sobj.no_lo = mcr_arena_alloc(c->arena, total * sizeof(*sobj.no_lo), 8);
  sobj.no_size = mcr_arena_alloc(c->arena, total * sizeof(*sobj.no_size), 8);
  sobj.no_why = mcr_arena_alloc(c->arena, total * sizeof(*sobj.no_why), 8);
  if (!sobj.no_lo || !sobj.no_size || !sobj.no_why)
    return -1;
  size_t nn = mcr_tls_threads(nt, TLS_THREADS), nq = mcr_threads_qstates(qs, TLS_THREADS);
  size_t nclasses = 0;
  nn = nn < TLS_THREADS ? nn : TLS_THREADS;
  nq = nq < TLS_THREADS ? nq : TLS_THREADS;
  nclasses = new_classes(nt, nn, classes);
  for (uint32_t i = 0; i < n; i++) {
    /* the thread: as step_tls pairs them (the k-th of its class) */
    size_t j = on[i] ? new_thread_of(i, ocls, n, nt, nn, classes, nclasses) : nn;
    const struct mcr_qthread *q = NULL;
    for (size_t x = 0; j < nn && x < nq && !q; x++)
      if (qs[x]->tid == nt[j].tid)
        q = qs[x];
    for (uint32_t a = 0; a < on[i]; a++) {
      const struct mcr_stack_obj *o = &oo[i * MCR_STACK_OBJS + a];
      uint32_t tag = o->tag < c->tag_limit ? c->tag_map[o->tag] : 0, r = 0;
      const struct mcr_stack_obj *m = NULL;
      for (uint32_t b = 0; b < a; b++)
        r += oo[i * MCR_STACK_OBJS + b].tag == o->tag;
      for (unsigned b = 0; q && tag && b < q->nobjs && !m; b++)
        if (q->objs[b].tag == tag && r-- == 0)
          m = &q->objs[b];
      const char *key = NULL, *why = NULL;
      if (!tag)
        why = "whose local variable has no counterpart in the new version (its function "
              "or the variable is gone, or renamed)";
      else if (!m)
        why = "whose new counterpart is not registered on the new thread's stack (no "
              "such thread, a call not made, or more than 16 variables)";
      else if (m->size != o->size || mcr_xform_changed_type(tag, &key))
        why = "whose type changed: mcr does not convert a local variable";
      if (why) {
        /* (pointers to it stay a conflict: stack_refusal says why) */
        struct mcr_typetab *tt = mcr_arena_alloc(c->arena, sizeof(*tt), 8);
        struct mcr_site_rec rec;
        char d[512];
        if (tag && tt && mcr_site_record(tag, tt, &rec) == 0)
          snprintf(d, sizeof(d), "%s's %s on the stack of a %s thread, %s",
                   mcr_typetab_str(tt, rec.function), mcr_typetab_str(tt, rec.evidence),
                   ocls[i], why);
        else
          snprintf(d, sizeof(d), "a registered local variable (%lu bytes) on the stack of a "
                   "%s thread, %s", (unsigned long)o->size, ocls[i], why);
        sobj.no_lo[sobj.nno] = o->addr;
        sobj.no_size[sobj.nno] = o->size;
        sobj.no_why[sobj.nno] = mcr_arena_strdup(c->arena, d);
        if (!sobj.no_why[sobj.nno])
          sobj.no_why[sobj.nno] = "a registered local variable that was not paired";
        sobj.nno++;
        if (key || (m && m->size != o->size))
          sobj.changed++;
        else
          sobj.unpaired++;
        continue;
      }
      sobj.old_lo[sobj.n] = o->addr;
      sobj.new_lo[sobj.n] = m->addr;
      sobj.size[sobj.n] = o->size;
      sobj.tag[sobj.n] = tag;
      sobj.n++;
    }
  }
  return 0;
}

static int in_stack_object(uintptr_t v)
{
  for (size_t i = 0; i < sobj.n; i++)
    if (v >= sobj.old_lo[i] && v - sobj.old_lo[i] < sobj.size[i])
      return 1;
  return 0;
}

/* After the globals and the thread-local variables: each paired stack object
 * something points into (a global, a heap object, another such stack object:
 * a pointer into it was translated) gets its old value, as a global does
 * (pointers into the old program and into paired stack objects translated).
 * The others keep the new thread's values, as the rest of its stack does: the
 * new startup built them, and nothing but their own function reaches them. */
static int step_stack_objects(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  size_t bytes = 0, copied = 0, dead = 0;
  uint8_t *done;

  if (!sobj.n && !sobj.unpaired && !sobj.changed)
    return 0;
  sobj.regions = mcr_arena_alloc(c->arena, (sobj.n + 1) * sizeof(*sobj.regions), 8);
  done = mcr_arena_alloc(c->arena, sobj.n + 1, 8);
  if (!sobj.regions || !done)
    return -1;
  memset(done, 0, sobj.n + 1);
  for (int progress = 1; progress;) { /* (a copy may point into another one) */
    progress = 0;
    for (size_t i = 0; i < sobj.n; i++) {
      if (!sobj.used[i] || done[i])
        continue;
      done[i] = 1;
      progress = 1;
      struct mcr_typetab *tt = mcr_arena_alloc(c->arena, sizeof(*tt), 8);
      struct mcr_site_rec rec;
      unsigned char *val = mcr_arena_alloc(c->arena, sobj.size[i] + 16, 16);
      char name[300];
      if (!tt || !val)
        return -1;
      int typed = mcr_site_record(sobj.tag[i], tt, &rec) == 0 && rec.type != MCR_NO_TYPE;
      snprintf(name, sizeof(name), "%s's %s on the stack",
               typed ? mcr_typetab_str(tt, rec.function) : "?",
               typed && *mcr_typetab_str(tt, rec.evidence) ? mcr_typetab_str(tt, rec.evidence)
                                                            : "local variable");
      struct iovec l = {val, sobj.size[i]}, r = {(void *)sobj.old_lo[i], sobj.size[i]};
      if (process_vm_readv(c->old_pid, &l, 1, &r, 1, 0) != (ssize_t)sobj.size[i]) {
        conflict(c, "reading %s in the old process: %s", name, strerror(errno));
        return -1;
      }
      /* a word into the old stack outside every paired object is dead: a
       * registered variable pointing to a local whose address never escaped,
       * or to a frame gone since (nginx's cache manager's ident[], whose
       * words it never sets, bar the last). It keeps the new variable's. */
      for (size_t off = (sizeof(uintptr_t) - sobj.old_lo[i] % sizeof(uintptr_t)) %
                        sizeof(uintptr_t);
           off + sizeof(uintptr_t) <= sobj.size[i]; off += sizeof(uintptr_t)) {
        uintptr_t v;
        memcpy(&v, val + off, sizeof(v));
        if (!mcr_image_in_old_stack(c->image, v) || in_stack_object(v))
          continue;
        memcpy(val + off, (const unsigned char *)sobj.new_lo[i] + off, sizeof(v));
        dead++;
      }
      struct gplan g = {.name = mcr_arena_strdup(c->arena, name), .oa = sobj.old_lo[i],
                        .na = sobj.new_lo[i], .size = sobj.size[i], .osize = sobj.size[i],
                        .tt = typed ? tt : NULL, .type = typed ? rec.type : 0};
      if (put_value(c, &g, val, (unsigned char *)sobj.new_lo[i], NULL) < 0)
        return -1;
      sobj.regions[sobj.nregions++] = (struct mcr_xform_region){
          sobj.new_lo[i], sobj.new_lo[i] + sobj.size[i], g.tt, g.type, g.name, 0};
      bytes += sobj.size[i];
      copied++;
    }
  }
  phase(c, "stack-objects", t, "%zu of %zu registered stack objects paired are pointed to: "
                               "copied (%zu bytes, %zu dead words kept new); %zu unpaired, %zu "
                               "of changed types",
        copied, sobj.n, bytes, dead, sobj.unpaired, sobj.changed);
  return c->conflicts ? -1 : 0;
}

/* ---- thread-local variables ---- */

/* In the pause: each old thread's thread-local variables into the new thread
 * paired with it (tls.h: the k-th of its class, by creation), as the globals
 * are copied. The new threads without an old counterpart keep their own
 * values, with their references to replaced startup objects rewritten as on
 * their stacks. */
static int step_tls(struct ctx *c, struct mcr_buf *st)
{
  uint64_t t = mcr_update_now_ns();
  uint32_t n = mcr_buf_get_u32(st);
  size_t copied = 0, converted = 0, paired = 0, words = 0;

  if (st->bad || n > TLS_THREADS) {
    conflict(c, "the old version's thread list is malformed");
    return -1;
  }
  const char **ocls = mcr_arena_alloc(c->arena, (n + 1) * sizeof(*ocls), 8);
  uintptr_t *oblock = mcr_arena_alloc(c->arena, (n + 1) * sizeof(*oblock), 8);
  if (!ocls || !oblock)
    return -1;
  for (uint32_t i = 0; i < n; i++) {
    ocls[i] = mcr_buf_get_str(st);
    oblock[i] = (uintptr_t)mcr_buf_get_u64(st);
  }
  if (st->bad) {
    conflict(c, "the old version's thread list is malformed");
    return -1;
  }
  if (!plan.ntv)
    return 0; /* the program has none (or none the old version had) */
  struct mcr_tls_thread *nt = mcr_arena_alloc(c->arena, TLS_THREADS * sizeof(*nt), 8);
  unsigned char *used = mcr_arena_alloc(c->arena, TLS_THREADS, 1);
  c->tls_regions = mcr_arena_alloc(c->arena, TLS_THREADS * plan.ntv * sizeof(*c->tls_regions), 8);
  size_t maxo = 0;
  for (size_t i = 0; i < plan.ntv; i++)
    maxo = plan.tv[i].osize > maxo ? plan.tv[i].osize : maxo;
  unsigned char *val = mcr_arena_alloc(c->arena, maxo + 16, 16);
  if (!nt || !used || !c->tls_regions || !val)
    return -1;
  size_t nn = mcr_tls_threads(nt, TLS_THREADS);
  nn = nn < TLS_THREADS ? nn : TLS_THREADS;
  memset(used, 0, nn);
  if (n && !oblock[0]) {
    mcr_buf_printf(c->report, "note thread-local variables not transferred: the old process "
                              "could not locate its threads' TLS blocks\n");
    n = 0;
  }
  size_t lost = 0, nclasses = 0;
  const char *lost_cls = NULL;
  const char **classes = mcr_arena_alloc(c->arena, (nn + 1) * sizeof(*classes), 8);
  if (!classes)
    return -1;
  nclasses = new_classes(nt, nn, classes);
  for (uint32_t i = 0; i < n; i++) {
    size_t j = new_thread_of(i, ocls, n, nt, nn, classes, nclasses);
    if (j == nn || !nt[j].block) {
      lost++;
      lost_cls = ocls[i];
      continue;
    }
    used[j] = 1;
    paired++;
    struct tls_pair tp = {oblock[i], nt[j].block};
    for (size_t v = 0; v < plan.ntv; v++) {
      struct gplan g = plan.tv[v]; /* at this thread's addresses */
      g.oa += tp.ob;
      g.na += tp.nb;
      struct iovec l = {val, g.osize}, r = {(void *)g.oa, g.osize};
      if (process_vm_readv(c->old_pid, &l, 1, &r, 1, 0) != (ssize_t)g.osize) {
        conflict(c, "reading thread-local variable %s of the old version's thread (%s): %s",
                 g.name, ocls[i], strerror(errno));
        return -1;
      }
      int rc = put_value(c, &g, val, (unsigned char *)g.na, &tp);
      if (rc < 0)
        return -1;
      copied += rc == 0;
      converted += rc == 0 && g.xplan;
    }
  }
  for (size_t j = 0; j < nn; j++) {
    if (!nt[j].block)
      continue;
    for (size_t v = 0; v < plan.ntv; v++) {
      const struct gplan *g = &plan.tv[v];
      uintptr_t a = nt[j].block + g->na;
      if (!used[j] && a % sizeof(uintptr_t) == 0)
        words += rewrite((uintptr_t *)a, g->size / sizeof(uintptr_t));
      c->tls_regions[c->ntls_regions++] =
          (struct mcr_xform_region){a, a + g->size, g->tt, g->type, g->name, 0};
    }
  }
  if (lost)
    mcr_buf_printf(c->report, "note thread-local variables of %zu old thread%s not transferred: "
                              "no thread of %s class in the new version (%s)\n",
                   lost, lost == 1 ? "" : "s", lost == 1 ? "its" : "their", lost_cls);
  phase(c, "tls", t, "%zu thread-local variables copied in %zu thread pairs (%zu values, %zu of "
                     "changed type converted); %zu new threads without a pair kept theirs (%zu "
                     "references rewritten), %zu new variables keep their initial value",
        plan.ntv, paired, copied, converted, nn - paired, words, plan.tls_fresh);
  return c->conflicts ? -1 : 0;
}

/* ---- anonymous mappings of the startup ---- */

/* The old startup's anonymous mappings (nginx's shared memory zones, a server's
 * own arena): the new startup mapped each counterpart at the old address
 * (startup.c), so the pointers the globals and the heap hold into them stay
 * right; their contents are the old process's, copied here (a shared one
 * included: this process replaces the only one that used it). One without a
 * counterpart at that address would leave those pointers dangling: a conflict. */
static int step_anon(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  struct mcr_anon_map m[64];
  size_t n = mcr_startup_anon_maps(m, 64), copied = 0, gone = 0;
  uint64_t bytes = 0;

  if (n > 64)
    conflict(c, "startup\tthe old startup made %zu anonymous mappings, more than the 64 the "
                "transfer handles", n);
  for (size_t i = 0; i < n && i < 64; i++) {
    if (!m[i].paired) {
      conflict(c, "startup\tthe old startup mapped %llu bytes at 0x%llx (%s); the new startup "
                  "made no such mapping there, so pointers into it would dangle\t%s\t\t\t\t\t%s"
                  "\tmap the same length with the same protection and flags at the same call "
                  "in the new version's startup",
               (unsigned long long)m[i].len, (unsigned long long)m[i].addr, m[i].detail,
               m[i].detail, m[i].stack);
      continue;
    }
    if (copy_same(c->old_pid, (uintptr_t)m[i].addr, (size_t)m[i].len) != 0) {
      if (errno == EFAULT) { /* unmapped since by the old process: nothing points there */
        gone++;
        continue;
      }
      conflict(c, "startup\treading the old process's anonymous mapping at 0x%llx (%llu bytes): "
                  "%s", (unsigned long long)m[i].addr, (unsigned long long)m[i].len,
               strerror(errno));
      continue;
    }
    copied++;
    bytes += m[i].len;
  }
  if (n)
    phase(c, "mappings", t, "%zu anonymous mappings of the startup (%.1f kB) copied at their "
                            "addresses, %zu unmapped since", copied, bytes / 1e3, gone);
  return c->conflicts ? -1 : 0;
}

/* Calls fn for every registration of process pid's epoll instances, read
 * from /proc/PID/fdinfo: lines "tfd: N events: X data: HEX  pos:...". */
static void epoll_regs(pid_t pid, void (*fn)(void *arg, int epfd, int tfd, uint32_t events,
                                             uint64_t data),
                       void *arg)
{
  char path[64], buf[8192];
  snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)pid);
  DIR *d = opendir(path);
  struct dirent *e;
  if (!d)
    return;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC), epfd = atoi(e->d_name);
    if (fd < 0)
      continue;
    ssize_t len;
    size_t have = 0;
    while ((len = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
      have += (size_t)len;
      buf[have] = 0;
      char *last = strrchr(buf, '\n');
      if (!last)
        break;
      for (char *p = buf; p && p < last; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        char *ev, *dat;
        if (strncmp(p, "tfd:", 4) || !(ev = strstr(p, " events: ")) ||
            !(dat = strstr(p, " data: ")) || dat > strchr(p, '\n'))
          continue;
        fn(arg, epfd, (int)strtol(p + 4, NULL, 10), (uint32_t)strtoul(ev + 9, NULL, 16),
           (uint64_t)strtoull(dat + 7, NULL, 16));
      }
      have = strlen(last + 1);
      memmove(buf, last + 1, have);
    }
    close(fd);
  }
  closedir(d);
}

/* ---- epoll registrations' data pointing into the program image ----
 * A registration's data is the program's word, kept by the kernel: kvstore's
 * worker registers its channel with the address of a global as the data. The
 * epoll instances are the old process's, so after an update that word holds
 * the old executable's address, which the new version's loop compares with
 * its own (or calls through). Like every other word pointing into the old
 * image (docs/update.md, "Pointers into the program image"), it is rewritten,
 * with EPOLL_CTL_MOD and the same events: but only after the commit, since
 * the instance is shared with the old process until then, and the old
 * process must find its own words if the update rolls back. */
#define MAX_EPOLL_FIX 1024
static struct epoll_fix {
  int epfd, tfd;
  uint32_t events;
  uint64_t data;
} epoll_fix[MAX_EPOLL_FIX];
static size_t nepoll_fix;

#define MAX_EPOLL_WORDS 65536

struct epoll_scan {
  struct ctx *c;
  size_t found;
};

/* One registration of the old process: its data word kept for the transform,
 * and noted for the rewrite if it points into the old image. */
static void scan_epoll_reg(void *arg, int epfd, int tfd, uint32_t events, uint64_t data)
{
  struct epoll_scan *es = arg;
  struct ctx *c = es->c;
  uintptr_t nv;
  char why[256];

  if (c->epoll_words && c->nepoll_words < MAX_EPOLL_WORDS) {
    c->epoll_regs[c->nepoll_words] = (struct epoll_fix){epfd, tfd, events, data};
    c->epoll_words[c->nepoll_words++] = (uintptr_t)data;
  }
  if (!mcr_image_is_old(c->image, (uintptr_t)data))
    return;
  es->found++;
  if (translate(c->image, (uintptr_t)data, &nv, why, sizeof(why)) != 0) {
    conflict(c, "image\tthe data of descriptor %d's registration in epoll instance %d is 0x%llx, "
                "%s: %s\tepoll instance %d",
             tfd, epfd, (unsigned long long)data,
             mcr_image_in_old_stack(c->image, (uintptr_t)data)
                 ? "a pointer into a stack"
                 : "a pointer into the old program with no counterpart in the new one",
             why, epfd);
  } else if (nepoll_fix == MAX_EPOLL_FIX) {
    conflict(c, "image\tmore than %d epoll registrations hold data pointing into the old "
                "program\tepoll instance %d", MAX_EPOLL_FIX, epfd);
  } else {
    epoll_fix[nepoll_fix++] = (struct epoll_fix){epfd, tfd, events, (uint64_t)nv};
  }
}

/* In the pause, before the transform: the old process's registrations, read
 * once (one file per descriptor in /proc/PID/fdinfo). Its epoll instances
 * are this process's at the same numbers after step_fds. */
static int step_epoll(struct ctx *c)
{
  struct epoll_scan es = {c, 0};
  uint64_t t = mcr_update_now_ns();

  nepoll_fix = 0;
  c->epoll_words = mcr_arena_alloc(c->arena, MAX_EPOLL_WORDS * sizeof(uintptr_t), 8);
  c->epoll_regs = mcr_arena_alloc(c->arena, MAX_EPOLL_WORDS * sizeof(*c->epoll_regs), 8);
  if (!c->epoll_regs)
    c->epoll_words = NULL;
  c->nepoll_words = 0;
  epoll_regs(c->old_pid, scan_epoll_reg, &es);
  if (es.found)
    phase(c, "epoll", t, "%zu epoll registrations hold data pointing into the program image: "
                         "rewritten after the commit", es.found);
  return c->conflicts ? -1 : 0;
}

void mcr_transfer_commit_epoll(struct mcr_buf *report)
{
  size_t failed = 0;
  for (size_t i = 0; i < nepoll_fix; i++) {
    struct epoll_event ev = {.events = epoll_fix[i].events, .data.u64 = epoll_fix[i].data};
    int rc;
    if (ev.events & EPOLLEXCLUSIVE) /* EPOLL_CTL_MOD refuses those: registered again (the
                                     * new registration reports what is ready already) */
      rc = epoll_ctl(epoll_fix[i].epfd, EPOLL_CTL_DEL, epoll_fix[i].tfd, NULL) != 0
               ? -1
               : epoll_ctl(epoll_fix[i].epfd, EPOLL_CTL_ADD, epoll_fix[i].tfd, &ev);
    else
      rc = epoll_ctl(epoll_fix[i].epfd, EPOLL_CTL_MOD, epoll_fix[i].tfd, &ev);
    if (rc != 0 && ++failed == 1 && report)
      mcr_buf_printf(report, "note after the commit, the data of descriptor %d's registration "
                             "in epoll instance %d could not be rewritten: %s\n",
                     epoll_fix[i].tfd, epoll_fix[i].epfd, strerror(errno));
  }
  nepoll_fix = 0;
}

/* In the pause, after the stacks: objects of changed types (xform.c), with the
 * globals (precisely, by type) and the parked stacks (conservatively) scanned for
 * pointers to them. */
static int step_transform(struct ctx *c)
{
  struct mcr_qthread *qs[1024];
  size_t nq = mcr_threads_qstates(qs, 1024);
  struct mcr_xform_region *r =
      mcr_arena_alloc(c->arena, (plan.ng + c->ntls_regions + sobj.nregions + nq + 1) * sizeof(*r), 8);
  size_t n = 0;
  if (!r)
    return -1;
  for (size_t i = 0; i < plan.ng; i++)
    r[n++] = (struct mcr_xform_region){plan.g[i].na, plan.g[i].na + plan.g[i].size, plan.g[i].tt,
                                       plan.g[i].type, plan.g[i].name, 0};
  for (size_t i = 0; i < c->ntls_regions; i++) /* thread-local variables, by type too */
    r[n++] = c->tls_regions[i];
  for (size_t i = 0; i < sobj.nregions; i++) /* and the stack objects copied */
    r[n++] = sobj.regions[i];
  for (size_t i = 0; i < nq && i < 1024; i++)
    if (qs[i]->tid && qs[i]->park_sp && qs[i]->stack_hi > qs[i]->park_sp)
      r[n++] = (struct mcr_xform_region){qs[i]->park_sp, qs[i]->stack_hi, NULL, 0,
                                         "a parked thread's stack", 0};
  /* the kernel holds pointers too: the data of epoll registrations (a
   * connection object, typically), read by step_epoll */
  const struct mcr_renames *rn = mcr_image_renames();
  int declared = rn && rn->epoll_pointers;
  if (c->nepoll_words)
    r[n++] = (struct mcr_xform_region){(uintptr_t)c->epoll_words,
                                       (uintptr_t)(c->epoll_words + c->nepoll_words), NULL, 0,
                                       "an epoll registration's data (kernel)", declared};
  int rc = mcr_xform_heap(r, n, c->fresh, c->nfresh, c->hs, c->report, &c->conflicts);
  /* declared pointers the transform rewrote: given to the kernel after the
   * commit, as image pointers are (step_epoll) */
  size_t moved = 0;
  for (size_t i = 0; rc == 0 && declared && i < c->nepoll_words; i++) {
    struct epoll_fix *e = &c->epoll_regs[i];
    if (c->epoll_words[i] == e->data)
      continue;
    if (nepoll_fix == MAX_EPOLL_FIX) {
      conflict(c, "pinned\tmore than %d epoll registrations hold data to rewrite\tepoll "
                  "instance %d", MAX_EPOLL_FIX, e->epfd);
      rc = -1;
    } else {
      epoll_fix[nepoll_fix++] =
          (struct epoll_fix){e->epfd, e->tfd, e->events, (uint64_t)c->epoll_words[i]};
      moved++;
    }
  }
  if (moved)
    mcr_buf_printf(c->report, "note %zu epoll registrations' data (declared pointers: "
                              "--epoll-data-pointers) follow their moved objects after the "
                              "commit\n", moved);
  return rc;
}

/* ---- synchronization objects in the heap ----
 * A mutex or condition variable inside a heap object was copied with the old
 * process's bookkeeping: a condition variable counts the old threads blocked
 * in it (a signal then goes to a group of waiters that no longer exist: a lost
 * wake-up), a mutex may name an old owner. At quiescence no thread holds a lock
 * or waits in a way that must survive (the old threads are abandoned, the new
 * ones are parked before their waits), so each one is reset to its idle state,
 * keeping its attributes. Globals keep the new version's (plan_globals). */

struct sync_ctx {
  uint8_t *memo; /* per tag: 0 not looked at, 1 nothing to reset, 2 resets */
  uint32_t limit;
  size_t mutexes, conds, objects;
};

/* Resets the synchronization objects of type t at p (size bytes there; p NULL:
 * only tells); returns whether the type holds any. */
static int sync_reset(struct sync_ctx *s, const struct mcr_typetab *tt, uint32_t t,
                      unsigned char *p, uint64_t size, int depth)
{
  struct mcr_type_rec tr;
  int any = 0;
  if (depth > 24 || t == MCR_NO_TYPE || mcr_typetab_type(tt, t, &tr) != 0)
    return 0;
  const char *name = mcr_typetab_str(tt, tr.name);
  switch (tr.kind) {
  case MCR_TYPE_TYPEDEF:
    if (name && !strcmp(name, "pthread_mutex_t") && size >= sizeof(pthread_mutex_t)) {
      if (p) {
        pthread_mutex_t *m = (pthread_mutex_t *)p;
        int kind = m->__data.__kind;
        memset(m, 0, sizeof(*m));
        m->__data.__kind = kind;
        s->mutexes++;
      }
      return 1;
    }
    if (name && !strcmp(name, "pthread_cond_t") && size >= sizeof(pthread_cond_t)) {
      if (p) {
        pthread_cond_t *cv = (pthread_cond_t *)p;
        unsigned attrs = cv->__data.__wrefs & 3; /* clock and process-shared bits */
        memset(cv, 0, sizeof(*cv));
        cv->__data.__wrefs = attrs;
        s->conds++;
      }
      return 1;
    }
    return sync_reset(s, tt, tr.target, p, size, depth + 1);
  case MCR_TYPE_STRUCT:
    for (uint32_t i = 0; i < tr.count; i++) {
      struct mcr_member_rec m;
      if (mcr_typetab_member(tt, tr.first_member + i, &m) == 0 && !m.bit_size &&
          m.offset_bits / 8 < size)
        any |= sync_reset(s, tt, m.type, p ? p + m.offset_bits / 8 : NULL,
                          size - m.offset_bits / 8, depth + 1);
    }
    return any;
  case MCR_TYPE_ARRAY: {
    struct mcr_type_rec e;
    if (mcr_typetab_type(tt, tr.target, &e) != 0)
      return 0;
    for (int i = 0; i < 8 && e.kind == MCR_TYPE_TYPEDEF && e.target != MCR_NO_TYPE; i++)
      if (mcr_typetab_type(tt, e.target, &e) != 0)
        return 0;
    if (!e.size || (e.kind != MCR_TYPE_STRUCT && e.kind != MCR_TYPE_UNION))
      return 0;
    if (!p)
      return sync_reset(s, tt, tr.target, NULL, e.size, depth + 1);
    for (uint32_t i = 0; i < tr.count && (uint64_t)(i + 1) * e.size <= size; i++)
      any |= sync_reset(s, tt, tr.target, p + (uint64_t)i * e.size, e.size, depth + 1);
    return any;
  }
  default: /* unions: which member is live is unknown */
    return 0;
  }
}

static struct sync_ctx sync_plan;

/* Before the pause: which of this version's allocation sites hold a mutex or
 * condition variable (most programs: none, and the step is skipped). */
static int plan_sync(void)
{
  size_t nnew = (size_t)(__stop_mcr_sites - __start_mcr_sites), found = 0;
  sync_plan.limit = MCR_TAG_MAX + 1;
  if (!(sync_plan.memo = mcr_arena_alloc(plan.arena, sync_plan.limit, 8)))
    return -1;
  for (size_t i = 0; i < nnew; i++) {
    struct mcr_site *site = &__start_mcr_sites[i];
    struct mcr_typetab tt;
    struct mcr_site_rec rec;
    if (!site->blob || mcr_typetab_open(&tt, site->blob, site->blob->total_size, NULL) != 0 ||
        mcr_typetab_site(&tt, site->index, &rec) != 0 || rec.type == MCR_NO_TYPE ||
        !sync_reset(&sync_plan, &tt, rec.type, NULL, UINT64_MAX, 0))
      continue;
    uint32_t id = mcr_site_id_of(site);
    if (id < sync_plan.limit) {
      sync_plan.memo[id] = 2;
      found++;
    }
  }
  if (!found)
    sync_plan.memo = NULL;
  return 0;
}

static int sync_object(const struct mcr_object *o, void *arg)
{
  struct sync_ctx *s = arg;
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  struct mcr_type_rec tr;

  if (o->tag >= s->limit || s->memo[o->tag] != 2)
    return 0;
  if (mcr_site_record(o->tag, &tt, &rec) != 0 || rec.type == MCR_NO_TYPE ||
      mcr_typetab_type(&tt, rec.type, &tr) != 0)
    return 0;
  /* the element size: an object may be an array of its site's type */
  for (int i = 0; i < 8 && tr.kind == MCR_TYPE_TYPEDEF && tr.target != MCR_NO_TYPE; i++)
    if (mcr_typetab_type(&tt, tr.target, &tr) != 0)
      return 0;
  if (!tr.size)
    return 0;
  for (uint64_t off = 0; off + tr.size <= o->size; off += tr.size)
    sync_reset(s, &tt, rec.type, (unsigned char *)o->base + off, tr.size, 0);
  s->objects++;
  return 0;
}

static int step_sync(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  if (!sync_plan.memo)
    return 0; /* no allocation site holds one */
  sync_plan.mutexes = sync_plan.conds = sync_plan.objects = 0;
  mcr_heap_foreach(sync_object, &sync_plan);
  phase(c, "heap-sync", t, "%zu mutexes and %zu condition variables reset in %zu objects",
        sync_plan.mutexes, sync_plan.conds, sync_plan.objects);
  return 0;
}

/* ---- stacks: this process's startup objects -> the old process's ---- */

struct pair {
  uintptr_t nbase, nend, obase;
  size_t size;  /* the new object's */
  size_t osize; /* the old one's: another only for a piece (resized) */
  int state;   /* 0 not checked yet, 1 the old object is there, 2 it is not */
  int changes; /* -1 not checked yet; 1 its type changed (converted by the transform) */
  int piece;   /* a piece of a pool block (startup.h), not a heap object of its own */
  int reinit;  /* the old object never changed since its startup: this process's stays,
                * and pointers to the old one are moved to it (step_reinit) */
  uint64_t ohash; /* the old record's hash of its bytes when its startup ended (0: none) */
  uint32_t osite; /* a piece: the old record's site (old tag), 0 if unknown */
  int container;  /* a heap object holding paired pieces (a pool block): with --reinit,
                   * its pieces decide, and the rest of it (strings the pool handed out,
                   * its header) is nobody's counterpart, as the layouts may differ */
  uint32_t nsite; /* a piece: the new record's site (new tag) */
  int resized;    /* a piece whose new counterpart has another size: never replaced by
                   * the old one (rewrite), only replacing it (--reinit) */
  int typed;      /* a piece of a changed type: offsets into it map field by field
                   * (TYPED_FIELDS), or only its start maps (TYPED_START: the change
                   * has no plan for its sizes) */
  int converted;  /* a piece the old process changed since its startup, of a changed
                   * type: its state was converted into the new startup's (step_reinit) */
  int untyped;    /* a resized piece of no type replaced (step_reinit): offsets into it
                   * map only by elem, the struct typed pointers into it say its
                   * elements are (step_redirect), else only its start maps */
  const struct mcr_xplan *elem;
  const char *elem_name;
  int elem_bad;   /* pointers into it name two element types */
  int aligned;    /* a resized piece whose call stack made as many startup pieces in
                   * the old process as in this one, each with a counterpart: the
                   * pairing by ordinal holds (plan_pairs) */
};

enum { TYPED_FIELDS = 1, TYPED_START = 2 };

/* Whether the old object of q is in the adopted heap: a heap object of its own
 * with that address and size, or a piece inside a live object. */
static int old_there(const struct pair *q)
{
  struct mcr_object o;
  if (mcr_heap_find((void *)q->obase, &o) != 0)
    return 0;
  if (q->piece)
    return (uintptr_t)o.base < q->obase && q->obase + q->osize <= (uintptr_t)o.base + o.size;
  return (uintptr_t)o.base == q->obase && o.size == q->osize;
}

/* Words rewrite() leaves to late_rewrite, and their pairs (in the ctx's arena). */
static struct {
  struct late_word {
    uintptr_t *w;
    const struct pair *q;
  } *v;
  size_t n, cap, lost;
} late;

static int cmp_pair(const void *a, const void *b)
{
  const struct pair *x = a, *y = b;
  return x->nbase < y->nbase ? -1 : x->nbase > y->nbase;
}

static struct pair *find_pair(struct pair *p, size_t n, uintptr_t v)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (v < p[mid].nbase)
      hi = mid;
    else if (v >= p[mid].nend)
      lo = mid + 1;
    else
      return &p[mid];
  }
  return NULL;
}

/* Pairs of this process's startup objects with the old process's, by (ID,
 * ordinal), built before the pause; whether the old object is still there
 * (freed since and its address reused: no match) is checked in the pause, for
 * the pairs a reference actually points into. */
static struct {
  struct pair *p;
  size_t np;
  size_t nobj; /* p[0, nobj): heap objects, p[nobj, np): pieces, each sorted by nbase (a
                * piece lies inside an object: a lookup tries the pieces first) */
  const struct mcr_startup_alloc **stay; /* startup objects with no pair */
  size_t nstay, nmine;
  struct pair **by_old; /* the pairs that stay this process's (reinit), by obase: pieces
                         * [0, nold_pieces), then objects, each sorted */
  size_t nold, nold_pieces;
} pairs;

/* The pair whose new object holds v: a piece's first, else a heap object's. */
static struct pair *pair_of_new(uintptr_t v)
{
  struct pair *q = find_pair(pairs.p + pairs.nobj, pairs.np - pairs.nobj, v);
  return q ? q : find_pair(pairs.p, pairs.nobj, v);
}

/* Whether the call stack of this process's startup piece at addr made as many
 * pieces in the old process's startup as in this one, each with a counterpart.
 * Pieces are paired by (ID, ordinal): when the new version makes one more or
 * one fewer at that stack before this one, its counterpart is another piece
 * altogether (nginx 1.18's listening array against 1.22's configuration dump
 * array, before IDs left out the frame of an inline helper). A resized piece
 * of an unchanged type may only be replaced when the ordinals line up. */
static int same_piece_count(const struct mcr_startup_alloc *mine, size_t nmine, uintptr_t addr)
{
  const struct mcr_startup_alloc *olds, *me = NULL;
  size_t nold = mcr_startup_old_allocs(&olds), nnew = 0, nolds = 0;

  for (size_t i = 0; i < nmine && !me; i++)
    if (mine[i].addr == addr && (mine[i].flags & MCR_SA_PIECE))
      me = &mine[i];
  if (!me)
    return 0;
  for (size_t i = 0; i < nmine; i++) {
    if (!(mine[i].flags & MCR_SA_PIECE) || mine[i].stack_id != me->stack_id)
      continue;
    const struct mcr_startup_alloc *o = mcr_startup_old_alloc(mine[i].stack_id, mine[i].ordinal);
    if (!o || !(o->flags & MCR_SA_PIECE))
      return 0;
    nnew++;
  }
  for (size_t i = 0; i < nold; i++)
    nolds += (olds[i].flags & MCR_SA_PIECE) && olds[i].stack_id == me->stack_id;
  return nnew == nolds;
}

static int plan_pairs(void)
{
  const struct mcr_startup_alloc *mine;
  size_t nmine = mcr_startup_allocs(&mine);

  pairs.nmine = nmine;
  pairs.p = mcr_arena_alloc(plan.arena, (nmine + 1) * sizeof(*pairs.p), 8);
  pairs.stay = mcr_arena_alloc(plan.arena, (nmine + 1) * sizeof(*pairs.stay), 8);
  if (!pairs.p || !pairs.stay)
    return -1;
  /* heap objects first, then pieces (pair_of_new) */
  for (int pieces = 0; pieces < 2; pieces++) {
    if (pieces)
      pairs.nobj = pairs.np;
    for (size_t i = 0; i < nmine; i++) {
      if (!(mine[i].flags & MCR_SA_PIECE) != !pieces)
        continue;
      const struct mcr_startup_alloc *o =
          mcr_startup_old_alloc(mine[i].stack_id, mine[i].ordinal);
      /* a piece may have changed size (its type, or an array's count, changed):
       * it is then the old one's counterpart for --reinit only (step_reinit) */
      if (o && !(o->flags & MCR_SA_PIECE) == !pieces && (o->size == mine[i].size || pieces))
        pairs.p[pairs.np++] = (struct pair){.nbase = mine[i].addr,
                                            .nend = mine[i].addr + mine[i].size,
                                            .obase = o->addr,
                                            .size = mine[i].size,
                                            .osize = o->size,
                                            .changes = -1,
                                            .piece = pieces,
                                            .ohash = o->hash,
                                            .osite = o->site,
                                            .nsite = mine[i].site,
                                            .resized = o->size != mine[i].size};
      else
        pairs.stay[pairs.nstay++] = &mine[i];
    }
  }
  for (size_t i = pairs.nobj; i < pairs.np; i++)
    if (pairs.p[i].resized)
      pairs.p[i].aligned = same_piece_count(mine, nmine, pairs.p[i].nbase);
  qsort(pairs.p, pairs.nobj, sizeof(*pairs.p), cmp_pair);
  qsort(pairs.p + pairs.nobj, pairs.np - pairs.nobj, sizeof(*pairs.p), cmp_pair);
  for (size_t i = pairs.nobj; i < pairs.np; i++) {
    struct pair *b = find_pair(pairs.p, pairs.nobj, pairs.p[i].nbase);
    if (b)
      b->container = 1;
  }
  return 0;
}

/* A piece of the old process that stays one: this process records it, so that
 * the next update knows it too. */
static void keep_piece(uintptr_t addr, size_t size, uint32_t tag, void *arg)
{
  struct mcr_object o;
  (void)arg;
  if (mcr_pieces_track(tag) && mcr_heap_find((void *)addr, &o) == 0 &&
      (uintptr_t)o.base < addr && addr + size <= (uintptr_t)o.base + o.size)
    mcr_pieces_record((uintptr_t)o.base, addr, size, tag);
}

void mcr_transfer_keep_pieces(void)
{
  mcr_xform_pieces_kept(keep_piece, NULL);
}

void mcr_transfer_committed(void)
{
  mcr_xform_committed();
  /* the globals that kept the new startup's value are this process's startup
   * state for the next update (snapshot.h) */
  for (size_t i = 0; i < plan.ng; i++)
    if (plan.g[i].reinit)
      mcr_snapshot_refresh(plan.g[i].na, plan.g[i].size);
  /* The startup objects this process uses now are the old process's: its
   * records must say so, or the next update pairs its startup objects with
   * the ones discarded here. Checked now, outside the pause. */
  for (size_t i = 0; i < pairs.np; i++) {
    struct pair *q = &pairs.p[i];
    if (q->state == 0)
      q->state = old_there(q) ? 1 : 2;
    if (q->reinit) { /* this process's object stays, and its record with it */
      mcr_startup_alloc_rehash(q->nbase, q->converted);
      continue;
    }
    if (q->state == 1 && !q->resized) /* a converted object may have moved */
      mcr_startup_alloc_retarget(q->nbase, q->changes > 0 ? mcr_xform_where(q->obase) : q->obase);
  }
}

static size_t rewrite(uintptr_t *w, size_t nwords)
{
  size_t k = 0;
  for (size_t i = 0; i < nwords; i++) {
    struct pair *q = pair_of_new(w[i]);
    if (!q || q->reinit || q->resized || (q->container && reinit_on()))
      continue;
    if (!q->state)
      q->state = old_there(q) ? 1 : 2;
    if (q->state == 1 && q->changes < 0)
      q->changes = mcr_xform_changes(q->obase);
    if (q->state == 1 && q->changes) {
      /* an old object of a changed type: this word (this process's, so in
       * the new layout) points into where the conversion puts it, known
       * after the transform (late_rewrite); until then it points into this
       * process's own object, which the transform leaves alone */
      if (late.n < late.cap)
        late.v[late.n++] = (struct late_word){&w[i], q};
      else
        late.lost++;
      k++;
    } else if (q->state == 1) {
      w[i] = q->obase + (w[i] - q->nbase);
      k++;
    }
  }
  return k;
}

/* After the transform: the words rewrite() left for it. */
static int late_rewrite(struct ctx *c)
{
  if (late.lost) {
    conflict(c, "more than %zu references of the new startup point into its objects of changed "
                "types that the old ones replace", late.cap);
    return -1;
  }
  for (size_t i = 0; i < late.n; i++) {
    const struct pair *q = late.v[i].q;
    *late.v[i].w = mcr_xform_where(q->obase) + (*late.v[i].w - q->nbase);
  }
  return 0;
}

static int step_stacks(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  size_t words = 0, nthreads = 0, tsd_words = 0, tsd_dropped = 0;

  struct mcr_qthread *qs[1024];
  size_t n = mcr_threads_qstates(qs, 1024);
  for (size_t i = 0; i < n && i < 1024; i++) {
    struct mcr_qthread *q = qs[i];
    if (!q->tid)
      continue;
    if (__atomic_load_n(&q->state, __ATOMIC_SEQ_CST) != MCR_Q_PARKED || !q->park_sp ||
        q->stack_hi <= q->park_sp) {
      conflict(c, "thread %d of the new version is not parked with a known stack", (int)q->tid);
      continue;
    }
    words += rewrite((uintptr_t *)q->park_sp, (q->stack_hi - q->park_sp) / sizeof(uintptr_t));
    nthreads++;
    if (q->tsd) { /* its thread-specific values: set by the thread when it resumes */
      for (unsigned k = 0; k < q->tsd->n; k++) {
        size_t r = rewrite(&q->tsd->e[k].value, 1);
        tsd_words += r;
        q->tsd->changed |= r > 0;
      }
      tsd_dropped += q->tsd->dropped;
    }
  }
  /* startup objects of this process that stay (no counterpart) may point to
   * ones that were replaced */
  for (size_t i = 0; i < pairs.nstay; i++)
    words += rewrite((uintptr_t *)pairs.stay[i]->addr, pairs.stay[i]->size / sizeof(uintptr_t));
  /* and so may the ones that stay instead of the old (step_reinit), or
   * beside it (a resized piece) */
  for (size_t i = 0; i < pairs.np; i++)
    if (pairs.p[i].reinit || pairs.p[i].resized)
      words += rewrite((uintptr_t *)pairs.p[i].nbase, pairs.p[i].size / sizeof(uintptr_t));
  size_t used = 0;
  for (size_t i = 0; i < pairs.np; i++)
    used += pairs.p[i].state == 1;
  if (tsd_dropped)
    mcr_buf_printf(c->report, "note %zu thread-specific values beyond the first %d of a thread "
                              "were not looked at\n", tsd_dropped, MCR_TSD_MAX);
  phase(c, "stacks", t, "%zu of %zu startup objects paired with the old's, %zu referenced: %zu "
                        "references rewritten on %zu threads, %zu thread-specific values",
        pairs.np, pairs.nmine, used, words, nthreads, tsd_words);
  return c->conflicts ? -1 : 0;
}

/* ---- reinitialized startup state (mcr-ctl update --reinit) ----
 *
 * State the old program built in its startup and never changed afterwards is
 * configuration the new version's startup rebuilt with the new code (nginx:
 * its modules' indexes and configuration, which a new module changes). With
 * --reinit this process keeps its own such objects and globals, and the
 * pointers to the old ones in the state carried over (connections, the cycle)
 * are moved to them. "Never changed": the object's bytes hash as they did when
 * the old startup ended (startup.h), a global's bytes equal the old process's
 * snapshot of its data (snapshot.h). docs/update.md, "Reinitialized startup
 * state". */

static int reinit_on(void)
{
  const struct mcr_renames *r = mcr_image_renames();
  return r && r->reinit;
}

/* A scratch buffer for old objects' bytes (in the ctx's arena). */
struct scratch {
  unsigned char *p;
  size_t cap;
};

/* Whether [addr, addr+size) of the old process still hashes to hash, the
 * record's when its startup ended (-1: it could not be read). */
static int old_unchanged(struct ctx *c, struct scratch *b, uint64_t addr, size_t size,
                         uint64_t hash)
{
  if (size > b->cap) {
    b->cap = size > 65536 ? size : 65536;
    if (!(b->p = mcr_arena_alloc(c->arena, b->cap, 16))) {
      b->cap = 0;
      return -1;
    }
  }
  struct iovec l = {b->p, size}, r = {(void *)(uintptr_t)addr, size};
  if (process_vm_readv(c->old_pid, &l, 1, &r, 1, 0) != (ssize_t)size)
    return -1;
  return mcr_startup_bytes_hash(b->p, size) == hash;
}

static void read_old_snapshot(void)
{
  struct mcr_startup_snapshot sn;
  mcr_startup_old_snapshot(&sn);
  if (!sn.copy || !sn.len || sn.len > ((uint64_t)256 << 20))
    return;
  unsigned char *buf = mcr_arena_alloc(plan.arena, sn.len, 16);
  struct iovec l = {buf, sn.len}, r = {(void *)(uintptr_t)sn.copy, sn.len};
  if (!buf || process_vm_readv(plan.old_pid, &l, 1, &r, 1, 0) != (ssize_t)sn.len)
    return;
  plan.snap = buf;
  plan.snap_data = sn.data;
  plan.snap_len = sn.len;
}

/* Whether the old global at oa, now val, still has the value it had when the
 * old startup ended. */
static int global_unchanged(uintptr_t oa, const unsigned char *val, size_t len)
{
  if (oa < plan.snap_data || len > plan.snap_len || oa - plan.snap_data > plan.snap_len - len)
    return 0;
  return memcmp(plan.snap + (oa - plan.snap_data), val, len) == 0;
}

/* The old startup objects the new startup has no counterpart of and the old
 * process never changed since its startup: configuration of code the new
 * version lacks (a module it removed). Built on first use, in the pause, as
 * pairs with only their old side (pieces [0, npieces), then heap objects, each
 * sorted by address: find_old). */
static struct {
  int built;
  struct pair **v;
  size_t n, npieces;
} orphans;

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int cmp_old(const void *a, const void *b);

static void build_orphans(struct ctx *c)
{
  const struct mcr_startup_alloc *olds;
  size_t nold = mcr_startup_old_allocs(&olds);
  uint64_t *paired = mcr_arena_alloc(c->arena, (pairs.np + 1) * sizeof(uint64_t), 8);
  struct pair *all = mcr_arena_alloc(c->arena, (nold + 1) * sizeof(*all), 8);
  struct scratch b = {NULL, 0};
  size_t np = 0;

  orphans.built = 1;
  orphans.v = mcr_arena_alloc(c->arena, (nold + 1) * sizeof(*orphans.v), 8);
  if (!paired || !all || !orphans.v)
    return;
  for (size_t i = 0; i < pairs.np; i++)
    paired[np++] = pairs.p[i].obase;
  qsort(paired, np, sizeof(uint64_t), cmp_u64);
  for (int piece = 1; piece >= 0; piece--) {
    size_t from = orphans.n;
    for (size_t i = 0; i < nold; i++) {
      const struct mcr_startup_alloc *a = &olds[i];
      if (!(a->flags & MCR_SA_PIECE) != !piece || !a->hash ||
          bsearch(&a->addr, paired, np, sizeof(uint64_t), cmp_u64) ||
          old_unchanged(c, &b, a->addr, a->size, a->hash) != 1)
        continue;
      all[i] = (struct pair){.obase = a->addr, .size = a->size, .osize = a->size, .piece = piece};
      orphans.v[orphans.n++] = &all[i];
    }
    qsort(orphans.v + from, orphans.n - from, sizeof(*orphans.v), cmp_old);
    if (piece)
      orphans.npieces = orphans.n;
  }
}

static struct pair *find_old(struct pair **v, size_t n, uintptr_t w);

/* With --reinit: whether the heap word at a lies in such an orphan. */
static int in_unchanged_orphan(struct ctx *c, uintptr_t a)
{
  if (!reinit_on())
    return 0;
  if (!orphans.built)
    build_orphans(c);
  return find_old(orphans.v, orphans.npieces, a) ||
         find_old(orphans.v + orphans.npieces, orphans.n - orphans.npieces, a);
}

static int cmp_old(const void *a, const void *b)
{
  const struct pair *x = *(struct pair *const *)a, *y = *(struct pair *const *)b;
  return x->obase < y->obase ? -1 : x->obase > y->obase;
}

static struct pair *find_old(struct pair **v, size_t n, uintptr_t w)
{
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (w < v[mid]->obase)
      hi = mid;
    else if (w >= v[mid]->obase + v[mid]->osize)
      lo = mid + 1;
    else
      return v[mid];
  }
  return NULL;
}

/* The pair (with the old object there) whose old object holds w: a piece's
 * first, else a heap object's. */
static struct pair *pair_of_old(uintptr_t w)
{
  struct pair *q = find_old(pairs.by_old, pairs.nold_pieces, w);
  return q ? q : find_old(pairs.by_old + pairs.nold_pieces, pairs.nold - pairs.nold_pieces, w);
}

/* Whether w[i] == v, the first byte of an old object that stays the new
 * startup's, is rather the end of the memory before it: a buffer's end, as
 * nginx's ngx_buf_t keeps start and end of a buffer it freed (v then is the
 * next slot's start: moved, the buffer's size became 8 GB). Taken for one when
 * a word near it in the same holder points below it, within 64 KiB, and not
 * into an object that stays the new startup's. */
static int looks_like_end(const uintptr_t *w, size_t nwords, size_t i, uintptr_t v)
{
  size_t lo = i >= 4 ? i - 4 : 0, hi = i + 5 < nwords ? i + 5 : nwords;
  for (size_t j = lo; j < hi; j++) {
    uintptr_t u = w[j];
    if (j == i || u >= v || v - u > 65536)
      continue;
    struct pair *p = pair_of_old(u);
    if (!p || !p->reinit)
      return 1;
  }
  return 0;
}

/* Where v, inside q's old object, is in its counterpart: the same offset, or
 * for a piece of a changed type the same field. 0, or -1 when it has none (a
 * field the new version removed, or past the end of a piece that shrank). */
static int moved_to(const struct pair *q, uintptr_t v, uintptr_t *nv)
{
  uint64_t off = v - q->obase, noff = off;
  if (q->typed == TYPED_START && off) {
    const struct mcr_xplan *e = q->elem;
    uint64_t in_elem;
    if (!e || mcr_xplan_map_offset(e, off % e->old_size, e->old_size, &in_elem) != 0)
      return -1;
    noff = off / e->old_size * e->new_size + in_elem;
  }
  if (q->typed == TYPED_FIELDS &&
      mcr_xform_piece_offset(q->nsite, q->osize, q->size, off, &noff) != 0)
    return -1;
  if (noff >= q->size)
    return -1;
  *nv = q->nbase + noff;
  return 0;
}

/* Words redirect() could not move: they point where the counterpart has
 * nothing (the first one's place, for the report). */
static struct {
  size_t n;
  uintptr_t slot, value;
} lost_moves;

/* Moves the words of [w, w+n) that point into old objects this process's
 * counterparts replace to those counterparts. */
static size_t redirect(uintptr_t *w, size_t nwords)
{
  size_t k = 0;
  for (size_t i = 0; i < nwords; i++) {
    uintptr_t v = w[i], nv;
    if (v < ((uintptr_t)1 << 44)) /* below the heap's range: not a pointer into it */
      continue;
    struct pair *q = pair_of_old(v);
    if (!q || !q->reinit || (v == q->obase && looks_like_end(w, nwords, i, v)))
      continue;
    struct pair *holder = pair_of_old((uintptr_t)&w[i]);
    if (holder && holder->reinit)
      continue; /* a word of an old object replaced itself (a pool piece's self-pointer) */
    if (moved_to(q, v, &nv) != 0) {
      if (!lost_moves.n++) {
        lost_moves.slot = (uintptr_t)&w[i];
        lost_moves.value = v;
      }
      continue;
    }
    w[i] = nv;
    k++;
  }
  return k;
}

/* Whether a global whose old value oval never changed since the old startup
 * may take the new startup's value nval: every word of the old value that
 * points into the old heap must point into an old startup object whose
 * counterpart the new word points into, at the same offset (the new value
 * then means what the old one meant). With another layout, the old value must
 * hold no pointer into the heap at all. */
static int global_reinit_ok(const unsigned char *oval, const unsigned char *nval, size_t len,
                            int same_layout)
{
  for (size_t off = 0; off + sizeof(uintptr_t) <= len; off += sizeof(uintptr_t)) {
    uintptr_t wo, wn;
    struct mcr_object o;
    memcpy(&wo, oval + off, sizeof(wo));
    memcpy(&wn, nval + off, sizeof(wn));
    if (wo < ((uintptr_t)1 << 44) || mcr_heap_find((void *)wo, &o) != 0)
      continue; /* not a pointer into the heap */
    if (!same_layout)
      return 0;
    struct pair *q = pair_of_old(wo);
    if (!q)
      return 0; /* an old object with no counterpart: the new value cannot name it */
    uintptr_t moved;
    if (q->reinit ? moved_to(q, wo, &moved) != 0 || wn != moved
                  : q->resized || pair_of_new(wn) != q || wn - q->nbase != wo - q->obase)
      return 0;
  }
  return 1;
}

/* In the pause, after the heap's adoption: which pairs' old objects never
 * changed since the old startup (their bytes, read from the old process, hash
 * as they did then). Those stay this process's. */
static int step_reinit(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  size_t candidates = 0, unchanged = 0, converted = 0, pieces = 0, bytes = 0, moved = 0;
  struct scratch b = {NULL, 0};

  if (!reinit_on())
    return 0;
  pairs.by_old = mcr_arena_alloc(c->arena, (pairs.np + 1) * sizeof(*pairs.by_old), 8);
  if (!pairs.by_old) {
    conflict(c, "out of memory for --reinit");
    return -1;
  }
  for (int piece = 1; piece >= 0; piece--) {
    size_t from = pairs.nold;
    for (size_t i = 0; i < pairs.np; i++) {
      struct pair *q = &pairs.p[i];
      if (q->piece != piece)
        continue;
      if (!q->state)
        q->state = old_there(q) ? 1 : 2;
      if (q->state != 1)
        continue;
      pairs.by_old[pairs.nold++] = q;
      if (!q->ohash || q->container)
        continue;
      candidates++;
      /* its type changed: a heap object is converted and kept; a piece,
       * which cannot grow in its pool, is converted into its counterpart
       * (the new piece replaces it). When the change cannot be planned or
       * does not map their sizes, only an unchanged piece is replaced, and
       * only pointers to its start move (read_pieces refuses the others). */
      int fits = q->piece && q->nsite ? mcr_xform_piece_fits(q->nsite, q->osize, q->size) : 0;
      if (!q->piece && (q->changes < 0 ? (q->changes = mcr_xform_changes(q->obase)) : q->changes)) {
        converted++;
        continue;
      }
      /* a piece of the same type that changed size (an array sized by a
       * count the new version changed, or another piece altogether that the
       * same call made in the other order): no counterpart */
      int resized_same_type = q->resized && fits == 0;
      if (resized_same_type && !q->aligned) {
        candidates--;
        continue;
      }
      /* a resized piece of an unchanged type (an untyped array whose
       * elements changed, as nginx's listening array): its counterpart
       * replaces it only if unchanged, and only pointers to its start move */
      if (resized_same_type)
        fits = -1;
      q->typed = fits == 1 ? TYPED_FIELDS : fits == -1 ? TYPED_START : 0;
      bytes += q->osize;
      int same = fits == -2 ? 0 : old_unchanged(c, &b, q->obase, q->osize, q->ohash);
      if (same != 1 && resized_same_type) {
        q->typed = 0;
        candidates--;
        continue;
      }
      if (same != 1 && fits < 0) {
        converted++;
        continue;
      }
      if (same == 1) {
        q->untyped = resized_same_type;
        q->reinit = 1;
        unchanged++;
        pieces += q->piece;
      } else if (same == 0 && q->typed == TYPED_FIELDS) {
        /* b.p holds its bytes now (old_unchanged read them) */
        char why[300];
        if (mcr_xform_piece_convert(q->nsite, b.p, q->osize, (unsigned char *)q->nbase, q->size,
                                    why, sizeof(why)) != 0) {
          const char *key = "", *name = mcr_xform_changed_type(q->nsite, &key);
          conflict(c, "narrowing\ta piece of the startup's pools of type %s (0x%llx, %zu "
                      "bytes), changed since the startup, cannot be converted into the new "
                      "startup's: %s\tsite %s\t%s\t%s\t\t\t\twiden the new field, or register "
                      "a transformation that handles the value",
                   name ? name : "?", (unsigned long long)q->obase, q->osize, why, key,
                   name ? name : "", name ? name : "");
          continue;
        }
        q->reinit = q->converted = 1;
        moved++;
      }
    }
    qsort(pairs.by_old + from, pairs.nold - from, sizeof(*pairs.by_old), cmp_old);
    if (piece)
      pairs.nold_pieces = pairs.nold;
  }
  phase(c, "reinit", t, "%zu of %zu startup objects unchanged since the startup stay the new "
                        "startup's (%zu pieces, %.1f kB compared); %zu changed pieces converted "
                        "into theirs; %zu of changed types do not",
        unchanged, candidates, pieces, bytes / 1e3, moved, converted);
  return c->conflicts ? -1 : 0;
}

static int redirect_object(const struct mcr_object *o, void *arg)
{
  size_t *n = arg;
  *n += redirect((uintptr_t *)o->base, o->size / sizeof(uintptr_t));
  return 0;
}

/* The words of o (a heap object of a known type, in the new layout: after the
 * transform) that point into untyped pieces replaced by resized ones: the
 * struct each points to (a connection's ngx_listening_t *listening into
 * nginx's listening array) is the pieces' element type, when the sizes of
 * both pieces are the same count of it, old and new. */
static int type_untyped_pieces(const struct mcr_object *o, void *arg)
{
  size_t *found = arg;
  const uintptr_t *w = o->base;
  if (o->tag < MCR_TAG_FIRST_SITE || o->tag == MCR_TAG_RELEASED ||
      mcr_xform_where((uintptr_t)o->base) != (uintptr_t)o->base)
    return 0; /* no type, or the old copy of an object the transform moved */
  for (size_t i = 0; i < o->size / sizeof(uintptr_t); i++) {
    uintptr_t v = w[i];
    const char *name;
    struct pair *q = pair_of_old(v);
    if (!q || !q->untyped || q->elem_bad)
      continue;
    const struct mcr_xplan *e = mcr_xform_pointee_plan(o->tag, i * sizeof(uintptr_t), &name);
    if (!e || !e->old_size || !e->new_size || (v - q->obase) % e->old_size ||
        q->osize % e->old_size || q->size % e->new_size ||
        q->osize / e->old_size != q->size / e->new_size)
      continue;
    if (q->elem && q->elem != e) {
      q->elem_bad = 1;
      q->elem = NULL;
    } else if (!q->elem) {
      q->elem = e;
      q->elem_name = name;
      ++*found;
    }
  }
  return 0;
}

/* After the transform: the heap's and the thread-local variables' pointers to
 * the old objects that stay this process's. */
static int step_redirect(struct ctx *c)
{
  uint64_t t = mcr_update_now_ns();
  size_t heap = 0, tls = 0, typed = 0;
  const char *typed_as = "";
  if (!reinit_on() || !pairs.nold)
    return 0;
  for (size_t i = 0; i < pairs.nold; i++)
    if (pairs.by_old[i]->untyped) {
      mcr_heap_foreach(type_untyped_pieces, &typed);
      break;
    }
  for (size_t i = 0; i < pairs.nold && typed; i++)
    if (pairs.by_old[i]->elem) {
      typed_as = pairs.by_old[i]->elem_name;
      break;
    }
  mcr_heap_foreach(redirect_object, &heap);
  for (size_t i = 0; i < c->ntls_regions; i++)
    tls += redirect((uintptr_t *)c->tls_regions[i].lo,
                    (c->tls_regions[i].hi - c->tls_regions[i].lo) / sizeof(uintptr_t));
  for (size_t i = 0; i < sobj.nregions; i++) /* (aligned: locals of pointer alignment) */
    if (sobj.regions[i].lo % sizeof(uintptr_t) == 0)
      tls += redirect((uintptr_t *)sobj.regions[i].lo,
                      (sobj.regions[i].hi - sobj.regions[i].lo) / sizeof(uintptr_t));
  phase(c, "reinit-pointers", t, "%zu pointers in the heap and %zu in thread-local variables "
                                 "moved to the new startup's objects",
        heap, tls);
  if (typed)
    mcr_buf_printf(c->report, "note --reinit: %zu untyped startup pool pieces of other sizes in "
                              "the new version taken as arrays of the struct typed pointers "
                              "into them name (the first: %s), their fields mapped by its "
                              "change\n",
                   typed, typed_as);
  if (lost_moves.n) {
    struct pair *q = pair_of_old(lost_moves.value);
    /* a piece whose layout is not known on both sides maps its start only */
    int start_only = q && q->typed == TYPED_START;
    conflict(c, "type\t%zu words point into old startup objects the new startup's replace, "
                "where their counterparts have nothing (%s): the first, at 0x%lx, points to "
                "+%lu of 0x%lx (%zu bytes; its counterpart %zu)\tstartup object 0x%lx\t\t\t\t"
                "\t\t%s",
             lost_moves.n,
             start_only ? "a pool piece of unknown type, or of a change without a plan for "
                          "its sizes, whose counterpart takes pointers to its start only"
                        : "a field the new version removed, or past the end of a piece that "
                          "shrank",
             (unsigned long)lost_moves.slot, (unsigned long)(q ? lost_moves.value - q->obase : 0),
             (unsigned long)(q ? q->obase : 0), q ? q->osize : 0, q ? q->size : 0,
             (unsigned long)(q ? q->obase : 0),
             start_only ? "type the piece's allocation (docs/wrappers.md), or run this update "
                          "without --reinit"
                        : "keep the field, or run this update without --reinit");
    return -1;
  }
  return 0;
}

/* ---- pool pieces ----
 * A piece a pool allocator handed out (a wrapper's result inside a heap
 * object) is no object of the heap's: the transform knows the ones it is
 * told of (mcr_xform_add_piece), scans their words by their types and
 * converts the ones of changed types. Told: the ones the old process recorded
 * after its startup (pieces.h), and its startup's that are alive and do not
 * stay the new startup's (--reinit). A site of a changed type whose pieces
 * were not all recorded (a wrapper without a size argument, a type of bytes,
 * memory ran out) refuses: a live piece would be read with the new layout. */
static int read_pieces(struct ctx *c, struct mcr_buf *st)
{
  uint32_t nbytes = mcr_buf_get_u32(st);
  uint8_t bits[MCR_PIECE_SITES_BYTES];
  size_t found = 0, recorded = 0, startup = 0;

  mcr_xform_clear_pieces();
  if (st->bad || nbytes > sizeof(bits) || mcr_buf_get(st, bits, nbytes) != 0) {
    conflict(c, "the old process's pool sites could not be read");
    return -1;
  }
  for (uint32_t t = MCR_TAG_FIRST_SITE; t < nbytes * 8 && t < c->tag_limit; t++) {
    const char *name, *key;
    if (!(bits[t >> 3] & (1u << (t & 7))) || !c->tag_map[t])
      continue;
    /* such pieces may stay alive: the next update must know their site */
    mcr_heap_mark_piece_site(c->tag_map[t]);
    if (!(name = mcr_xform_changed_type(c->tag_map[t], &key)))
      continue;
    if (++found <= 8)
      conflict(c, "type\tpieces of a pool of type %s were handed out after the startup "
                  "(an allocator wrapper's results inside a pool block) and not recorded (the "
                  "wrapper passes no size: mcr-clang --mcr-wrappers, docs/update.md), so mcr "
                  "cannot convert them, and a live one would be read with the new "
                  "layout\tsite %s\t%s\t%s\t\t\t\tkeep this type unchanged in this "
                  "update, or restart the server",
               name, key, name, name);
  }
  uint32_t n = mcr_buf_get_u32(st);
  for (uint32_t i = 0; i < n && !st->bad; i++) {
    struct mcr_piece p;
    if (mcr_buf_get(st, &p, sizeof(p)) != 0)
      break;
    uint32_t tag = p.tag < c->tag_limit ? c->tag_map[p.tag] : 0;
    if (!tag)
      continue; /* its site is gone: its pieces are bytes to the new version */
    if (mcr_xform_add_piece((uintptr_t)p.addr, p.size, tag) != 0) {
      conflict(c, "out of memory listing pool pieces");
      return -1;
    }
    recorded++;
  }
  if (st->bad) {
    conflict(c, "the old process's pool pieces could not be read");
    return -1;
  }
  const struct mcr_startup_alloc *olds;
  size_t nold = mcr_startup_old_allocs(&olds);
  for (size_t i = 0; i < nold; i++) {
    const struct mcr_startup_alloc *a = &olds[i];
    struct mcr_object o;
    if (!(a->flags & MCR_SA_PIECE) || !a->site || a->site >= c->tag_limit ||
        !c->tag_map[a->site])
      continue;
    struct pair *q = pair_of_old(a->addr);
    if (mcr_heap_find((const void *)(uintptr_t)a->addr, &o) != 0 ||
        (uintptr_t)o.base != a->block)
      continue; /* gone with its pool */
    /* one the new startup's replaces is dead: its words pin nothing */
    int dead = q && q->reinit && q->obase == a->addr;
    if (mcr_xform_add_piece((uintptr_t)a->addr, a->size, dead ? 0 : c->tag_map[a->site]) != 0) {
      conflict(c, "out of memory listing pool pieces");
      return -1;
    }
    startup += !dead;
  }
  /* with --reinit, this process's startup pieces that stay are live state in
   * the new layout (pointers in them were just moved to old objects, which
   * may move again); the ones the old process's replace are dead */
  for (size_t i = pairs.nobj; reinit_on() && i < pairs.np; i++) {
    const struct pair *q = &pairs.p[i];
    if (mcr_xform_add_new_piece(q->nbase, q->size, q->reinit ? q->nsite : 0) != 0)
      goto oom;
  }
  for (size_t i = 0; reinit_on() && i < pairs.nstay; i++) {
    const struct mcr_startup_alloc *a = pairs.stay[i];
    if ((a->flags & MCR_SA_PIECE) && a->site &&
        mcr_xform_add_new_piece((uintptr_t)a->addr, a->size, a->site) != 0)
      goto oom;
  }
  if (found > 8)
    conflict(c, "type\t%zu more sites of changed types handed out pool pieces not recorded",
             found - 8);
  if (recorded + startup)
    mcr_buf_printf(c->report, "note pool pieces known to the transform: %zu recorded after the "
                              "startup, %zu of the startup's\n", recorded, startup);
  return found ? -1 : 0;
oom:
  conflict(c, "out of memory listing pool pieces");
  return -1;
}

/* ---- the output buffers of the old threads' waits ---- */

/* The ranges the old process sent (mcr_transfer_describe), and this process's
 * own: the words there are dead (quiesce.h), so the type transform does not let
 * them pin anything. */
static int read_dead(struct ctx *c, struct mcr_buf *st)
{
  uint32_t n = mcr_buf_get_u32(st);
  uint64_t *v;
  if (st->bad || n > WAIT_BUFFERS_MAX ||
      !(v = mcr_arena_alloc(c->arena, 2 * ((size_t)n + WAIT_BUFFERS_MAX) * 8, 8)) ||
      mcr_buf_get(st, v, (size_t)n * 2 * sizeof(uint64_t)) != 0) {
    conflict(c, "the old threads' wait buffers could not be read");
    return -1;
  }
  /* and this process's parked threads' (on their stacks, say) */
  mcr_xform_set_dead(v, n + wait_buffers(v + 2 * (size_t)n));
  return 0;
}

/* ---- descriptors ---- */

static int step_fds(struct ctx *c, struct mcr_buf *st, const int *inherited, size_t ninherited)
{
  uint32_t n = mcr_buf_get_u32(st);
  uint64_t t = mcr_update_now_ns();
  size_t same = 0, pulled = 0, replaced = 0, closed = 0;
  int pidfd;
  int *old;

  if (st->bad || n > (1u << 20))
    return -1;
  old = mcr_arena_alloc(c->arena, (n + 1) * sizeof(int), 8);
  if (!old)
    return -1;
  unsigned char *cloexec = mcr_arena_alloc(c->arena, n + 1, 1);
  if (!cloexec)
    return -1;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t v = mcr_buf_get_u32(st);
    old[i] = (int)(v & 0x7fffffffu);
    cloexec[i] = (v & 0x80000000u) != 0;
  }
  pidfd = (int)syscall(SYS_pidfd_open, c->old_pid, 0);
  if (pidfd >= 0) /* high: at a low number the loop below may replace it */
    pidfd = mcr_fd_move_high(pidfd);
  if (pidfd < 0) {
    conflict(c, "pidfd_open(%d): %s", (int)c->old_pid, strerror(errno));
    return -1;
  }
  for (uint32_t i = 0; i < n; i++) {
    int fd = old[i];
    int have = fcntl(fd, F_GETFD) >= 0;
    if (have && syscall(SYS_kcmp, getpid(), c->old_pid, KCMP_FILE, fd, fd) == 0) {
      same++;
    } else if (have && mcr_fd_is_runtime(fd)) { /* replacing it would break the runtime */
      conflict(c, "descriptor %d of the old process has the number of one of the runtime's own "
                  "descriptors in the new one (they sit at 7/8 of RLIMIT_NOFILE when it was "
                  "read: start the server with a higher limit)", fd);
      continue;
    } else {
      int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
      if (got < 0) {
        if (errno == EBADF)
          continue; /* closed meanwhile (it cannot be: the old process is quiesced) */
        conflict(c, "taking descriptor %d from the old process: %s", fd, strerror(errno));
        continue;
      }
      if (got != fd) {
        if (dup3(got, fd, 0) < 0) {
          conflict(c, "dup3 to descriptor %d: %s", fd, strerror(errno));
          close(got);
          continue;
        }
        close(got);
      }
      if (have) {
        int inh = 0;
        for (size_t k = 0; k < ninherited && !inh; k++)
          inh = inherited[k] == fd;
        replaced++;
        mcr_startup_forget_fd(fd); /* what the new startup logged of it is gone */
        if (replaced <= 5 && !inh) {
          char link[64], what[128] = "?";
          snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)c->old_pid, fd);
          ssize_t l = readlink(link, what, sizeof(what) - 1);
          what[l > 0 ? l : 1] = 0;
          mcr_buf_printf(c->report, "note descriptor %d, opened by the new version's startup, "
                                    "was replaced by the old process's descriptor %d (%s)\n",
                         fd, fd, what);
        }
      } else {
        pulled++;
      }
    }
    fcntl(fd, F_SETFD, cloexec[i] ? FD_CLOEXEC : 0);
  }
  /* inherited at spawn and closed by the old process since */
  for (size_t i = 0; i < ninherited; i++) {
    int fd = inherited[i], found = 0;
    for (uint32_t j = 0; j < n && !found; j++)
      found = old[j] == fd;
    if (!found && fcntl(fd, F_GETFD) >= 0) {
      char link[64], what[256] = "?";
      snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
      ssize_t l = readlink(link, what, sizeof(what) - 1);
      what[l > 0 ? l : 1] = 0;
      close(fd);
      if (++closed <= 5)
        mcr_buf_printf(c->report, "note descriptor %d (%s), inherited at the spawn, was closed by "
                                  "the old process since: closed\n", fd, what);
    }
  }
  close(pidfd);
  phase(c, "fds", t, "%u descriptors: %zu inherited, %zu opened or reopened since the spawn, "
                     "%zu closed since", n, same, pulled + replaced, closed);
  return c->conflicts ? -1 : 0;
}

int mcr_transfer_apply(struct mcr_buf *st, const int *inherited, size_t ninherited,
                       struct mcr_buf *report)
{
  struct ctx c = {0};
  struct mcr_heap_state hs;
  int rc = -1;

  c.report = report;
  if (mcr_buf_get_u32(st) != STATE_VERSION) {
    conflict(&c, "the old process runs another version of the mcr runtime");
    return -1;
  }
  c.old_pid = (pid_t)mcr_buf_get_u32(st);
  (void)mcr_buf_get_u64(st); /* t_quiesce: the old side measures the pause */
  if (mcr_buf_get_u32(st) != sizeof(hs) || mcr_buf_get(st, &hs, sizeof(hs)) != 0) {
    conflict(&c, "the old heap description does not match this runtime");
    return -1;
  }
  if (!(c.arena = mcr_arena_create())) {
    conflict(&c, "out of memory");
    return -1;
  }
  if (!plan.image || plan.old_pid != c.old_pid) {
    conflict(&c, "the transfer was not prepared for process %d", (int)c.old_pid);
    goto out;
  }
  c.image = plan.image;
  lost_moves.n = 0;
  late.cap = 1 << 16;
  late.n = late.lost = 0;
  if (!(late.v = mcr_arena_alloc(c.arena, late.cap * sizeof(*late.v), 8))) {
    conflict(&c, "out of memory");
    goto out;
  }
  mcr_update_fault("heap");
  if (step_heap(&c, st, &hs) != 0)
    goto out;
  if (step_reinit(&c) != 0)
    goto out;
  mcr_update_fault("globals");
  if (step_globals(&c) != 0)
    goto out;
  if (step_tls(&c, st) != 0 || read_dead(&c, st) != 0 || read_pieces(&c, st) != 0)
    goto out;
  if (step_stack_objects(&c) != 0)
    goto out;
  if (step_anon(&c) != 0)
    goto out;
  mcr_update_fault("stacks");
  if (step_stacks(&c) != 0)
    goto out;
  if (step_epoll(&c) != 0)
    goto out;
  if (step_transform(&c) != 0 || late_rewrite(&c) != 0)
    goto out;
  if (step_redirect(&c) != 0)
    goto out;
  /* after the transform: objects of changed types are in their new layout,
   * which is the one the reset reads */
  if (step_sync(&c) != 0)
    goto out;
  mcr_update_fault("fds");
  if (step_fds(&c, st, inherited, ninherited) != 0)
    goto out;
  rc = 0;
out:
  mcr_image_set_stack_objects(NULL, NULL, NULL, NULL, 0); /* (its arrays are in the arena) */
  memset(&sobj, 0, sizeof(sobj));
  mcr_arena_destroy(c.arena);
  return rc;
}
