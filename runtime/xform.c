/*
 * xform.c - type transformation during a live update; see xform.h.
 */
#define _GNU_SOURCE
#include "xform.h"

#include <errno.h>
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

typedef int (*hook_fn)(void *new, size_t new_size, const void *old, size_t old_size);

/* What is known of the objects of one new tag whose type changed. */
struct tinfo {
  const char *key;
  const struct mcr_xplan *plan; /* NULL: the change could not be planned (error) */
  const char *error;            /* why not, structured conflict fields after the kind */
  const struct mcr_typetab *otab, *ntab;
  uint32_t otype, ntype, shape;
  const char *old_loc, *new_loc, *old_name, *new_name;
  hook_fn hook; /* the user's transformation, run after the plan */
  const char *hook_name;
};

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

const unsigned char *mcr_xform_initial(const char *sym, uintptr_t oa, size_t os)
{
  Elf64_Sym es;
  Elf64_Shdr sh;
  const char *name, *sname;
  if (!X.elf_open || !X.have_bias)
    return NULL;
  for (size_t i = 0; mcr_elfsym_symbol(&X.elf, i, &es, &name) == 0; i++) {
    if (es.st_value + X.bias != oa || es.st_size != os || strcmp(name, sym) ||
        mcr_elfsym_section(&X.elf, es.st_shndx, &sh, &sname) != 0)
      continue;
    if (sh.sh_type == SHT_NOBITS)
      return zeros; /* .bss: all zero */
    uint64_t at = sh.sh_offset + (es.st_value - sh.sh_addr);
    if (es.st_value < sh.sh_addr || at > X.elf.size || os > X.elf.size - at)
      return NULL;
    return X.elf.map + at;
  }
  return NULL;
}

