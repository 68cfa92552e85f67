/*
 * test-typetab.c - unit tests of runtime/typetab.c on blobs built by hand.
 *
 *   test-typetab                        run the tests (TAP output; exit 0 iff all pass)
 *   test-typetab --write-section FILE   write a demo mcr_types section (two blobs) for
 *                                       the CLI tests
 *   test-typetab --write-corrupt FILE   write a section whose second blob is corrupt
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob-builder.h"
#include "typetab.h"

static int failures, ntests;

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

#define CHECK_STR(got, want)                                                               \
  do {                                                                                     \
    const char *g_ = (got), *w_ = (want);                                                  \
    if (!g_ || strcmp(g_, w_)) {                                                           \
      fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,              \
              g_ ? g_ : "(null)", w_);                                                     \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

static void tap(const char *name, int before)
{
  ntests++;
  printf("%s %d - %s\n", failures == before ? "ok" : "not ok", ntests, name);
}

static unsigned char blobbuf[1 << 16];

/* ---- a blob with every kind of type ---------------------------------------- */

struct kinds {
  uint32_t void_, int_, ulong, char_, char_p, client, client_p, robj, anon, char16, node,
      node_p, node_p8, fn_vp_int, fn_vp_int_p, fn_void, fn_void_p, fn_void_p4, union_u,
      enum_e, char_flex, char_pp, int3, int3_p, int23, printf_fn, printf_p, ret_fnp_fn,
      ret_fnp_fn_p, sdshdr8, double_, bool_, noname_int, noname_uchar, void_p_none, anon_td;
};

