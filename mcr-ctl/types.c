/*
 * types.c - mcr-ctl types BINARY [--json] [--sites-only|--globals-only]
 *
 * Reads the mcr_types section of an executable or shared object built by mcr-clang
 * and lists every allocation site with the type the pass inferred for it (or the
 * reason it has none), every global, static local and thread-local with its type, and
 * a coverage summary. Everything is read and validated before anything is printed, so
 * an error prints one line on stderr and nothing else.
 */
#define _GNU_SOURCE /* vasprintf */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "elf.h"
#include "typetab.h"

#define MAX_COL_WIDTH 40 /* columns wider than this overflow instead of pushing others */
#define TOP_REASONS 10   /* reasons listed in the human summary */

struct site_row {
  const char *module, *file, *function, *callee, *reason, *evidence;
  char *type;      /* what the allocation holds, or NULL */
  char *elem_type; /* element type T, or NULL */
  uint32_t line, column, shape;
  uint32_t index; /* of the site record in its module's table */
  size_t order;   /* position in table order, to keep sorting stable */
};

struct global_row {
  const char *module, *name, *symbol, *file, *scope;
  char *type; /* or NULL */
  uint32_t line, flags;
  uint64_t size;
  int duplicate; /* the same name is in another module too */
};

struct reason_count {
  const char *reason;
  size_t count;
};

struct types_ctx {
  const char *path;
  struct mcr_typetab *tabs;
  size_t ntabs;
  struct site_row *sites;
  size_t nsites, sites_typed;
  struct global_row *globals;
  size_t nglobals, globals_typed;
  struct reason_count *reasons;
  size_t nreasons;
};

void cmd_types_help(void)
{
  printf("Usage: mcr-ctl types BINARY [--json] [--sites-only | --globals-only]\n"
         "\n"
         "Lists what mcr knows of the types of a program built by mcr-clang: every\n"
         "allocation site (file, line, function, allocator called) with the type the\n"
         "compiler pass inferred for what it allocates, or the reason it found none;\n"
         "every global, static local and thread-local with its type; and a coverage\n"
         "summary (share of allocation sites with a type, most common reasons for\n"
         "sites without one). Untyped allocations are handled conservatively during an\n"
         "update: their contents are not transformed and what they point to is pinned.\n"
         "\n"
         "Options:\n"
         "  --json          machine-readable output (one JSON object)\n"
         "  --sites-only    list only allocation sites (and the summary)\n"
         "  --globals-only  list only globals (and the summary)\n"
         "  -h, --help      this help\n"
         "\n"
         "Exit status: 0 success; 2 bad usage, unreadable, stripped or uninstrumented\n"
         "binary, or a corrupt type table.\n");
}

/* ---- collecting rows ------------------------------------------------------- */

static char *render_dup(const struct mcr_typetab *tt, uint32_t t, int with_shape,
                        uint32_t shape)
{
  char small[256], *buf;
  int n = with_shape ? mcr_type_render_shape(tt, t, shape, small, sizeof(small))
                     : mcr_type_render(tt, t, small, sizeof(small));

  if (n < 0)
    return NULL;
  buf = malloc((size_t)n + 1);
  if (!buf)
    return NULL;
  if ((size_t)n < sizeof(small))
    memcpy(buf, small, (size_t)n + 1);
  else if (with_shape)
    mcr_type_render_shape(tt, t, shape, buf, (size_t)n + 1);
  else
    mcr_type_render(tt, t, buf, (size_t)n + 1);
  return buf;
}


static int count_reason(struct types_ctx *c, size_t *cap, const char *reason)
{
  for (size_t i = 0; i < c->nreasons; i++)
    if (!strcmp(c->reasons[i].reason, reason)) {
      c->reasons[i].count++;
      return 0;
    }
  if (ctl_grow((void **)&c->reasons, cap, c->nreasons + 1, sizeof(*c->reasons)))
    return -1;
  c->reasons[c->nreasons].reason = reason;
  c->reasons[c->nreasons].count = 1;
  c->nreasons++;
  return 0;
}

