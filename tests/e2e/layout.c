/* The type table a program carries matches what the compiler laid out:
 * member offsets (bitfields too), sizes, arrays, unions, function pointers,
 * enums, globals, static locals and thread-locals. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "typetab.h"
#include "types.h"

enum color { RED, GREEN = 7, BLUE };
struct inner { short s; double d; };
struct probe {
  char c;
  int i;
  long l;
  struct probe *next;
  unsigned a : 3, b : 7;
  int after_bits;
  union { int x; double dd; } u;
  struct inner in;
  char tail[5];
  int (*fn)(void *, int);
  enum color color;
};

struct probe probe_global;
__thread long probe_tls[3];

int bump(void) {
  static int counter;
  return ++counter + (int)probe_tls[0];
}

/* First set bit of a bitfield, found by setting it in a zeroed struct. */
static long bit_offset(int which) {
  struct probe p;
  memset(&p, 0, sizeof(p));
  if (which == 0) p.a = 1; else p.b = 1;
  unsigned char *bytes = (unsigned char *)&p;
  for (size_t i = 0; i < sizeof(p); i++)
    for (int k = 0; k < 8; k++)
      if (bytes[i] & (1 << k))
        return (long)(i * 8 + k);
  return -1;
}

static int find_struct(struct mcr_typetab *tt, const char *name, struct mcr_type_rec *out) {
  for (uint32_t i = 0; i < mcr_typetab_ntypes(tt); i++)
    if (mcr_typetab_type(tt, i, out) == 0 && out->kind == MCR_TYPE_STRUCT &&
        !(out->flags & MCR_TF_INCOMPLETE) && strcmp(mcr_typetab_str(tt, out->name), name) == 0)
      return 0;
  return -1;
}

static long member_offset(struct mcr_typetab *tt, struct mcr_type_rec *st, const char *name,
                          struct mcr_member_rec *m) {
  for (uint32_t k = 0; k < st->count; k++)
    if (mcr_typetab_member(tt, st->first_member + k, m) == 0 &&
        strcmp(mcr_typetab_str(tt, m->name), name) == 0)
      return (long)m->offset_bits;
  return -1;
}

int main(void) {
  const struct mcr_module *mods;
  size_t n = mcr_types_modules(&mods);
  CHECK(n >= 1);
  struct mcr_typetab tt;
  int found = 0;
  size_t pos = 0;
  const void *blob;
  size_t blob_len;
  while (!found && mcr_typetab_next(mods[0].start, mods[0].stop - mods[0].start, &pos, &blob,
                                    &blob_len, NULL) == 1) {
    struct mcr_type_rec st;
    if (mcr_typetab_open(&tt, blob, blob_len, NULL) == 0 && find_struct(&tt, "probe", &st) == 0)
      found = 1;
  }
  CHECK(found);
  if (!found)
    CHECK_DONE();

  struct mcr_type_rec st;
  struct mcr_member_rec m;
  char buf[128];
  find_struct(&tt, "probe", &st);
  CHECK_EQ(st.size, sizeof(struct probe));
#define OFF(f) CHECK_EQ(member_offset(&tt, &st, #f, &m), 8 * offsetof(struct probe, f))
  OFF(c); OFF(i); OFF(l); OFF(next); OFF(after_bits); OFF(u); OFF(in); OFF(tail); OFF(fn);
  OFF(color);
  CHECK_EQ(member_offset(&tt, &st, "a", &m), bit_offset(0));
  CHECK_EQ(m.bit_size, 3);
  CHECK_EQ(member_offset(&tt, &st, "b", &m), bit_offset(1));
  CHECK_EQ(m.bit_size, 7);
  member_offset(&tt, &st, "next", &m);
  mcr_type_render(&tt, m.type, buf, sizeof(buf));
  CHECK_STR(buf, "struct probe *");
  member_offset(&tt, &st, "tail", &m);
  mcr_type_render(&tt, m.type, buf, sizeof(buf));
  CHECK_STR(buf, "char [5]");
  member_offset(&tt, &st, "fn", &m);
  mcr_type_render(&tt, m.type, buf, sizeof(buf));
  CHECK_STR(buf, "int (*)(void *, int)");
  member_offset(&tt, &st, "color", &m);
  mcr_type_render(&tt, m.type, buf, sizeof(buf));
  CHECK_STR(buf, "enum color");
  struct mcr_type_rec en;
  mcr_typetab_type(&tt, m.type, &en);
  CHECK_EQ(en.count, 3);
  struct mcr_member_rec e;
  mcr_typetab_member(&tt, en.first_member + 1, &e);
  CHECK_STR(mcr_typetab_str(&tt, e.name), "GREEN");
  CHECK_EQ(e.offset_bits, 7);
  member_offset(&tt, &st, "u", &m);
  struct mcr_type_rec un;
  mcr_typetab_type(&tt, m.type, &un);
  CHECK_EQ(un.kind, MCR_TYPE_UNION);
  CHECK_EQ(un.size, sizeof(probe_global.u));
  member_offset(&tt, &st, "in", &m);
  struct mcr_type_rec in;
  mcr_typetab_type(&tt, m.type, &in);
  CHECK_EQ(in.size, sizeof(struct inner));

  /* Globals: names, symbols, sizes, flags. */
  int saw_global = 0, saw_tls = 0, saw_static = 0;
  for (uint32_t i = 0; i < mcr_typetab_nglobals(&tt); i++) {
    struct mcr_global_rec g;
    mcr_typetab_global(&tt, i, &g);
    const char *name = mcr_typetab_str(&tt, g.name);
    if (!strcmp(name, "probe_global")) {
      saw_global = 1;
      CHECK_EQ(g.size, sizeof(struct probe));
      mcr_type_render(&tt, g.type, buf, sizeof(buf));
      CHECK_STR(buf, "struct probe");
    } else if (!strcmp(name, "probe_tls")) {
      saw_tls = 1;
      CHECK(g.flags & MCR_GF_TLS);
      mcr_type_render(&tt, g.type, buf, sizeof(buf));
      CHECK_STR(buf, "long [3]");
    } else if (!strcmp(name, "counter")) {
      saw_static = 1;
      CHECK(g.flags & MCR_GF_LOCAL_STATIC);
      CHECK_STR(mcr_typetab_str(&tt, g.scope), "bump");
    }
  }
  CHECK(saw_global);
  CHECK(saw_tls);
  CHECK(saw_static);
  CHECK(bump() == 1);
  CHECK_DONE();
}
