/*
 * check.c - mcr-ctl check OLD NEW [--json]
 *
 * A static preview of a live update from executable OLD to executable NEW, two builds
 * of one program by mcr-clang: which globals and allocation sites change type, how
 * each change would be transformed, which transformations are risky (they may refuse
 * at update time, depending on the values), and which cannot be inferred at all (the
 * update would be refused). Nothing runs: both files' type tables (section mcr_types)
 * and symbol tables are read and compared with the rules of the runtime:
 *
 *  - globals are paired by symbol name as runtime/image.c's mcr_image_symbol() does
 *    (a file-local static by name and source file, else the global of that name);
 *    const and thread-local ones are not transferred; a global the executable's
 *    symbol table does not have (optimized away) is not either. The old type is the
 *    record xform.c's mcr_xform_global() finds (same symbol, a static of a module of
 *    the same base name); without one, or without a type on a side, the bytes are
 *    copied when the size is the same, else it is a conflict;
 *  - allocation sites are paired by the key of runtime/transfer.c's site_key():
 *    "module|function|callee|ordinal among the module's sites with that function
 *    and callee"; as in mcr_xform_site(), a site untyped on a side is kept as it is,
 *    a changed shape (single, array, flex) is a conflict unless the types are
 *    identical, and a conflict only matters if objects of the site are alive;
 *  - each pair's types are compared by mcr_xplan_build() (runtime/typediff.c), the
 *    code the update itself runs. A shrunk array global whose dropped elements are
 *    not zero in OLD's initial data (its .data bytes, or a dynamic relocation) is
 *    said to refuse unless the program cleared them.
 *
 * Exit 0 when no transfer would be refused, 1 when one would (a conflict at update
 * time), 2 for bad usage or bad input (one line on stderr, nothing on stdout).
 */
#define _GNU_SOURCE /* asprintf */
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ctl.h"
#include "elf.h"
#include "rename.h"
#include "typediff.h"
#include "typetab.h"

#define MAX_IMG_LINES 20 /* pointers without a counterpart listed for people */

/* ---- what is read from one executable -------------------------------------- */

struct sym {
  const char *name;
  const char *file; /* base name of the STT_FILE before a local symbol; "" for globals */
  int local;
  int code; /* a function */
  uint64_t value, size;
};

struct reloc { /* a dynamic relocation R_X86_64_RELATIVE: the word at off is addend */
  uint64_t off, addend;
};

struct gvar { /* a writable global of a type table */
  const struct mcr_typetab *tt;
  struct mcr_global_rec rec;
  const char *name, *symbol, *module, *file, *scope;
  int is_static;
  int paired;
};

struct asite { /* an allocation site of a type table */
  const struct mcr_typetab *tt;
  struct mcr_site_rec rec;
  const char *module, *file, *function, *callee;
  char *key;
  unsigned ordinal, same_count; /* among the module's sites with this function and callee */
  int paired;
};

/* A registered local variable's site (TypeTags.cpp: the callee names it). */
#define STACK_OBJ "__mcr_stack_obj:"
static int is_stack_obj(const struct asite *s)
{
  return s->callee && !strncmp(s->callee, STACK_OBJ, strlen(STACK_OBJ));
}

struct version {
  const char *cmd;  /* the command messages name: "check", "update" */
  const char *path;
  const char *role; /* "OLD" or "NEW" */
  struct mcr_elf elf;
  struct mcr_typetab *tabs;
  size_t ntabs;
  size_t ntypes;
  struct sym *syms; /* data symbols, by name (mcr_image_symbol's view) */
  size_t nsyms;
  struct sym *byaddr, *byname; /* every defined symbol, code too, by address and by name */
  size_t nall;
  struct reloc *relocs; /* by offset */
  size_t nrelocs;
  size_t nfiles, nlocals; /* STT_FILE symbols, local data symbols */
  struct gvar *globals;
  size_t nglobals;
  struct asite *sites;
  size_t nsites;
};

/* ---- results ---------------------------------------------------------------- */

enum outcome {
  OUT_IDENTICAL,
  OUT_TRANSFORM, /* a plan that is not a plain copy */
  OUT_REFUSED,   /* no plan: a conflict at update time */
  OUT_UNTYPED,   /* no type on one side: copied (globals) or kept as is (heap objects) */
  OUT_KEPT,      /* a global array of changed type whose initial data is not zero (a static
                    table): if the program never wrote it, NEW's value is kept, nothing
                    converted or refused; otherwise if_written says what happens */
  NOUT
};

struct item {
  int is_site;
  const struct gvar *og, *ng;
  const struct asite *os, *ns;
  uint64_t osize, nsize; /* a global's symbol sizes */
  const struct sym *osym; /* a global's symbol in OLD */
  enum outcome out;
  enum outcome if_written; /* OUT_KEPT: OUT_TRANSFORM or OUT_REFUSED */
  const char *hook;        /* NEW's user transformation for it (mcr/transform.h), or NULL */
  int by_hook;             /* mcr cannot convert it (err says why): the hook does it all */
  const struct mcr_xplan *plan;
  struct mcr_xerror err;
  char *old_type, *new_type; /* rendered (a site: with its shape) */
  char *encl;                /* refused: the type that holds the failing field */
  const char *encl_old_file, *encl_new_file;
  uint32_t encl_old_line, encl_new_line;
  char *fix;
  size_t risky;
  int dropped_data; /* a shrunk global array whose dropped part is not zero in OLD's image */
  int by_content;   /* an array global whose element count changed, same element size:
                       xform.c tries to match its entries by content */
  char *sig; /* grouping key for people: types, changes or error */
};

struct check {
  struct version v[2]; /* old, new */
  struct mcr_renames moves; /* --move-field */
  struct mcr_arena *arena;
  struct item *items;
  size_t nitems, cap;
  /* unpaired */
  const struct gvar **gadded, **gremoved;
  size_t ngadded, ngremoved;
  const struct asite **sadded, **sremoved;
  size_t nsadded, nsremoved;
  char **notes;
  size_t nnotes;
  size_t gmissing; /* table globals the new executable's symbol table lacks */
  struct imgref *imgs; /* pointers in OLD's initial data without a counterpart */
  size_t nimgs, imgcap;
};

struct imgref {
  const struct item *holder; /* the global whose initial data holds it */
  uint64_t off;              /* where in the holder */
  const struct sym *target;  /* OLD's symbol it points into */
  uint64_t toff;             /* and where */
  char why[160];
};

void cmd_check_help(void)
{
  printf("Usage: mcr-ctl check OLD NEW [--move-field TYPE.OLD=NEW]... [--json]\n"
         "\n"
         "Previews, without running anything, what a live update from the executable OLD\n"
         "to the executable NEW (two builds of the same program by mcr-clang) would have\n"
         "to transform, with the rules the update itself uses: globals are paired by\n"
         "symbol name (statics by name and source file), allocation sites by source file,\n"
         "function, allocator called and order; each pair's types are compared field by\n"
         "field (fields matched by name; typedef renames change nothing).\n"
         "\n"
         "Prints a summary line, then: the transfers that cannot be inferred (the update\n"
         "would be refused unless a transformation is registered: the type, the field,\n"
         "both versions' source locations and a suggested fix); the transformable ones\n"
         "with each change (added, removed, moved, retyped, resized fields), risky ones\n"
         "marked (narrowing, signedness, shrinking, enums: the update refuses if a value\n"
         "does not fit); globals and allocation sites only one version has; and what is\n"
         "handled conservatively (allocation sites without a type in either version).\n"
         "\n"
         "Options:\n"
         "  --move-field TYPE.OLD=NEW  struct TYPE's field OLD is at the member path NEW\n"
         "              in the new version (moved into a nested struct: n.notify_event,\n"
         "              or renamed), as mcr-ctl update --move-field declares it\n"
         "  --json      machine-readable output (one JSON object)\n"
         "  -h, --help  this help\n"
         "\n"
         "Exit status: 0 no transfer would be refused; 1 some transfer would be refused\n"
         "(a conflict at update time); 2 bad usage or bad input: a file missing, not an\n"
         "x86-64 ELF, not built by mcr-clang, stripped, with corrupt type tables, or OLD\n"
         "and NEW built from different programs.\n");
}

/* ---- small helpers ------------------------------------------------------------ */



static const char *base_name(const char *p)
{
  const char *s = p ? strrchr(p, '/') : NULL;
  return s ? s + 1 : p ? p : "";
}

static char *render(const struct mcr_typetab *tt, uint32_t t, int site, uint32_t shape)
{
  char small[256], *buf;
  int n;

  if (t == MCR_NO_TYPE)
    return NULL;
  n = site ? mcr_type_render_shape(tt, t, shape, small, sizeof(small))
           : mcr_type_render(tt, t, small, sizeof(small));
  if (n < 0)
    return strdup("?");
  if ((size_t)n < sizeof(small))
    return strdup(small);
  if (!(buf = malloc((size_t)n + 1)))
    return NULL;
  if (site)
    mcr_type_render_shape(tt, t, shape, buf, (size_t)n + 1);
  else
    mcr_type_render(tt, t, buf, (size_t)n + 1);
  return buf;
}

/* A one-line copy for people: control characters and bytes that are not UTF-8
 * escaped as \xNN. */
static void put_human(FILE *f, const char *s)
{
  const unsigned char *p = (const unsigned char *)(s ? s : "");

  while (*p) {
    int n = *p >= 0x20 && *p != 0x7f ? ctl_utf8_len(p) : 0;
    if (n > 0) {
      fwrite(p, 1, (size_t)n, f);
      p += n;
    } else {
      fprintf(f, "\\x%02x", *p++);
    }
  }
}

/* ---- reading an executable ------------------------------------------------------ */

static int bad(const struct version *v, const char *fmt_, ...) __attribute__((format(printf, 2, 3)));
static int bad(const struct version *v, const char *fmt_, ...)
{
  char msg[768];
  va_list ap;

  va_start(ap, fmt_);
  vsnprintf(msg, sizeof(msg), fmt_, ap);
  va_end(ap);
  ctl_err("%s: %s %s: %s", v->cmd, v->role, v->path, msg);
  return -1;
}

static int cmp_sym(const void *a, const void *b)
{
  const struct sym *x = a, *y = b;
  return strcmp(x->name, y->name);
}

static int cmp_sym_addr(const void *a, const void *b)
{
  const struct sym *x = a, *y = b;
  if (x->value != y->value)
    return x->value < y->value ? -1 : 1;
  return x->size > y->size ? -1 : x->size < y->size; /* the sized one first */
}