static void build_kinds(struct bb *b, struct kinds *k)
{
  bb_init(b, "kinds.c");
  k->void_ = bb_type(b, MCR_TYPE_VOID, 0, "void", 0, MCR_NO_TYPE, 0);
  k->int_ = bb_type(b, MCR_TYPE_INT, MCR_TF_SIGNED, "int", 4, MCR_NO_TYPE, 0);
  k->ulong = bb_type(b, MCR_TYPE_INT, 0, "unsigned long", 8, MCR_NO_TYPE, 0);
  k->char_ = bb_type(b, MCR_TYPE_INT, MCR_TF_CHAR | MCR_TF_SIGNED, "char", 1, MCR_NO_TYPE, 0);
  k->char_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->char_, 0);
  k->client = bb_type(b, MCR_TYPE_STRUCT, 0, "client", 16, MCR_NO_TYPE, 2);
  bb_member(b, "fd", k->int_, 0);
  bb_member(b, "name", k->char_p, 64);
  k->client_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->client, 0);
  k->anon = bb_type(b, MCR_TYPE_STRUCT, 0, "", 4, MCR_NO_TYPE, 1);
  bb_member(b, "refcount", k->int_, 0);
  k->robj = bb_type(b, MCR_TYPE_TYPEDEF, 0, "robj", 4, k->anon, 0);
  k->char16 = bb_type(b, MCR_TYPE_ARRAY, 0, "", 16, k->char_, 16);
  /* struct node { struct node *next; }: a cycle through a struct, which is fine */
  k->node = bb_type(b, MCR_TYPE_STRUCT, 0, "node", 8, MCR_NO_TYPE, 1);
  k->node_p = k->node + 1;
  bb_member(b, "next", k->node_p, 0);
  CHECK(bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->node, 0) == k->node_p);
  k->node_p8 = bb_type(b, MCR_TYPE_ARRAY, 0, "", 64, k->node_p, 8);
  k->void_p_none = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->void_, 0);
  k->fn_vp_int = bb_type(b, MCR_TYPE_FUNCTION, 0, "", 0, k->int_, 2);
  bb_member(b, "", k->void_p_none, 0);
  bb_member(b, "", k->int_, 0);
  k->fn_vp_int_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->fn_vp_int, 0);
  k->fn_void = bb_type(b, MCR_TYPE_FUNCTION, 0, "", 0, MCR_NO_TYPE, 0);
  k->fn_void_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->fn_void, 0);
  k->fn_void_p4 = bb_type(b, MCR_TYPE_ARRAY, 0, "", 32, k->fn_void_p, 4);
  k->union_u = bb_type(b, MCR_TYPE_UNION, 0, "u", 8, MCR_NO_TYPE, 2);
  bb_member(b, "i", k->int_, 0);
  bb_member(b, "p", k->char_p, 0);
  k->enum_e = bb_type(b, MCR_TYPE_ENUM, 0, "e", 4, k->int_, 2);
  bb_member(b, "E_A", MCR_NO_TYPE, 0);
  bb_member(b, "E_B", MCR_NO_TYPE, 5);
  k->char_flex = bb_type(b, MCR_TYPE_ARRAY, MCR_TF_FLEXIBLE, "", 0, k->char_, 0);
  k->char_pp = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->char_p, 0);
  k->int3 = bb_type(b, MCR_TYPE_ARRAY, 0, "", 12, k->int_, 3);
  k->int3_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->int3, 0);
  k->int23 = bb_type(b, MCR_TYPE_ARRAY, 0, "", 24, k->int3, 2);
  k->printf_fn = bb_type(b, MCR_TYPE_FUNCTION, MCR_TF_VARIADIC, "", 0, k->int_, 1);
  bb_member(b, "", k->char_p, 0);
  k->printf_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->printf_fn, 0);
  /* void (*(*)(int))(void): pointer to a function taking int returning void (*)(void) */
  k->ret_fnp_fn = bb_type(b, MCR_TYPE_FUNCTION, 0, "", 0, k->fn_void_p, 1);
  bb_member(b, "", k->int_, 0);
  k->ret_fnp_fn_p = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, k->ret_fnp_fn, 0);
  k->sdshdr8 = bb_type(b, MCR_TYPE_STRUCT, 0, "sdshdr8", 3, MCR_NO_TYPE, 2);
  bb_member(b, "len", k->char_, 0);
  bb_member(b, "buf", k->char_flex, 24);
  k->double_ = bb_type(b, MCR_TYPE_FLOAT, 0, "", 8, MCR_NO_TYPE, 0);
  k->bool_ = bb_type(b, MCR_TYPE_INT, MCR_TF_BOOL, "", 1, MCR_NO_TYPE, 0);
  k->noname_int = bb_type(b, MCR_TYPE_INT, MCR_TF_SIGNED, "", 2, MCR_NO_TYPE, 0);
  k->noname_uchar = bb_type(b, MCR_TYPE_INT, MCR_TF_CHAR, "", 1, MCR_NO_TYPE, 0);
  k->anon_td = bb_type(b, MCR_TYPE_TYPEDEF, 0, "", 8, k->fn_void, 0);

  bb_site(b, "server.c", 42, "client_new", "malloc", k->client, MCR_SHAPE_SINGLE, "");
  bb_site(b, "server.c", 57, "read_query", "malloc", k->char_, MCR_SHAPE_ARRAY, "");
  bb_site(b, "sds.c", 10, "sdsnewlen", "s_malloc", k->sdshdr8, MCR_SHAPE_FLEX, "");
  bb_site(b, "util.c", 99, "xdup", "strdup", MCR_NO_TYPE, MCR_SHAPE_UNKNOWN,
          "result only passed to a function");
  bb_global(b, "server", "server", k->client, "server.c", 12, 0, "", 16);
  bb_global(b, "counter", "main.counter", k->int_, "server.c", 30,
            MCR_GF_INTERNAL | MCR_GF_LOCAL_STATIC, "main", 4);
}

static int open_built(const struct bb *b, struct mcr_typetab *tt)
{
  size_t n = bb_build(b, blobbuf, sizeof(blobbuf));
  struct mcr_typetab_error err;

  if (!n || mcr_typetab_open(tt, blobbuf, n, &err)) {
    fprintf(stderr, "open failed: %s at %llu\n", n ? err.msg : "build",
            (unsigned long long)err.offset);
    return -1;
  }
  return 0;
}

static const char *render(const struct mcr_typetab *tt, uint32_t t)
{
  static char buf[256];
  int n = mcr_type_render(tt, t, buf, sizeof(buf));

  if (n < 0)
    return "<error>";
  if ((size_t)n != strlen(buf))
    return "<length mismatch>";
  return buf;
}

static const char *render_shape(const struct mcr_typetab *tt, uint32_t t, uint32_t shape)
{
  static char buf[256];

  return mcr_type_render_shape(tt, t, shape, buf, sizeof(buf)) < 0 ? "<error>" : buf;
}