static int cmp_reasons(const void *a, const void *b)
{
  const struct reason_count *x = a, *y = b;

  if (x->count != y->count)
    return x->count < y->count ? 1 : -1;
  return strcmp(x->reason, y->reason);
}

static int cmp_sites(const void *a, const void *b)
{
  const struct site_row *x = a, *y = b;
  int r = strcmp(x->file, y->file);

  if (r)
    return r;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->column != y->column)
    return x->column < y->column ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_global_names(const void *a, const void *b)
{
  const struct global_row *const *x = a, *const *y = b;
  int r = strcmp((*x)->name, (*y)->name);

  if (r)
    return r;
  return *x < *y ? -1 : *x > *y; /* stable: table order */
}

/* Marks globals whose name appears in more than one row (identical static inline
 * things, or same-named statics of different files): all are kept and listed. */
static int mark_duplicates(struct types_ctx *c)
{
  struct global_row **ix;

  if (c->nglobals < 2)
    return 0;
  ix = malloc(c->nglobals * sizeof(*ix));
  if (!ix)
    return -1;
  for (size_t i = 0; i < c->nglobals; i++)
    ix[i] = &c->globals[i];
  qsort(ix, c->nglobals, sizeof(*ix), cmp_global_names);
  for (size_t i = 1; i < c->nglobals; i++)
    if (!strcmp(ix[i - 1]->name, ix[i]->name))
      ix[i - 1]->duplicate = ix[i]->duplicate = 1;
  free(ix);
  return 0;
}

/* Renders every site and global of every table. A render failure can only come from
 * a type graph too convoluted for C: reported as a corrupt table. */
static int collect(struct types_ctx *c)
{
  size_t scap = 0, gcap = 0, rcap = 0;

  for (size_t b = 0; b < c->ntabs; b++) {
    const struct mcr_typetab *tt = &c->tabs[b];
    const char *module = mcr_typetab_str(tt, tt->hdr.module);

    for (uint32_t i = 0; i < mcr_typetab_nsites(tt); i++) {
      struct mcr_site_rec s;
      struct site_row *r;

      if (ctl_grow((void **)&c->sites, &scap, c->nsites + 1, sizeof(*c->sites)))
        goto nomem;
      r = &c->sites[c->nsites++];
      memset(r, 0, sizeof(*r));
      mcr_typetab_site(tt, i, &s);
      r->module = module;
      r->index = i;
      r->order = c->nsites - 1;
      r->file = mcr_typetab_str(tt, s.file);
      r->line = s.line;
      r->column = s.column;
      r->function = mcr_typetab_str(tt, s.function);
      r->callee = mcr_typetab_str(tt, s.callee);
      r->evidence = mcr_typetab_str(tt, s.evidence);
      r->shape = s.shape;
      if (s.type != MCR_NO_TYPE) {
        r->type = render_dup(tt, s.type, 1, s.shape);
        r->elem_type = render_dup(tt, s.type, 0, 0);
        if (!r->type || !r->elem_type) {
          ctl_err("%s: corrupt mcr_types section: module %s, site %u: type %u cannot be "
                  "spelled in C (cyclic or too deep)",
                  c->path, module, i, s.type);
          return -1;
        }
        c->sites_typed++;
      } else {
        r->reason = mcr_typetab_str(tt, s.reason);
        if (!*r->reason)
          r->reason = "no reason given by the compiler pass";
        if (count_reason(c, &rcap, r->reason))
          goto nomem;
      }
    }

    for (uint32_t i = 0; i < mcr_typetab_nglobals(tt); i++) {
      struct mcr_global_rec g;
      struct global_row *r;

      if (ctl_grow((void **)&c->globals, &gcap, c->nglobals + 1, sizeof(*c->globals)))
        goto nomem;
      r = &c->globals[c->nglobals++];
      memset(r, 0, sizeof(*r));
      mcr_typetab_global(tt, i, &g);
      r->module = module;
      r->name = mcr_typetab_str(tt, g.name);
      r->symbol = mcr_typetab_str(tt, g.symbol);
      r->file = mcr_typetab_str(tt, g.file);
      r->scope = mcr_typetab_str(tt, g.scope);
      r->line = g.line;
      r->flags = g.flags;
      r->size = g.size;
      if (g.type != MCR_NO_TYPE) {
        r->type = render_dup(tt, g.type, 0, 0);
        if (!r->type) {
          ctl_err("%s: corrupt mcr_types section: module %s, global %u: type %u cannot be "
                  "spelled in C (cyclic or too deep)",
                  c->path, module, i, g.type);
          return -1;
        }
        c->globals_typed++;
      }
    }
  }
  if (mark_duplicates(c))
    goto nomem;
  if (c->nsites > 1) /* by source location, for people and for diffs */
    qsort(c->sites, c->nsites, sizeof(*c->sites), cmp_sites);
  if (c->nreasons > 1)
    qsort(c->reasons, c->nreasons, sizeof(*c->reasons), cmp_reasons);
  return 0;
nomem:
  ctl_err("%s: %s", c->path, strerror(ENOMEM));
  return -1;
}

