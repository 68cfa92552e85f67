/*
 * blob-builder.h - builds mcr type tables (abi.h) by hand, for tests.
 *
 * Layout written: header | types | members | sites | globals | strtab | zero pad to
 * MCR_BLOB_ALIGN. Fixed capacities; a test that overflows them fails loudly.
 */
#ifndef MCR_TEST_BLOB_BUILDER_H
#define MCR_TEST_BLOB_BUILDER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcr/abi.h"

#define BB_MAX 128

struct bb {
  struct mcr_type_rec types[BB_MAX];
  struct mcr_member_rec members[BB_MAX];
  struct mcr_site_rec sites[BB_MAX];
  struct mcr_global_rec globals[BB_MAX];
  uint32_t ntypes, nmembers, nsites, nglobals;
  char strtab[8192];
  uint32_t strsize;
  uint32_t module, comp_dir, producer;
};

static void bb_overflow(const char *what)
{
  fprintf(stderr, "blob-builder: too many %s\n", what);
  exit(99);
}

static uint32_t bb_str(struct bb *b, const char *s)
{
  size_t n = strlen(s) + 1;

  if (!*s)
    return 0;
  if (b->strsize + n > sizeof(b->strtab))
    bb_overflow("string bytes");
  memcpy(b->strtab + b->strsize, s, n);
  b->strsize += (uint32_t)n;
  return b->strsize - (uint32_t)n;
}

static void bb_init(struct bb *b, const char *module)
{
  memset(b, 0, sizeof(*b));
  b->strsize = 1; /* offset 0 is "" */
  b->module = bb_str(b, module);
  b->comp_dir = bb_str(b, "/src");
  b->producer = bb_str(b, "blob-builder");
}

static uint32_t bb_type(struct bb *b, unsigned kind, unsigned flags, const char *name,
                        uint64_t size, uint32_t target, uint32_t count)
{
  struct mcr_type_rec *t;

  if (b->ntypes == BB_MAX)
    bb_overflow("types");
  t = &b->types[b->ntypes];
  t->kind = (uint8_t)kind;
  t->flags = (uint8_t)flags;
  t->name = bb_str(b, name);
  t->size = size;
  t->target = target;
  t->count = count;
  t->first_member = b->nmembers; /* members added next belong to it */
  t->decl_file = bb_str(b, "decl.h");
  t->decl_line = 7;
  return b->ntypes++;
}

static uint32_t bb_member(struct bb *b, const char *name, uint32_t type, uint64_t off_bits)
{
  struct mcr_member_rec *m;

  if (b->nmembers == BB_MAX)
    bb_overflow("members");
  m = &b->members[b->nmembers];
  m->name = bb_str(b, name);
  m->type = type;
  m->offset_bits = off_bits;
  return b->nmembers++;
}

static uint32_t bb_site(struct bb *b, const char *file, uint32_t line, const char *fn,
                        const char *callee, uint32_t type, uint32_t shape, const char *reason)
{
  struct mcr_site_rec *s;

  if (b->nsites == BB_MAX)
    bb_overflow("sites");
  s = &b->sites[b->nsites];
  s->file = bb_str(b, file);
  s->line = line;
  s->column = 3;
  s->function = bb_str(b, fn);
  s->callee = bb_str(b, callee);
  s->type = type;
  s->shape = shape;
  s->reason = bb_str(b, reason);
  s->evidence = bb_str(b, type == MCR_NO_TYPE ? "" : "local variable 'p'");
  return b->nsites++;
}

static uint32_t bb_global(struct bb *b, const char *name, const char *symbol, uint32_t type,
                          const char *file, uint32_t line, uint32_t flags, const char *scope,
                          uint64_t size)
{
  struct mcr_global_rec *g;

  if (b->nglobals == BB_MAX)
    bb_overflow("globals");
  g = &b->globals[b->nglobals];
  g->name = bb_str(b, name);
  g->symbol = bb_str(b, symbol);
  g->type = type;
  g->file = bb_str(b, file);
  g->line = line;
  g->flags = flags;
  g->scope = bb_str(b, scope);
  g->size = size;
  return b->nglobals++;
}

/* Serializes into out (cap bytes); returns the blob size, or 0 if it does not fit. */
static size_t bb_build(const struct bb *b, unsigned char *out, size_t cap)
{
  struct mcr_blob_header h;
  size_t off = sizeof(h), total;

  memset(&h, 0, sizeof(h));
  h.magic = MCR_BLOB_MAGIC;
  h.version = MCR_BLOB_VERSION;
  h.header_size = sizeof(h);
  h.module = b->module;
  h.comp_dir = b->comp_dir;
  h.producer = b->producer;
#define BB_TABLE(arr, n, offf, nf, szf)                                                    \
  h.offf = (uint32_t)off;                                                                  \
  h.nf = b->n;                                                                             \
  h.szf = sizeof(b->arr[0]);                                                               \
  off += (size_t)b->n * sizeof(b->arr[0]);
  BB_TABLE(types, ntypes, types_off, ntypes, type_size)
  BB_TABLE(members, nmembers, members_off, nmembers, member_size)
  BB_TABLE(sites, nsites, sites_off, nsites, site_size)
  BB_TABLE(globals, nglobals, globals_off, nglobals, global_size)
#undef BB_TABLE
  h.strtab_off = (uint32_t)off;
  h.strtab_size = b->strsize;
  total = (off + b->strsize + MCR_BLOB_ALIGN - 1) & ~(size_t)(MCR_BLOB_ALIGN - 1);
  h.total_size = (uint32_t)total;
  if (total > cap)
    return 0;
  memset(out, 0, total);
  memcpy(out, &h, sizeof(h));
  memcpy(out + h.types_off, b->types, (size_t)b->ntypes * sizeof(b->types[0]));
  memcpy(out + h.members_off, b->members, (size_t)b->nmembers * sizeof(b->members[0]));
  memcpy(out + h.sites_off, b->sites, (size_t)b->nsites * sizeof(b->sites[0]));
  memcpy(out + h.globals_off, b->globals, (size_t)b->nglobals * sizeof(b->globals[0]));
  memcpy(out + h.strtab_off, b->strtab, b->strsize);
  return total;
}

#endif /* MCR_TEST_BLOB_BUILDER_H */