int mcr_xform_unmodified(const unsigned char *init, uintptr_t oa, const unsigned char *val,
                         size_t os, struct mcr_image_map *im)
{
  if (!init)
    return 0;
  size_t lead = (8 - oa % 8) % 8;
  for (size_t off = 0; off < os;) {
    if (off >= lead && (off - lead) % 8 == 0 && off + 8 <= os) {
      uintptr_t v, f;
      memcpy(&v, val + off, 8);
      if (mcr_image_is_old(im, v)) {
        /* a relocated pointer: the file holds 0 or the link-time address */
        if (init == zeros)
          return 0;
        memcpy(&f, init + off, 8);
        if (f != 0 && f != v - X.bias)
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
      if (mcr_typetab_global(tt, i, &gr) != 0 || (gr.flags & (MCR_GF_CONST | MCR_GF_TLS)))
        continue;
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

#define FIX_HOOK                                                                          \
  "register a transformation for the type with MCR_TRANSFORM (docs/update.md, \"User "   \
  "transformations\"), or keep the old field's type"

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
  if (mcr_xplan_build(X.a, otab, ogr.type, ntab, ngr->type, plan, &xe) != 0 && hook &&
      (*plan = empty_plan(otab, ogr.type, ntab, ngr->type)))
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
    snprintf(why, whylen, "it points into %s+%llu, a field the new version removed or converted",
             g->name, (unsigned long long)(v - g->oa));
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

static void classify(const struct mcr_typetab *tt, uint32_t t, uint64_t off, uint8_t *cls,
                     size_t nwords, int depth);

/* Whether type t holds a pointer (in its first 64 words). */
static int has_pointer(const struct mcr_typetab *tt, uint32_t t, size_t size)
{
  uint8_t cls[64] = {0};
  size_t nw = (size + 7) / 8 < 64 ? (size + 7) / 8 : 64;
  classify(tt, t, 0, cls, nw, 0);
  for (size_t i = 0; i < nw; i++)
    if (cls[i] == 1 /* W_PTR */)
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
  int bad = mcr_xplan_build(X.a, otab, orec.type, &ntab, nrec.type, &p, &xe) != 0;
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

/* ---- what the words of a typed object are ---- */

enum { W_NONE = 0, W_PTR = 1, W_CONS = 2 };

/* Marks the words of type t at byte off in cls[] (nwords): pointers precise,
 * unions, character arrays and pointer-sized integers conservative. */
static void classify(const struct mcr_typetab *tt, uint32_t t, uint64_t off, uint8_t *cls,
                     size_t nwords, int depth)
{
  struct mcr_type_rec r;
  if (depth > 32 || t == MCR_NO_TYPE || mcr_typetab_type(tt, t, &r) != 0 || off / 8 >= nwords)
    return;
  switch (r.kind) {
  case MCR_TYPE_TYPEDEF:
    classify(tt, r.target, off, cls, nwords, depth + 1);
    return;
  case MCR_TYPE_POINTER:
    if (off % 8 == 0)
      cls[off / 8] = W_PTR;
    return;
  case MCR_TYPE_INT:
    if (r.size == 8 && off % 8 == 0 && cls[off / 8] == W_NONE)
      cls[off / 8] = W_CONS; /* intptr_t, size_t, long: may hold an address */
    return;
  case MCR_TYPE_UNION:
    for (uint64_t b = off / 8 * 8; b < off + r.size && b / 8 < nwords; b += 8)
      cls[b / 8] = W_CONS;
    return;
  case MCR_TYPE_STRUCT:
    for (uint32_t i = 0; i < r.count; i++) {
      struct mcr_member_rec m;
      if (mcr_typetab_member(tt, r.first_member + i, &m) == 0 && !m.bit_size)
        classify(tt, m.type, off + m.offset_bits / 8, cls, nwords, depth + 1);
    }
    return;
  case MCR_TYPE_ARRAY: {
    struct mcr_type_rec e;
    uint32_t et = r.target;
    for (int i = 0; i < 8 && mcr_typetab_type(tt, et, &e) == 0 && e.kind == MCR_TYPE_TYPEDEF; i++)
      et = e.target;
    if (mcr_typetab_type(tt, et, &e) != 0 || !e.size)
      return;
    if (e.kind == MCR_TYPE_INT && e.size == 1) { /* a character buffer */
      for (uint64_t b = off / 8 * 8; b < off + r.size && b / 8 < nwords; b += 8)
        cls[b / 8] = W_CONS;
      return;
    }
    if (e.kind != MCR_TYPE_STRUCT && e.kind != MCR_TYPE_UNION && e.kind != MCR_TYPE_POINTER &&
        e.kind != MCR_TYPE_ARRAY && !(e.kind == MCR_TYPE_INT && e.size == 8))
      return;
    for (uint32_t i = 0; i < r.count && (off + (uint64_t)i * e.size) / 8 < nwords; i++)
      classify(tt, r.target, off + (uint64_t)i * e.size, cls, nwords, depth + 1);
    return;
  }
  default:
    return;
  }
}

/* Per tag: the class of each word of one element (arrays repeat it), and of the
 * words after a flexible struct's fixed part. */
struct wmap {
  uint8_t *cls;
  size_t nwords; /* of one element (the type's size / 8); 0: all conservative */
  int array;
  uint8_t *tail;
  size_t tail_words, tail_off; /* flex: element words and where the tail starts */
};

static struct wmap *wmaps[MCR_TAG_MAX + 1];
static uint8_t wdone[MCR_TAG_MAX + 1];

static struct wmap *wmap_build(const struct mcr_typetab *tt, uint32_t type, uint32_t shape)
{
  struct mcr_type_rec r;
  uint32_t t = type;
  struct wmap *w = mcr_arena_alloc(X.a, sizeof(*w), 8);
  if (!w)
    return NULL;
  for (int i = 0; i < 8 && mcr_typetab_type(tt, t, &r) == 0 && r.kind == MCR_TYPE_TYPEDEF; i++)
    t = r.target;
  if (mcr_typetab_type(tt, t, &r) != 0 || !r.size)
    return w; /* nwords 0: conservative */
  w->nwords = (r.size + 7) / 8;
  w->array = shape == MCR_SHAPE_ARRAY;
  if (!(w->cls = mcr_arena_alloc(X.a, w->nwords, 1)))
    return NULL;
  classify(tt, type, 0, w->cls, w->nwords, 0);
  if (shape == MCR_SHAPE_FLEX && r.kind == MCR_TYPE_STRUCT && r.count) {
    struct mcr_member_rec m;
    struct mcr_type_rec a, e;
    if (mcr_typetab_member(tt, r.first_member + r.count - 1, &m) == 0 &&
        mcr_typetab_type(tt, m.type, &a) == 0 && a.kind == MCR_TYPE_ARRAY &&
        mcr_typetab_type(tt, a.target, &e) == 0) {
      uint32_t et = a.target;
      for (int i = 0; i < 8 && e.kind == MCR_TYPE_TYPEDEF; i++) {
        et = e.target;
        if (mcr_typetab_type(tt, et, &e) != 0)
          break;
      }
      if (e.size && e.size % 8 == 0 && (m.offset_bits / 8) % 8 == 0) {
        w->tail_words = e.size / 8;
        w->tail_off = m.offset_bits / 8;
        if ((w->tail = mcr_arena_alloc(X.a, w->tail_words, 1)))
          classify(tt, et, 0, w->tail, w->tail_words, 0);
      } else if (e.kind == MCR_TYPE_INT && e.size == 1) {
        w->tail_words = 1; /* chars: conservative */
        w->tail_off = m.offset_bits / 8;
        if ((w->tail = mcr_arena_alloc(X.a, 1, 1)))
          w->tail[0] = W_CONS;
      }
    }
  }
  return w;
}

/* The class of word i of an object with map w (NULL: untyped). */
static inline int word_class(const struct wmap *w, size_t i)
{
  if (!w || !w->nwords)
    return W_CONS;
  if (w->array)
    return w->cls[i % w->nwords];
  if (w->tail && i * 8 >= w->tail_off)
    return w->tail[(i * 8 - w->tail_off) / 8 % w->tail_words];
  return i < w->nwords ? w->cls[i] : W_NONE; /* slack after the type: not the object's */
}

/* The map of a live object's tag: the old type's when the tag's type changed (the
 * object is still in the old layout while it is scanned), else the new site's. */
static const struct wmap *wmap_of(uint32_t tag)
{
  if (tag < MCR_TAG_FIRST_SITE || tag > MCR_TAG_MAX)
    return NULL;
  if (wdone[tag])
    return wmaps[tag];
  wdone[tag] = 1;
  const struct tinfo *ti = X.tag[tag];
  if (ti) {
    wmaps[tag] = wmap_build(ti->otab, ti->otype, ti->shape);
    return wmaps[tag];
  }
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  if (mcr_site_record(tag, &tt, &rec) != 0 || rec.type == MCR_NO_TYPE ||
      rec.shape == MCR_SHAPE_UNKNOWN)
    return NULL;
  struct mcr_typetab *keep = mcr_arena_alloc(X.a, sizeof(*keep), 8);
  if (!keep)
    return NULL;
  *keep = tt;
  wmaps[tag] = wmap_build(keep, rec.type, rec.shape);
  return wmaps[tag];
}

/* ---- the heap transform ---- */

struct chobj {
  uintptr_t base, nbase;
  size_t size, nlen;
  uint32_t tag, count; /* count: array elements */
  const struct tinfo *ti;
};

struct patch {
  uintptr_t slot; /* the word to rewrite (old location) */
  uint32_t target;
  uint32_t off; /* into the target */
};

static struct {
  struct chobj *v;
  size_t n, cap;
  struct patch *p;
  size_t np, pcap;
  uintptr_t lo, hi;
  struct mcr_buf *report;
  int *conflicts;
  size_t pinned, precise;
} H;

static void hconflict(const char *kind, const char *msg, const char *object, const char *otype,
                      const char *ntype, const char *oloc, const char *nloc, const char *fix)
{
  const char *const f[MCR_CF_COUNT] = {kind, msg, object, otype, ntype, oloc, nloc, "", fix};
  (*H.conflicts)++;
  if (*H.conflicts > 20)
    return;
  mcr_buf_printf(H.report, "conflict ");
  mcr_conflict_fields(H.report, f);
  mcr_buf_printf(H.report, "\n");
}

static int collect(const struct mcr_object *o, void *arg)
{
  (void)arg;
  if (o->tag > MCR_TAG_MAX || !X.tag[o->tag])
    return 0;
  if (H.n == H.cap) {
    size_t nc = H.cap ? 2 * H.cap : 1024;
    struct chobj *n = mcr_arena_alloc(X.a, nc * sizeof(*n), 8);
    if (!n)
      return -1;
    if (H.n)
      memcpy(n, H.v, H.n * sizeof(*n));
    H.v = n;
    H.cap = nc;
  }
  H.v[H.n++] = (struct chobj){.base = (uintptr_t)o->base, .size = o->size, .tag = o->tag,
                              .ti = X.tag[o->tag]};
  return 0;
}

/* Bottom-up merge sort by base, in arena memory (no qsort: it may malloc). The
 * heap walk gives each size class in address order, so often nothing moves. */
static int sort_objects(void)
{
  size_t k0 = 1;
  while (k0 < H.n && H.v[k0 - 1].base < H.v[k0].base)
    k0++;
  if (k0 >= H.n)
    return 0;
  struct chobj *tmp = mcr_arena_alloc(X.a, (H.n + 1) * sizeof(*tmp), 8);
  if (!tmp)
    return -1;
  struct chobj *a = H.v, *b = tmp;
  for (size_t w = 1; w < H.n; w *= 2) {
    for (size_t lo = 0; lo < H.n; lo += 2 * w) {
      size_t mid = lo + w < H.n ? lo + w : H.n, hi = lo + 2 * w < H.n ? lo + 2 * w : H.n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        b[k++] = a[i].base <= a[j].base ? a[i++] : a[j++];
      while (i < mid)
        b[k++] = a[i++];
      while (j < hi)
        b[k++] = a[j++];
    }
    struct chobj *t = a;
    a = b;
    b = t;
  }
  H.v = a;
  return 0;
}

/* Object base -> index in H.v, open addressing (built after the sort). */
static uint32_t *hidx;
static size_t hcap;

static inline size_t hslot(uintptr_t base)
{
  return (size_t)((base >> 4) * 0x9e3779b97f4a7c15ull >> 20) & (hcap - 1);
}

static int index_objects(void)
{
  hcap = 64;
  while (hcap < 2 * H.n + 2)
    hcap *= 2;
  if (!(hidx = mcr_arena_alloc(X.a, hcap * sizeof(*hidx), 8)))
    return -1;
  memset(hidx, 0xff, hcap * sizeof(*hidx));
  for (size_t i = 0; i < H.n; i++) {
    size_t h = hslot(H.v[i].base);
    while (hidx[h] != UINT32_MAX)
      h = (h + 1) & (hcap - 1);
    hidx[h] = (uint32_t)i;
  }
  return 0;
}

/* The changed object containing v, or -1: the heap finds the object (a page-map
 * look-up), its tag says whether its type changed, the index gives its entry. */
static long find_obj(uintptr_t v)
{
  struct mcr_object o;
  if (v < H.lo || v >= H.hi || mcr_heap_find((void *)v, &o) != 0 || o.tag > MCR_TAG_MAX ||
      !X.tag[o.tag])
    return -1;
  for (size_t h = hslot((uintptr_t)o.base); hidx[h] != UINT32_MAX; h = (h + 1) & (hcap - 1))
    if (H.v[hidx[h]].base == (uintptr_t)o.base)
      return hidx[h];
  return -1;
}

static const char *holder_name(uintptr_t slot, char *buf, size_t len)
{
  struct mcr_object o;
  struct mcr_typetab tt;
  struct mcr_site_rec rec;
  if (mcr_heap_find((void *)slot, &o) == 0) {
    if (mcr_site_record(o.tag, &tt, &rec) == 0)
      snprintf(buf, len, "heap object 0x%lx+%lu allocated at %s:%u (%s)",
               (unsigned long)(uintptr_t)o.base, (unsigned long)(slot - (uintptr_t)o.base),
               mcr_typetab_str(&tt, rec.file), rec.line,
               rec.type == MCR_NO_TYPE ? "untyped" : "a word of unknown meaning");
    else
      snprintf(buf, len, "untyped heap object 0x%lx+%lu", (unsigned long)(uintptr_t)o.base,
               (unsigned long)(slot - (uintptr_t)o.base));
  } else {
    snprintf(buf, len, "0x%lx", (unsigned long)slot);
  }
  return buf;
}

static int map_off(const struct chobj *c, uint64_t off, int as_field, uint64_t *out);

static void hit(uintptr_t *slot, int cls, const char *region)
{
  long t = find_obj(*slot);
  if (t < 0)
    return;
  struct chobj *c = &H.v[t];
  if (cls == W_PTR) {
    if (H.np == H.pcap) {
      size_t nc = H.pcap ? 2 * H.pcap : 4096;
      struct patch *n = mcr_arena_alloc(X.a, nc * sizeof(*n), 8);
      if (!n) {
        hconflict("other", "out of memory recording pointers to remap", "", "", "", "", "", "");
        return;
      }
      if (H.np)
        memcpy(n, H.p, H.np * sizeof(*n));
      H.p = n;
      H.pcap = nc;
    }
    H.p[H.np++] = (struct patch){(uintptr_t)slot, (uint32_t)t, (uint32_t)(*slot - c->base)};
    H.precise++;
    return;
  }
  /* a word of unknown meaning: the object must keep its address, and the word, if
   * it is a pointer, must stay right without being rewritten: allowed when the
   * object converts in place and the word points to its start or to a field that
   * keeps its offset */
  uint64_t off = *slot - c->base, noff;
  if (c->nlen <= c->size && map_off(c, off, 0, &noff) == 0 && noff == off) {
    H.pinned++;
    return;
  }
  char obj[200], holder[400], msg[900];
  const char *why = c->nlen > c->size
                        ? "the object cannot stay where it is (its new layout needs more room)"
                        : "it points into a field that moves";
  snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)c->base, c->size);
  if (region)
    snprintf(holder, sizeof(holder), "%s", region);
  else
    holder_name((uintptr_t)slot, holder, sizeof(holder));
  if (region)
    snprintf(msg, sizeof(msg),
             "its type changed, but %s may point to it (+%lu) and is not known to be a pointer, "
             "so it cannot be rewritten, and %s",
             holder, (unsigned long)(*slot - c->base), why);
  else
    snprintf(msg, sizeof(msg),
             "its type changed, but %s (at 0x%lx) may point to it (+%lu) and is not known to be "
             "a pointer, so it cannot be rewritten, and %s",
             holder, (unsigned long)(uintptr_t)slot, (unsigned long)(*slot - c->base), why);
  hconflict("pinned", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc, c->ti->new_loc,
            "give the holder a precise pointer type, or keep this type unchanged in this update");
}

static void scan_words(uintptr_t *w, size_t n, const struct wmap *m, const char *region)
{
  for (size_t i = 0; i < n; i++) {
    uintptr_t v = w[i];
    if (v < H.lo || v >= H.hi)
      continue;
    int cls = word_class(m, i);
    if (cls != W_NONE)
      hit(&w[i], cls, region);
  }
}

static int scan_object(const struct mcr_object *o, void *arg)
{
  (void)arg;
  scan_words((uintptr_t *)o->base, o->size / 8, wmap_of(o->tag), NULL);
  return *H.conflicts > 20 ? 1 : 0;
}

/* Where old offset off of changed object c is in its new layout: as a pointer
 * target (field 0: the object or element itself) or as a field (a slot). */
static int map_off(const struct chobj *c, uint64_t off, int as_field, uint64_t *out)
{
  const struct mcr_xplan *p = c->ti->plan;
  int (*map)(const struct mcr_xplan *, uint64_t, size_t, uint64_t *) =
      as_field ? mcr_xplan_map_field : mcr_xplan_map_offset;
  if (c->ti->shape == MCR_SHAPE_ARRAY) {
    uint64_t i = off / p->old_size, sub;
    if (map(p, off % p->old_size, p->old_size, &sub) != 0)
      return -1;
    *out = i * p->new_size + sub;
    return 0;
  }
  return map(p, off, c->size, out);
}

int mcr_xform_heap(const struct mcr_xform_region *regions, size_t nregions, struct mcr_buf *report,
                   int *conflicts)
{
  uint64_t t0 = mcr_update_now_ns();
  memset(&H, 0, sizeof(H));
  H.report = report;
  H.conflicts = conflicts;
  if (!X.nsplans)
    return 0;
  if (mcr_heap_foreach(collect, NULL) != 0 || sort_objects() != 0 || index_objects() != 0) {
    hconflict("other", "out of memory listing the objects of changed types", "", "", "", "", "",
              "");
    return -1;
  }
  if (!H.n)
    return 0;
  /* plans that could not be built are conflicts now that objects of them live */
  for (size_t i = 0; i < H.n; i++) {
    const struct tinfo *ti = H.v[i].ti;
    if (ti->plan)
      continue;
    char obj[200];
    size_t k = 0;
    for (size_t j = 0; j < H.n; j++)
      k += H.v[j].ti == ti;
    snprintf(obj, sizeof(obj), "%zu heap objects allocated at %s", k, ti->new_loc);
    hconflict("type", ti->error, obj, ti->old_name, ti->new_name, ti->old_loc, ti->new_loc,
              FIX_HOOK);
    for (size_t j = 0; j < H.n; j++) /* once per site */
      if (H.v[j].ti == ti)
        H.v[j].ti = NULL;
  }
  if (*conflicts)
    return -1;
  H.lo = H.v[0].base;
  H.hi = H.v[H.n - 1].base + H.v[H.n - 1].size;
  /* the new sizes: in place when the new layout fits the slot */
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    const struct mcr_xplan *p = c->ti->plan;
    if (c->ti->shape == MCR_SHAPE_ARRAY) {
      c->count = (uint32_t)(c->size / p->old_size);
      c->nlen = (size_t)c->count * p->new_size;
    } else {
      c->nlen = mcr_xplan_new_len(p, c->size < p->old_size ? p->old_size : c->size);
      if (c->ti->shape == MCR_SHAPE_SINGLE)
        c->nlen = p->new_size;
    }
  }
  /* the scan: every live object, then the globals and the parked stacks */
  uint64_t t1 = mcr_update_now_ns();
  mcr_heap_foreach(scan_object, NULL);
  for (size_t r = 0; r < nregions && *conflicts <= 20; r++) {
    const struct mcr_xform_region *g = &regions[r];
    uintptr_t lo = (g->lo + 7) & ~(uintptr_t)7;
    if (g->hi <= lo)
      continue;
    size_t nw = (g->hi - lo) / 8;
    struct wmap *m = NULL;
    if (g->tt) {
      m = mcr_arena_alloc(X.a, sizeof(*m), 8);
      if (m && (m->cls = mcr_arena_alloc(X.a, nw, 1))) {
        m->nwords = nw;
        classify(g->tt, g->type, lo - g->lo, m->cls, nw, 0);
      } else {
        m = NULL;
      }
    }
    scan_words((uintptr_t *)lo, nw, m, g->name);
  }
  uint64_t t2 = mcr_update_now_ns();
  if (*conflicts)
    return -1;
  /* convert: in place when the new layout fits the slot, else a new object */
  size_t moved = 0;
  struct mcr_xerror xe;
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    if (c->nlen <= c->size) {
      c->nbase = c->base;
    } else {
      void *n = mcr_heap_alloc(c->nlen, 16);
      if (!n) {
        hconflict("other", "out of memory for a converted object", "", c->ti->old_name,
                  c->ti->new_name, c->ti->old_loc, c->ti->new_loc, "");
        return -1;
      }
      memset(n, 0, c->nlen);
      mcr_heap_set_tag(n, c->tag);
      c->nbase = (uintptr_t)n;
      moved++;
    }
  }
  size_t maxsize = 0;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].size > maxsize)
      maxsize = H.v[i].size;
  unsigned char *old = mcr_arena_alloc(X.a, maxsize, 16); /* one object's old bytes */
  if (!old) {
    hconflict("other", "out of memory converting an object", "", "", "", "", "", "");
    return -1;
  }
  for (size_t i = 0; i < H.n; i++) {
    struct chobj *c = &H.v[i];
    const struct mcr_xplan *p = c->ti->plan;
    memcpy(old, (void *)c->base, c->size);
    unsigned char *dst = (unsigned char *)c->nbase;
    if (c->nbase == c->base)
      memset(dst, 0, c->size);
    int bad = 0;
    if (c->ti->shape == MCR_SHAPE_ARRAY) {
      for (uint32_t k = 0; k < c->count && !bad; k++) {
        bad = mcr_xplan_apply(p, old + (size_t)k * p->old_size, p->old_size,
                              dst + (size_t)k * p->new_size, p->new_size, &xe) != 0;
        if (!bad && c->ti->hook &&
            c->ti->hook(dst + (size_t)k * p->new_size, p->new_size, old + (size_t)k * p->old_size,
                        p->old_size) != 0) {
          bad = 1;
          snprintf(xe.path, sizeof(xe.path), "[%u]", k);
          snprintf(xe.msg, sizeof(xe.msg), "%s refused it", c->ti->hook_name);
        }
      }
    } else {
      size_t olen = c->ti->shape == MCR_SHAPE_FLEX ? c->size : p->old_size;
      bad = mcr_xplan_apply(p, old, olen, dst, c->nlen, &xe) != 0;
      if (!bad && c->ti->hook && c->ti->hook(dst, c->nlen, old, olen) != 0) {
        bad = 1;
        snprintf(xe.path, sizeof(xe.path), "(whole object)");
        snprintf(xe.msg, sizeof(xe.msg), "%s refused it", c->ti->hook_name);
      }
    }
    if (bad) {
      char obj[200], msg[900];
      snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)c->base, c->size);
      snprintf(msg, sizeof(msg), "field %s: %s", xe.path, xe.msg);
      hconflict("narrowing", msg, obj, c->ti->old_name, c->ti->new_name, c->ti->old_loc,
                c->ti->new_loc,
                "widen the new field, or register a transformation that handles the value");
    }
  }
  if (*conflicts)
    return -1;
  /* the pointers: each slot (moved with its holder when that was converted too) */
  size_t removed = 0;
  for (size_t k = 0; k < H.np; k++) {
    struct patch *q = &H.p[k];
    const struct chobj *t = &H.v[q->target];
    uint64_t noff, soff;
    uintptr_t slot = q->slot;
    long h = find_obj(slot);
    if (h >= 0) {
      const struct chobj *hc = &H.v[h];
      if (map_off(hc, slot - hc->base, 1, &soff) != 0)
        continue; /* the holder's field was removed: nothing to rewrite */
      slot = hc->nbase + soff;
    }
    if (map_off(t, q->off, 0, &noff) != 0) {
      removed++;
      char obj[200], msg[600];
      snprintf(obj, sizeof(obj), "heap object 0x%lx (%zu bytes)", (unsigned long)t->base, t->size);
      snprintf(msg, sizeof(msg),
               "a pointer at 0x%lx points to +%u inside it, a field the new version removed or "
               "converted",
               (unsigned long)q->slot, q->off);
      hconflict("type", msg, obj, t->ti->old_name, t->ti->new_name, t->ti->old_loc, t->ti->new_loc,
                "keep the field, or register a transformation");
      continue;
    }
    *(uintptr_t *)slot = t->nbase + noff;
  }
  if (*conflicts)
    return -1;
  for (size_t i = 0; i < H.n; i++)
    if (H.v[i].nbase != H.v[i].base)
      mcr_heap_free((void *)H.v[i].base);
  uint64_t t3 = mcr_update_now_ns();
  mcr_buf_printf(report,
                 "phase transform %llu %zu objects of %zu changed types converted (%zu moved), "
                 "%zu pointers remapped, %zu words of unknown meaning left as they are; scan %.1f "
                 "ms, convert %.1f ms\n",
                 (unsigned long long)(t3 - t0), H.n, X.nsplans, moved, H.precise, H.pinned,
                 (t2 - t1) / 1e6, (t3 - t2) / 1e6);
  (void)removed;
  return 0;
}