/* ---- output: JSON ---------------------------------------------------------- */



/* A string field where "" means absent. */
static void json_opt(FILE *f, const char *s)
{
  ctl_json_str(f, s && *s ? s : NULL);
}

static void json_flags(FILE *f, uint32_t flags)
{
  static const struct {
    uint32_t bit;
    const char *name;
  } names[] = {{MCR_GF_INTERNAL, "static"},
               {MCR_GF_LOCAL_STATIC, "static_local"},
               {MCR_GF_TLS, "thread_local"},
               {MCR_GF_CONST, "const"}};
  const char *sep = "";

  fputc('[', f);
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (flags & names[i].bit) {
      fprintf(f, "%s\"%s\"", sep, names[i].name);
      sep = ", ";
    }
  fputc(']', f);
}

static void print_json(FILE *f, const struct types_ctx *c, int sites, int globals)
{
  fputs("{\n  \"binary\": ", f);
  ctl_json_str(f, c->path);
  fputs(",\n  \"modules\": [", f);
  for (size_t b = 0; b < c->ntabs; b++) {
    const struct mcr_typetab *tt = &c->tabs[b];

    fputs(b ? ",\n    {\"module\": " : "\n    {\"module\": ", f);
    ctl_json_str(f, mcr_typetab_str(tt, tt->hdr.module));
    fputs(", \"comp_dir\": ", f);
    json_opt(f, mcr_typetab_str(tt, tt->hdr.comp_dir));
    fputs(", \"producer\": ", f);
    json_opt(f, mcr_typetab_str(tt, tt->hdr.producer));
    fprintf(f, ", \"types\": %u, \"sites\": %u, \"globals\": %u}", mcr_typetab_ntypes(tt),
            mcr_typetab_nsites(tt), mcr_typetab_nglobals(tt));
  }
  fputs(c->ntabs ? "\n  ]" : "]", f);

  if (sites) {
    fputs(",\n  \"sites\": [", f);
    for (size_t i = 0; i < c->nsites; i++) {
      const struct site_row *r = &c->sites[i];

      fputs(i ? ",\n    {\"file\": " : "\n    {\"file\": ", f);
      ctl_json_str(f, r->file);
      fprintf(f, ", \"line\": %u, \"column\": %u, \"function\": ", r->line, r->column);
      ctl_json_str(f, r->function);
      fputs(", \"callee\": ", f);
      ctl_json_str(f, r->callee);
      fputs(", \"type\": ", f);
      ctl_json_str(f, r->type);
      fputs(", \"element_type\": ", f);
      ctl_json_str(f, r->elem_type);
      fputs(", \"shape\": ", f);
      ctl_json_str(f, r->type ? mcr_site_shape_name(r->shape) : NULL);
      fputs(", \"reason\": ", f);
      ctl_json_str(f, r->reason);
      fputs(", \"evidence\": ", f);
      json_opt(f, r->evidence);
      fputs(", \"module\": ", f);
      ctl_json_str(f, r->module);
      fprintf(f, ", \"index\": %u}", r->index);
    }
    fputs(c->nsites ? "\n  ]" : "]", f);
  }

  if (globals) {
    fputs(",\n  \"globals\": [", f);
    for (size_t i = 0; i < c->nglobals; i++) {
      const struct global_row *r = &c->globals[i];

      fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", f);
      ctl_json_str(f, r->name);
      fputs(", \"symbol\": ", f);
      ctl_json_str(f, r->symbol);
      fputs(", \"type\": ", f);
      ctl_json_str(f, r->type);
      fputs(", \"file\": ", f);
      ctl_json_str(f, r->file);
      fprintf(f, ", \"line\": %u, \"flags\": ", r->line);
      json_flags(f, r->flags);
      fputs(", \"scope\": ", f);
      json_opt(f, r->scope);
      fprintf(f, ", \"size\": %llu, \"module\": ", (unsigned long long)r->size);
      ctl_json_str(f, r->module);
      fputc('}', f);
    }
    fputs(c->nglobals ? "\n  ]" : "]", f);
  }

  fprintf(f, ",\n  \"summary\": {\"modules\": %zu, \"sites\": %zu, \"typed\": %zu, "
             "\"untyped\": %zu, \"coverage\": ",
          c->ntabs, c->nsites, c->sites_typed, c->nsites - c->sites_typed);
  if (c->nsites)
    fprintf(f, "%.4f", (double)c->sites_typed / (double)c->nsites);
  else
    fputs("null", f);
  fputs(", \"untyped_reasons\": [", f);
  for (size_t i = 0; i < c->nreasons; i++) {
    fputs(i ? ", {\"reason\": " : "{\"reason\": ", f);
    ctl_json_str(f, c->reasons[i].reason);
    fprintf(f, ", \"count\": %zu}", c->reasons[i].count);
  }
  fprintf(f, "], \"globals\": %zu, \"globals_typed\": %zu}\n}\n", c->nglobals,
          c->globals_typed);
}