static int cmp_reloc(const void *a, const void *b)
{
  const struct reloc *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The R_X86_64_RELATIVE relocations of .rela.dyn: where a position-independent
 * executable's initial data holds pointers into itself, and to what. */
static int load_relocs(struct version *v)
{
  struct mcr_elf_section sec;
  size_t cap = 0;

  if (mcr_elf_section(&v->elf, ".rela.dyn", &sec) != 0 || !sec.data)
    return 0;
  for (size_t off = 0; off + sizeof(Elf64_Rela) <= sec.size; off += sizeof(Elf64_Rela)) {
    Elf64_Rela r;
    memcpy(&r, sec.data + off, sizeof(r));
    if (ELF64_R_TYPE(r.r_info) != R_X86_64_RELATIVE)
      continue;
    if (ctl_grow((void **)&v->relocs, &cap, v->nrelocs + 1, sizeof(*v->relocs)))
      return bad(v, "%s", strerror(ENOMEM));
    v->relocs[v->nrelocs].off = r.r_offset;
    v->relocs[v->nrelocs].addend = (uint64_t)r.r_addend;
    v->nrelocs++;
  }
  if (v->nrelocs > 1)
    qsort(v->relocs, v->nrelocs, sizeof(*v->relocs), cmp_reloc);
  return 0;
}

/* The symbols of .symtab: the data ones (what mcr_image_symbol looks at) sorted by
 * name, all by address and by name; and the relocations. */
static int load_symbols(struct version *v)
{
  struct mcr_elf_section st, str;
  const char *file = "";
  struct sym *x;
  size_t cap = 0, n;

  if (mcr_elf_section(&v->elf, ".symtab", &st) != 0 || !st.data ||
      mcr_elf_section(&v->elf, ".strtab", &str) != 0 || !str.data || !str.size ||
      str.data[str.size - 1] != '\0')
    return bad(v, "corrupt or truncated symbol table (.symtab/.strtab); rebuild it");
  n = st.size / sizeof(Elf64_Sym);
  for (size_t i = 1; i < n; i++) {
    Elf64_Sym s;
    const char *name;
    unsigned type;

    memcpy(&s, st.data + i * sizeof(s), sizeof(s));
    if (s.st_name >= str.size)
      return bad(v, "corrupt symbol table: symbol %zu names string %u past .strtab", i,
                 (unsigned)s.st_name);
    name = (const char *)str.data + s.st_name;
    type = ELF64_ST_TYPE(s.st_info);
    if (type == STT_FILE) {
      file = base_name(name);
      v->nfiles++;
      continue;
    }
    if (type == STT_SECTION || s.st_shndx == SHN_UNDEF || !*name)
      continue;
    if (ctl_grow((void **)&v->byaddr, &cap, v->nall + 1, sizeof(*v->byaddr)))
      return bad(v, "%s", strerror(ENOMEM));
    x = &v->byaddr[v->nall++];
    x->name = name;
    x->local = ELF64_ST_BIND(s.st_info) == STB_LOCAL;
    x->code = type == STT_FUNC || type == STT_GNU_IFUNC;
    x->file = x->local ? file : "";
    x->value = s.st_value;
    x->size = s.st_size;
    v->nsyms += !x->code;
    v->nlocals += !x->code && x->local;
  }
  v->syms = malloc((v->nsyms ? v->nsyms : 1) * sizeof(*v->syms));
  v->byname = malloc((v->nall ? v->nall : 1) * sizeof(*v->byname));
  if (!v->syms || !v->byname)
    return bad(v, "%s", strerror(ENOMEM));
  for (size_t i = 0, k = 0; i < v->nall; i++)
    if (!v->byaddr[i].code)
      v->syms[k++] = v->byaddr[i];
  if (v->nall)
    memcpy(v->byname, v->byaddr, v->nall * sizeof(*v->byname));
  if (v->nsyms > 1)
    qsort(v->syms, v->nsyms, sizeof(*v->syms), cmp_sym);
  if (v->nall > 1) {
    qsort(v->byname, v->nall, sizeof(*v->byname), cmp_sym);
    qsort(v->byaddr, v->nall, sizeof(*v->byaddr), cmp_sym_addr);
  }
  return load_relocs(v);
}

/* mcr_image_symbol()'s choice: a local of the module's file, else the global.
 * 0 and *out, -1 if there is none, -2 if several locals of that file match. */
static int find_symbol(const struct version *v, const char *name, const char *module,
                       const struct sym **out)
{
  struct sym key = {.name = name};
  const struct sym *hit = v->nsyms ? bsearch(&key, v->syms, v->nsyms, sizeof(*v->syms), cmp_sym)
                                   : NULL;
  const struct sym *global = NULL, *local = NULL;
  size_t nlocal = 0, lo, hi;

  if (!hit)
    return -1;
  lo = hi = (size_t)(hit - v->syms);
  while (lo > 0 && !strcmp(v->syms[lo - 1].name, name))
    lo--;
  while (hi + 1 < v->nsyms && !strcmp(v->syms[hi + 1].name, name))
    hi++;
  for (size_t i = lo; i <= hi; i++) {
    const struct sym *s = &v->syms[i];
    if (!s->local)
      global = s;
    else if (!strcmp(s->file, base_name(module))) {
      local = s;
      nlocal++;
    }
  }
  if (nlocal > 1)
    return -2;
  *out = local ? local : global;
  return *out ? 0 : -1;
}

static int load_tables(struct version *v, const struct mcr_elf_section *sec)
{
  size_t pos = 0, cap = 0, len;
  const void *blob;
  struct mcr_typetab_error err;
  int r;

  while ((r = mcr_typetab_next(sec->data, sec->size, &pos, &blob, &len, &err)) == 1) {
    size_t at = (size_t)((const unsigned char *)blob - sec->data);

    if (ctl_grow((void **)&v->tabs, &cap, v->ntabs + 1, sizeof(*v->tabs)))
      return bad(v, "%s", strerror(ENOMEM));
    if (mcr_typetab_open(&v->tabs[v->ntabs], blob, len, &err))
      return bad(v, "corrupt mcr_types section: type table %zu (section offset 0x%zx): %s (at "
                    "byte 0x%llx of the table); rebuild it with the current mcr-clang",
                 v->ntabs + 1, at, err.msg, (unsigned long long)err.offset);
    v->ntypes += mcr_typetab_ntypes(&v->tabs[v->ntabs]);
    v->ntabs++;
  }
  if (r < 0)
    return bad(v, "corrupt mcr_types section: at section offset 0x%llx: %s; rebuild it with the "
                  "current mcr-clang",
               (unsigned long long)err.offset, err.msg);
  if (v->ntabs == 0)
    return bad(v, "corrupt mcr_types section: it holds no type table; rebuild it with the "
                  "current mcr-clang");
  return 0;
}

/* Every writable global and every allocation site of every table. */
static int collect(struct version *v)
{
  size_t gcap = 0, scap = 0;

  for (size_t b = 0; b < v->ntabs; b++) {
    const struct mcr_typetab *tt = &v->tabs[b];
    const char *module = mcr_typetab_str(tt, tt->hdr.module);
    size_t first = v->nsites;

    for (uint32_t i = 0; i < mcr_typetab_nglobals(tt); i++) {
      struct gvar *g;
      struct mcr_global_rec rec;

      mcr_typetab_global(tt, i, &rec);
      if (rec.flags & (MCR_GF_CONST | MCR_GF_TLS))
        continue; /* never transferred */
      if (!*mcr_typetab_str(tt, rec.symbol))
        continue;
      if (ctl_grow((void **)&v->globals, &gcap, v->nglobals + 1, sizeof(*v->globals)))
        goto nomem;
      g = &v->globals[v->nglobals++];
      memset(g, 0, sizeof(*g));
      g->tt = tt;
      g->rec = rec;
      g->name = mcr_typetab_str(tt, rec.name);
      g->symbol = mcr_typetab_str(tt, rec.symbol);
      g->module = module;
      g->file = mcr_typetab_str(tt, rec.file);
      g->scope = mcr_typetab_str(tt, rec.scope);
      g->is_static = !!(rec.flags & (MCR_GF_INTERNAL | MCR_GF_LOCAL_STATIC));
    }

    for (uint32_t i = 0; i < mcr_typetab_nsites(tt); i++) {
      struct asite *s;
      struct mcr_site_rec rec;

      mcr_typetab_site(tt, i, &rec);
      if (ctl_grow((void **)&v->sites, &scap, v->nsites + 1, sizeof(*v->sites)))
        goto nomem;
      s = &v->sites[v->nsites++];
      memset(s, 0, sizeof(*s));
      s->tt = tt;
      s->rec = rec;
      s->module = module;
      s->file = mcr_typetab_str(tt, rec.file);
      s->function = mcr_typetab_str(tt, rec.function);
      s->callee = mcr_typetab_str(tt, rec.callee);
      /* transfer.c's site_key: string offsets compared, as it does */
      for (size_t j = first; j < v->nsites - 1; j++)
        if (v->sites[j].rec.function == rec.function && v->sites[j].rec.callee == rec.callee)
          s->ordinal++;
      if (!(s->key = ctl_fmt("%s|%s|%s|%u", module, s->function, s->callee, s->ordinal)))
        goto nomem;
    }
    for (size_t i = first; i < v->nsites; i++) /* for names: "f() malloc #2" */
      for (size_t j = first; j < v->nsites; j++)
        if (v->sites[j].rec.function == v->sites[i].rec.function &&
            v->sites[j].rec.callee == v->sites[i].rec.callee)
          v->sites[i].same_count++;
  }
  return 0;
nomem:
  return bad(v, "%s", strerror(ENOMEM));
}

static int load_version(struct version *v)
{
  struct mcr_elf_section sec;
  char msg[256];

  switch (mcr_elf_open(&v->elf, v->path, msg, sizeof(msg))) {
  case MCR_ELF_OK:
    break;
  case MCR_ELF_NOT_ELF:
    return bad(v, "%s: give two executables built by mcr-clang", msg);
  case MCR_ELF_CORRUPT:
    return bad(v, "corrupt ELF file: %s", msg);
  case MCR_ELF_EIO:
  case MCR_ELF_WRONG_ARCH:
  default:
    return bad(v, "%s", msg);
  }
  switch (mcr_elf_section(&v->elf, MCR_TYPES_SECTION, &sec)) {
  case 0:
    break;
  case -2:
    return bad(v, "corrupt ELF file: section " MCR_TYPES_SECTION
                  " extends past the end of the file (truncated?)");
  default:
    return bad(v, "no " MCR_TYPES_SECTION " section: not built by mcr-clang: build it with "
                  "CC=mcr-clang");
  }
  if (!sec.data || sec.size == 0)
    return bad(v, "corrupt mcr_types section: it is empty; rebuild it with mcr-clang");
  if (!mcr_elf_has_symtab(&v->elf))
    return bad(v, "stripped (no .symtab): mcr pairs globals across versions by symbol; "
                  "rebuild without -s/strip (strip --strip-debug --keep-file-symbols is fine)");
  if (load_tables(v, &sec) || load_symbols(v) || collect(v))
    return -1;
  if (v->ntypes == 0 && (v->nglobals || v->nsites))
    return bad(v, "its type tables describe no type (built without debug info?): build it "
                  "with CC=mcr-clang, which adds -g");
  return 0;
}

/* The same-program rule of mcr-ctl update: at least half of OLD's source files (base
 * names of the type tables' modules) are in NEW. */
static int same_program(const struct version *o, const struct version *n)
{
  size_t common = 0;

  for (size_t i = 0; i < o->ntabs; i++) {
    const char *m = base_name(mcr_typetab_str(&o->tabs[i], o->tabs[i].hdr.module));
    for (size_t j = 0; j < n->ntabs; j++)
      if (!strcmp(m, base_name(mcr_typetab_str(&n->tabs[j], n->tabs[j].hdr.module)))) {
        common++;
        break;
      }
  }
  if (o->ntabs && common * 2 < o->ntabs) {
    ctl_err("check: NEW %s is built from another program than OLD %s (%zu of OLD's %zu "
            "source files are in NEW): give two builds of the same program",
            n->path, o->path, common, o->ntabs);
    return -1;
  }
  return 0;
}

/* ---- pairing ---------------------------------------------------------------------- */

/* The type table record of a global that symbol s of version v is: a static of the
 * symbol's file for a local symbol, else the non-static one. */
static struct gvar *record_of(struct version *v, const char *symbol, const struct sym *s)
{
  for (size_t i = 0; i < v->nglobals; i++) {
    struct gvar *g = &v->globals[i];
    if (strcmp(g->symbol, symbol))
      continue;
    if (s->local ? g->is_static && !strcmp(base_name(g->module), s->file) : !g->is_static)
      return g;
  }
  return NULL;
}

/* The old type record xform.c gives a new global: the first of OLD's tables with the
 * same symbol and, for a static, a module of the same base name (a static that became
 * global or the reverse has none: it is then copied as bytes if its size is the same). */
static const struct gvar *old_record(const struct version *o, const struct gvar *ng)
{
  for (size_t i = 0; i < o->nglobals; i++) {
    const struct gvar *g = &o->globals[i];
    if (strcmp(g->symbol, ng->symbol) || g->is_static != ng->is_static)
      continue;
    if (!g->is_static || !strcmp(base_name(g->module), base_name(ng->module)))
      return g;
  }
  return NULL;
}

static int note(struct check *c, const char *f, ...) __attribute__((format(printf, 2, 3)));
static int note(struct check *c, const char *f, ...)
{
  va_list ap;
  char *s = NULL;
  size_t cap = c->nnotes; /* grown one by one: few notes */

  va_start(ap, f);
  if (vasprintf(&s, f, ap) < 0)
    s = NULL;
  va_end(ap);
  if (!s || ctl_grow((void **)&c->notes, &cap, c->nnotes + 1, sizeof(char *))) {
    free(s);
    return -1;
  }
  c->notes[c->nnotes++] = s;
  return 0;
}

static struct item *new_item(struct check *c)
{
  struct item *it;

  if (ctl_grow((void **)&c->items, &c->cap, c->nitems + 1, sizeof(*c->items)))
    return NULL;
  it = &c->items[c->nitems++];
  memset(it, 0, sizeof(*it));
  return it;
}

static int push_ptr(const void ***arr, size_t *n, const void *p)
{
  size_t cap = *n;
  if (ctl_grow((void **)arr, &cap, *n + 1, sizeof(void *)))
    return -1;
  (*arr)[(*n)++] = p;
  return 0;
}

static int pair_globals(struct check *c)
{
  struct version *o = &c->v[0], *n = &c->v[1];

  for (int i = 0; i < 2; i++)
    if (!c->v[i].nfiles && c->v[i].nlocals &&
        note(c, "%s %s has no file symbols in its symbol table (strip --strip-debug removes "
                "them): its static variables cannot be paired with the other version's, their "
                "state is not transferred; strip with --keep-file-symbols, or not at all",
             c->v[i].role, c->v[i].path))
      return -1;

  for (size_t i = 0; i < n->nglobals; i++) {
    struct gvar *ng = &n->globals[i];
    const struct sym *ns, *os;
    struct gvar *og;
    struct item *it;
    int r;

    if ((r = find_symbol(n, ng->symbol, ng->module, &ns)) != 0 || record_of(n, ng->symbol, ns) != ng) {
      if (r == -2 && note(c, "global %s: several statics of that name in %s files of NEW: not "
                             "transferred (rename one)",
                          ng->symbol, base_name(ng->module)))
        return -1;
      c->gmissing++; /* optimized away, or another record of the same symbol */
      continue;
    }
    ng->paired = 1;
    r = find_symbol(o, ng->symbol, ng->module, &os);
    if (r == -2 && note(c, "global %s: several statics of that name in %s files of OLD: NEW's "
                           "keeps its initial value",
                        ng->symbol, base_name(ng->module)))
      return -1;
    if (r != 0) {
      if (push_ptr((const void ***)&c->gadded, &c->ngadded, ng))
        return -1;
      continue;
    }
    if ((og = record_of(o, ng->symbol, os)))
      og->paired = 1; /* not "removed", whatever its record says */
    if (!(it = new_item(c)))
      return -1;
    it->og = old_record(o, ng);
    it->ng = ng;
    it->osize = os->size;
    it->nsize = ns->size;
    it->osym = os;
  }
  /* OLD's globals that nothing of NEW takes: their state is lost */
  for (size_t i = 0; i < o->nglobals; i++) {
    struct gvar *og = &o->globals[i];
    const struct sym *os;

    if (og->paired || find_symbol(o, og->symbol, og->module, &os) != 0 ||
        record_of(o, og->symbol, os) != og)
      continue;
    if (push_ptr((const void ***)&c->gremoved, &c->ngremoved, og))
      return -1;
  }
  return 0;
}

static int pair_sites(struct check *c)
{
  struct version *o = &c->v[0], *n = &c->v[1];

  /* NEW: the first site of each key (transfer.c keeps the first) */
  for (size_t i = 0; i < o->nsites; i++) {
    struct asite *os = &o->sites[i], *ns = NULL;
    struct item *it;

    for (size_t j = 0; j < n->nsites; j++)
      if (!strcmp(n->sites[j].key, os->key)) {
        ns = &n->sites[j];
        break;
      }
    if (!ns) {
      if (push_ptr((const void ***)&c->sremoved, &c->nsremoved, os))
        return -1;
      continue;
    }
    ns->paired = os->paired = 1;
    if (!(it = new_item(c)))
      return -1;
    it->is_site = 1;
    it->os = os;
    it->ns = ns;
  }
  for (size_t j = 0; j < n->nsites; j++) {
    const struct asite *ns = &n->sites[j];
    int dup = 0;

    for (size_t k = 0; k < j && !dup; k++)
      dup = !strcmp(n->sites[k].key, ns->key);
    if (!ns->paired && !dup && push_ptr((const void ***)&c->sadded, &c->nsadded, ns))
      return -1;
  }
  return 0;
}

/* ---- comparing --------------------------------------------------------------------- */

static int strip_typedefs(const struct mcr_typetab *tt, uint32_t t, struct mcr_type_rec *r,
                          uint32_t *idx)
{
  for (int i = 0; i < MCR_TYPE_MAX_DEPTH; i++) {
    if (t == MCR_NO_TYPE || mcr_typetab_type(tt, t, r) != 0)
      return -1;
    if (r->kind != MCR_TYPE_TYPEDEF) {
      *idx = t;
      return 0;
    }
    t = r->target;
  }
  return -1;
}

/* Follows a plan path ("a.b[0].c", "#1" for an anonymous member, "(whole object)")
 * from type t; returns the struct or union that holds its last field (t itself for
 * the whole object), or MCR_NO_TYPE if the path does not lead anywhere. */
static uint32_t enclosing(const struct mcr_typetab *tt, uint32_t t, const char *path,
                          uint32_t *field)
{
  uint32_t encl = t, cur = t;
  const char *p = path;

  *field = t;
  if (!p || !*p || *p == '(')
    return t;
  while (*p) {
    struct mcr_type_rec r;
    uint32_t idx;

    if (strip_typedefs(tt, cur, &r, &idx) != 0)
      return MCR_NO_TYPE;
    if (*p == '[') {
      const char *e = strchr(p, ']');
      if (r.kind != MCR_TYPE_ARRAY || !e)
        return MCR_NO_TYPE;
      cur = r.target;
      p = e + 1;
      continue;
    }
    if (*p == '.')
      p++;
    size_t len = strcspn(p, ".[");
    if (r.kind != MCR_TYPE_STRUCT && r.kind != MCR_TYPE_UNION)
      return MCR_NO_TYPE;
    uint32_t k = 0, found = MCR_NO_TYPE;
    for (uint32_t i = 0; i < r.count && found == MCR_NO_TYPE; i++) {
      struct mcr_member_rec m;
      char anon[16];
      const char *name;
      if (mcr_typetab_member(tt, r.first_member + i, &m) != 0)
        return MCR_NO_TYPE;
      name = mcr_typetab_str(tt, m.name);
      if (!*name) {
        snprintf(anon, sizeof(anon), "#%u", k++);
        name = anon;
      }
      if (strlen(name) == len && !strncmp(name, p, len))
        found = m.type;
    }
    if (found == MCR_NO_TYPE)
      return MCR_NO_TYPE;
    encl = idx;
    cur = found;
    p += len;
  }
  *field = cur;
  return encl;
}

static void decl_of(const struct mcr_typetab *tt, uint32_t t, const char **file, uint32_t *line)
{
  struct mcr_type_rec r;

  *file = "";
  *line = 0;
  if (t != MCR_NO_TYPE && mcr_typetab_type(tt, t, &r) == 0) {
    *file = mcr_typetab_str(tt, r.decl_file);
    *line = r.decl_line;
  }
}

/* The last component of a path: the field's own name. */
static const char *field_of(const char *path)
{
  const char *d = strrchr(path, '.');
  return d ? d + 1 : path;
}

/* Whether applying the change may refuse the update, depending on the values: a
 * narrowing or signedness conversion, an enum, a shrunk array. A removed field is
 * dropped without a check (typediff flags it risky too). */
static int may_refuse(const struct mcr_xchange *x)
{
  return x->risky && x->kind != MCR_XC_REMOVED;
}

/* What people should know about a change, or "". */
/* An added pointer field of a heap object: zero in the objects carried over,
 * where NEW's code may expect what its allocation site sets (lighttpd 1.4.79's
 * handler_ctx.mimetypes crashed it). Globals' added fields keep NEW's initial value. */
static int added_null_pointer(const struct mcr_xchange *x, int heap)
{
  size_t n = strlen(x->new_type);
  return x->kind == MCR_XC_ADDED && heap && n &&
         (x->new_type[n - 1] == '*' || strstr(x->new_type, "(*)"));
}

/* Any other added field of a heap object: zero in the objects carried over,
 * where NEW's code may expect what its allocation site sets (nginx 1.22's
 * ngx_connection_t.start_time: 0 ended keep-alive connections carried over). */
static int added_zero_field(const struct mcr_xchange *x, int heap)
{
  return x->kind == MCR_XC_ADDED && heap && !added_null_pointer(x, heap);
}

/* heap: the change is shown for heap objects (of it, or of a group with it) */
static const char *change_note(const struct mcr_xchange *x, const struct item *it, int heap)
{
  int global = it && !it->is_site;

  switch (x->kind) {
  case MCR_XC_ADDED:
    if (added_null_pointer(x, heap))
      return "starts NULL in the objects carried over: if NEW sets it only where it creates "
             "the object, it needs a transformation (MCR_TRANSFORM_TYPE)";
    if (added_zero_field(x, heap))
      return "starts 0 in the objects carried over: if NEW sets it only where it creates the "
             "object (a start time, a size, a flag), it needs a transformation "
             "(MCR_TRANSFORM_TYPE)";
    return "";
  case MCR_XC_REMOVED:
    if (x->move_hint) {
      static char moved[700]; /* one note at a time */
      snprintf(moved, sizeof(moved),
               "its value is dropped; if it is %s now, declare it: --move-field %s",
               strchr(x->move_hint, '=') + 1, x->move_hint);
      return moved;
    }
    return "its value is dropped";
  case MCR_XC_RESIZED:
    if (may_refuse(x) && it && it->dropped_data)
      return "shrinks: the dropped elements are not zero in OLD's initial data: the update "
             "will refuse unless the program cleared them";
    if (may_refuse(x))
      return "shrinks: the update refuses if a dropped element is not zero";
    if (global && x->path[0] == '(' && it->by_content)
      return "a table whose every old entry is in the new one keeps the new one (matched by "
             "content), else elements are converted by index";
    return "";
  case MCR_XC_RETYPED:
    if (!may_refuse(x))
      return "";
    if (!strncmp(x->old_type, "enum ", 5) || !strncmp(x->new_type, "enum ", 5))
      return "converted by enumerator name: the update refuses a value the new enum lacks";
    return "the update refuses if a value does not fit";
  default:
    return "";
  }
}

/* A top-level array type (typedefs looked through): its element size and count. */
static int array_of(const struct mcr_typetab *tt, uint32_t t, uint64_t *esize, uint64_t *count)
{
  struct mcr_type_rec r, e;
  uint32_t idx;

  if (strip_typedefs(tt, t, &r, &idx) != 0 || r.kind != MCR_TYPE_ARRAY || !r.count ||
      strip_typedefs(tt, r.target, &e, &idx) != 0 || !e.size)
    return -1;
  *esize = e.size;
  *count = r.count;
  return 0;
}

/* Whether [addr, addr + len) of v's image is not all zero when the program starts:
 * a dynamic relocation writes into it (a pointer, in a position-independent
 * executable) or .data holds a non-zero byte there. 1, 0, or -1 if unknown. */
static int initially_nonzero(const struct version *v, uint64_t addr, uint64_t len)
{
  struct mcr_elf_section sec;

  if (mcr_elf_section(&v->elf, ".rela.dyn", &sec) == 0 && sec.data)
    for (size_t off = 0; off + sizeof(Elf64_Rela) <= sec.size; off += sizeof(Elf64_Rela)) {
      Elf64_Rela r;
      memcpy(&r, sec.data + off, sizeof(r));
      if (r.r_offset >= addr && r.r_offset < addr + len)
        return 1;
    }
  if (mcr_elf_section(&v->elf, ".bss", &sec) == 0 && addr >= sec.addr &&
      addr + len <= sec.addr + sec.size)
    return 0;
  if (mcr_elf_section(&v->elf, ".data", &sec) != 0 || !sec.data || addr < sec.addr ||
      addr + len > sec.addr + sec.size)
    return -1;
  for (uint64_t i = 0; i < len; i++)
    if (sec.data[addr - sec.addr + i])
      return 1;
  return 0;
}

/* A global's plan that drops old bytes (a shrunk array) refuses the update unless
 * they are zero: look at what OLD starts with there. */
static void check_dropped(struct check *c, struct item *it)
{
  const struct sym *os;

  if (it->is_site || it->out != OUT_TRANSFORM ||
      find_symbol(&c->v[0], it->ng->symbol, it->ng->module, &os) != 0)
    return;
  for (size_t k = 0; k < it->plan->nops; k++) {
    const struct mcr_xop *op = &it->plan->ops[k];
    if (op->kind != MCR_XOP_ZERO)
      continue;
    for (uint32_t i = 0; i < op->count; i++)
      if (initially_nonzero(&c->v[0], os->value + op->old_off + i * op->old_stride, op->len) ==
          1 && !it->dropped_data) {
        it->dropped_data = 1;
        snprintf(it->err.path, sizeof(it->err.path), "%s",
                 op->path && *op->path ? op->path : "(whole object)");
      }
  }
}

/* NEW's user transformation prefix+name (mcr/transform.h: a function found by name,
 * as xform.c's find_hook), or NULL. */
static const char *find_hook(const struct check *c, const char *prefix, const char *name)
{
  const struct version *n = &c->v[1];
  char want[512];
  struct sym key = {.name = want};
  const struct sym *hit;

  if (!name || !*name || snprintf(want, sizeof(want), "%s%s", prefix, name) >= (int)sizeof(want))
    return NULL;
  hit = n->nall ? bsearch(&key, n->byname, n->nall, sizeof(key), cmp_sym) : NULL;
  if (!hit)
    return NULL;
  for (size_t i = (size_t)(hit - n->byname); i > 0 && !strcmp(n->byname[i - 1].name, want); i--)
    hit = &n->byname[i - 1];
  for (; hit < n->byname + n->nall && !strcmp(hit->name, want); hit++)
    if (hit->code && hit->value)
      return hit->name;
  return NULL;
}

/* The plan of a change only a user transformation converts: no operations, the
 * types' sizes (xform.c's empty_plan). */
static const struct mcr_xplan *empty_plan(struct check *c, const struct mcr_typetab *ot,
                                          uint32_t o, const struct mcr_typetab *nt, uint32_t n)
{
  struct mcr_xplan *p = mcr_arena_alloc(c->arena, sizeof(*p), 8);
  struct mcr_type_rec r;
  uint32_t idx;

  if (!p)
    return NULL;
  if (strip_typedefs(ot, o, &r, &idx) == 0)
    p->old_size = r.size;
  if (strip_typedefs(nt, n, &r, &idx) == 0)
    p->new_size = r.size;
  return p->old_size && p->new_size ? p : NULL;
}

static int judge_pair(struct check *c, struct item *it)
{
  const struct mcr_typetab *ot, *nt;
  uint32_t otype, ntype;
  int site = it->is_site;

  if (site) {
    ot = it->os->tt, nt = it->ns->tt;
    otype = it->os->rec.type, ntype = it->ns->rec.type;
    it->old_type = render(ot, otype, 1, it->os->rec.shape);
    it->new_type = render(nt, ntype, 1, it->ns->rec.shape);
  } else {
    ot = it->og ? it->og->tt : NULL, nt = it->ng->tt;
    otype = it->og ? it->og->rec.type : MCR_NO_TYPE, ntype = it->ng->rec.type;
    it->old_type = ot ? render(ot, otype, 0, 0) : NULL;
    it->new_type = render(nt, ntype, 0, 0);
  }

  if (otype == MCR_NO_TYPE || ntype == MCR_NO_TYPE ||
      (site && (it->os->rec.shape == MCR_SHAPE_UNKNOWN || it->ns->rec.shape == MCR_SHAPE_UNKNOWN))) {
    /* heap objects: kept as they are, traced conservatively; a global: copied as
     * bytes when its size is the same, else a conflict */
    it->out = OUT_UNTYPED;
    if (!site && it->osize != it->nsize) {
      it->out = OUT_REFUSED;
      snprintf(it->err.path, sizeof(it->err.path), "(whole object)");
      snprintf(it->err.msg, sizeof(it->err.msg),
               "changed size from %llu to %llu bytes and %s: the conversion cannot be inferred",
               (unsigned long long)it->osize, (unsigned long long)it->nsize,
               !it->og ? "the old version has no type information for it"
                       : "has no type in one version");
      it->fix = ctl_fmt("give '%s' a C type in both versions (build both with mcr-clang; not an "
                    "opaque byte array), or a different name in NEW (a new global starts from "
                    "its initial value)",
                    it->ng->name);
      if (!it->fix)
        return -1;
    }
    return 0;
  }

  const char *tname = site ? mcr_type_name(nt, ntype) : NULL;
  it->hook = site ? find_hook(c, "mcr_transform_type_", tname)
                  : find_hook(c, "mcr_transform_global_", it->ng->symbol);
  if (mcr_xplan_build(c->arena, ot, otype, nt, ntype, &c->moves, &it->plan, &it->err) != 0 &&
      it->hook &&
      (it->plan = empty_plan(c, ot, otype, nt, ntype))) {
    it->by_hook = 1; /* the user's transformation does it all */
  } else if (!it->plan || it->err.msg[0]) {
    uint32_t oe, ne, of, nf;
    char *oft, *nft;

    it->out = OUT_REFUSED;
    oe = enclosing(ot, otype, it->err.path, &of);
    ne = enclosing(nt, ntype, it->err.path, &nf);
    if (oe != MCR_NO_TYPE || ne != MCR_NO_TYPE) {
      it->encl = oe != MCR_NO_TYPE ? render(ot, oe, 0, 0) : render(nt, ne, 0, 0);
      decl_of(ot, oe, &it->encl_old_file, &it->encl_old_line);
      decl_of(nt, ne, &it->encl_new_file, &it->encl_new_line);
    }
    char *hookfix = site ? (tname ? ctl_fmt("MCR_TRANSFORM_TYPE(%s)", tname) : NULL)
                         : ctl_fmt("MCR_TRANSFORM_GLOBAL(%s)", it->ng->symbol);
    if (it->err.path[0] == '(' || !it->err.path[0])
      it->fix = site ? ctl_fmt("add %s to NEW (mcr/transform.h), or allocate the new type at "
                           "another site (objects of an unpaired site are kept untyped)",
                           hookfix ? hookfix : "a transformation")
                     : ctl_fmt("add %s to NEW (mcr/transform.h), or give '%s' another name there "
                           "(a new global starts from its initial value)",
                           hookfix ? hookfix : "a transformation", it->ng->name);
    else {
      oft = oe != MCR_NO_TYPE ? render(ot, of, 0, 0) : NULL;
      nft = ne != MCR_NO_TYPE ? render(nt, nf, 0, 0) : NULL;
      it->fix = ctl_fmt("keep field '%s' as %s and add a field with another name for %s, or add "
                    "%s to NEW (mcr/transform.h)",
                    field_of(it->err.path), oft ? oft : "it was", nft ? nft : "the new type",
                    hookfix ? hookfix : "a transformation");
      free(oft);
      free(nft);
    }
    free(hookfix);
    if (!it->fix)
      return -1;
    return 0;
  }
  if (it->plan->identical && (site || it->osize == it->nsize) && !it->hook) {
    it->out = OUT_IDENTICAL;
    return 0;
  }
  if (site && it->os->rec.shape != it->ns->rec.shape) {
    it->out = OUT_REFUSED;
    snprintf(it->err.path, sizeof(it->err.path), "(whole object)");
    snprintf(it->err.msg, sizeof(it->err.msg), "the allocation changed from %s to %s",
             mcr_site_shape_name(it->os->rec.shape), mcr_site_shape_name(it->ns->rec.shape));
    it->by_hook = 0;
    it->fix = ctl_fmt("allocate the new shape at another site (objects of an unpaired site are "
                  "kept untyped), or keep the old shape");
    return it->fix ? 0 : -1;
  }
  if (site && is_stack_obj(it->ns)) {
    /* transfer.c pairs a registered local variable only when its type is
     * unchanged: a pointer into it refuses the update (docs/update.md, "Stack
     * objects") */
    it->out = OUT_REFUSED;
    snprintf(it->err.path, sizeof(it->err.path), "(whole object)");
    snprintf(it->err.msg, sizeof(it->err.msg),
             "a local variable of a function on a quiescent point's stack, whose type changed: "
             "mcr does not convert local variables, so the update is refused if a global or "
             "live object points into it then (else the new thread's variable keeps its own "
             "value)");
    it->fix = ctl_fmt("keep the variable's type, or give it another name in NEW (a variable "
                      "of another name is not paired: nothing must point to the old one)");
    return it->fix ? 0 : -1;
  }
  it->out = OUT_TRANSFORM;
  check_dropped(c, it);
  if (it->dropped_data) {
    /* xform.c applies the plan and its ZERO check refuses the update (a static table
     * cannot be matched by content when it lost entries) */
    it->out = OUT_REFUSED;
    snprintf(it->err.msg, sizeof(it->err.msg),
             "the array shrinks and the elements it drops are not zero (they hold data in OLD's "
             "initial data): the update refuses unless they are zero by then");
    it->fix = ctl_fmt("keep the array's size in NEW, or give '%s' another name there (a new "
                  "global starts from its initial value)",
                  it->ng->name);
    return it->fix ? 0 : -1;
  }
  if (!site) {
    uint64_t oes, oc, nes, nc;
    it->by_content = array_of(ot, otype, &oes, &oc) == 0 && array_of(nt, ntype, &nes, &nc) == 0 &&
                     oes == nes && oc != nc;
  }
  for (size_t k = 0; k < it->plan->nchanges; k++)
    if (may_refuse(&it->plan->changes[k]))
      it->risky++;
  if (it->plan->has_tail && it->plan->tail && !it->plan->tail->identical)
    for (size_t k = 0; k < it->plan->tail->nchanges; k++)
      if (may_refuse(&it->plan->tail->changes[k]))
        it->risky++;
  return 0;
}

/* ---- pointers in OLD's initial data ----------------------------------------------- */

/* The paired global whose OLD symbol is s, if any. */
static const struct item *item_of(const struct check *c, const struct sym *s)
{
  for (size_t i = 0; i < c->nitems; i++)
    if (!c->items[i].is_site && c->items[i].osym && c->items[i].osym->value == s->value &&
        !strcmp(c->items[i].osym->name, s->name))
      return &c->items[i];
  return NULL;
}

/* Whether OLD's symbol os, at offset off, has a counterpart in NEW as image.c's
 * translation finds one: the symbol of the same name (a static of the same file, else
 * the global, else the only one of that name), at the same offset within its new size,
 * or where a changed global's plan moves the field. 1, or 0 with why. */
static int counterpart(const struct check *c, const struct sym *os, uint64_t off, char *why,
                       size_t len)
{
  const struct version *n = &c->v[1];
  struct sym key = {.name = os->name};
  const struct sym *hit = n->nall ? bsearch(&key, n->byname, n->nall, sizeof(key), cmp_sym) : NULL;
  const struct sym *same_file = NULL, *global = NULL, *any = NULL;
  size_t lo, hi, nany = 0;

  if (hit) {
    lo = hi = (size_t)(hit - n->byname);
    while (lo > 0 && !strcmp(n->byname[lo - 1].name, os->name))
      lo--;
    while (hi + 1 < n->nall && !strcmp(n->byname[hi + 1].name, os->name))
      hi++;
    for (size_t i = lo; i <= hi; i++) {
      const struct sym *x = &n->byname[i];
      if (x->code != os->code)
        continue;
      if (x->local && os->local && !strcmp(x->file, os->file))
        same_file = x;
      else if (!x->local)
        global = x;
      any = x;
      nany++;
    }
  }
  const struct sym *ns = same_file ? same_file : global ? global : nany == 1 ? any : NULL;
  if (!ns) {
    snprintf(why, len, "%s", nany > 1 ? "several in the new executable: ambiguous"
                                      : "not in the new executable");
    return 0;
  }
  if (!os->code) {
    const struct item *it = item_of(c, os);
    uint64_t noff;
    if (it && it->out == OUT_TRANSFORM && it->plan) {
      if (it->by_content || mcr_xplan_map_offset(it->plan, off, it->osize, &noff) == 0)
        return 1;
      snprintf(why, len, "a field the new version removed or converted");
      return 0;
    }
  }
  if (os->code && off && ns->size != os->size) {
    snprintf(why, len, "inside a function whose size changed (%llu -> %llu bytes)",
             (unsigned long long)os->size, (unsigned long long)ns->size);
    return 0;
  }
  if (off && off >= ns->size) {
    snprintf(why, len, "beyond its new size %llu", (unsigned long long)ns->size);
    return 0;
  }
  return 1;
}

/* Every pointer that the initial data of a transferred global of OLD holds into OLD's
 * own image (a relocation of a position-independent executable) is translated at
 * update time, by symbol: one without a counterpart refuses the update (unless the
 * program changed the pointer by then). */
static int check_pointers(struct check *c)
{
  const struct version *o = &c->v[0];
  uint64_t maxsize = 0;

  for (size_t i = 0; i < o->nall; i++)
    if (o->byaddr[i].size > maxsize)
      maxsize = o->byaddr[i].size;
  for (size_t i = 0; i < c->nitems; i++) {
    const struct item *it = &c->items[i];
    size_t lo = 0, hi = o->nrelocs;

    if (it->is_site || !it->osym || !it->osize || it->out == OUT_KEPT)
      continue; /* a static table is not translated: NEW's stays */
    while (lo < hi) { /* the first relocation at or after the holder */
      size_t mid = (lo + hi) / 2;
      if (o->relocs[mid].off < it->osym->value)
        lo = mid + 1;
      else
        hi = mid;
    }
    for (size_t r = lo; r < o->nrelocs && o->relocs[r].off < it->osym->value + it->osize; r++) {
      uint64_t t = o->relocs[r].addend;
      const struct sym *first = NULL;
      char why[160] = "", w[160];
      int ok = 0;
      size_t a = 0, b = o->nall;

      while (a < b) { /* the first symbol after t */
        size_t mid = (a + b) / 2;
        if (o->byaddr[mid].value <= t)
          a = mid + 1;
        else
          b = mid;
      }
      for (size_t k = a; k-- > 0 && !ok && t - o->byaddr[k].value <= maxsize;) {
        const struct sym *x = &o->byaddr[k];
        if (!(t < x->value + x->size || (x->size == 0 && t == x->value)))
          continue;
        if (counterpart(c, x, t - x->value, w, sizeof(w)))
          ok = 1;
        else if (!first) {
          first = x;
          snprintf(why, sizeof(why), "%s", w);
        }
      }
      if (ok || !first)
        continue; /* found, or no symbol: a string literal, matched by content */
      if (ctl_grow((void **)&c->imgs, &c->imgcap, c->nimgs + 1, sizeof(*c->imgs)))
        return -1;
      struct imgref *g = &c->imgs[c->nimgs++];
      g->holder = it;
      g->off = o->relocs[r].off - it->osym->value;
      g->target = first;
      g->toff = t - first->value;
      snprintf(g->why, sizeof(g->why), "%s", why);
    }
  }
  return 0;
}

/* A global of changed type that still holds its initial data when the update runs is
 * kept as NEW has it (transfer.c: mcr_xform_unmodified): no conversion, no conflict.
 * Whether the program wrote it is not known here; a top-level array whose initial
 * data is not zero is taken to be a static table that it did not write. */
static int judge(struct check *c, struct item *it)
{
  uint64_t es, count;

  if (judge_pair(c, it))
    return -1;
  if (it->is_site || (it->out != OUT_TRANSFORM && it->out != OUT_REFUSED) || !it->og ||
      !it->osym || array_of(it->og->tt, it->og->rec.type, &es, &count) != 0 ||
      initially_nonzero(&c->v[0], it->osym->value, it->osize) != 1)
    return 0;
  it->if_written = it->out;
  it->out = OUT_KEPT;
  return 0;
}

/* The key that groups items whose report is the same for people: both types and the
 * changes (or the error). */
static int signature(struct item *it)
{
  size_t len = 0;
  FILE *f = open_memstream(&it->sig, &len);

  if (!f)
    return -1;
  fprintf(f, "%d|%d|%s|%d|%s|%s|", it->out, it->if_written, it->hook ? it->hook : "",
          it->by_hook, it->old_type ? it->old_type : "",
          it->new_type ? it->new_type : "");
  if (it->out == OUT_REFUSED || (it->out == OUT_KEPT && it->if_written == OUT_REFUSED) ||
      it->by_hook)
    fprintf(f, "%s|%s|%s", it->err.path, it->err.msg, it->fix ? it->fix : "");
  else if (it->out == OUT_TRANSFORM || it->out == OUT_KEPT)
    for (const struct mcr_xplan *p = it->plan; p; p = p->has_tail ? p->tail : NULL) {
      for (size_t k = 0; k < p->nchanges; k++) {
        const struct mcr_xchange *x = &p->changes[k];
        fprintf(f, "%d %s %s %s %llu %llu %d;", x->kind, x->path, x->old_type, x->new_type,
                (unsigned long long)x->old_off, (unsigned long long)x->new_off, x->risky);
      }
      fputs("/", f);
      if (!p->has_tail)
        break;
    }
  return fclose(f) == 0 && it->sig ? 0 : -1;
}

/* ---- output: shared words ---------------------------------------------------------- */

static const char *loc_file(const struct item *it, int side)
{
  if (it->is_site)
    return side ? it->ns->file : it->os->file;
  if (!side && !it->og)
    return "";
  return side ? it->ng->file : it->og->file;
}

static uint32_t loc_line(const struct item *it, int side)
{
  if (it->is_site)
    return side ? it->ns->rec.line : it->os->rec.line;
  if (!side && !it->og)
    return 0;
  return side ? it->ng->rec.line : it->og->rec.line;
}

static void put_loc(FILE *f, const char *file, uint32_t line)
{
  put_human(f, file && *file ? file : "?");
  if (line)
    fprintf(f, ":%u", line);
}

/* "file:line", or "file:line -> file:line" when they differ. */
static void put_locs(FILE *f, const char *of, uint32_t ol, const char *nf, uint32_t nl)
{
  if (!of || !*of) {
    put_loc(f, nf, nl);
    return;
  }
  put_loc(f, of, ol);
  if (strcmp(of, nf ? nf : "") || ol != nl) {
    fputs(" -> ", f);
    put_loc(f, nf, nl);
  }
}

static void put_site_name(FILE *f, const struct asite *s)
{
  if (is_stack_obj(s)) { /* "serve()'s local variable 'tick'" */
    put_human(f, s->function);
    fputs("()'s local variable '", f);
    put_human(f, s->callee + strlen(STACK_OBJ));
    fputs("'", f);
    return;
  }
  put_human(f, s->function);
  fputs("() ", f);
  put_human(f, s->callee);
  if (s->same_count > 1)
    fprintf(f, " #%u", s->ordinal + 1);
}

static void put_global_name(FILE *f, const struct gvar *g)
{
  put_human(f, g->name);
  if (g->rec.flags & MCR_GF_LOCAL_STATIC) {
    fputs(" (static in ", f);
    put_human(f, g->scope);
    fputs("())", f);
  } else if (g->rec.flags & MCR_GF_INTERNAL) {
    fputs(" (static)", f);
  }
}

/* A line of "Only in one version": a global (g) or a site (s), its type, where,
 * and what becomes of it. */
static void put_only_in_one(FILE *f, const char *label, const struct gvar *g,
                            const struct asite *s, const char *what)
{
  char *t = g ? render(g->tt, g->rec.type, 0, 0) : render(s->tt, s->rec.type, 1, s->rec.shape);
  fprintf(f, "  %-16s", label);
  if (g)
    put_global_name(f, g);
  else
    put_site_name(f, s);
  fputs(": ", f);
  put_human(f, t ? t : "(no type)");
  fputs(" (", f);
  if (g)
    put_loc(f, g->file, g->rec.line);
  else
    put_loc(f, s->file, s->rec.line);
  fprintf(f, ")%s\n", what);
  free(t);
}

/* "global config (prog.c:12)" or "heap objects of f() malloc (prog.c:40)". */
static void put_item_name(FILE *f, const struct item *it)
{
  if (it->is_site) {
    if (!is_stack_obj(it->ns))
      fputs("heap objects of ", f);
    put_site_name(f, it->ns);
  } else {
    fputs("global ", f);
    put_global_name(f, it->ng);
  }
  fputs(" (", f);
  put_locs(f, loc_file(it, 0), loc_line(it, 0), loc_file(it, 1), loc_line(it, 1));
  fputs(")", f);
}

static void put_types(FILE *f, const char *o, const char *n)
{
  o = o ? o : "(no type)";
  n = n ? n : "(no type)";
  put_human(f, o);
  if (strcmp(o, n)) {
    fputs(" -> ", f);
    put_human(f, n);
  }
}

/* ---- output: for people ---------------------------------------------------------- */

struct counts {
  size_t g[NOUT], s[NOUT]; /* by outcome */
  size_t risky_items;
  size_t null_pointers; /* added pointer fields of heap objects (added_null_pointer) */
  size_t zero_fields;   /* the other added fields of heap objects (added_zero_field) */
};

/* The plan's changes that test(x, 1) picks, its tail's included. */
static size_t count_added(const struct mcr_xplan *p,
                          int (*test)(const struct mcr_xchange *, int))
{
  size_t n = 0;
  for (size_t k = 0; p && k < p->nchanges; k++)
    n += test(&p->changes[k], 1);
  if (p && p->has_tail && p->tail && !p->tail->identical)
    n += count_added(p->tail, test);
  return n;
}

static void count(const struct check *c, struct counts *k)
{
  memset(k, 0, sizeof(*k));
  for (size_t i = 0; i < c->nitems; i++) {
    const struct item *it = &c->items[i];
    if (it->is_site)
      k->s[it->out]++;
    else
      k->g[it->out]++;
    if (it->out == OUT_TRANSFORM && it->risky)
      k->risky_items++;
    if (it->out == OUT_TRANSFORM && it->is_site) {
      k->null_pointers += count_added(it->plan, added_null_pointer);
      k->zero_fields += count_added(it->plan, added_zero_field);
    }
  }
}

static size_t sum(const size_t *by_outcome)
{
  size_t n = 0;
  for (int i = 0; i < NOUT; i++)
    n += by_outcome[i];
  return n;
}

static const char *plural(size_t n, const char *one, const char *many)
{
  return n == 1 ? one : many;
}

/* The closing line for n added fields of heap objects that start as what. */
static void review_added(FILE *f, size_t n, const char *kind, const char *what)
{
  if (n)
    fprintf(f, "Review: %zu %s %s of heap objects start%s %s in the objects carried over "
               "(\"starts %s\" above): NEW's code may expect what it sets when it creates "
               "such an object.\n",
            n, kind, plural(n, "field", "fields"), n == 1 ? "s" : "", what, what);
}

/* An enum's conversion: its values, old -> new, from the plan's operation. */
static void put_enum_map(FILE *f, const struct mcr_xplan *p, const struct mcr_xchange *x)
{
  const struct mcr_xop *op = NULL;
  uint32_t shown = 0;

  for (size_t k = 0; k < p->nops && !op; k++)
    if (p->ops[k].kind == MCR_XOP_ENUM && p->ops[k].path && !strcmp(p->ops[k].path, x->path))
      op = &p->ops[k];
  if (!op && !strcmp(x->path, "(whole object)"))
    for (size_t k = 0; k < p->nops && !op; k++)
      if (p->ops[k].kind == MCR_XOP_ENUM && p->ops[k].path && !*p->ops[k].path)
        op = &p->ops[k];
  if (!op)
    return;
  fputs("  values", f);
  for (uint32_t i = 0; i < op->nmap; i++) {
    if (op->map[2 * i] == op->map[2 * i + 1])
      continue;
    if (shown++ == 8) {
      fputs(" ...", f);
      break;
    }
    fprintf(f, " %lld->%lld", (long long)op->map[2 * i], (long long)op->map[2 * i + 1]);
  }
  if (!shown)
    fputs(" unchanged", f);
}

static void print_changes(FILE *f, const struct mcr_xplan *p, const char *prefix,
                          const struct item *it, int heap)
{
  size_t wpath = 4, wtype = 4;

  for (size_t k = 0; k < p->nchanges; k++) {
    const struct mcr_xchange *x = &p->changes[k];
    size_t wt = x->kind == MCR_XC_ADDED ? strlen(x->new_type)
                : x->kind == MCR_XC_REMOVED || !strcmp(x->old_type, x->new_type)
                    ? strlen(x->old_type)
                    : strlen(x->old_type) + 4 + strlen(x->new_type);
    if (strlen(prefix) + strlen(x->path) > wpath)
      wpath = strlen(prefix) + strlen(x->path);
    if (wt > wtype)
      wtype = wt;
  }
  if (wpath > 32)
    wpath = 32;
  if (wtype > 40)
    wtype = 40;
  for (size_t k = 0; k < p->nchanges; k++) {
    const struct mcr_xchange *x = &p->changes[k];
    char types[512], where[96], *line = NULL;
    size_t len = 0;
    FILE *m;
    int n;

    if (x->kind == MCR_XC_ADDED)
      snprintf(types, sizeof(types), "%s", x->new_type);
    else if (x->kind == MCR_XC_REMOVED || !strcmp(x->old_type, x->new_type))
      snprintf(types, sizeof(types), "%s", x->old_type);
    else
      snprintf(types, sizeof(types), "%s -> %s", x->old_type, x->new_type);
    if (x->path[0] == '(')
      where[0] = '\0'; /* the whole object */
    else if (x->kind == MCR_XC_ADDED)
      snprintf(where, sizeof(where), "at offset %llu", (unsigned long long)x->new_off);
    else if (x->kind == MCR_XC_REMOVED)
      snprintf(where, sizeof(where), "was at offset %llu", (unsigned long long)x->old_off);
    else if (x->old_off != x->new_off)
      snprintf(where, sizeof(where), "offset %llu -> %llu", (unsigned long long)x->old_off,
               (unsigned long long)x->new_off);
    else
      snprintf(where, sizeof(where), "at offset %llu", (unsigned long long)x->old_off);
    if (!(m = open_memstream(&line, &len)))
      return;
    fprintf(m, "      %-8s %s", mcr_xchange_name(x->kind), prefix);
    put_human(m, x->path);
    n = (int)(wpath - strlen(prefix) - strlen(x->path));
    fprintf(m, "%*s  ", n > 0 ? n : 0, "");
    put_human(m, types);
    n = (int)(wtype - strlen(types));
    if (*where)
      fprintf(m, "%*s  %s", n > 0 ? n : 0, "", where);
    put_enum_map(m, p, x);
    if (may_refuse(x))
      fprintf(m, "  [risky: %s]", change_note(x, it, heap));
    else if (*change_note(x, it, heap))
      fprintf(m, "  (%s)", change_note(x, it, heap));
    if (fclose(m) != 0 || !line) {
      free(line);
      return;
    }
    while (len && line[len - 1] == ' ')
      line[--len] = '\0';
    fputs(line, f);
    free(line);
    fputc('\n', f);
  }
}

/* The items of one outcome, grouped by signature, in first-seen order. */
static void print_group(FILE *f, const struct check *c, enum outcome out)
{
  char *done = calloc(c->nitems ? c->nitems : 1, 1);

  if (!done)
    return;
  for (size_t i = 0; i < c->nitems; i++) {
    const struct item *it = &c->items[i];

    if (it->out != out || done[i])
      continue;
    fputs("  ", f);
    put_types(f, it->old_type, it->new_type);
    fputc('\n', f);
    int heap = 0; /* the group has heap objects */
    for (size_t j = i; j < c->nitems; j++) {
      const struct item *jt = &c->items[j];
      if (jt->out != out || done[j] || strcmp(jt->sig, it->sig))
        continue;
      done[j] = 1;
      heap |= jt->is_site;
      fputs("    ", f);
      put_item_name(f, jt);
      fputc('\n', f);
    }
    enum outcome what = out == OUT_KEPT ? it->if_written : out;
    if (out == OUT_KEPT)
      fprintf(f, "    if the program wrote it: %s\n",
              what == OUT_REFUSED ? "refused" : "converted");
    if (what == OUT_REFUSED) {
      for (size_t j = i; j < c->nitems; j++)
        if (out == OUT_REFUSED && c->items[j].out == out && c->items[j].is_site &&
            !is_stack_obj(c->items[j].ns) && !strcmp(c->items[j].sig, it->sig)) {
          fputs("    (heap objects: refused only if some are alive when the update runs)\n", f);
          break;
        }
      for (size_t j = i; j < c->nitems; j++)
        if (out == OUT_REFUSED && c->items[j].out == out && !c->items[j].is_site &&
            !strcmp(c->items[j].sig, it->sig)) {
          fputs("    (a global: one that still holds its initial value keeps NEW's instead)\n", f);
          break;
        }
      fputs("    at ", f);
      put_human(f, it->err.path);
      fputs(": ", f);
      put_human(f, it->err.msg);
      fputc('\n', f);
      if (it->encl) {
        fputs("    ", f);
        put_human(f, it->encl);
        fputs(" is declared at ", f);
        put_locs(f, it->encl_old_file, it->encl_old_line, it->encl_new_file, it->encl_new_line);
        fputc('\n', f);
      }
      fputs("    fix: ", f);
      put_human(f, it->fix);
      fputc('\n', f);
    } else if (what == OUT_TRANSFORM) {
      if (it->by_hook) {
        fputs("    mcr cannot convert it (at ", f);
        put_human(f, it->err.path);
        fputs(": ", f);
        put_human(f, it->err.msg);
        fputs(")\n", f);
      }
      if (it->hook) {
        fputs("    user transformation ", f);
        put_human(f, it->hook);
        fputs(it->by_hook ? " (in NEW) does it all\n"
                          : " (in NEW) runs after mcr's conversion\n",
              f);
      }
      print_changes(f, it->plan, "", it, heap);
      if (it->plan->has_tail && it->plan->tail && !it->plan->tail->identical)
        print_changes(f, it->plan->tail, "[] ", NULL, heap);
    }
  }
  free(done);
}

static void print_human(FILE *f, const struct check *c)
{
  struct counts k;
  size_t changed_g, changed_s, xform, refused;

  count(c, &k);
  changed_g = k.g[OUT_TRANSFORM] + k.g[OUT_REFUSED] + k.g[OUT_KEPT];
  changed_s = k.s[OUT_TRANSFORM] + k.s[OUT_REFUSED];
  xform = k.g[OUT_TRANSFORM] + k.s[OUT_TRANSFORM];
  refused = k.g[OUT_REFUSED] + k.s[OUT_REFUSED];

  if (changed_g + changed_s) {
    fprintf(f, "%zu %s and %zu allocation %s change type: %zu transformable (%zu risky), %zu "
               "refused",
            changed_g, plural(changed_g, "global", "globals"), changed_s,
            plural(changed_s, "site", "sites"), xform, k.risky_items, refused);
    if (k.g[OUT_KEPT])
      fprintf(f, ", %zu static %s", k.g[OUT_KEPT], plural(k.g[OUT_KEPT], "table", "tables"));
    fputc('\n', f);
  } else
    fputs("no type changes: every paired global and allocation site keeps its type\n", f);
  fprintf(f, "  %s -> %s: %zu globals paired (%zu identical), %zu allocation sites paired (%zu "
             "identical); %zu new and %zu removed globals, %zu new and %zu removed sites\n",
          c->v[0].path, c->v[1].path, sum(k.g), k.g[OUT_IDENTICAL],
          sum(k.s), k.s[OUT_IDENTICAL], c->ngadded, c->ngremoved,
          c->nsadded, c->nsremoved);
  if (c->nimgs)
    fprintf(f, "  %zu %s in OLD's initial data %s no counterpart in NEW\n", c->nimgs,
            plural(c->nimgs, "pointer", "pointers"), plural(c->nimgs, "has", "have"));

  if (refused) {
    fprintf(f, "\nRefused (%zu): the update will be refused unless a transformation is "
               "registered\n",
            refused);
    print_group(f, c, OUT_REFUSED);
  }
  if (c->nimgs) {
    fprintf(f, "\nPointers without a counterpart (%zu): the update will be refused unless the "
               "program changed them by then\n",
            c->nimgs);
    for (size_t i = 0; i < c->nimgs && i < MAX_IMG_LINES; i++) {
      const struct imgref *g = &c->imgs[i];
      fputs("  global ", f);
      put_human(f, g->holder->ng->name);
      fprintf(f, "+%llu points to %s ", (unsigned long long)g->off,
              g->target->code ? "function" : "object");
      put_human(f, g->target->name);
      if (g->target->local) {
        fputs(" (", f);
        put_human(f, g->target->file);
        fputc(')', f);
      }
      fprintf(f, "+%llu: %s\n", (unsigned long long)g->toff, g->why);
    }
    if (c->nimgs > MAX_IMG_LINES)
      fprintf(f, "  (%zu more: see --json)\n", c->nimgs - MAX_IMG_LINES);
    fputs("  fix: keep what they point to in NEW (a removed function or table, a field), or "
          "clear the pointers before the update\n",
          f);
  }
  if (xform) {
    fprintf(f, "\nTransformable (%zu)\n", xform);
    print_group(f, c, OUT_TRANSFORM);
  }
  if (k.g[OUT_KEPT]) {
    fprintf(f, "\nStatic tables (%zu): arrays initialized at build time; if the program never "
               "wrote one, NEW's value is kept, nothing converted\n",
            k.g[OUT_KEPT]);
    print_group(f, c, OUT_KEPT);
  }
  if (c->ngadded || c->ngremoved || c->nsadded || c->nsremoved) {
    fputs("\nOnly in one version\n", f);
    for (size_t i = 0; i < c->ngadded; i++)
      put_only_in_one(f, "new global", c->gadded[i], NULL, ": starts from its initial value");
    for (size_t i = 0; i < c->ngremoved; i++)
      put_only_in_one(f, "removed global", c->gremoved[i], NULL, ": its value is lost");
    for (size_t i = 0; i < c->nsadded; i++)
      put_only_in_one(f, "new site", NULL, c->sadded[i], "");
    for (size_t i = 0; i < c->nsremoved; i++)
      put_only_in_one(f, "removed site", NULL, c->sremoved[i],
                      ": its live objects are kept, untyped");
  }
  if (k.s[OUT_UNTYPED] || k.g[OUT_UNTYPED]) {
    fputs("\nHandled conservatively\n", f);
    if (k.s[OUT_UNTYPED]) {
      size_t both = 0;
      for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].is_site && c->items[i].out == OUT_UNTYPED && !c->items[i].old_type &&
            !c->items[i].new_type)
          both++;
      fprintf(f, "  %zu allocation %s without a type in %s version (%zu in both): their "
                 "objects are copied as they are and traced conservatively (see --json)\n",
              k.s[OUT_UNTYPED], plural(k.s[OUT_UNTYPED], "site", "sites"),
              both == k.s[OUT_UNTYPED] ? "either" : "one or both", both);
    }
    for (size_t i = 0; i < c->nitems; i++) {
      const struct item *it = &c->items[i];
      if (it->is_site && it->out == OUT_UNTYPED && (it->old_type || it->new_type)) {
        fputs("    ", f);
        put_item_name(f, it);
        fputs(": ", f);
        put_types(f, it->old_type, it->new_type);
        fputs(": not transformed\n", f);
      }
      if (!it->is_site && it->out == OUT_UNTYPED) {
        fputs("  ", f);
        put_item_name(f, it);
        fputs(": no type in one version, same size: copied as it is\n", f);
      }
    }
  }
  if (c->nnotes || c->gmissing) {
    fputs("\nNotes\n", f);
    if (c->gmissing)
      fprintf(f, "  %zu %s of NEW's type tables %s no symbol in its symbol table (optimized "
                 "away, or a static without file symbols): nothing to transfer\n",
              c->gmissing, plural(c->gmissing, "global", "globals"),
              plural(c->gmissing, "has", "have"));
    for (size_t i = 0; i < c->nnotes; i++) {
      fputs("  ", f);
      put_human(f, c->notes[i]);
      fputc('\n', f);
    }
  }
  fputc('\n', f);
  if (refused || c->nimgs)
    fprintf(f, "The update would be refused (%zu refused %s, %zu %s without a counterpart): "
               "change the new version or register transformations, as each fix says.\n",
            refused, plural(refused, "transfer", "transfers"), c->nimgs,
            plural(c->nimgs, "pointer", "pointers"));
  else {
    size_t written = 0;
    for (size_t i = 0; i < c->nitems; i++)
      written += c->items[i].out == OUT_KEPT && c->items[i].if_written == OUT_REFUSED;
    fputs("No transfer would be refused for its types", f);
    if (k.risky_items)
      fprintf(f, "; %zu %s risky conversions, checked value by value during the update",
              k.risky_items, plural(k.risky_items, "has", "have"));
    if (written)
      fprintf(f, "; %zu static %s would refuse if the program wrote %s", written,
              plural(written, "table", "tables"), plural(written, "it", "them"));
    fputs(".\n", f);
  }
  review_added(f, k.null_pointers, "added pointer", "NULL");
  review_added(f, k.zero_fields, "other added", "0");
}

