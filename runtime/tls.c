/*
 * tls.c - where the program's thread-local variables are, per thread, for a
 * live update (tls.h). The copy itself is transfer.c's (step_tls).
 */
#define _GNU_SOURCE
#include "tls.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "elfsym.h"
#include "threads.h"
#include "typetab.h"
#include "types.h"

/* ---- the blocks ---- */

struct delta_arg {
  uintptr_t data;
  int seen;
};

static int first_object(struct dl_phdr_info *info, size_t size, void *p)
{
  struct delta_arg *d = p;
  d->seen = 1;
  if (size >= offsetof(struct dl_phdr_info, dlpi_tls_data) + sizeof(info->dlpi_tls_data) &&
      info->dlpi_tls_modid)
    d->data = (uintptr_t)info->dlpi_tls_data;
  return 1; /* the first object is the executable */
}

int mcr_tls_delta(intptr_t *delta)
{
  static intptr_t known;
  static int state; /* 0 not asked yet, 1 known, -1 none */

  if (!__atomic_load_n(&state, __ATOMIC_ACQUIRE)) {
    struct delta_arg d = {0, 0};
    dl_iterate_phdr(first_object, &d);
    /* the calling thread's block: every thread's is at the same distance from
     * its descriptor (static TLS) */
    if (d.data) {
      known = (intptr_t)(d.data - (uintptr_t)pthread_self());
      __atomic_store_n(&state, 1, __ATOMIC_RELEASE);
    } else {
      __atomic_store_n(&state, -1, __ATOMIC_RELEASE);
    }
  }
  if (state != 1)
    return -1;
  *delta = known;
  return 0;
}