/* ---- output: for people ---------------------------------------------------- */

/* Copies s into a malloc'd string with control characters and bytes that are not
 * UTF-8 escaped (\n, \t, \xNN), so that a table row stays one line. */
static char *human(const char *s)
{
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t n = strlen((const char *)p);
  char *out = malloc(4 * n + 1), *o = out;

  if (!out)
    return NULL;
  while (*p) {
    int k = *p >= 0x20 && *p != 0x7f ? ctl_utf8_len(p) : 0;

    if (k > 0) {
      memcpy(o, p, (size_t)k);
      o += k;
      p += k;
    } else if (*p == '\n' || *p == '\t') {
      *o++ = '\\';
      *o++ = *p == '\n' ? 'n' : 't';
      p++;
    } else {
      static const char hex[] = "0123456789abcdef";
      *o++ = '\\';
      *o++ = 'x';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
      p++;
    }
  }
  *o = '\0';
  return out;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
  size_t w = 0;

  for (; *s; s++)
    if (((unsigned char)*s & 0xc0) != 0x80)
      w++;
  return w;
}

#define NCOLS 4

struct table {
  char **cells; /* nrows * NCOLS, owned */
  size_t nrows, cap;
  size_t w[NCOLS];
};

static int table_add(struct table *t, char *col[NCOLS])
{
  for (int i = 0; i < NCOLS; i++)
    if (!col[i])
      goto fail; /* the caller's allocation failed */
  if (ctl_grow((void **)&t->cells, &t->cap, (t->nrows + 1) * NCOLS, sizeof(char *)))
    goto fail;
  for (int i = 0; i < NCOLS; i++) {
    size_t w = width(col[i]);

    t->cells[t->nrows * NCOLS + i] = col[i];
    if (w > MAX_COL_WIDTH)
      w = MAX_COL_WIDTH;
    if (w > t->w[i])
      t->w[i] = w;
  }
  t->nrows++;
  return 0;
fail:
  for (int i = 0; i < NCOLS; i++)
    free(col[i]);
  return -1;
}