/* ---- output: JSON ------------------------------------------------------------------ */

static void json_opt(FILE *f, const char *s)
{
  ctl_json_str(f, s && *s ? s : NULL);
}

static void json_changes(FILE *f, const struct mcr_xplan *p, const struct item *it)
{
  fputc('[', f);
  for (size_t k = 0; p && k < p->nchanges; k++) {
    const struct mcr_xchange *x = &p->changes[k];
    fprintf(f, "%s{\"change\": \"%s\", \"path\": ", k ? ", " : "", mcr_xchange_name(x->kind));
    ctl_json_str(f, x->path);
    fputs(", \"old_type\": ", f);
    json_opt(f, x->old_type);
    fputs(", \"new_type\": ", f);
    json_opt(f, x->new_type);
    if (x->kind == MCR_XC_ADDED)
      fputs(", \"old_offset\": null", f);
    else
      fprintf(f, ", \"old_offset\": %llu", (unsigned long long)x->old_off);
    if (x->kind == MCR_XC_REMOVED)
      fputs(", \"new_offset\": null", f);
    else
      fprintf(f, ", \"new_offset\": %llu", (unsigned long long)x->new_off);
    fprintf(f, ", \"risky\": %s, \"note\": ", may_refuse(x) ? "true" : "false");
    json_opt(f, change_note(x, it, it && it->is_site));
    fputs(", \"move_field\": ", f); /* the declaration a removed field may need */
    json_opt(f, x->move_hint);
    fputc('}', f);
  }
  fputc(']', f);
}