static int in_exe(const void *p)
{
  Dl_info info;
  struct link_map *lm = NULL;
  if (!dladdr1(p, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
    return 0;
  return lm->l_name == NULL || lm->l_name[0] == 0;
}

int mcr_tls_program_has_vars(void)
{
  static int known = -1;

  if (known >= 0)
    return known;
  const struct mcr_module *mods;
  size_t nmods = mcr_types_modules(&mods);
  int found = 0;
  for (size_t m = 0; m < nmods && !found; m++) {
    if (!in_exe(mods[m].start))
      continue;
    size_t pos = 0, blen;
    const void *blob;
    while (!found && mcr_typetab_next(mods[m].start, (size_t)(mods[m].stop - mods[m].start), &pos,
                                      &blob, &blen, NULL) == 1) {
      struct mcr_typetab tt;
      struct mcr_global_rec gr;
      if (mcr_typetab_open(&tt, blob, blen, NULL) != 0)
        continue;
      for (uint32_t i = 0; i < mcr_typetab_nglobals(&tt) && !found; i++)
        found = mcr_typetab_global(&tt, i, &gr) == 0 &&
                (gr.flags & (MCR_GF_TLS | MCR_GF_CONST)) == MCR_GF_TLS;
    }
  }
  known = found;
  return known;
}

/* ---- the threads and their classes ---- */

#define MAX_TLS_THREADS 1024

struct centry {
  pid_t tid;
  uintptr_t pthread;
  uint64_t created_us;
  char name[480];
};

/* Two buffers of names: the last call's and the one being filled. Runtime
 * memory (mmap), not the program's heap. */
static struct {
  struct centry *buf[2];
  size_t n[2];
  int cur;
  struct mcr_thread_info *reg;
} cache;

static int cmp_thread(const void *a, const void *b)
{
  const struct mcr_tls_thread *x = a, *y = b;
  if (x->created_us != y->created_us)
    return x->created_us < y->created_us ? -1 : 1;
  return x->tid < y->tid ? -1 : x->tid > y->tid;
}

size_t mcr_tls_threads(struct mcr_tls_thread *out, size_t max)
{
  struct mcr_symbolizer sym = {0};
  intptr_t delta = 0;
  int have_delta = mcr_tls_delta(&delta) == 0;

  if (!cache.reg) {
    void *r = mmap(NULL, MAX_TLS_THREADS * sizeof(*cache.reg), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *b = mmap(NULL, 2 * MAX_TLS_THREADS * sizeof(struct centry), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED || b == MAP_FAILED) {
      if (r != MAP_FAILED)
        munmap(r, MAX_TLS_THREADS * sizeof(*cache.reg));
      if (b != MAP_FAILED)
        munmap(b, 2 * MAX_TLS_THREADS * sizeof(struct centry));
      return 0;
    }
    cache.reg = r;
    cache.buf[0] = b;
    cache.buf[1] = cache.buf[0] + MAX_TLS_THREADS;
  }
  size_t n = mcr_threads_snapshot(cache.reg, MAX_TLS_THREADS);
  if (n > MAX_TLS_THREADS)
    n = MAX_TLS_THREADS;
  int from = cache.cur, to = !cache.cur;
  for (size_t i = 0; i < n; i++) {
    const struct mcr_thread_info *t = &cache.reg[i];
    struct centry *e = &cache.buf[to][i];
    size_t k;
    for (k = 0; k < cache.n[from]; k++) {
      const struct centry *o = &cache.buf[from][k];
      if (o->tid == t->tid && o->pthread == t->pthread && o->created_us == t->created_us)
        break;
    }
    if (k < cache.n[from])
      memcpy(e->name, cache.buf[from][k].name, sizeof(e->name));
    else
      mcr_threads_class_full(&sym, t, e->name, sizeof(e->name));
    e->tid = t->tid;
    e->pthread = t->pthread;
    e->created_us = t->created_us;
  }
  cache.n[to] = n;
  cache.cur = to;
  mcr_symbolizer_close(&sym);
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = (struct mcr_tls_thread){cache.reg[i].tid,
                                     have_delta ? cache.reg[i].pthread + (uintptr_t)delta : 0,
                                     cache.reg[i].created_us, cache.buf[to][i].name};
  if (out && max)
    qsort(out, n < max ? n : max, sizeof(*out), cmp_thread);
  return n;
}

void mcr_tls_describe(struct mcr_buf *out)
{
  static struct mcr_tls_thread *t;

  if (!mcr_tls_program_has_vars()) {
    mcr_buf_u32(out, 0);
    return;
  }
  if (!t) {
    void *m = mmap(NULL, MAX_TLS_THREADS * sizeof(*t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      mcr_buf_u32(out, 0);
      return;
    }
    t = m;
  }
  size_t n = mcr_tls_threads(t, MAX_TLS_THREADS);
  if (n > MAX_TLS_THREADS)
    n = MAX_TLS_THREADS;
  mcr_buf_u32(out, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    mcr_buf_str(out, t[i].cls);
    mcr_buf_u64(out, t[i].block);
  }
}

/* ---- the variables' offsets ---- */

struct tsym {
  const char *name, *file; /* file: of a local symbol (its STT_FILE) */
  uintptr_t value;
  size_t size;
  int local;
};

struct mcr_tls_syms {
  struct tsym *v;
  size_t n;
};

struct mcr_tls_syms *mcr_tls_syms_open(struct mcr_arena *a, const char *path)
{
  struct mcr_elfsym elf;
  Elf64_Sym sym;
  const char *name, *file = NULL;
  size_t n = 0;
  struct mcr_tls_syms *s = mcr_arena_alloc(a, sizeof(*s), 8);

  if (!s || mcr_elfsym_open(&elf, path) != 0)
    return NULL;
  for (size_t i = 0; mcr_elfsym_symbol(&elf, i, &sym, &name) == 0; i++)
    n += ELF64_ST_TYPE(sym.st_info) == STT_TLS && sym.st_shndx != SHN_UNDEF;
  s->n = 0;
  s->v = mcr_arena_alloc(a, (n + 1) * sizeof(*s->v), 8);
  if (!s->v) {
    mcr_elfsym_close(&elf);
    return NULL;
  }
  for (size_t i = 0; mcr_elfsym_symbol(&elf, i, &sym, &name) == 0 && s->n < n; i++) {
    if (ELF64_ST_TYPE(sym.st_info) == STT_FILE) {
      file = name[0] ? name : NULL;
      continue;
    }
    if (ELF64_ST_TYPE(sym.st_info) != STT_TLS || sym.st_shndx == SHN_UNDEF || !name[0])
      continue;
    struct tsym *t = &s->v[s->n];
    t->local = ELF64_ST_BIND(sym.st_info) == STB_LOCAL;
    t->name = mcr_arena_strdup(a, name);
    t->file = t->local && file ? mcr_arena_strdup(a, file) : NULL;
    t->value = sym.st_value;
    t->size = sym.st_size;
    if (!t->name) {
      mcr_elfsym_close(&elf);
      return NULL;
    }
    s->n++;
  }
  mcr_elfsym_close(&elf);
  return s;
}

static const char *base_name(const char *p)
{
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

int mcr_tls_sym(const struct mcr_tls_syms *s, const char *name, const char *file, uintptr_t *off,
                size_t *size)
{
  const struct tsym *global = NULL, *local = NULL;
  size_t nlocal = 0;

  for (size_t i = 0; i < s->n; i++) {
    const struct tsym *v = &s->v[i];
    if (strcmp(v->name, name))
      continue;
    if (!v->local)
      global = v;
    else if (!file || (v->file && !strcmp(base_name(v->file), base_name(file)))) {
      local = v;
      nlocal++;
    }
  }
  const struct tsym *v = file && nlocal ? local : global ? global : local;
  if (!v)
    return -1;
  if (v == local && nlocal > 1)
    return -2;
  *off = v->value;
  *size = v->size;
  return 0;
}
