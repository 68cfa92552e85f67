/*
 * xform.c - type transformation during a live update; see xform.h.
 */
#define _GNU_SOURCE
#include "xform.h"
#include "xform_int.h"

#include <errno.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "arena.h"
#include "elfsym.h"
#include "fnv.h"
#include "heap.h"
#include "image.h"
#include "types.h"
#include "update.h"

#define MAX_BLOBS 4096

/* A changed global, for pointer remapping. */
struct gchg {
  const char *name;
  uintptr_t oa, na;
  size_t os, ns;
  const struct mcr_xplan *plan;
  uint32_t *elem; /* by content: old element -> new element (UINT32_MAX: none) */
  size_t oes, nes, ocount;
};

/* A hash entry: a name to (blob, record). */
struct ent {
  const char *k1, *k2;
  uint32_t blob, idx;
};

static struct {
  struct mcr_arena *a;
  pid_t old_pid;
  struct mcr_elfsym elf;
  int elf_open;
  struct mcr_typetab *blobs;
  size_t nblobs;
  struct ent *glob, *site; /* open addressing, by symbol / by site key */
  size_t gcap, scap;
  struct gchg *chg;
  size_t nchg, chgcap;
  struct ent *splan; /* site key -> tinfo (idx unused) */
  struct tinfo **splan_info;
  size_t spcap, nsplans;
  struct tinfo *tag[MCR_TAG_MAX + 1];
  uintptr_t bias; /* the old executable's load bias (0: unknown) */
  int have_bias;
  struct mcr_elfsym self; /* this process's executable, for its new globals */
  int self_open;
  uintptr_t self_bias, self_lo, self_hi;
} X;

static uint64_t hash2(const char *a, const char *b)
{
  uint64_t h = mcr_fnv(MCR_FNV_OFFSET, a, strlen(a));
  return b ? mcr_fnv(h ^ 0x7c, b, strlen(b)) : h;
}

static int put(struct ent *t, size_t cap, const char *k1, const char *k2, uint32_t blob,
               uint32_t idx)
{
  size_t h = hash2(k1, k2) & (cap - 1);
  for (size_t n = 0; n < cap; n++, h = (h + 1) & (cap - 1)) {
    if (!t[h].k1) {
      t[h] = (struct ent){k1, k2, blob, idx};
      return 0;
    }
    if (!strcmp(t[h].k1, k1) && (!k2 || !strcmp(t[h].k2, k2)))
      return 1; /* the same key twice: keep the first */
  }
  return -1;
}

static const struct ent *get(const struct ent *t, size_t cap, const char *k1, const char *k2)
{
  if (!cap)
    return NULL;
  size_t h = hash2(k1, k2) & (cap - 1);
  for (size_t n = 0; n < cap && t[h].k1; n++, h = (h + 1) & (cap - 1))
    if (!strcmp(t[h].k1, k1) && (!k2 || !strcmp(t[h].k2, k2)))
      return &t[h];
  return NULL;
}