static void test_render(void)
{
  int before = failures;
  struct bb *b = calloc(1, sizeof(*b));
  struct kinds k;
  struct mcr_typetab tt;

  build_kinds(b, &k);
  if (open_built(b, &tt)) {
    failures++;
    goto out;
  }
  CHECK_STR(render(&tt, k.int_), "int");
  CHECK_STR(render(&tt, k.ulong), "unsigned long");
  CHECK_STR(render(&tt, k.char_p), "char *");
  CHECK_STR(render(&tt, k.client), "struct client");
  CHECK_STR(render(&tt, k.client_p), "struct client *");
  CHECK_STR(render(&tt, k.robj), "robj");
  CHECK_STR(render(&tt, k.anon), "struct <anonymous at decl.h:7>");
  CHECK_STR(render(&tt, k.char16), "char [16]");
  CHECK_STR(render(&tt, k.node), "struct node");
  CHECK_STR(render(&tt, k.node_p), "struct node *");
  CHECK_STR(render(&tt, k.node_p8), "struct node *[8]");
  CHECK_STR(render(&tt, k.fn_vp_int_p), "int (*)(void *, int)");
  CHECK_STR(render(&tt, k.fn_vp_int), "int (void *, int)");
  CHECK_STR(render(&tt, k.fn_void_p), "void (*)(void)");
  CHECK_STR(render(&tt, k.fn_void_p4), "void (*[4])(void)");
  CHECK_STR(render(&tt, k.union_u), "union u");
  CHECK_STR(render(&tt, k.enum_e), "enum e");
  CHECK_STR(render(&tt, k.char_flex), "char []");
  CHECK_STR(render(&tt, k.char_pp), "char **");
  CHECK_STR(render(&tt, k.int3_p), "int (*)[3]");
  CHECK_STR(render(&tt, k.int23), "int [2][3]");
  CHECK_STR(render(&tt, k.printf_p), "int (*)(char *, ...)");
  CHECK_STR(render(&tt, k.ret_fnp_fn_p), "void (*(*)(int))(void)");
  CHECK_STR(render(&tt, k.double_), "double");
  CHECK_STR(render(&tt, k.bool_), "_Bool");
  CHECK_STR(render(&tt, k.noname_int), "int16_t");
  CHECK_STR(render(&tt, k.noname_uchar), "unsigned char");
  CHECK_STR(render(&tt, k.anon_td), "void (void)"); /* anonymous typedefs are transparent */
  CHECK_STR(render(&tt, k.void_p_none), "void *");
  CHECK_STR(render(&tt, MCR_NO_TYPE), "void");
  CHECK(mcr_type_render(&tt, tt.hdr.ntypes, NULL, 0) == -1);

  /* shapes of allocation sites */
  CHECK_STR(render_shape(&tt, k.client, MCR_SHAPE_SINGLE), "struct client");
  CHECK_STR(render_shape(&tt, k.char_, MCR_SHAPE_ARRAY), "char []");
  CHECK_STR(render_shape(&tt, k.client_p, MCR_SHAPE_ARRAY), "struct client *[]");
  CHECK_STR(render_shape(&tt, k.fn_void_p, MCR_SHAPE_ARRAY), "void (*[])(void)");
  CHECK_STR(render_shape(&tt, k.int3, MCR_SHAPE_ARRAY), "int [][3]");
  CHECK_STR(render_shape(&tt, k.sdshdr8, MCR_SHAPE_FLEX), "struct sdshdr8");
  CHECK_STR(render_shape(&tt, MCR_NO_TYPE, MCR_SHAPE_SINGLE), "<error>");
  CHECK_STR(render_shape(&tt, k.int_, MCR_SHAPE_UNKNOWN), "<error>");
  CHECK_STR(render_shape(&tt, k.int_, 9), "<error>");
  CHECK_STR(mcr_site_shape_name(MCR_SHAPE_FLEX), "flex");
  CHECK_STR(mcr_site_shape_name(77), "unknown");

  /* snprintf semantics: truncated output, full length returned */
  {
    char small[5];
    CHECK(mcr_type_render(&tt, k.client_p, small, sizeof(small)) == 15);
    CHECK_STR(small, "stru");
    CHECK(mcr_type_render(&tt, k.client_p, NULL, 0) == 15);
  }

  /* accessors */
  {
    struct mcr_site_rec s;
    struct mcr_global_rec g;
    struct mcr_member_rec m;
    struct mcr_type_rec t;

    CHECK(mcr_typetab_nsites(&tt) == 4 && mcr_typetab_nglobals(&tt) == 2);
    CHECK(mcr_typetab_site(&tt, 3, &s) == 0);
    CHECK(s.type == MCR_NO_TYPE && s.line == 99);
    CHECK_STR(mcr_typetab_str(&tt, s.reason), "result only passed to a function");
    CHECK_STR(mcr_typetab_str(&tt, s.callee), "strdup");
    CHECK(mcr_typetab_site(&tt, 4, &s) == -1);
    CHECK(mcr_typetab_global(&tt, 1, &g) == 0);
    CHECK_STR(mcr_typetab_str(&tt, g.symbol), "main.counter");
    CHECK_STR(mcr_typetab_str(&tt, g.scope), "main");
    CHECK(mcr_typetab_global(&tt, 2, &g) == -1);
    CHECK(mcr_typetab_type(&tt, k.node, &t) == 0 && t.count == 1);
    CHECK(mcr_typetab_member(&tt, t.first_member, &m) == 0 && m.type == k.node_p);
    CHECK_STR(mcr_typetab_str(&tt, m.name), "next");
    CHECK(mcr_typetab_member(&tt, tt.hdr.nmembers, &m) == -1);
    CHECK_STR(mcr_typetab_str(&tt, 0), "");
    CHECK_STR(mcr_typetab_str(&tt, tt.hdr.module), "kinds.c");
    CHECK(mcr_typetab_str(&tt, tt.hdr.strtab_size) == NULL);
  }
out:
  free(b);
  tap("render every kind of type and site shape", before);
}