static void json_side(FILE *f, const struct item *it, int side)
{
  const char *type = side ? it->new_type : it->old_type;

  if (!side && !it->is_site && !it->og) {
    fputs("{\"file\": null, \"line\": null, \"type\": null}", f);
    return;
  }
  fputs("{\"file\": ", f);
  json_opt(f, loc_file(it, side));
  fprintf(f, ", \"line\": %u, \"type\": ", loc_line(it, side));
  ctl_json_str(f, type);
  if (it->is_site) {
    const struct asite *s = side ? it->ns : it->os;
    fputs(", \"shape\": ", f);
    ctl_json_str(f, s->rec.type != MCR_NO_TYPE ? mcr_site_shape_name(s->rec.shape) : NULL);
    fputs(", \"reason\": ", f);
    json_opt(f, s->rec.type == MCR_NO_TYPE ? mcr_typetab_str(s->tt, s->rec.reason) : NULL);
  }
  fputc('}', f);
}

static void json_item(FILE *f, const struct item *it)
{
  static const char *const outs[] = {"identical", "transformable", "refused", "untyped",
                                     "static_table"};
  enum outcome what = it->out == OUT_KEPT ? it->if_written : it->out;

  if (it->is_site) {
    fputs("{\"kind\": \"site\", \"name\": ", f);
    ctl_json_str(f, it->ns->key);
    fputs(", \"function\": ", f);
    ctl_json_str(f, it->ns->function);
    fputs(", \"callee\": ", f);
    ctl_json_str(f, it->ns->callee);
    fprintf(f, ", \"ordinal\": %u", it->ns->ordinal);
  } else {
    fputs("{\"kind\": \"global\", \"name\": ", f);
    ctl_json_str(f, it->ng->name);
    fputs(", \"symbol\": ", f);
    ctl_json_str(f, it->ng->symbol);
    fprintf(f, ", \"static\": %s", it->ng->is_static ? "true" : "false");
  }
  fprintf(f, ", \"outcome\": \"%s\"", outs[it->out]);
  if (it->out == OUT_KEPT)
    fprintf(f, ", \"if_written\": \"%s\"", outs[what]);
  fputs(", \"old\": ", f);
  json_side(f, it, 0);
  fputs(", \"new\": ", f);
  json_side(f, it, 1);
  if (what == OUT_TRANSFORM) {
    fputs(", \"transformation\": ", f);
    ctl_json_str(f, it->hook);
    fprintf(f, ", \"inferred\": %s", it->by_hook ? "false" : "true");
    if (it->by_hook) {
      fputs(", \"path\": ", f);
      ctl_json_str(f, it->err.path);
      fputs(", \"reason\": ", f);
      ctl_json_str(f, it->err.msg);
    }
    fprintf(f, ", \"risky\": %zu, \"changes\": ", it->risky);
    json_changes(f, it->plan, it);
    fputs(", \"tail_changes\": ", f);
    json_changes(f, it->plan->has_tail ? it->plan->tail : NULL, NULL);
  }
  if (what == OUT_REFUSED) {
    fprintf(f, ", \"if_objects_alive\": %s, \"path\": ", it->is_site ? "true" : "false");
    ctl_json_str(f, it->err.path);
    fputs(", \"reason\": ", f);
    ctl_json_str(f, it->err.msg);
    fputs(", \"type\": ", f);
    ctl_json_str(f, it->encl);
    fputs(", \"type_old_decl\": ", f);
    if (it->encl_old_file && *it->encl_old_file) {
      fputs("{\"file\": ", f);
      ctl_json_str(f, it->encl_old_file);
      fprintf(f, ", \"line\": %u}", it->encl_old_line);
    } else {
      fputs("null", f);
    }
    fputs(", \"type_new_decl\": ", f);
    if (it->encl_new_file && *it->encl_new_file) {
      fputs("{\"file\": ", f);
      ctl_json_str(f, it->encl_new_file);
      fprintf(f, ", \"line\": %u}", it->encl_new_line);
    } else {
      fputs("null", f);
    }
    fputs(", \"fix\": ", f);
    ctl_json_str(f, it->fix);
  }
  fputc('}', f);
}