static void table_print(FILE *f, const struct table *t)
{
  for (size_t r = 0; r < t->nrows; r++) {
    char **row = &t->cells[r * NCOLS];
    int last = NCOLS - 1;

    while (last > 0 && !*row[last])
      last--;
    fputs("  ", f);
    for (int i = 0; i <= last; i++) {
      fputs(row[i], f);
      if (i < last) {
        size_t w = width(row[i]);
        for (size_t k = w; k < t->w[i] + 2; k++)
          fputc(' ', f);
        if (w >= t->w[i] + 2)
          fputc(' ', f);
      }
    }
    fputc('\n', f);
  }
}

static void table_free(struct table *t)
{
  for (size_t i = 0; i < t->nrows * NCOLS; i++)
    free(t->cells[i]);
  free(t->cells);
  memset(t, 0, sizeof(*t));
}


static char *location(const char *file, uint32_t line, uint32_t column)
{
  char *h = human(file), *s;

  if (!h)
    return NULL;
  if (line && column)
    s = ctl_fmt("%s:%u:%u", *h ? h : "?", line, column);
  else if (line)
    s = ctl_fmt("%s:%u", *h ? h : "?", line);
  else
    s = ctl_fmt("%s", *h ? h : "?");
  free(h);
  return s;
}

static int site_table(const struct types_ctx *c, struct table *t)
{
  char *hdr[NCOLS] = {strdup("LOCATION"), strdup("FUNCTION"), strdup("CALLS"), strdup("TYPE")};

  if (table_add(t, hdr))
    return -1;
  for (size_t i = 0; i < c->nsites; i++) {
    const struct site_row *r = &c->sites[i];
    char *col[NCOLS], *h;

    col[0] = location(r->file, r->line, r->column);
    col[1] = human(r->function);
    col[2] = human(r->callee);
    if (r->type) {
      h = human(r->type);
      col[3] = h && r->shape == MCR_SHAPE_FLEX ? ctl_fmt("%s (with flexible array member)", h)
               : h                            ? strdup(h)
                                              : NULL;
    } else {
      h = human(r->reason);
      col[3] = h ? ctl_fmt("- (no type: %s)", h) : NULL;
    }
    free(h);
    if (table_add(t, col))
      return -1;
  }
  return 0;
}

static char *global_notes(const struct global_row *r)
{
  char buf[512] = "";
  char *scope = human(r->scope), *module = human(r->module), *symbol = human(r->symbol);
  char *out = NULL;
  size_t n = 0;

  if (!scope || !module || !symbol)
    goto out;
#define ADD(...) n += (size_t)snprintf(buf + n, n < sizeof(buf) ? sizeof(buf) - n : 0, __VA_ARGS__)
  if (r->flags & MCR_GF_LOCAL_STATIC)
    ADD("static local in %s()", *scope ? scope : "?");
  else if (r->flags & MCR_GF_INTERNAL)
    ADD("static");
  if (r->flags & MCR_GF_TLS)
    ADD("%sthread-local", n ? ", " : "");
  if (r->flags & MCR_GF_CONST)
    ADD("%sconst", n ? ", " : "");
  if (strcmp(r->symbol, r->name))
    ADD("%ssymbol %s", n ? ", " : "", symbol);
  if (r->duplicate)
    ADD("%sin module %s", n ? ", " : "", module);
#undef ADD
  out = strdup(buf);
out:
  free(scope);
  free(module);
  free(symbol);
  return out;
}