/* ---- records written by a newer producer (larger records) ---------------- */

static void test_larger_records(void)
{
  int before = failures;
  struct bb *b = calloc(1, sizeof(*b));
  struct kinds k;
  size_t n;
  static unsigned char wide[1 << 17];
  struct mcr_blob_header h;
  struct mcr_typetab tt;
  struct mcr_typetab_error err;
  const uint32_t extra = 8;

  build_kinds(b, &k);
  n = bb_build(b, blobbuf, sizeof(blobbuf));
  memcpy(&h, blobbuf, sizeof(h));
  /* re-lay each table with 8 spare bytes per record, and a larger header */
  {
    size_t off = sizeof(h) + 16, total;
    struct mcr_blob_header w = h;
    w.header_size = sizeof(h) + 16;
#define WIDEN(offf, nf, szf)                                                               \
  w.offf = (uint32_t)off;                                                                  \
  w.szf = h.szf + extra;                                                                   \
  for (uint32_t i = 0; i < h.nf; i++)                                                      \
    memcpy(wide + off + (size_t)i * w.szf, blobbuf + h.offf + (size_t)i * h.szf, h.szf);   \
  off += (size_t)h.nf * w.szf;
    memset(wide, 0xee, sizeof(wide));
    WIDEN(types_off, ntypes, type_size)
    WIDEN(members_off, nmembers, member_size)
    WIDEN(sites_off, nsites, site_size)
    WIDEN(globals_off, nglobals, global_size)
#undef WIDEN
    w.strtab_off = (uint32_t)off;
    memcpy(wide + off, blobbuf + h.strtab_off, h.strtab_size);
    total = (off + h.strtab_size + 7) & ~(size_t)7;
    w.total_size = (uint32_t)total;
    memcpy(wide, &w, sizeof(w));
    CHECK(mcr_typetab_open(&tt, wide, total, &err) == 0);
  }
  CHECK_STR(render(&tt, k.fn_void_p4), "void (*[4])(void)");
  CHECK_STR(render(&tt, k.node_p8), "struct node *[8]");
  {
    struct mcr_global_rec g;
    CHECK(mcr_typetab_global(&tt, 1, &g) == 0);
    CHECK_STR(mcr_typetab_str(&tt, g.name), "counter");
  }
  (void)n;
  free(b);
  tap("records larger than this reader knows are read", before);
}

/* ---- corrupt blobs are rejected with a message ----------------------------- */

struct corruption {
  const char *name;
  void (*apply)(struct bb *b, const struct kinds *k);
  void (*patch)(unsigned char *blob, size_t *len); /* on the serialized blob */
  const char *want;                                /* substring of the message */
};

static void hdr_get(unsigned char *blob, struct mcr_blob_header *h) { memcpy(h, blob, sizeof(*h)); }
static void hdr_put(unsigned char *blob, const struct mcr_blob_header *h) { memcpy(blob, h, sizeof(*h)); }

#define HPATCH(fname, stmt)                                                                \
  static void fname(unsigned char *blob, size_t *len)                                      \
  {                                                                                        \
    struct mcr_blob_header h;                                                              \
    (void)len;                                                                             \
    hdr_get(blob, &h);                                                                     \
    stmt;                                                                                  \
    hdr_put(blob, &h);                                                                     \
  }