static void json_items(FILE *f, const struct check *c, const char *key, enum outcome out,
                       int sites_only)
{
  size_t n = 0;

  fprintf(f, ",\n  \"%s\": [", key);
  for (size_t i = 0; i < c->nitems; i++) {
    const struct item *it = &c->items[i];
    if (it->out != out || (sites_only && !it->is_site))
      continue;
    fputs(n++ ? ",\n    " : "\n    ", f);
    json_item(f, it);
  }
  fputs(n ? "\n  ]" : "]", f);
}

static void json_global(FILE *f, const struct gvar *g)
{
  char *t = render(g->tt, g->rec.type, 0, 0);

  fputs("{\"name\": ", f);
  ctl_json_str(f, g->name);
  fputs(", \"symbol\": ", f);
  ctl_json_str(f, g->symbol);
  fputs(", \"type\": ", f);
  ctl_json_str(f, t);
  fputs(", \"file\": ", f);
  json_opt(f, g->file);
  fprintf(f, ", \"line\": %u, \"static\": %s}", g->rec.line, g->is_static ? "true" : "false");
  free(t);
}

static void json_site(FILE *f, const struct asite *s)
{
  char *t = render(s->tt, s->rec.type, 1, s->rec.shape);

  fputs("{\"name\": ", f);
  ctl_json_str(f, s->key);
  fputs(", \"function\": ", f);
  ctl_json_str(f, s->function);
  fputs(", \"callee\": ", f);
  ctl_json_str(f, s->callee);
  fputs(", \"type\": ", f);
  ctl_json_str(f, t);
  fputs(", \"file\": ", f);
  json_opt(f, s->file);
  fprintf(f, ", \"line\": %u}", s->rec.line);
  free(t);
}

