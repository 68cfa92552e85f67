/*
 * typetab.c - reader of mcr type tables: validation, record access, and spelling
 * types as C does. See typetab.h.
 *
 * This file is linked into production servers (mcr_rt) and into mcr-ctl: it never
 * allocates, prints, aborts or exits, and trusts nothing in the blob. Every read goes
 * through memcpy from a range validated against the blob's total_size, so neither the
 * alignment nor the contents of the input can make it read out of bounds.
 */
#include "typetab.h"

#include <stdio.h>

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mcr type tables are little-endian; this reader assumes a little-endian host"
#endif

/* Render limits: nesting of left/right recursion (chains plus function parameters),
 * and total steps of one render call (bounds the cost of shared sub-graphs). */
#define RENDER_MAX_DEPTH (4 * MCR_TYPE_MAX_DEPTH)
#define RENDER_MAX_STEPS (1U << 16)

/* ---- error messages without stdio ------------------------------------------ */

struct sbuf {
  char *buf;
  size_t len; /* capacity including the NUL */
  size_t pos; /* logical length (may exceed len: truncated) */
  char last;  /* last character appended, even if truncated */
};

static void sb_putc(struct sbuf *sb, char c)
{
  if (sb->pos + 1 < sb->len)
    sb->buf[sb->pos] = c;
  sb->pos++;
  sb->last = c;
}

static void sb_puts(struct sbuf *sb, const char *s)
{
  while (*s)
    sb_putc(sb, *s++);
}

static void sb_putu(struct sbuf *sb, unsigned long long v, unsigned base)
{
  char tmp[24];
  int n = 0;

  do {
    unsigned d = (unsigned)(v % base);
    tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v && n < (int)sizeof(tmp));
  while (n > 0)
    sb_putc(sb, tmp[--n]);
}

static void sb_finish(struct sbuf *sb)
{
  if (sb->len == 0)
    return;
  sb->buf[sb->pos < sb->len ? sb->pos : sb->len - 1] = '\0';
}

/* A printf subset: %s %u %llu %llx %%. */
static void sb_vformat(struct sbuf *sb, const char *fmt, va_list ap)
{
  for (const char *p = fmt; *p; p++) {
    if (*p != '%') {
      sb_putc(sb, *p);
      continue;
    }
    p++;
    if (*p == 's') {
      const char *s = va_arg(ap, const char *);
      sb_puts(sb, s ? s : "(null)");
    } else if (*p == 'u') {
      sb_putu(sb, va_arg(ap, unsigned), 10);
    } else if (p[0] == 'l' && p[1] == 'l' && (p[2] == 'u' || p[2] == 'x')) {
      sb_putu(sb, va_arg(ap, unsigned long long), p[2] == 'u' ? 10 : 16);
      p += 2;
    } else if (*p == '%') {
      sb_putc(sb, '%');
    } else {
      break; /* unknown conversion: stop rather than misread varargs */
    }
  }
}

__attribute__((format(printf, 3, 4))) static int fail(struct mcr_typetab_error *err,
                                                      uint64_t offset, const char *fmt, ...)
{
  if (err) {
    struct sbuf sb = {err->msg, sizeof(err->msg), 0, 0};
    va_list ap;

    err->offset = offset;
    va_start(ap, fmt);
    sb_vformat(&sb, fmt, ap);
    va_end(ap);
    sb_finish(&sb);
  }
  return -1;
}

/* ---- blobs in a section ---------------------------------------------------- */