HPATCH(p_magic, h.magic = 0x464c457f)
HPATCH(p_version, h.version = 2)
HPATCH(p_header_size, h.header_size = 40)
HPATCH(p_total_big, h.total_size = h.total_size + 8)
HPATCH(p_total_odd, h.total_size = h.total_size - 3)
HPATCH(p_types_off, h.types_off = h.total_size - 8)
HPATCH(p_types_huge, h.ntypes = 0x10000000)
HPATCH(p_type_size, h.type_size = 8)
HPATCH(p_members_overlap, h.members_off = 4)
HPATCH(p_sites_wrap, h.sites_off = 0xfffffff0)
HPATCH(p_globals_n, h.nglobals = 0xffffffff)
HPATCH(p_strtab_past, h.strtab_size = h.strtab_size + 64)
HPATCH(p_strtab_empty, h.strtab_size = 0)
HPATCH(p_strtab_unterminated, blob[h.strtab_off + h.strtab_size - 1] = 'x')
HPATCH(p_strtab_start, blob[h.strtab_off] = 'x')
HPATCH(p_module, h.module = h.strtab_size)
static void p_truncate(unsigned char *blob, size_t *len) { (void)blob; *len = 40; }
static void p_truncate4(unsigned char *blob, size_t *len) { (void)blob; *len = 2; }

static void a_kind(struct bb *b, const struct kinds *k) { b->types[k->int_].kind = 10; }
static void a_target(struct bb *b, const struct kinds *k) { b->types[k->char_p].target = 4000; }
static void a_type_name(struct bb *b, const struct kinds *k) { b->types[k->client].name = 60000; }
static void a_members(struct bb *b, const struct kinds *k)
{
  b->types[k->client].first_member = b->nmembers - 1;
}
static void a_members_wrap(struct bb *b, const struct kinds *k)
{
  b->types[k->client].first_member = 0xffffffff;
}
static void a_member_type(struct bb *b, const struct kinds *k) { (void)k; b->members[0].type = 999; }
static void a_member_name(struct bb *b, const struct kinds *k) { (void)k; b->members[1].name = b->strsize; }
static void a_site_type(struct bb *b, const struct kinds *k) { (void)k; b->sites[0].type = b->ntypes; }
static void a_site_shape(struct bb *b, const struct kinds *k) { (void)k; b->sites[1].shape = 4; }
static void a_site_shape0(struct bb *b, const struct kinds *k) { (void)k; b->sites[0].shape = 0; }
static void a_site_reason(struct bb *b, const struct kinds *k) { (void)k; b->sites[3].reason = 1u << 31; }
static void a_global_type(struct bb *b, const struct kinds *k) { (void)k; b->globals[1].type = 12345; }
static void a_global_scope(struct bb *b, const struct kinds *k) { (void)k; b->globals[1].scope = b->strsize + 1; }
static void a_array_notarget(struct bb *b, const struct kinds *k) { b->types[k->char16].target = MCR_NO_TYPE; }
static void a_typedef_cycle(struct bb *b, const struct kinds *k)
{
  /* typedef robj -> pointer -> robj: impossible in C without a struct in between */
  b->types[k->robj].target = k->char_p;
  b->types[k->char_p].target = k->robj;
}
static void a_self_pointer(struct bb *b, const struct kinds *k) { b->types[k->char_p].target = k->char_p; }
static void a_deep_chain(struct bb *b, const struct kinds *k)
{
  uint32_t t = k->int_;
  for (int i = 0; i < MCR_TYPE_MAX_DEPTH + 1; i++)
    t = bb_type(b, MCR_TYPE_POINTER, 0, "", 8, t, 0);
}