static void json_list(FILE *f, const char *key, const void *const *arr, size_t n, int sites)
{
  fprintf(f, ",\n  \"%s\": [", key);
  for (size_t i = 0; i < n; i++) {
    fputs(i ? ",\n    " : "\n    ", f);
    if (sites)
      json_site(f, arr[i]);
    else
      json_global(f, arr[i]);
  }
  fputs(n ? "\n  ]" : "]", f);
}

static void print_json(FILE *f, const struct check *c)
{
  struct counts k;
  size_t refused, xform;

  count(c, &k);
  refused = k.g[OUT_REFUSED] + k.s[OUT_REFUSED];
  xform = k.g[OUT_TRANSFORM] + k.s[OUT_TRANSFORM];
  fputs("{\n  \"old\": ", f);
  ctl_json_str(f, c->v[0].path);
  fputs(",\n  \"new\": ", f);
  ctl_json_str(f, c->v[1].path);
  fprintf(f, ",\n  \"refused\": %s", refused || c->nimgs ? "true" : "false");
  fprintf(f, ",\n  \"summary\": {\"changed_globals\": %zu, \"changed_sites\": %zu, "
             "\"transformable\": %zu, \"risky\": %zu, \"refused\": %zu, "
             "\"static_tables\": %zu, \"image_pointers\": %zu, \"null_pointers\": %zu, "
             "\"zero_fields\": %zu,\n"
             "    \"globals\": {\"paired\": %zu, \"identical\": %zu, \"transformable\": %zu, "
             "\"refused\": %zu, \"static_tables\": %zu, \"untyped\": %zu, \"new\": %zu, "
             "\"removed\": %zu, \"not_in_symtab\": %zu},\n"
             "    \"sites\": {\"paired\": %zu, \"identical\": %zu, \"transformable\": %zu, "
             "\"refused\": %zu, \"untyped\": %zu, \"new\": %zu, \"removed\": %zu}}",
          k.g[OUT_TRANSFORM] + k.g[OUT_REFUSED] + k.g[OUT_KEPT], k.s[OUT_TRANSFORM] + k.s[OUT_REFUSED],
          xform,
          k.risky_items, refused, k.g[OUT_KEPT], c->nimgs, k.null_pointers, k.zero_fields, sum(k.g),
          k.g[OUT_IDENTICAL], k.g[OUT_TRANSFORM], k.g[OUT_REFUSED], k.g[OUT_KEPT], k.g[OUT_UNTYPED], c->ngadded,
          c->ngremoved,
          c->gmissing, sum(k.s), k.s[OUT_IDENTICAL], k.s[OUT_TRANSFORM],
          k.s[OUT_REFUSED], k.s[OUT_UNTYPED], c->nsadded, c->nsremoved);
  json_items(f, c, "conflicts", OUT_REFUSED, 0);
  json_items(f, c, "transformable", OUT_TRANSFORM, 0);
  fputs(",\n  \"image_pointers\": [", f);
  for (size_t i = 0; i < c->nimgs; i++) {
    const struct imgref *g = &c->imgs[i];
    fputs(i ? ",\n    {\"holder\": " : "\n    {\"holder\": ", f);
    ctl_json_str(f, g->holder->ng->name);
    fprintf(f, ", \"offset\": %llu, \"target\": ", (unsigned long long)g->off);
    ctl_json_str(f, g->target->name);
    fputs(", \"target_file\": ", f);
    json_opt(f, g->target->local ? g->target->file : NULL);
    fprintf(f, ", \"target_kind\": \"%s\", \"target_offset\": %llu, \"reason\": ",
            g->target->code ? "function" : "object", (unsigned long long)g->toff);
    ctl_json_str(f, g->why);
    fputc('}', f);
  }
  fputs(c->nimgs ? "\n  ]" : "]", f);
  json_list(f, "new_globals", (const void *const *)c->gadded, c->ngadded, 0);
  json_list(f, "removed_globals", (const void *const *)c->gremoved, c->ngremoved, 0);
  json_list(f, "new_sites", (const void *const *)c->sadded, c->nsadded, 1);
  json_list(f, "removed_sites", (const void *const *)c->sremoved, c->nsremoved, 1);
  json_items(f, c, "static_tables", OUT_KEPT, 0);
  json_items(f, c, "untyped", OUT_UNTYPED, 0);
  fputs(",\n  \"notes\": [", f);
  for (size_t i = 0; i < c->nnotes; i++) {
    fputs(i ? ", " : "", f);
    ctl_json_str(f, c->notes[i]);
  }
  fputs("]\n}\n", f);
}