static const char *base_name(const char *p)
{
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static size_t pow2(size_t n)
{
  size_t c = 64;
  while (c < n)
    c *= 2;
  return c;
}

/* ---- user transformations (mcr/transform.h): functions named
 * mcr_transform_global_SYM / mcr_transform_type_NAME in this executable ---- */

static hook_fn find_hook(const char *prefix, const char *name)
{
  /* the executable's mcr_transform_* functions, listed once */
  static struct {
    const char *name;
    hook_fn fn;
  } list[256];
  static size_t n;
  static int listed;
  char want[512];
  if (!name || !*name || snprintf(want, sizeof(want), "%s%s", prefix, name) >= (int)sizeof(want))
    return NULL;
  if (!listed) {
    struct mcr_elfsym self;
    uintptr_t bias;
    char path[8];
    Elf64_Sym es;
    const char *sn;
    listed = 1;
    if (mcr_elf_object_of((uintptr_t)&find_hook, &bias, path, sizeof(path)) != 0 ||
        mcr_elfsym_open(&self, "/proc/self/exe") != 0)
      return NULL;
    for (size_t i = 0; mcr_elfsym_symbol(&self, i, &es, &sn) == 0 && n < 256; i++)
      if (ELF64_ST_TYPE(es.st_info) == STT_FUNC && es.st_value &&
          !strncmp(sn, "mcr_transform_", 14)) {
        list[n].name = mcr_arena_strdup(X.a, sn);
        list[n].fn = (hook_fn)(bias + es.st_value);
        n += list[n].name != NULL;
      }
    mcr_elfsym_close(&self);
  }
  for (size_t i = 0; i < n; i++)
    if (!strcmp(list[i].name, want))
      return list[i].fn;
  return NULL;
}

/* A plan of no operations (the hook does everything) between two types. */
static const struct mcr_xplan *empty_plan(const struct mcr_typetab *ot, uint32_t o,
                                          const struct mcr_typetab *nt, uint32_t n)
{
  struct mcr_type_rec r;
  struct mcr_xplan *p = mcr_arena_alloc(X.a, sizeof(*p), 8);
  if (!p)
    return NULL;
  for (int i = 0; i < 8 && mcr_typetab_type(ot, o, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    o = r.target;
  if (mcr_typetab_type(ot, o, &r) == 0)
    p->old_size = r.size;
  for (int i = 0; i < 8 && mcr_typetab_type(nt, n, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    n = r.target;
  if (mcr_typetab_type(nt, n, &r) == 0)
    p->new_size = r.size;
  return p->old_size && p->new_size ? p : NULL;
}

void *mcr_xform_global_hook(const char *sym)
{
  return (void *)find_hook("mcr_transform_global_", sym);
}

/* The old executable's load bias: its lowest mapping at file offset 0 minus its
 * first PT_LOAD's page. */
static void find_bias(pid_t pid)
{
  char path[64], exe[512], line[1024];
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)X.elf.map;
  uint64_t vmin = UINT64_MAX;
  snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
  ssize_t n = readlink(path, exe, sizeof(exe) - 1);
  if (n <= 0 || X.elf.size < sizeof(*eh) || eh->e_phoff > X.elf.size ||
      (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > X.elf.size - eh->e_phoff)
    return;
  exe[n] = 0;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(X.elf.map + eh->e_phoff);
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < vmin)
      vmin = ph[i].p_vaddr;
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f || vmin == UINT64_MAX) {
    if (f)
      fclose(f);
    return;
  }
  uintptr_t lowest = UINTPTR_MAX;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi, off;
    int pos = 0;
    if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %n", &lo, &hi, &off, &pos) < 3 || !pos)
      continue;
    char *p = line + pos, *nl = strchr(p, '\n');
    if (nl)
      *nl = 0;
    if (off == 0 && !strcmp(p, exe) && lo < lowest)
      lowest = lo;
  }
  fclose(f);
  if (lowest != UINTPTR_MAX) {
    X.bias = lowest - (uintptr_t)(vmin & ~(uint64_t)4095);
    X.have_bias = 1;
  }
}

static const unsigned char zeros[1] = {0}; /* "all zero" (.bss) */

/* sym's bytes at run-time address a (n bytes) in the file e, loaded at bias: the
 * file's .data, zeros for .bss, or NULL when no such symbol is there. */
static const unsigned char *initial_in(const struct mcr_elfsym *e, uintptr_t bias,
                                       const char *sym, uintptr_t a, size_t n)
{
  Elf64_Sym es;
  Elf64_Shdr sh;
  const char *name, *sname;
  for (size_t i = 0; mcr_elfsym_symbol(e, i, &es, &name) == 0; i++) {
    if (es.st_value + bias != a || es.st_size != n || strcmp(name, sym) ||
        mcr_elfsym_section(e, es.st_shndx, &sh, &sname) != 0)
      continue;
    if (sh.sh_type == SHT_NOBITS)
      return zeros; /* .bss: all zero */
    uint64_t at = sh.sh_offset + (es.st_value - sh.sh_addr);
    if (es.st_value < sh.sh_addr || at > e->size || n > e->size - at)
      return NULL;
    return e->map + at;
  }
  return NULL;
}

/* Whether val (n bytes at run-time address a) is still the file's init: an
 * aligned word for which in_image holds is a pointer the loader relocated, and
 * equal when the file holds 0 there (RELA) or its link-time address. */
static int same_as_file(const unsigned char *init, uintptr_t a, const unsigned char *val,
                        size_t n, uintptr_t bias, int (*in_image)(const void *, uintptr_t),
                        const void *ctx)
{
  if (!init)
    return 0;
  size_t lead = (8 - a % 8) % 8;
  for (size_t off = 0; off < n;) {
    if (off >= lead && (off - lead) % 8 == 0 && off + 8 <= n) {
      uintptr_t v, f;
      memcpy(&v, val + off, 8);
      if (in_image(ctx, v)) {
        if (init == zeros)
          return 0;
        memcpy(&f, init + off, 8);
        if (f != 0 && f != v - bias)
          return 0;
        off += 8;
        continue;
      }
    }
    if (val[off] != (init == zeros ? 0 : init[off]))
      return 0;
    off++;
  }
  return 1;
}

static int in_old_image(const void *im, uintptr_t v)
{
  return mcr_image_is_old(im, v);
}

/* In this process's executable (X.self_lo..hi: its loaded span). */
static int in_self(const void *unused, uintptr_t v)
{
  (void)unused;
  return v >= X.self_lo && v < X.self_hi;
}

const unsigned char *mcr_xform_initial(const char *sym, uintptr_t oa, size_t os)
{
  if (!X.elf_open || !X.have_bias)
    return NULL;
  return initial_in(&X.elf, X.bias, sym, oa, os);
}

int mcr_xform_unmodified(const unsigned char *init, uintptr_t oa, const unsigned char *val,
                         size_t os, struct mcr_image_map *im)
{
  return same_as_file(init, oa, val, os, X.bias, in_old_image, im);
}

int mcr_xform_new_written(const char *sym, uintptr_t na, size_t ns)
{
  if (!X.self_open || !ns)
    return 0;
  const unsigned char *init = initial_in(&X.self, X.self_bias, sym, na, ns);
  return init && !same_as_file(init, na, (const unsigned char *)na, ns, X.self_bias, in_self,
                               NULL);
}

/* This process's executable: its symbols, load bias and span (dl_iterate_phdr
 * through mcr_elf_object_of; this code is linked into it). Not open: new
 * globals are not checked (mcr_xform_new_written says 0). */
static int self_span(struct dl_phdr_info *info, size_t size, void *data)
{
  (void)size;
  (void)data;
  if (info->dlpi_name && info->dlpi_name[0])
    return 0; /* the executable is the entry with no name */
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD)
      continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (!X.self_lo || lo < X.self_lo)
      X.self_lo = lo;
    if (hi > X.self_hi)
      X.self_hi = hi;
  }
  X.self_bias = info->dlpi_addr;
  return 1;
}