static const struct corruption corruptions[] = {
    {"bad magic", NULL, p_magic, "bad magic"},
    {"unknown version", NULL, p_version, "unsupported version 2"},
    {"small header_size", NULL, p_header_size, "header_size 40"},
    {"total_size past buffer", NULL, p_total_big, "larger than"},
    {"total_size unaligned", NULL, p_total_odd, "not a multiple of 8"},
    {"truncated header", NULL, p_truncate, "truncated"},
    {"truncated magic", NULL, p_truncate4, "truncated"},
    {"type table past end", NULL, p_types_off, "type table"},
    {"huge type count", NULL, p_types_huge, "type table"},
    {"small type records", NULL, p_type_size, "type record size 8"},
    {"member table over header", NULL, p_members_overlap, "overlaps the header"},
    {"site table offset wraps", NULL, p_sites_wrap, "site table"},
    {"global count huge", NULL, p_globals_n, "global table"},
    {"strtab past end", NULL, p_strtab_past, "string table"},
    {"strtab empty", NULL, p_strtab_empty, "empty string table"},
    {"strtab not terminated", NULL, p_strtab_unterminated, "not NUL-terminated"},
    {"strtab not starting with empty string", NULL, p_strtab_start, "start"},
    {"module string out of range", NULL, p_module, "module string offset"},
    {"unknown type kind", a_kind, NULL, "unknown kind 10"},
    {"type target out of range", a_target, NULL, "target 4000 out of range"},
    {"type name out of range", a_type_name, NULL, "name string offset 60000"},
    {"member range past table", a_members, NULL, "members ["},
    {"member range wraps", a_members_wrap, NULL, "members ["},
    {"member type out of range", a_member_type, NULL, "member 0: type 999"},
    {"member name out of range", a_member_name, NULL, "member 1: name string"},
    {"site type out of range", a_site_type, NULL, "site 0: element type"},
    {"site shape unknown", a_site_shape, NULL, "unknown shape 4"},
    {"typed site without shape", a_site_shape0, NULL, "shape unknown"},
    {"site reason out of range", a_site_reason, NULL, "site 3: reason string"},
    {"global type out of range", a_global_type, NULL, "global 1: type 12345"},
    {"global scope out of range", a_global_scope, NULL, "global 1: scope string"},
    {"array without element", a_array_notarget, NULL, "array without an element type"},
    {"typedef/pointer cycle", a_typedef_cycle, NULL, "cyclic"},
    {"pointer to itself", a_self_pointer, NULL, "cyclic"},
    {"chain too deep", a_deep_chain, NULL, "deeper than"},
};

static void test_corrupt(void)
{
  int before = failures;
  struct bb *b = malloc(sizeof(*b));

  for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
    const struct corruption *c = &corruptions[i];
    struct kinds k;
    struct mcr_typetab tt;
    struct mcr_typetab_error err;
    size_t n;

    build_kinds(b, &k);
    if (c->apply)
      c->apply(b, &k);
    n = bb_build(b, blobbuf, sizeof(blobbuf));
    if (c->patch)
      c->patch(blobbuf, &n);
    memset(&err, 0, sizeof(err));
    if (mcr_typetab_open(&tt, blobbuf, n, &err) == 0) {
      fprintf(stderr, "corruption '%s' was accepted\n", c->name);
      failures++;
      continue;
    }
    if (!strstr(err.msg, c->want)) {
      fprintf(stderr, "corruption '%s': message \"%s\" lacks \"%s\"\n", c->name, err.msg,
              c->want);
      failures++;
    }
    CHECK(tt.base == NULL && tt.hdr.ntypes == 0); /* a failed view is empty */
    if (getenv("VERBOSE"))
      printf("#   %-40s -> @%llu: %s\n", c->name, (unsigned long long)err.offset, err.msg);
  }
  free(b);
  tap("corrupt, truncated and out-of-range blobs are rejected with a message", before);
}

/* ---- iterating the blobs of a section --------------------------------------- */

static unsigned char secbuf[1 << 17];

static size_t build_section(unsigned char *sec, size_t cap, int corrupt_second)
{
  struct bb *b = calloc(1, sizeof(*b));
  struct kinds k;
  size_t n, pos = 0;

  build_kinds(b, &k);
  n = bb_build(b, sec, cap);
  pos = n + 16; /* zero padding between blobs */
  memset(sec + n, 0, 16);
  bb_init(b, "second.c");
  {
    uint32_t i = bb_type(b, MCR_TYPE_INT, MCR_TF_SIGNED, "int", 4, MCR_NO_TYPE, 0);
    bb_global(b, "hits", "hits", i, "second.c", 3, MCR_GF_INTERNAL, "", 4);
    bb_site(b, "second.c", 9, "f", "calloc", corrupt_second ? 77 : i, MCR_SHAPE_ARRAY, "");
  }
  n = bb_build(b, sec + pos, cap - pos);
  pos += n;
  memset(sec + pos, 0, 12); /* trailing padding, not a multiple of 8 */
  pos += 12;
  free(b);
  return pos;
}