/* ---- the command ------------------------------------------------------------------- */

static void free_version(struct version *v)
{
  for (size_t i = 0; i < v->nsites; i++)
    free(v->sites[i].key);
  free(v->sites);
  free(v->globals);
  free(v->syms);
  free(v->byaddr);
  free(v->byname);
  free(v->relocs);
  free(v->tabs);
  mcr_elf_close(&v->elf);
}

/* Each field move of r against both versions' type tables: 0, or -1 after a
 * message naming the move. */
static int check_moves(const struct version *o, const struct version *n,
                       const struct mcr_renames *r)
{
  char why[512];
  for (size_t i = 0; i < r->nmove; i++)
    if (mcr_xmove_check(o->tabs, o->ntabs, n->tabs, n->ntabs, r->move_type[i], r->move_old[i],
                        r->move_new[i], why, sizeof(why)) != 0) {
      ctl_err("%s: --move-field %s.%s=%s: %s", o->cmd, r->move_type[i], r->move_old[i],
              r->move_new[i], why);
      return -1;
    }
  return 0;
}

int ctl_check_moves(const char *cmd, const char *old_path, const char *new_path,
                    const struct mcr_renames *r)
{
  struct version v[2];
  int ret = -1;

  if (!r->nmove)
    return 0;
  memset(v, 0, sizeof(v));
  v[0] = (struct version){.cmd = cmd, .path = old_path, .role = "OLD"};
  v[1] = (struct version){.cmd = cmd, .path = new_path, .role = "NEW"};
  if (load_version(&v[0]) == 0 && load_version(&v[1]) == 0)
    ret = check_moves(&v[0], &v[1], r);
  free_version(&v[0]);
  free_version(&v[1]);
  return ret;
}