static int global_table(const struct types_ctx *c, struct table *t)
{
  char *hdr[NCOLS] = {strdup("NAME"), strdup("TYPE"), strdup("LOCATION"), strdup("NOTES")};

  if (table_add(t, hdr))
    return -1;
  for (size_t i = 0; i < c->nglobals; i++) {
    const struct global_row *r = &c->globals[i];
    char *col[NCOLS];

    col[0] = human(r->name);
    col[1] = r->type ? human(r->type) : strdup("- (no type)");
    col[2] = location(r->file, r->line, 0);
    col[3] = global_notes(r);
    if (table_add(t, col))
      return -1;
  }
  return 0;
}

static int print_human(FILE *f, const struct types_ctx *c, int sites, int globals)
{
  struct table st = {0}, gt = {0};
  int ret = -1;

  if ((sites && site_table(c, &st)) || (globals && global_table(c, &gt))) {
    ctl_err("%s: %s", c->path, strerror(ENOMEM));
    goto out;
  }
  if (sites) {
    fprintf(f, "Allocation sites (%zu)\n", c->nsites);
    if (c->nsites)
      table_print(f, &st);
    else
      fputs("  none\n", f);
    fputc('\n', f);
  }
  if (globals) {
    fprintf(f, "Globals (%zu)\n", c->nglobals);
    if (c->nglobals)
      table_print(f, &gt);
    else
      fputs("  none\n", f);
    fputc('\n', f);
  }

  fputs("Summary\n", f);
  fprintf(f, "  modules:          %zu type table%s\n", c->ntabs, c->ntabs == 1 ? "" : "s");
  if (c->nsites)
    fprintf(f, "  allocation sites: %zu, typed %zu, untyped %zu (%.1f%% coverage)\n",
            c->nsites, c->sites_typed, c->nsites - c->sites_typed,
            100.0 * (double)c->sites_typed / (double)c->nsites);
  else
    fputs("  allocation sites: none\n", f);
  if (c->nreasons) {
    fputs("  untyped sites, by reason:\n", f);
    for (size_t i = 0; i < c->nreasons && i < TOP_REASONS; i++) {
      char *h = human(c->reasons[i].reason);
      fprintf(f, "    %5zu  %s\n", c->reasons[i].count, h ? h : "?");
      free(h);
    }
    if (c->nreasons > TOP_REASONS)
      fprintf(f, "    (%zu more reasons: see --json)\n", c->nreasons - TOP_REASONS);
  }
  fprintf(f, "  globals:          %zu, typed %zu\n", c->nglobals, c->globals_typed);
  ret = 0;
out:
  table_free(&st);
  table_free(&gt);
  return ret;
}

/* ---- reading the binary ---------------------------------------------------- */

static int load_tables(struct types_ctx *c, const struct mcr_elf_section *sec)
{
  size_t pos = 0, cap = 0, len;
  const void *blob;
  struct mcr_typetab_error err;
  int r;

  while ((r = mcr_typetab_next(sec->data, sec->size, &pos, &blob, &len, &err)) == 1) {
    size_t at = (size_t)((const unsigned char *)blob - sec->data);

    if (ctl_grow((void **)&c->tabs, &cap, c->ntabs + 1, sizeof(*c->tabs))) {
      ctl_err("%s: %s", c->path, strerror(ENOMEM));
      return -1;
    }
    if (mcr_typetab_open(&c->tabs[c->ntabs], blob, len, &err)) {
      ctl_err("%s: corrupt mcr_types section: type table %zu (section offset 0x%zx): %s "
              "(at byte 0x%llx of the table); rebuild with the current mcr-clang",
              c->path, c->ntabs + 1, at, err.msg, (unsigned long long)err.offset);
      return -1;
    }
    c->ntabs++;
  }
  if (r < 0) {
    ctl_err("%s: corrupt mcr_types section: at section offset 0x%llx: %s", c->path,
            (unsigned long long)err.offset, err.msg);
    return -1;
  }
  if (c->ntabs == 0) {
    ctl_err("%s: corrupt mcr_types section: it holds no type table", c->path);
    return -1;
  }
  return 0;
}