static void test_section(void)
{
  int before = failures;
  size_t len = build_section(secbuf, sizeof(secbuf), 0), pos = 0, blen;
  const void *blob;
  struct mcr_typetab_error err;
  struct mcr_typetab tt;
  int r, nblobs = 0;

  while ((r = mcr_typetab_next(secbuf, len, &pos, &blob, &blen, &err)) == 1) {
    CHECK(mcr_typetab_open(&tt, blob, blen, &err) == 0);
    nblobs++;
  }
  CHECK(r == 0);
  CHECK(nblobs == 2);
  CHECK_STR(mcr_typetab_str(&tt, tt.hdr.module), "second.c");

  /* garbage where a blob should start */
  secbuf[len - 4] = 0x41;
  pos = 0;
  while ((r = mcr_typetab_next(secbuf, len, &pos, &blob, &blen, &err)) == 1)
    ;
  CHECK(r == -1);
  CHECK(strstr(err.msg, "bad magic") != NULL);
  CHECK(err.offset == len - 4);
  secbuf[len - 4] = 0;
  /* a few non-zero bytes too short to be a blob, at the end */
  secbuf[len - 3] = 0x41;
  pos = 0;
  while ((r = mcr_typetab_next(secbuf, len - 2, &pos, &blob, &blen, &err)) == 1)
    ;
  CHECK(r == -1);
  CHECK(strstr(err.msg, "2 stray bytes") != NULL);
  secbuf[len - 3] = 0;

  /* a blob whose total_size runs past the section */
  pos = 0;
  CHECK(mcr_typetab_next(secbuf, 100, &pos, &blob, &blen, &err) == -1);
  CHECK(strstr(err.msg, "past the end of the section") != NULL);
  /* empty section */
  pos = 0;
  CHECK(mcr_typetab_next(secbuf, 0, &pos, &blob, &blen, &err) == 0);
  tap("blobs in a section: padding, trailing zeros, garbage", before);
}

/* ---- fuzzing: truncations and byte flips never crash ----------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static unsigned exercise(const unsigned char *buf, size_t len)
{
  struct mcr_typetab tt;
  struct mcr_typetab_error err;
  char out[64];
  unsigned sum = 0;
  size_t pos = 0, blen;
  const void *blob;

  if (mcr_typetab_open(&tt, buf, len, &err) == 0) {
    for (uint32_t i = 0; i < mcr_typetab_ntypes(&tt); i++) {
      struct mcr_type_rec t;
      mcr_typetab_type(&tt, i, &t);
      sum += (unsigned)mcr_type_render(&tt, i, out, sizeof(out));
      sum += (unsigned)mcr_type_render(&tt, i, out, (size_t)(rnd() % 8));
      sum += (unsigned)strlen(mcr_typetab_str(&tt, t.name));
    }
    for (uint32_t i = 0; i < mcr_typetab_nmembers(&tt); i++) {
      struct mcr_member_rec m;
      mcr_typetab_member(&tt, i, &m);
      sum += (unsigned)strlen(mcr_typetab_str(&tt, m.name));
    }
    for (uint32_t i = 0; i < mcr_typetab_nsites(&tt); i++) {
      struct mcr_site_rec s;
      mcr_typetab_site(&tt, i, &s);
      sum += (unsigned)mcr_type_render_shape(&tt, s.type, s.shape, out, sizeof(out));
      sum += (unsigned)strlen(mcr_typetab_str(&tt, s.file)) +
             (unsigned)strlen(mcr_typetab_str(&tt, s.reason));
    }
    for (uint32_t i = 0; i < mcr_typetab_nglobals(&tt); i++) {
      struct mcr_global_rec g;
      mcr_typetab_global(&tt, i, &g);
      sum += (unsigned)mcr_type_render(&tt, g.type, out, sizeof(out));
      sum += (unsigned)strlen(mcr_typetab_str(&tt, g.symbol));
    }
  } else {
    sum += (unsigned)strlen(err.msg);
  }
  while (mcr_typetab_next(buf, len, &pos, &blob, &blen, &err) == 1)
    sum += (unsigned)blen;
  return sum;
}

static void test_fuzz(void)
{
  int before = failures;
  static unsigned char orig[1 << 16];
  unsigned char *work;
  size_t n;
  unsigned accepted = 0, sum = 0;
  const unsigned iters = getenv("MCR_FUZZ_ITERS") ? (unsigned)atoi(getenv("MCR_FUZZ_ITERS"))
                                                  : 20000;
  struct bb *b = calloc(1, sizeof(*b));
  struct kinds k;

  build_kinds(b, &k);
  n = bb_build(b, orig, sizeof(orig));
  free(b);
  for (unsigned it = 0; it < iters; it++) {
    size_t len = n;
    unsigned mode = (unsigned)(rnd() % 4);

    /* the mutated copy lives in a buffer of exactly len bytes so that ASan sees any
     * read past it */
    if (mode == 0)
      len = (size_t)(rnd() % (n + 1)); /* truncation */
    work = malloc(len ? len : 1);
    memcpy(work, orig, len);
    if (mode == 1 || mode == 3) { /* byte flips */
      unsigned flips = 1 + (unsigned)(rnd() % 8);
      for (unsigned f = 0; f < flips && len; f++)
        work[rnd() % len] ^= (unsigned char)(1u << (rnd() % 8));
    }
    if (mode == 2 || mode == 3) { /* interesting 32-bit values at aligned positions */
      static const uint32_t vals[] = {0, 1, 7, 8, 80, 0x7fffffff, 0x80000000, 0xfffffff8,
                                      0xffffffff, MCR_NO_TYPE - 1};
      if (len >= 4) {
        uint32_t v = rnd() % 3 ? vals[rnd() % 10] : (uint32_t)(rnd() % (n + 16));
        size_t at = (size_t)(rnd() % (len / 4)) * 4;
        memcpy(work + at, &v, 4);
      }
    }
    struct mcr_typetab tt;
    if (mcr_typetab_open(&tt, work, len, NULL) == 0)
      accepted++;
    sum += exercise(work, len);
    free(work);
  }
  printf("# fuzz: %u iterations, %u mutated blobs accepted (checksum %u)\n", iters, accepted,
         sum);
  CHECK(accepted > 0 && accepted < iters);
  tap("random truncations and byte flips never crash", before);
}