int cmd_check(int argc, char **argv)
{
  struct check c;
  char spec[MCR_RENAME_SPEC_MAX];
  const char *paths[2] = {NULL, NULL};
  int json = 0, npaths = 0, dashdash = 0, ret = CTL_EXIT_USAGE;
  size_t refused = 0, xsites = 0;
  char err[512];

  memset(&c, 0, sizeof(c));
  spec[0] = '\0';
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];

    if (!dashdash && a[0] == '-' && a[1]) {
      if (!strcmp(a, "--")) {
        dashdash = 1;
      } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        cmd_check_help();
        return CTL_EXIT_OK;
      } else if (!strcmp(a, "--json")) {
        json = 1;
      } else if (!strcmp(a, "--move-field") || !strncmp(a, "--move-field=", 13)) {
        const char *v = a[12] == '=' ? a + 13 : i + 1 < argc ? argv[++i] : NULL;
        char tok[MCR_RENAME_SPEC_MAX];
        if (!v || !*v) {
          ctl_err("check: --move-field needs TYPE.OLD=NEW");
          return CTL_EXIT_USAGE;
        }
        snprintf(tok, sizeof(tok), "@%s", v);
        if (mcr_renames_append(spec, sizeof(spec), tok) != 0) {
          ctl_err("check: the --move-field list is too long (at most %zu bytes)",
                  sizeof(spec) - 1);
          return CTL_EXIT_USAGE;
        }
      } else {
        ctl_err("check: unknown option '%s' (see 'mcr-ctl check --help')", a);
        return CTL_EXIT_USAGE;
      }
    } else if (npaths == 2) {
      ctl_err("check: too many arguments: '%s' (usage: mcr-ctl check OLD NEW [--json])", a);
      return CTL_EXIT_USAGE;
    } else {
      paths[npaths++] = a;
    }
  }
  if (npaths < 2) {
    ctl_err("check: missing %s (usage: mcr-ctl check OLD NEW [--json])",
            npaths ? "NEW" : "OLD and NEW");
    return CTL_EXIT_USAGE;
  }
  if (mcr_renames_parse(&c.moves, spec, err, sizeof(err)) != 0) {
    ctl_err("check: %s", err);
    return CTL_EXIT_USAGE;
  }
  c.v[0].cmd = c.v[1].cmd = "check";
  c.v[0].path = paths[0];
  c.v[0].role = "OLD";
  c.v[1].path = paths[1];
  c.v[1].role = "NEW";
  if (load_version(&c.v[0]) || load_version(&c.v[1]) || same_program(&c.v[0], &c.v[1]) ||
      check_moves(&c.v[0], &c.v[1], &c.moves))
    goto out;
  if (!(c.arena = mcr_arena_create())) {
    ctl_err("check: %s", strerror(errno));
    goto out;
  }
  if (pair_globals(&c) || pair_sites(&c)) {
    ctl_err("check: %s", strerror(ENOMEM));
    goto out;
  }
  for (size_t i = 0; i < c.nitems; i++)
    if (judge(&c, &c.items[i]) || signature(&c.items[i])) {
      ctl_err("check: %s", strerror(ENOMEM));
      goto out;
    }
  if (check_pointers(&c)) {
    ctl_err("check: %s", strerror(ENOMEM));
    goto out;
  }
  refused = c.nimgs;
  for (size_t i = 0; i < c.nitems; i++) {
    refused += c.items[i].out == OUT_REFUSED;
    xsites += c.items[i].is_site && c.items[i].out == OUT_TRANSFORM;
  }
  if (xsites && note(&c, "the objects of the %zu transformable allocation %s are converted at "
                         "update time and every pointer to them rewritten; a word of unknown "
                         "meaning that points into one (in an untyped object, a char array, a "
                         "union, a long integer, a stack, an epoll registration's data) pins it "
                         "and refuses the update: check cannot see those",
                     xsites, xsites == 1 ? "site" : "sites")) {
    ctl_err("check: %s", strerror(ENOMEM));
    goto out;
  }

  if (json)
    print_json(stdout, &c);
  else
    print_human(stdout, &c);
  if (fflush(stdout) || ferror(stdout)) {
    ctl_err("check: writing output: %s", strerror(errno));
    goto out;
  }
  ret = refused ? CTL_EXIT_FAILED : CTL_EXIT_OK;
out:
  for (size_t i = 0; i < c.nitems; i++) {
    free(c.items[i].old_type);
    free(c.items[i].new_type);
    free(c.items[i].encl);
    free(c.items[i].fix);
    free(c.items[i].sig);
  }
  free(c.items);
  free(c.gadded);
  free(c.gremoved);
  free(c.sadded);
  free(c.sremoved);
  for (size_t i = 0; i < c.nnotes; i++)
    free(c.notes[i]);
  free(c.notes);
  free(c.imgs);
  mcr_arena_destroy(c.arena);
  free_version(&c.v[0]);
  free_version(&c.v[1]);
  return ret;
}