static uint32_t rd32(const unsigned char *p)
{
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

int mcr_typetab_next(const void *sec, size_t sec_len, size_t *pos, const void **blob,
                     size_t *blob_len, struct mcr_typetab_error *err)
{
  const unsigned char *s = sec;
  size_t p = *pos;

  for (;;) {
    size_t left;
    uint32_t magic, total;

    p = (p + MCR_BLOB_ALIGN - 1) & ~(size_t)(MCR_BLOB_ALIGN - 1);
    if (p >= sec_len || p < *pos) { /* p < *pos: the rounding wrapped */
      *pos = sec_len;
      return 0;
    }
    left = sec_len - p;
    if (left < 4) {
      for (size_t i = 0; i < left; i++)
        if (s[p + i])
          return fail(err, p, "%llu stray bytes at the end of the section",
                      (unsigned long long)left);
      *pos = sec_len;
      return 0;
    }
    magic = rd32(s + p);
    if (magic == 0) { /* padding between blobs */
      p += 4;
      continue;
    }
    if (magic != MCR_BLOB_MAGIC)
      return fail(err, p, "bad magic 0x%llx (expected 0x%llx, \"MCRT\")",
                  (unsigned long long)magic, (unsigned long long)MCR_BLOB_MAGIC);
    if (left < offsetof(struct mcr_blob_header, total_size) + 4)
      return fail(err, p, "blob header truncated: %llu bytes left in the section",
                  (unsigned long long)left);
    total = rd32(s + p + offsetof(struct mcr_blob_header, total_size));
    if (total < sizeof(struct mcr_blob_header))
      return fail(err, p + offsetof(struct mcr_blob_header, total_size),
                  "total_size %u smaller than a blob header (%llu bytes)", total,
                  (unsigned long long)sizeof(struct mcr_blob_header));
    if (total > left)
      return fail(err, p + offsetof(struct mcr_blob_header, total_size),
                  "total_size %u runs past the end of the section (%llu bytes left)", total,
                  (unsigned long long)left);
    *blob = s + p;
    *blob_len = total;
    *pos = p + total;
    return 1;
  }
}

/* ---- validation ------------------------------------------------------------ */

static int check_table(const struct mcr_blob_header *h, struct mcr_typetab_error *err,
                       const char *what, size_t field_off, uint32_t off, uint32_t n,
                       uint32_t rec_size, size_t min_size)
{
  if (n == 0)
    return 0;
  if (rec_size < min_size)
    return fail(err, field_off + 8, "%s record size %u smaller than %llu", what, rec_size,
                (unsigned long long)min_size);
  if (off < h->header_size)
    return fail(err, field_off, "%s table offset %u overlaps the header (%u bytes)", what, off,
                (unsigned)h->header_size);
  if ((uint64_t)off + (uint64_t)n * rec_size > h->total_size)
    return fail(err, field_off,
                "%s table (offset %u, %u records of %u bytes) runs past the end of the blob "
                "(%u bytes)",
                what, off, n, rec_size, h->total_size);
  return 0;
}

static int check_str(const struct mcr_typetab *tt, struct mcr_typetab_error *err,
                     uint64_t at, const char *what, uint32_t i, const char *field, uint32_t s)
{
  if (s >= tt->hdr.strtab_size) {
    if (!what) /* the header */
      return fail(err, at, "header: %s string offset %u outside the string table (%u bytes)",
                  field, s, tt->hdr.strtab_size);
    return fail(err, at, "%s %u: %s string offset %u outside the string table (%u bytes)",
                what, i, field, s, tt->hdr.strtab_size);
  }
  return 0;
}

static int check_type_ix(const struct mcr_typetab *tt, struct mcr_typetab_error *err,
                         uint64_t at, const char *what, uint32_t i, const char *field,
                         uint32_t t)
{
  if (t != MCR_NO_TYPE && t >= tt->hdr.ntypes)
    return fail(err, at, "%s %u: %s %u out of range (%u types)", what, i, field, t,
                tt->hdr.ntypes);
  return 0;
}

static uint64_t rec_off(uint32_t table_off, uint32_t rec_size, uint32_t i)
{
  return (uint64_t)table_off + (uint64_t)i * rec_size;
}

static void read_rec(const struct mcr_typetab *tt, uint32_t table_off, uint32_t rec_size,
                     uint32_t i, void *out, size_t out_size)
{
  /* validated: rec_size >= out_size and the record lies inside the blob */
  memcpy(out, tt->base + rec_off(table_off, rec_size, i), out_size);
}

static int has_target(uint8_t kind)
{
  return kind == MCR_TYPE_POINTER || kind == MCR_TYPE_ARRAY || kind == MCR_TYPE_TYPEDEF ||
         kind == MCR_TYPE_FUNCTION;
}

static int has_members(uint8_t kind)
{
  return kind == MCR_TYPE_STRUCT || kind == MCR_TYPE_UNION || kind == MCR_TYPE_ENUM ||
         kind == MCR_TYPE_FUNCTION;
}

static int check_types(const struct mcr_typetab *tt, struct mcr_typetab_error *err)
{
  const struct mcr_blob_header *h = &tt->hdr;

  for (uint32_t i = 0; i < h->ntypes; i++) {
    uint64_t at = rec_off(h->types_off, h->type_size, i);
    struct mcr_type_rec r;

    read_rec(tt, h->types_off, h->type_size, i, &r, sizeof(r));
    if (r.kind > MCR_TYPE_TYPEDEF)
      return fail(err, at, "type %u: unknown kind %u", i, (unsigned)r.kind);
    if (check_str(tt, err, at + offsetof(struct mcr_type_rec, name), "type", i, "name",
                  r.name) ||
        check_str(tt, err, at + offsetof(struct mcr_type_rec, decl_file), "type", i,
                  "decl_file", r.decl_file) ||
        check_type_ix(tt, err, at + offsetof(struct mcr_type_rec, target), "type", i,
                      "target", r.target))
      return -1;
    if (r.kind == MCR_TYPE_ARRAY && r.target == MCR_NO_TYPE)
      return fail(err, at + offsetof(struct mcr_type_rec, target),
                  "type %u: array without an element type", i);
    if (has_members(r.kind) &&
        (uint64_t)r.first_member + r.count > h->nmembers)
      return fail(err, at + offsetof(struct mcr_type_rec, first_member),
                  "type %u: members [%u, +%u) out of range (%u members)", i, r.first_member,
                  r.count, h->nmembers);
  }

  /* Chains through pointer/array/typedef/function links must end: C types only ever
   * refer back to themselves through a struct/union tag, which ends a chain. */
  for (uint32_t i = 0; i < h->ntypes; i++) {
    uint32_t t = i;
    unsigned depth = 0;

    for (;;) {
      struct mcr_type_rec r;

      read_rec(tt, h->types_off, h->type_size, t, &r, sizeof(r));
      if (!has_target(r.kind) || r.target == MCR_NO_TYPE)
        break;
      if (++depth > MCR_TYPE_MAX_DEPTH)
        return fail(err, rec_off(h->types_off, h->type_size, i),
                    "type %u: chain of pointer/array/typedef/function types is cyclic or "
                    "deeper than %u",
                    i, (unsigned)MCR_TYPE_MAX_DEPTH);
      t = r.target;
    }
  }
  return 0;
}

static int check_members(const struct mcr_typetab *tt, struct mcr_typetab_error *err)
{
  const struct mcr_blob_header *h = &tt->hdr;

  for (uint32_t i = 0; i < h->nmembers; i++) {
    uint64_t at = rec_off(h->members_off, h->member_size, i);
    struct mcr_member_rec m;

    read_rec(tt, h->members_off, h->member_size, i, &m, sizeof(m));
    if (check_str(tt, err, at + offsetof(struct mcr_member_rec, name), "member", i, "name",
                  m.name) ||
        check_type_ix(tt, err, at + offsetof(struct mcr_member_rec, type), "member", i,
                      "type", m.type))
      return -1;
  }
  return 0;
}

static int check_sites(const struct mcr_typetab *tt, struct mcr_typetab_error *err)
{
  const struct mcr_blob_header *h = &tt->hdr;

  for (uint32_t i = 0; i < h->nsites; i++) {
    uint64_t at = rec_off(h->sites_off, h->site_size, i);
    struct mcr_site_rec s;

    read_rec(tt, h->sites_off, h->site_size, i, &s, sizeof(s));
    if (check_str(tt, err, at + offsetof(struct mcr_site_rec, file), "site", i, "file",
                  s.file) ||
        check_str(tt, err, at + offsetof(struct mcr_site_rec, function), "site", i,
                  "function", s.function) ||
        check_str(tt, err, at + offsetof(struct mcr_site_rec, callee), "site", i, "callee",
                  s.callee) ||
        check_str(tt, err, at + offsetof(struct mcr_site_rec, reason), "site", i, "reason",
                  s.reason) ||
        check_str(tt, err, at + offsetof(struct mcr_site_rec, evidence), "site", i,
                  "evidence", s.evidence) ||
        check_type_ix(tt, err, at + offsetof(struct mcr_site_rec, type), "site", i,
                      "element type", s.type))
      return -1;
    if (s.shape > MCR_SHAPE_FLEX)
      return fail(err, at + offsetof(struct mcr_site_rec, shape), "site %u: unknown shape %u",
                  i, s.shape);
    if (s.type != MCR_NO_TYPE && s.shape == MCR_SHAPE_UNKNOWN)
      return fail(err, at + offsetof(struct mcr_site_rec, shape),
                  "site %u: has type %u but shape unknown", i, s.type);
  }
  return 0;
}

static int check_globals(const struct mcr_typetab *tt, struct mcr_typetab_error *err)
{
  const struct mcr_blob_header *h = &tt->hdr;

  for (uint32_t i = 0; i < h->nglobals; i++) {
    uint64_t at = rec_off(h->globals_off, h->global_size, i);
    struct mcr_global_rec g;

    read_rec(tt, h->globals_off, h->global_size, i, &g, sizeof(g));
    if (check_str(tt, err, at + offsetof(struct mcr_global_rec, name), "global", i, "name",
                  g.name) ||
        check_str(tt, err, at + offsetof(struct mcr_global_rec, symbol), "global", i,
                  "symbol", g.symbol) ||
        check_str(tt, err, at + offsetof(struct mcr_global_rec, file), "global", i, "file",
                  g.file) ||
        check_str(tt, err, at + offsetof(struct mcr_global_rec, scope), "global", i, "scope",
                  g.scope) ||
        check_type_ix(tt, err, at + offsetof(struct mcr_global_rec, type), "global", i,
                      "type", g.type))
      return -1;
  }
  return 0;
}

#define HOFF(f) offsetof(struct mcr_blob_header, f)

static int open_blob(struct mcr_typetab *tt, const unsigned char *b, size_t len,
                     struct mcr_typetab_error *err)
{
  struct mcr_blob_header *h = &tt->hdr;

  if (len < sizeof(uint32_t))
    return fail(err, 0, "blob truncated: %llu bytes", (unsigned long long)len);
  if (rd32(b) != MCR_BLOB_MAGIC)
    return fail(err, 0, "bad magic 0x%llx (expected 0x%llx, \"MCRT\")",
                (unsigned long long)rd32(b), (unsigned long long)MCR_BLOB_MAGIC);
  if (len < sizeof(*h))
    return fail(err, 0, "blob truncated: %llu bytes, a header takes %llu",
                (unsigned long long)len, (unsigned long long)sizeof(*h));
  memcpy(h, b, sizeof(*h));
  if (h->version != MCR_BLOB_VERSION)
    return fail(err, HOFF(version), "unsupported version %u (this reader knows %u)",
                (unsigned)h->version, (unsigned)MCR_BLOB_VERSION);
  if (h->header_size < sizeof(*h))
    return fail(err, HOFF(header_size), "header_size %u smaller than %llu",
                (unsigned)h->header_size, (unsigned long long)sizeof(*h));
  if (h->total_size < h->header_size)
    return fail(err, HOFF(total_size), "total_size %u smaller than header_size %u",
                h->total_size, (unsigned)h->header_size);
  if (h->total_size > len)
    return fail(err, HOFF(total_size), "total_size %u larger than the %llu bytes available",
                h->total_size, (unsigned long long)len);
  if (h->total_size % MCR_BLOB_ALIGN)
    return fail(err, HOFF(total_size), "total_size %u not a multiple of %u", h->total_size,
                (unsigned)MCR_BLOB_ALIGN);
  tt->base = b;
  tt->size = h->total_size;

  if (check_table(h, err, "type", HOFF(types_off), h->types_off, h->ntypes, h->type_size,
                  sizeof(struct mcr_type_rec)) ||
      check_table(h, err, "member", HOFF(members_off), h->members_off, h->nmembers,
                  h->member_size, sizeof(struct mcr_member_rec)) ||
      check_table(h, err, "site", HOFF(sites_off), h->sites_off, h->nsites, h->site_size,
                  sizeof(struct mcr_site_rec)) ||
      check_table(h, err, "global", HOFF(globals_off), h->globals_off, h->nglobals,
                  h->global_size, sizeof(struct mcr_global_rec)))
    return -1;

  /* String table: offset 0 is "", and a NUL at the end makes every offset inside
   * it a NUL-terminated string. */
  if (h->strtab_size == 0)
    return fail(err, HOFF(strtab_size), "empty string table (offset 0 must be \"\")");
  if (h->strtab_off < h->header_size ||
      (uint64_t)h->strtab_off + h->strtab_size > h->total_size)
    return fail(err, HOFF(strtab_off),
                "string table (offset %u, %u bytes) outside the blob (%u bytes, header %u)",
                h->strtab_off, h->strtab_size, h->total_size, (unsigned)h->header_size);
  if (b[h->strtab_off] != 0)
    return fail(err, h->strtab_off, "string table does not start with \"\"");
  if (b[h->strtab_off + h->strtab_size - 1] != 0)
    return fail(err, h->strtab_off + h->strtab_size - 1, "string table not NUL-terminated");

  if (check_str(tt, err, HOFF(module), NULL, 0, "module", h->module) ||
      check_str(tt, err, HOFF(comp_dir), NULL, 0, "comp_dir", h->comp_dir) ||
      check_str(tt, err, HOFF(producer), NULL, 0, "producer", h->producer) ||
      check_types(tt, err) || check_members(tt, err) || check_sites(tt, err) ||
      check_globals(tt, err))
    return -1;
  return 0;
}

int mcr_typetab_open(struct mcr_typetab *tt, const void *buf, size_t len,
                     struct mcr_typetab_error *err)
{
  memset(tt, 0, sizeof(*tt));
  if (open_blob(tt, buf, len, err)) {
    memset(tt, 0, sizeof(*tt)); /* a failed view has no records */
    return -1;
  }
  return 0;
}

/* ---- accessors ------------------------------------------------------------- */

int mcr_typetab_type(const struct mcr_typetab *tt, uint32_t i, struct mcr_type_rec *out)
{
  if (i >= tt->hdr.ntypes)
    return -1;
  read_rec(tt, tt->hdr.types_off, tt->hdr.type_size, i, out, sizeof(*out));
  return 0;
}

int mcr_typetab_member(const struct mcr_typetab *tt, uint32_t i, struct mcr_member_rec *out)
{
  if (i >= tt->hdr.nmembers)
    return -1;
  read_rec(tt, tt->hdr.members_off, tt->hdr.member_size, i, out, sizeof(*out));
  return 0;
}

int mcr_typetab_site(const struct mcr_typetab *tt, uint32_t i, struct mcr_site_rec *out)
{
  if (i >= tt->hdr.nsites)
    return -1;
  read_rec(tt, tt->hdr.sites_off, tt->hdr.site_size, i, out, sizeof(*out));
  return 0;
}

int mcr_typetab_global(const struct mcr_typetab *tt, uint32_t i, struct mcr_global_rec *out)
{
  if (i >= tt->hdr.nglobals)
    return -1;
  read_rec(tt, tt->hdr.globals_off, tt->hdr.global_size, i, out, sizeof(*out));
  return 0;
}

const char *mcr_typetab_str(const struct mcr_typetab *tt, uint32_t off)
{
  if (!tt->base || off >= tt->hdr.strtab_size)
    return NULL;
  return (const char *)tt->base + tt->hdr.strtab_off + off;
}

const char *mcr_site_shape_name(uint32_t shape)
{
  switch (shape) {
  case MCR_SHAPE_SINGLE:
    return "single";
  case MCR_SHAPE_ARRAY:
    return "array";
  case MCR_SHAPE_FLEX:
    return "flex";
  default:
    return "unknown";
  }
}

/* ---- rendering --------------------------------------------------------------
 *
 * The classic split of a C declarator: left(T) is everything before the (empty)
 * name, right(T) everything after it. A pointer to an array or function needs
 * parentheses: left gets "(*", right gets ")". A space goes before '*', '(' and
 * '[' when the text so far ends in an identifier ("char *", "char [16]") and
 * nowhere else ("char **", "struct node *[8]", "void (*[4])(void)").
 */

struct render {
  const struct mcr_typetab *tt;
  struct sbuf out;
  unsigned steps;
  int bad;
};

static int is_ident(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '>';
}

static void space_if_ident(struct render *r)
{
  if (is_ident(r->out.last))
    sb_putc(&r->out, ' ');
}

/* Fetches type t for rendering; anonymous typedefs are transparent. Returns 0, or -1
 * for MCR_NO_TYPE (void). */
static int rtype(struct render *r, uint32_t t, struct mcr_type_rec *out)
{
  for (unsigned i = 0; i <= MCR_TYPE_MAX_DEPTH; i++) {
    if (t == MCR_NO_TYPE || mcr_typetab_type(r->tt, t, out))
      return -1;
    if (out->kind != MCR_TYPE_TYPEDEF || *mcr_typetab_str(r->tt, out->name))
      return 0;
    t = out->target;
  }
  r->bad = 1;
  return -1;
}

static int enter(struct render *r, unsigned depth)
{
  if (r->bad || depth > RENDER_MAX_DEPTH || ++r->steps > RENDER_MAX_STEPS) {
    r->bad = 1;
    return -1;
  }
  return 0;
}

static void put_base_name(struct render *r, const struct mcr_type_rec *t)
{
  const char *name = mcr_typetab_str(r->tt, t->name);

  switch (t->kind) {
  case MCR_TYPE_STRUCT:
  case MCR_TYPE_UNION:
  case MCR_TYPE_ENUM:
    sb_puts(&r->out, t->kind == MCR_TYPE_STRUCT  ? "struct "
                     : t->kind == MCR_TYPE_UNION ? "union "
                                                 : "enum ");
    if (*name) {
      sb_puts(&r->out, name);
    } else {
      const char *file = mcr_typetab_str(r->tt, t->decl_file);

      sb_puts(&r->out, "<anonymous");
      if (*file) {
        sb_puts(&r->out, " at ");
        sb_puts(&r->out, file);
        sb_putc(&r->out, ':');
        sb_putu(&r->out, t->decl_line, 10);
      }
      sb_putc(&r->out, '>');
    }
    return;
  case MCR_TYPE_INT:
    if (*name)
      break;
    if (t->flags & MCR_TF_BOOL) {
      name = "_Bool";
    } else if (t->flags & MCR_TF_CHAR) {
      name = (t->flags & MCR_TF_SIGNED) ? "signed char" : "unsigned char";
    } else {
      sb_puts(&r->out, (t->flags & MCR_TF_SIGNED) ? "int" : "uint");
      sb_putu(&r->out, t->size * 8, 10);
      sb_puts(&r->out, "_t");
      return;
    }
    break;
  case MCR_TYPE_FLOAT:
    if (!*name)
      name = t->size == 4 ? "float" : t->size == 8 ? "double" : "long double";
    break;
  case MCR_TYPE_VOID:
    if (!*name)
      name = "void";
    break;
  default:
    break;
  }
  sb_puts(&r->out, name);
}

static void render_right(struct render *r, uint32_t t, unsigned depth);

static void render_left(struct render *r, uint32_t t, unsigned depth)
{
  struct mcr_type_rec rec, tgt;

  if (enter(r, depth))
    return;
  if (rtype(r, t, &rec)) {
    sb_puts(&r->out, "void");
    return;
  }
  switch (rec.kind) {
  case MCR_TYPE_POINTER:
    render_left(r, rec.target, depth + 1);
    space_if_ident(r);
    if (!rtype(r, rec.target, &tgt) &&
        (tgt.kind == MCR_TYPE_ARRAY || tgt.kind == MCR_TYPE_FUNCTION))
      sb_putc(&r->out, '(');
    sb_putc(&r->out, '*');
    return;
  case MCR_TYPE_ARRAY:
  case MCR_TYPE_FUNCTION:
    render_left(r, rec.target, depth + 1);
    return;
  default:
    put_base_name(r, &rec);
    return;
  }
}

static void render_params(struct render *r, const struct mcr_type_rec *fn, unsigned depth)
{
  sb_putc(&r->out, '(');
  for (uint32_t i = 0; i < fn->count && !r->bad; i++) {
    struct mcr_member_rec m;

    if (mcr_typetab_member(r->tt, fn->first_member + i, &m)) {
      r->bad = 1;
      return;
    }
    if (i)
      sb_puts(&r->out, ", ");
    render_left(r, m.type, depth + 1);
    render_right(r, m.type, depth + 1);
  }
  if (fn->flags & MCR_TF_VARIADIC)
    sb_puts(&r->out, fn->count ? ", ..." : "...");
  else if (fn->count == 0)
    sb_puts(&r->out, "void");
  sb_putc(&r->out, ')');
}

static void render_right(struct render *r, uint32_t t, unsigned depth)
{
  struct mcr_type_rec rec, tgt;

  if (enter(r, depth) || rtype(r, t, &rec))
    return;
  switch (rec.kind) {
  case MCR_TYPE_POINTER:
    if (!rtype(r, rec.target, &tgt) &&
        (tgt.kind == MCR_TYPE_ARRAY || tgt.kind == MCR_TYPE_FUNCTION))
      sb_putc(&r->out, ')');
    render_right(r, rec.target, depth + 1);
    return;
  case MCR_TYPE_ARRAY:
    space_if_ident(r);
    sb_putc(&r->out, '[');
    if (!(rec.flags & MCR_TF_FLEXIBLE))
      sb_putu(&r->out, rec.count, 10);
    sb_putc(&r->out, ']');
    render_right(r, rec.target, depth + 1);
    return;
  case MCR_TYPE_FUNCTION:
    space_if_ident(r);
    render_params(r, &rec, depth);
    render_right(r, rec.target, depth + 1);
    return;
  default:
    return;
  }
}

static int render_finish(struct render *r)
{
  sb_finish(&r->out);
  if (r->bad || r->out.pos > 0x7fffffff) {
    if (r->out.len)
      r->out.buf[0] = '\0';
    return -1;
  }
  return (int)r->out.pos;
}

int mcr_type_render(const struct mcr_typetab *tt, uint32_t t, char *buf, size_t len)
{
  struct render r = {tt, {buf, buf ? len : 0, 0, 0}, 0, 0};

  if (t != MCR_NO_TYPE && t >= tt->hdr.ntypes)
    r.bad = 1;
  render_left(&r, t, 0);
  render_right(&r, t, 0);
  return render_finish(&r);
}

int mcr_type_render_shape(const struct mcr_typetab *tt, uint32_t t, uint32_t shape,
                          char *buf, size_t len)
{
  struct render r = {tt, {buf, buf ? len : 0, 0, 0}, 0, 0};

  if (t == MCR_NO_TYPE || t >= tt->hdr.ntypes)
    r.bad = 1;
  switch (shape) {
  case MCR_SHAPE_SINGLE:
  case MCR_SHAPE_FLEX:
    render_left(&r, t, 0);
    render_right(&r, t, 0);
    break;
  case MCR_SHAPE_ARRAY: /* an array of unknown bound of T */
    render_left(&r, t, 0);
    space_if_ident(&r);
    sb_puts(&r.out, "[]");
    render_right(&r, t, 0);
    break;
  default:
    r.bad = 1;
    break;
  }
  return render_finish(&r);
}

int mcr_typetab_strip(const struct mcr_typetab *tt, uint32_t t, struct mcr_type_rec *out,
                      uint32_t *idx)
{
  for (int i = 0; i < MCR_TYPE_MAX_DEPTH; i++) {
    if (t == MCR_NO_TYPE || mcr_typetab_type(tt, t, out) != 0)
      return -1;
    if (out->kind != MCR_TYPE_TYPEDEF) {
      if (idx)
        *idx = t;
      return 0;
    }
    t = out->target;
  }
  return -1;
}

const char *mcr_type_name(const struct mcr_typetab *tt, uint32_t t)
{
  struct mcr_type_rec r;
  for (int i = 0; i < 8 && t != MCR_NO_TYPE && mcr_typetab_type(tt, t, &r) == 0; i++) {
    const char *n = mcr_typetab_str(tt, r.name);
    if (n && *n)
      return n;
    if (r.kind != MCR_TYPE_TYPEDEF)
      break;
    t = r.target;
  }
  return NULL;
}

int mcr_typetab_site_key(const struct mcr_typetab *tt, uint32_t i, char *buf, size_t len)
{
  struct mcr_site_rec rec, o;
  unsigned ordinal = 0;
  if (mcr_typetab_site(tt, i, &rec) != 0)
    return -1;
  for (uint32_t j = 0; j < i; j++)
    if (mcr_typetab_site(tt, j, &o) == 0 && o.function == rec.function && o.callee == rec.callee)
      ordinal++;
  int n = snprintf(buf, len, "%s|%s|%s|%u", mcr_typetab_str(tt, tt->hdr.module),
                   mcr_typetab_str(tt, rec.function), mcr_typetab_str(tt, rec.callee), ordinal);
  return n > 0 && (size_t)n < len ? 0 : -1;
}