/* ---- files for the CLI tests ----------------------------------------------- */

/* The demo section: the kinds blob plus a second module with tricky strings (JSON
 * escaping) and a global that also appears in the first blob. */
static int write_section(const char *path, int corrupt)
{
  struct bb *b = calloc(1, sizeof(*b));
  struct kinds k;
  size_t n, pos;
  FILE *f = NULL;
  int ret = 1;

  build_kinds(b, &k);
  bb_site(b, "server.c", 120, "reply_new", "malloc", MCR_NO_TYPE, MCR_SHAPE_UNKNOWN,
          "result only passed to a function");
  bb_site(b, "server.c", 130, "buf_new", "realloc", MCR_NO_TYPE, MCR_SHAPE_UNKNOWN,
          "size is not a multiple of any candidate type");
  bb_global(b, "tls_buf", "tls_buf", k.char16, "server.c", 14, MCR_GF_INTERNAL | MCR_GF_TLS,
            "", 16);
  bb_global(b, "handlers", "handlers", k.fn_void_p4, "server.c", 15, 0, "", 32);
  bb_global(b, "version", "version", k.char_p, "server.c", 16, MCR_GF_CONST, "", 8);
  bb_global(b, "shared", "shared", k.int_, "common.h", 3, MCR_GF_INTERNAL, "", 4);
  bb_global(b, "opaque", "opaque", MCR_NO_TYPE, "server.c", 17, 0, "", 24);
  n = bb_build(b, secbuf, sizeof(secbuf));
  memset(secbuf + n, 0, 8);
  pos = n + 8;

  bb_init(b, "we\"ird\\dir/t\tab\n.c");
  {
    uint32_t i = bb_type(b, MCR_TYPE_INT, MCR_TF_SIGNED, "int", 4, MCR_NO_TYPE, 0);
    uint32_t odd = bb_type(b, MCR_TYPE_STRUCT, 0, "odd\x01name\x7f", 4, MCR_NO_TYPE, 0);
    bb_site(b, "we\"ird\\dir/t\tab\n.c", 5, "f\xc3\xa9", "malloc", corrupt ? 99 : odd,
            MCR_SHAPE_SINGLE, "");
    bb_global(b, "shared", "shared", i, "common.h", 3, MCR_GF_INTERNAL, "", 4);
  }
  n = bb_build(b, secbuf + pos, sizeof(secbuf) - pos);
  pos += n;
  free(b);

  f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "test-typetab: %s: %s\n", path, strerror(errno));
    return 1;
  }
  if (fwrite(secbuf, 1, pos, f) != pos)
    fprintf(stderr, "test-typetab: %s: short write\n", path);
  else
    ret = 0;
  if (fclose(f) && !ret) {
    fprintf(stderr, "test-typetab: %s: %s\n", path, strerror(errno));
    ret = 1;
  }
  return ret;
}

int main(int argc, char **argv)
{
  if (argc == 3 && !strcmp(argv[1], "--write-section"))
    return write_section(argv[2], 0);
  if (argc == 3 && !strcmp(argv[1], "--write-corrupt"))
    return write_section(argv[2], 1);
  if (argc != 1) {
    fprintf(stderr, "usage: test-typetab [--write-section FILE | --write-corrupt FILE]\n");
    return 2;
  }
  printf("1..5\n");
  test_render();
  test_larger_records();
  test_corrupt();
  test_section();
  test_fuzz();
  return failures ? 1 : 0;
}