static void open_self(void)
{
  if (mcr_elfsym_open(&X.self, "/proc/self/exe") != 0)
    return;
  dl_iterate_phdr(self_span, NULL);
  if (X.self_hi > X.self_lo)
    X.self_open = 1;
  else
    mcr_elfsym_close(&X.self);
}

int mcr_xform_open(pid_t old_pid, struct mcr_arena *a, char *err, size_t errlen)
{
  char path[64], key[1024];
  Elf64_Shdr sh;
  const char *name;
  size_t nglob = 0, nsite = 0;

  memset(&X, 0, sizeof(X));
  X.a = a;
  X.old_pid = old_pid;
  snprintf(path, sizeof(path), "/proc/%d/exe", (int)old_pid);
  if (mcr_elfsym_open(&X.elf, path) != 0) {
    snprintf(err, errlen, "cannot read the old executable %s: %s", path, strerror(errno));
    return -1;
  }
  X.elf_open = 1;
  const unsigned char *sec = NULL;
  size_t seclen = 0;
  for (size_t i = 0; mcr_elfsym_section(&X.elf, i, &sh, &name) == 0; i++)
    if (!strcmp(name, "mcr_types") && sh.sh_type != SHT_NOBITS && sh.sh_offset <= X.elf.size &&
        sh.sh_size <= X.elf.size - sh.sh_offset) {
      sec = X.elf.map + sh.sh_offset;
      seclen = sh.sh_size;
      break;
    }
  if (!sec) {
    snprintf(err, errlen, "the old executable %s has no mcr_types section", path);
    return -1;
  }
  find_bias(old_pid);
  open_self();
  if (!(X.blobs = mcr_arena_alloc(a, MAX_BLOBS * sizeof(*X.blobs), 8))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t pos = 0;
  const void *blob;
  size_t blen;
  while (X.nblobs < MAX_BLOBS && mcr_typetab_next(sec, seclen, &pos, &blob, &blen, NULL) == 1) {
    if (mcr_typetab_open(&X.blobs[X.nblobs], blob, blen, NULL) != 0)
      continue;
    nglob += mcr_typetab_nglobals(&X.blobs[X.nblobs]);
    nsite += mcr_typetab_nsites(&X.blobs[X.nblobs]);
    X.nblobs++;
  }
  X.gcap = pow2(2 * nglob + 2);
  X.scap = pow2(2 * nsite + 2);
  X.glob = mcr_arena_alloc(a, X.gcap * sizeof(struct ent), 8);
  X.site = mcr_arena_alloc(a, X.scap * sizeof(struct ent), 8);
  if (!X.glob || !X.site) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (uint32_t b = 0; b < X.nblobs; b++) {
    const struct mcr_typetab *tt = &X.blobs[b];
    const char *module = base_name(mcr_typetab_str(tt, tt->hdr.module));
    for (uint32_t i = 0; i < mcr_typetab_nglobals(tt); i++) {
      struct mcr_global_rec gr;
      if (mcr_typetab_global(tt, i, &gr) != 0 || (gr.flags & MCR_GF_CONST))
        continue; /* (thread-local variables too: converted per thread) */
      const char *sym = mcr_typetab_str(tt, gr.symbol);
      if (sym && *sym)
        put(X.glob, X.gcap, sym, (gr.flags & MCR_GF_INTERNAL) || (gr.flags & MCR_GF_LOCAL_STATIC)
                                     ? module
                                     : "",
            b, i);
    }
    for (uint32_t i = 0; i < mcr_typetab_nsites(tt); i++)
      if (mcr_typetab_site_key(tt, i, key, sizeof(key)) == 0)
        put(X.site, X.scap, mcr_arena_strdup(a, key), NULL, b, i);
  }
  X.spcap = pow2(2 * nsite + 2);
  X.splan = mcr_arena_alloc(a, X.spcap * sizeof(struct ent), 8);
  X.splan_info = mcr_arena_alloc(a, X.spcap * sizeof(*X.splan_info), 8);
  if (!X.splan || !X.splan_info) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

void mcr_xform_close(void)
{
  if (X.elf_open)
    mcr_elfsym_close(&X.elf);
  X.elf_open = 0;
  if (X.self_open)
    mcr_elfsym_close(&X.self);
  X.self_open = 0;
}

static const char *rendered(const struct mcr_typetab *tt, uint32_t t, uint32_t shape)
{
  char buf[256];
  int n = shape ? mcr_type_render_shape(tt, t, shape, buf, sizeof(buf))
                : mcr_type_render(tt, t, buf, sizeof(buf));
  return mcr_arena_strdup(X.a, n < 0 ? "?" : buf);
}

/* Where type t is declared, "file:line", or "". */
static const char *decl_of(const struct mcr_typetab *tt, uint32_t t)
{
  struct mcr_type_rec r;
  char buf[512];
  for (int i = 0; i < 8 && t != MCR_NO_TYPE && mcr_typetab_type(tt, t, &r) == 0; i++) {
    if (r.decl_line && (r.kind == MCR_TYPE_STRUCT || r.kind == MCR_TYPE_UNION ||
                        r.kind == MCR_TYPE_ENUM || i > 0 || r.kind == MCR_TYPE_TYPEDEF)) {
      snprintf(buf, sizeof(buf), "%s:%u", mcr_typetab_str(tt, r.decl_file), r.decl_line);
      return mcr_arena_strdup(X.a, buf);
    }
    if (r.kind != MCR_TYPE_TYPEDEF && r.kind != MCR_TYPE_ARRAY)
      break;
    t = r.target;
  }
  return "";
}

/* A conflict line's fields (update.h) into buf, for a conflict reported later. */
static void structured(char *buf, size_t len, const char *kind, const char *msg, const char *object,
                       const char *otype, const char *ntype, const char *oloc, const char *nloc,
                       const char *stack, const char *fix)
{
  const char *const f[MCR_CF_COUNT] = {kind, msg, object, otype, ntype, oloc, nloc, stack, fix};
  struct mcr_buf b = {0};
  mcr_conflict_fields(&b, f);
  snprintf(buf, len, "%.*s", b.bad ? 0 : (int)b.len, b.p ? (const char *)b.p : "");
  mcr_buf_free(&b);
}

int mcr_xform_global(const struct mcr_typetab *ntab, const struct mcr_global_rec *ngr,
                     size_t osize, size_t nsize, const struct mcr_xplan **plan, char *why,
                     size_t whylen)
{
  const char *sym = mcr_typetab_str(ntab, ngr->symbol);
  const char *module = base_name(mcr_typetab_str(ntab, ntab->hdr.module));
  const struct ent *e =
      get(X.glob, X.gcap, sym,
          (ngr->flags & (MCR_GF_INTERNAL | MCR_GF_LOCAL_STATIC)) ? module : "");
  char nloc[512], oloc[512], obj[600];
  struct mcr_xerror xe;

  *plan = NULL;
  snprintf(nloc, sizeof(nloc), "%s:%u", mcr_typetab_str(ntab, ngr->file), ngr->line);
  snprintf(obj, sizeof(obj), "global %s", sym);
  if (!e) {
    if (osize == nsize)
      return 0; /* no old type information: the same size is taken as the same type */
    structured(why, whylen, "global",
               "changed size and the old version has no type information for it", obj, "",
               rendered(ntab, ngr->type, 0), "", nloc, "", "build both versions with mcr-clang");
    return -1;
  }
  const struct mcr_typetab *otab = &X.blobs[e->blob];
  struct mcr_global_rec ogr;
  if (mcr_typetab_global(otab, e->idx, &ogr) != 0)
    return osize == nsize ? 0 : -1;
  snprintf(oloc, sizeof(oloc), "%s:%u", mcr_typetab_str(otab, ogr.file), ogr.line);
  if (ogr.type == MCR_NO_TYPE || ngr->type == MCR_NO_TYPE) {
    if (osize == nsize)
      return 0;
    structured(why, whylen, "global", "changed size and has no type in one version", obj,
               rendered(otab, ogr.type, 0), rendered(ntab, ngr->type, 0), oloc, nloc, "",
               "give the global a C type (not an opaque byte array)");
    return -1;
  }
  hook_fn hook = find_hook("mcr_transform_global_", sym);
  int bad = mcr_xplan_build(X.a, otab, ogr.type, ntab, ngr->type, mcr_image_renames(), plan,
                            &xe) != 0;
  if (bad && hook && (*plan = empty_plan(otab, ogr.type, ntab, ngr->type)))
    return 1; /* the user's transformation does it all */
  if (!*plan || (xe.msg[0] && !hook)) {
    char msg[900];
    snprintf(msg, sizeof(msg), "%s: %s", xe.path, xe.msg);
    structured(why, whylen, "type", msg, obj, rendered(otab, ogr.type, 0),
               rendered(ntab, ngr->type, 0), decl_of(otab, ogr.type), decl_of(ntab, ngr->type),
               "", FIX_HOOK);
    *plan = NULL;
    return -1;
  }
  if ((*plan)->identical && osize == nsize && !hook) {
    *plan = NULL;
    return 0;
  }
  return 1;
}

int mcr_xform_add_global(const char *name, uintptr_t oa, size_t os, uintptr_t na, size_t ns,
                         const struct mcr_xplan *plan)
{
  if (X.nchg == X.chgcap) {
    size_t nc = X.chgcap ? 2 * X.chgcap : 16;
    struct gchg *n = mcr_arena_alloc(X.a, nc * sizeof(*n), 8);
    if (!n)
      return -1;
    if (X.nchg)
      memcpy(n, X.chg, X.nchg * sizeof(*n));
    X.chg = n;
    X.chgcap = nc;
  }
  /* kept sorted by old address (insertion: few changed globals) */
  size_t i = X.nchg;
  while (i > 0 && X.chg[i - 1].oa > oa) {
    X.chg[i] = X.chg[i - 1];
    i--;
  }
  X.chg[i] = (struct gchg){.name = name, .oa = oa, .na = na, .os = os, .ns = ns, .plan = plan};
  X.nchg++;
  return 0;
}

static const struct gchg *chg_at(uintptr_t v)
{
  size_t lo = 0, hi = X.nchg;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (X.chg[mid].oa <= v)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (!lo)
    return NULL;
  const struct gchg *g = &X.chg[lo - 1];
  return v < g->oa + g->os ? g : NULL;
}

/* The array element plan of a top-level array global: the plan's ops are the
 * elements' (repeated); content matching needs the element sizes. */
static int array_shape(const struct mcr_typetab *tt, uint32_t t, size_t *esize, size_t *count)
{
  struct mcr_type_rec r, e;
  for (int i = 0; i < 8 && mcr_typetab_type(tt, t, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    t = r.target;
  if (mcr_typetab_type(tt, t, &r) != 0 || r.kind != MCR_TYPE_ARRAY || !r.count)
    return -1;
  t = r.target;
  for (int i = 0; i < 8 && mcr_typetab_type(tt, t, &e) == 0 && e.kind == MCR_TYPE_TYPEDEF; i++)
    t = e.target;
  if (mcr_typetab_type(tt, t, &e) != 0 || !e.size)
    return -1;
  *esize = e.size;
  *count = r.count;
  return 0;
}

int mcr_xform_translate(uintptr_t v, uintptr_t *nv, char *why, size_t whylen)
{
  const struct gchg *g;
  uint64_t off;
  if (!X.nchg || !(g = chg_at(v)))
    return 0;
  off = v - g->oa;
  if (g->elem) {
    size_t i = off / g->oes, sub = off % g->oes;
    if (i >= g->ocount || g->elem[i] == UINT32_MAX) {
      snprintf(why, whylen, "element %zu of %s has no counterpart in the new version", i, g->name);
      return -1;
    }
    *nv = g->na + (uintptr_t)g->elem[i] * g->nes + sub;
    return 1;
  }
  if (mcr_xplan_map_offset(g->plan, off, g->os, &off) != 0) {
    char what[400], fix[400];
    mcr_xplan_describe_lost(g->plan, v - g->oa, what, sizeof(what), fix, sizeof(fix));
    snprintf(why, whylen, "it points into %s+%llu, %s: %s", g->name,
             (unsigned long long)(v - g->oa), what, fix);
    return -1;
  }
  *nv = g->na + off;
  return 1;
}

int mcr_xform_global_kept(uintptr_t na)
{
  for (size_t i = 0; i < X.nchg; i++)
    if (X.chg[i].na == na)
      return X.chg[i].elem != NULL;
  return 0;
}

/* Content matching: an array global whose element count changed, with the same
 * element type. Each old element, its image pointers translated, is looked for
 * among the new elements; when every old element is found exactly once the array
 * is a static table (an entry inserted or removed): pointers into it follow their
 * element, and its value stays the new version's. */
static unsigned char *read_old(pid_t pid, uintptr_t addr, size_t len)
{
  unsigned char *buf = mcr_arena_alloc(X.a, len + 8, 16);
  if (!buf)
    return NULL;
  struct iovec l = {buf, len}, r = {(void *)addr, len};
  if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)len)
    return NULL;
  return buf;
}

size_t mcr_xform_match_content(pid_t old_pid, struct mcr_image_map *im)
{
  size_t matched = 0;
  for (size_t gi = 0; gi < X.nchg; gi++) {
    struct gchg *g = &X.chg[gi];
    if (!g->oes || !g->nes || g->oes != g->nes || g->os / g->oes == g->ns / g->nes)
      continue;
    size_t es = g->oes, oc = g->os / es, nc = g->ns / es;
    unsigned char *old = read_old(old_pid, g->oa, g->os);
    const unsigned char *cur = (const unsigned char *)g->na;
    uint32_t *map = mcr_arena_alloc(X.a, oc * sizeof(uint32_t), 8);
    uint8_t *used = mcr_arena_alloc(X.a, nc, 1);
    if (!old || !map || !used)
      continue;
    /* translate the old image pointers (word-aligned in the element) */
    for (size_t off = 0; off + 8 <= g->os; off += 8) {
      uintptr_t v, nv;
      char why[256];
      memcpy(&v, old + off, 8);
      if (!mcr_image_is_old(im, v))
        continue;
      int r = mcr_xform_translate(v, &nv, why, sizeof(why));
      if (r == 0)
        r = mcr_image_translate(im, v, &nv, why, sizeof(why)) == 0 ? 1 : -1;
      if (r == 1)
        memcpy(old + off, &nv, 8);
    }
    size_t found = 0;
    for (size_t i = 0; i < oc; i++) {
      map[i] = UINT32_MAX;
      /* new elements are mostly in the same order: search from i's neighbourhood */
      for (size_t d = 0; d < nc && map[i] == UINT32_MAX; d++) {
        size_t cand[2] = {i + d, i >= d ? i - d : SIZE_MAX};
        for (int k = 0; k < 2; k++) {
          size_t j = cand[k];
          if (j >= nc || used[j] || (k == 1 && d == 0))
            continue;
          if (!memcmp(old + i * es, cur + j * es, es)) {
            map[i] = (uint32_t)j;
            used[j] = 1;
            break;
          }
        }
      }
      found += map[i] != UINT32_MAX;
    }
    if (found == oc) {
      g->elem = map;
      g->ocount = oc;
      matched++;
    }
  }
  return matched;
}

/* Whether type t holds a pointer (in its first 64 words). */
static int has_pointer(const struct mcr_typetab *tt, uint32_t t, size_t size)
{
  uint8_t cls[64] = {0};
  size_t nw = (size + 7) / 8 < 64 ? (size + 7) / 8 : 64;
  mcr_xform_classify(tt, t, 0, cls, nw, 0);
  for (size_t i = 0; i < nw; i++)
    if (cls[i] == W_PTR)
      return 1;
  return 0;
}

void mcr_xform_global_shape(uintptr_t na, const struct mcr_typetab *ntab, uint32_t ntype)
{
  size_t es, count;
  struct mcr_type_rec r;
  uint32_t et = ntype;
  /* the element type (content matching is for tables: elements holding pointers,
   * names and handlers; an array of plain numbers whose new initial value happens
   * to contain the old values is data, matched by index) */
  for (int i = 0; i < 8 && mcr_typetab_type(ntab, et, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    et = r.target;
  if (mcr_typetab_type(ntab, et, &r) != 0 || r.kind != MCR_TYPE_ARRAY)
    return;
  et = r.target;
  for (size_t i = 0; i < X.nchg; i++)
    if (X.chg[i].na == na && array_shape(ntab, ntype, &es, &count) == 0 && X.chg[i].plan &&
        X.chg[i].plan->old_size % es == 0 && has_pointer(ntab, et, es)) {
      X.chg[i].oes = es;
      X.chg[i].nes = es;
    }
}

/* ---- sites ---- */

int mcr_xform_site(const char *key, struct mcr_site *s)
{
  const struct ent *e = get(X.site, X.scap, key, NULL);
  struct mcr_typetab ntab;
  struct mcr_site_rec nrec, orec;
  struct mcr_xerror xe;
  char buf[1024];

  if (!e || !s || !s->blob || mcr_typetab_open(&ntab, s->blob, s->blob->total_size, NULL) != 0 ||
      mcr_typetab_site(&ntab, s->index, &nrec) != 0)
    return 0;
  const struct mcr_typetab *otab = &X.blobs[e->blob];
  if (mcr_typetab_site(otab, e->idx, &orec) != 0 || orec.type == MCR_NO_TYPE ||
      nrec.type == MCR_NO_TYPE || orec.shape == MCR_SHAPE_UNKNOWN ||
      nrec.shape == MCR_SHAPE_UNKNOWN)
    return 0; /* untyped on a side: kept as it is, traced conservatively */
  const struct mcr_xplan *p = NULL;
  int bad =
      mcr_xplan_build(X.a, otab, orec.type, &ntab, nrec.type, mcr_image_renames(), &p, &xe) != 0;
  const char *tname = mcr_type_name(&ntab, nrec.type);
  hook_fn hook = find_hook("mcr_transform_type_", tname);
  if (bad && hook && (p = empty_plan(otab, orec.type, &ntab, nrec.type)))
    bad = 0; /* the user's transformation does it all */
  if (!bad && p->identical && !hook)
    return 0;
  struct tinfo *ti = mcr_arena_alloc(X.a, sizeof(*ti), 8);
  struct mcr_typetab *nt = mcr_arena_alloc(X.a, sizeof(*nt), 8);
  if (!ti || !nt)
    return -1;
  *nt = ntab;
  ti->key = mcr_arena_strdup(X.a, key);
  ti->plan = bad ? NULL : p;
  ti->hook = hook;
  if (hook) {
    char hn[300];
    snprintf(hn, sizeof(hn), "mcr_transform_type_%s", tname);
    ti->hook_name = mcr_arena_strdup(X.a, hn);
  }
  ti->otab = otab;
  ti->ntab = nt;
  ti->otype = orec.type;
  ti->ntype = nrec.type;
  ti->shape = nrec.shape == orec.shape ? orec.shape : MCR_SHAPE_UNKNOWN;
  if (!bad && ti->shape == MCR_SHAPE_UNKNOWN) {
    bad = 1;
    snprintf(xe.path, sizeof(xe.path), "(whole object)");
    snprintf(xe.msg, sizeof(xe.msg), "the allocation changed from %s to %s",
             mcr_site_shape_name(orec.shape), mcr_site_shape_name(nrec.shape));
    ti->plan = NULL;
  }
  snprintf(buf, sizeof(buf), "%s:%u", mcr_typetab_str(otab, orec.file), orec.line);
  ti->old_loc = mcr_arena_strdup(X.a, buf);
  snprintf(buf, sizeof(buf), "%s:%u", mcr_typetab_str(&ntab, nrec.file), nrec.line);
  ti->new_loc = mcr_arena_strdup(X.a, buf);
  ti->old_name = rendered(otab, orec.type, orec.shape);
  ti->new_name = rendered(&ntab, nrec.type, nrec.shape);
  if (bad) {
    snprintf(buf, sizeof(buf), "%s: %s", xe.path, xe.msg);
    ti->error = mcr_arena_strdup(X.a, buf);
  }
  size_t h = hash2(key, NULL) & (X.spcap - 1);
  while (X.splan[h].k1 && strcmp(X.splan[h].k1, key))
    h = (h + 1) & (X.spcap - 1);
  if (X.splan[h].k1)
    return 1;
  X.splan[h].k1 = ti->key;
  X.splan_info[h] = ti;
  X.nsplans++;
  return 1;
}

/* ---- element types of untyped pool pieces (transfer.c, --reinit) ---- */

/* The type a pointer at byte off of an object of type t points to: the member
 * there, through structs and arrays; MCR_NO_TYPE if no pointer starts there. */
static uint32_t pointee_at(const struct mcr_typetab *tt, uint32_t t, uint64_t off)
{
  struct mcr_type_rec r, e;
  for (int depth = 0; depth < 32 && mcr_typetab_strip(tt, t, &r, NULL) == 0; depth++) {
    if (r.kind == MCR_TYPE_POINTER) {
      return off == 0 ? r.target : MCR_NO_TYPE;
    } else if (r.kind == MCR_TYPE_ARRAY) {
      if (mcr_typetab_strip(tt, r.target, &e, NULL) != 0 || !e.size)
        return MCR_NO_TYPE;
      off %= e.size;
      t = r.target;
    } else if (r.kind == MCR_TYPE_STRUCT) {
      uint32_t next = MCR_NO_TYPE;
      for (uint32_t i = 0; i < r.count && next == MCR_NO_TYPE; i++) {
        struct mcr_member_rec m;
        struct mcr_type_rec mt;
        if (mcr_typetab_member(tt, r.first_member + i, &m) != 0 || m.bit_size ||
            mcr_typetab_strip(tt, m.type, &mt, NULL) != 0)
          continue;
        uint64_t mo = m.offset_bits / 8;
        if (off >= mo && off < mo + mt.size) {
          next = m.type;
          off -= mo;
        }
      }
      if (next == MCR_NO_TYPE)
        return MCR_NO_TYPE;
      t = next;
    } else {
      return MCR_NO_TYPE;
    }
  }
  return MCR_NO_TYPE;
}

/* The struct type t names, through typedefs, if defined (not only declared). */
static int defined_struct(const struct mcr_typetab *tt, uint32_t t, uint32_t *out,
                          struct mcr_type_rec *r)
{
  return mcr_typetab_strip(tt, t, r, out) == 0 && r->kind == MCR_TYPE_STRUCT && r->size &&
                 !(r->flags & MCR_TF_INCOMPLETE) && *mcr_typetab_str(tt, r->name)
             ? 0
             : -1;
}

const struct mcr_xplan *mcr_xform_pointee_plan(uint32_t tag, uint64_t off, const char **name)
{
  static struct {
    char name[128];
    const struct mcr_xplan *plan;
  } seen[32];
  static size_t nseen;
  struct mcr_typetab *ntab = X.a ? mcr_arena_alloc(X.a, sizeof(*ntab), 8) : NULL;
  struct mcr_site_rec rec;
  struct mcr_type_rec r;
  uint32_t nt;

  if (!ntab || mcr_site_record(tag, ntab, &rec) != 0 || rec.type == MCR_NO_TYPE ||
      rec.shape == MCR_SHAPE_UNKNOWN || mcr_typetab_strip(ntab, rec.type, &r, NULL) != 0)
    return NULL;
  if (rec.shape == MCR_SHAPE_ARRAY && r.size) /* an element's offset */
    off %= r.size;
  if (defined_struct(ntab, pointee_at(ntab, rec.type, off), &nt, &r) != 0)
    return NULL;
  const char *want = mcr_typetab_str(ntab, r.name);
  for (size_t i = 0; i < nseen; i++)
    if (!strcmp(seen[i].name, want)) {
      *name = seen[i].name;
      return seen[i].plan;
    }
  const struct mcr_xplan *plan = NULL;
  for (size_t b = 0; b < X.nblobs && !plan; b++) {
    const struct mcr_typetab *ot = &X.blobs[b];
    for (uint32_t i = 0; i < mcr_typetab_ntypes(ot) && !plan; i++) {
      struct mcr_type_rec o;
      struct mcr_xerror xe;
      const struct mcr_xplan *p;
      if (mcr_typetab_type(ot, i, &o) != 0 || o.kind != MCR_TYPE_STRUCT || !o.size ||
          (o.flags & MCR_TF_INCOMPLETE) || strcmp(mcr_typetab_str(ot, o.name), want))
        continue;
      if (mcr_xplan_build(X.a, ot, i, ntab, nt, mcr_image_renames(), &p, &xe) == 0)
        plan = p;
      else
        break; /* the type's change has no plan: no map */
    }
  }
  if (nseen < sizeof(seen) / sizeof(seen[0]) && strlen(want) < sizeof(seen[0].name)) {
    snprintf(seen[nseen].name, sizeof(seen[nseen].name), "%s", want);
    seen[nseen].plan = plan;
    *name = seen[nseen++].name;
  } else {
    *name = "";
  }
  return plan;
}

void mcr_xform_tag(uint32_t tag, const char *key)
{
  if (tag > MCR_TAG_MAX || !X.spcap || !X.nsplans)
    return;
  size_t h = hash2(key, NULL) & (X.spcap - 1);
  for (size_t n = 0; n < X.spcap && X.splan[h].k1; n++, h = (h + 1) & (X.spcap - 1))
    if (!strcmp(X.splan[h].k1, key)) {
      X.tag[tag] = X.splan_info[h];
      return;
    }
}

size_t mcr_xform_changed_globals(void) { return X.nchg; }
size_t mcr_xform_changed_sites(void) { return X.nsplans; }

/* ---- for xform_heap.c (xform_int.h) ---- */

struct mcr_arena *mcr_xform_arena(void) { return X.a; }

const struct tinfo *mcr_xform_tinfo(uint32_t tag)
{
  return tag <= MCR_TAG_MAX ? X.tag[tag] : NULL;
}