int cmd_types(int argc, char **argv)
{
  struct types_ctx c = {0};
  struct mcr_elf elf = {0};
  struct mcr_elf_section sec;
  enum mcr_elf_status st;
  const char *path = NULL;
  char msg[256];
  int json = 0, sites = 1, globals = 1, ret = CTL_EXIT_USAGE, dashdash = 0;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];

    if (!dashdash && a[0] == '-' && a[1]) {
      if (!strcmp(a, "--")) {
        dashdash = 1;
      } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        cmd_types_help();
        return CTL_EXIT_OK;
      } else if (!strcmp(a, "--json")) {
        json = 1;
      } else if (!strcmp(a, "--sites-only")) {
        globals = 0;
      } else if (!strcmp(a, "--globals-only")) {
        sites = 0;
      } else {
        ctl_err("types: unknown option '%s' (see 'mcr-ctl types --help')", a);
        return CTL_EXIT_USAGE;
      }
    } else if (path) {
      ctl_err("types: one BINARY only, got '%s' and '%s' (see 'mcr-ctl types --help')", path,
              a);
      return CTL_EXIT_USAGE;
    } else {
      path = a;
    }
  }
  if (!path) {
    ctl_err("types: missing BINARY (usage: mcr-ctl types BINARY [--json])");
    return CTL_EXIT_USAGE;
  }
  if (!sites && !globals) {
    ctl_err("types: --sites-only and --globals-only exclude each other");
    return CTL_EXIT_USAGE;
  }
  c.path = path;

  st = mcr_elf_open(&elf, path, msg, sizeof(msg));
  switch (st) {
  case MCR_ELF_OK:
    break;
  case MCR_ELF_CORRUPT:
    ctl_err("%s: corrupt ELF file: %s", path, msg);
    goto out;
  case MCR_ELF_EIO:
  case MCR_ELF_NOT_ELF:
  case MCR_ELF_WRONG_ARCH:
  default:
    ctl_err("%s: %s", path, msg);
    goto out;
  }

  switch (mcr_elf_section(&elf, MCR_TYPES_SECTION, &sec)) {
  case 0:
    break;
  case -2:
    ctl_err("%s: corrupt ELF file: section " MCR_TYPES_SECTION
            " extends past the end of the file (truncated?)",
            path);
    goto out;
  default:
    ctl_err("%s: no " MCR_TYPES_SECTION " section: not built by mcr-clang: rebuild with "
            "CC=mcr-clang",
            path);
    goto out;
  }
  if (!sec.data || sec.size == 0) {
    ctl_err("%s: corrupt mcr_types section: it is empty", path);
    goto out;
  }
  if (!mcr_elf_has_symtab(&elf)) {
    ctl_err("%s: stripped (no .symtab): mcr needs symbols to match globals and functions "
            "across versions; rebuild without -s/strip",
            path);
    goto out;
  }
  if (load_tables(&c, &sec) || collect(&c))
    goto out;

  if (json)
    print_json(stdout, &c, sites, globals);
  else if (print_human(stdout, &c, sites, globals))
    goto out;
  if (fflush(stdout) || ferror(stdout)) {
    ctl_err("writing output: %s", strerror(errno));
    goto out;
  }
  ret = CTL_EXIT_OK;
out:
  for (size_t i = 0; i < c.nsites; i++) {
    free(c.sites[i].type);
    free(c.sites[i].elem_type);
  }
  for (size_t i = 0; i < c.nglobals; i++)
    free(c.globals[i].type);
  free(c.sites);
  free(c.globals);
  free(c.reasons);
  free(c.tabs);
  mcr_elf_close(&elf);
  return ret;
}
