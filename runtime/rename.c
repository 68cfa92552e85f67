/*
 * rename.c - the renamed-functions map of a live update; see rename.h.
 */
#define _GNU_SOURCE
#include "rename.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "elfsym.h"

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A character a symbol name may hold: anything printable but white space and '='. */
static int is_name_char(char c)
{
  return (unsigned char)c > ' ' && c != '=' && c != 0x7f;
}

/* Whether s is a C identifier. */
static int is_ident(const char *s, const char *end)
{
  if (s == end || (*s >= '0' && *s <= '9'))
    return 0;
  for (; s < end; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return 0;
  return 1;
}

/* Whether s is identifiers joined by '.': a member path. */
static int is_path(const char *s)
{
  const char *dot;
  while ((dot = strchr(s, '.'))) {
    if (!is_ident(s, dot))
      return 0;
    s = dot + 1;
  }
  return is_ident(s, s + strlen(s));
}

/* "@TYPE.OLD=NEW" (pair without the '@'): 0, or -1 with why in err. */
static int parse_move(struct mcr_renames *r, char *pair, char *err, size_t errlen)
{
  char *eq = strchr(pair, '='), *dot = strchr(pair, '.');
  if (!eq || !dot || dot > eq) {
    snprintf(err, errlen, "move-field '%s': expected TYPE.OLD=NEW (the struct's name, its old "
                          "field, the field's member path in the new version)", pair);
    return -1;
  }
  *eq = *dot = '\0';
  if (!is_ident(pair, dot) || !is_ident(dot + 1, eq) || !is_path(eq + 1)) {
    snprintf(err, errlen, "move-field '%s.%s=%s': TYPE and OLD must be C identifiers, NEW "
                          "identifiers joined by '.'", pair, dot + 1, eq + 1);
    return -1;
  }
  if (mcr_renames_move(r, pair, dot + 1)) {
    snprintf(err, errlen, "move-field '%s.%s=%s': %s.%s is moved twice", pair, dot + 1, eq + 1,
             pair, dot + 1);
    return -1;
  }
  if (r->nmove == MCR_RENAME_MAX) {
    snprintf(err, errlen, "more than %d field moves", MCR_RENAME_MAX);
    return -1;
  }
  r->move_type[r->nmove] = pair;
  r->move_old[r->nmove] = dot + 1;
  r->move_new[r->nmove] = eq + 1;
  r->nmove++;
  return 0;
}

int mcr_renames_parse(struct mcr_renames *r, const char *spec, char *err, size_t errlen)
{
  size_t len = spec ? strlen(spec) : 0;
  char *p, *end;

  r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
  if (len >= sizeof(r->buf)) {
    snprintf(err, errlen, "the rename map is too long (%zu bytes, at most %zu)", len,
             sizeof(r->buf) - 1);
    return -1;
  }
  memcpy(r->buf, spec ? spec : "", len + 1);
  p = r->buf;
  end = r->buf + len;
  while (p < end) {
    char *pair, *eq, *q;
    if (is_space(*p)) {
      p++;
      continue;
    }
    pair = p;
    while (p < end && !is_space(*p))
      p++;
    *p++ = '\0'; /* p may now be end + 1: the loop ends */
    if (pair[0] == '+') { /* a kept new global */
      for (q = pair + 1; *q && is_name_char(*q); q++)
        ;
      if (!pair[1] || *q || r->nkeep == MCR_RENAME_MAX) {
        snprintf(err, errlen, "keep-new '%s': expected one global's name%s", pair + 1,
                 r->nkeep == MCR_RENAME_MAX ? " (at most 64)" : "");
        r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
        return -1;
      }
      r->keep_name[r->nkeep++] = pair + 1;
      continue;
    }
    if (!strcmp(pair, "!reinit")) { /* mcr-ctl update --reinit */
      r->reinit = 1;
      continue;
    }
    if (!strcmp(pair, "!epoll-pointers")) { /* mcr-ctl update --epoll-data-pointers */
      r->epoll_pointers = 1;
      continue;
    }
    if (pair[0] == '@') { /* a moved field */
      if (parse_move(r, pair + 1, err, errlen) != 0) {
        r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
        return -1;
      }
      continue;
    }
    eq = strchr(pair, '=');
    if (!eq || eq == pair || !eq[1]) {
      snprintf(err, errlen, "rename '%s': expected OLD=NEW (the old function's name, '=', "
                            "the new one's)", pair);
      r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
      return -1;
    }
    *eq = '\0';
    for (q = pair; *q; q++)
      if (!is_name_char(*q))
        break;
    if (!*q)
      for (q = eq + 1; *q; q++)
        if (!is_name_char(*q))
          break;
    if (*q) {
      snprintf(err, errlen, "rename '%s=%s': a name holds the character 0x%02x", pair, eq + 1,
               (unsigned char)*q);
      r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
      return -1;
    }
    if (mcr_renames_find(r, pair)) {
      snprintf(err, errlen, "rename '%s=%s': %s is renamed twice", pair, eq + 1, pair);
      r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
      return -1;
    }
    if (r->n == MCR_RENAME_MAX) {
      snprintf(err, errlen, "more than %d renames", MCR_RENAME_MAX);
      r->n = r->nkeep = r->nmove = 0, r->reinit = r->epoll_pointers = 0;
      return -1;
    }
    r->old_name[r->n] = pair;
    r->new_name[r->n] = eq + 1;
    r->n++;
  }
  return 0;
}

int mcr_renames_append(char *spec, size_t cap, const char *pair)
{
  size_t len = strlen(spec);
  int n = snprintf(spec + len, cap - len, "%s%s", len ? " " : "", pair);
  if (n < 0 || (size_t)n >= cap - len) {
    spec[len] = '\0';
    return -1;
  }
  return 0;
}

int mcr_renames_keeps(const struct mcr_renames *r, const char *name)
{
  for (size_t i = 0; r && i < r->nkeep; i++)
    if (!strcmp(r->keep_name[i], name))
      return 1;
  return 0;
}

const char *mcr_renames_move(const struct mcr_renames *r, const char *type,
                             const char *old_field)
{
  for (size_t i = 0; r && i < r->nmove; i++)
    if (!strcmp(r->move_type[i], type) && !strcmp(r->move_old[i], old_field))
      return r->move_new[i];
  return NULL;
}

const char *mcr_renames_find(const struct mcr_renames *r, const char *old_name)
{
  for (size_t i = 0; r && i < r->n; i++)
    if (!strcmp(r->old_name[i], old_name))
      return r->new_name[i];
  return NULL;
}

/* How many functions named name e defines (distinct addresses, at most 2
 * counted) and whether it defines data of that name. */
static void count(const struct mcr_elfsym *e, const char *name, int *funcs, int *data)
{
  Elf64_Sym s;
  const char *n;
  uint64_t first = 0;

  *funcs = 0;
  *data = 0;
  for (size_t i = 0; mcr_elfsym_symbol(e, i, &s, &n) == 0; i++) {
    int type = ELF64_ST_TYPE(s.st_info);
    if (s.st_shndx == SHN_UNDEF || strcmp(n, name))
      continue;
    if (type == STT_FUNC || type == STT_GNU_IFUNC) {
      if (*funcs == 0) {
        first = s.st_value;
        *funcs = 1;
      } else if (s.st_value != first) {
        *funcs = 2;
      }
    } else if (type == STT_OBJECT || type == STT_NOTYPE || type == STT_TLS) {
      *data = 1;
    }
  }
}

static int check_one(const struct mcr_elfsym *e, const char *label, const char *name, char *why,
                     size_t whylen)
{
  int funcs, data;

  count(e, name, &funcs, &data);
  if (funcs == 1)
    return 0;
  if (funcs > 1)
    snprintf(why, whylen, "several functions named '%s' in the %s executable (statics of "
                          "several files): cannot tell which", name, label);
  else if (data)
    snprintf(why, whylen, "'%s' is data in the %s executable: only functions can be renamed "
                          "(a renamed global's value would not be carried over)", name, label);
  else
    snprintf(why, whylen, "'%s' is not a function of the %s executable", name, label);
  return -1;
}

int mcr_rename_check(const struct mcr_elfsym *old, const struct mcr_elfsym *new,
                     const char *old_name, const char *new_name, char *why, size_t whylen)
{
  if (check_one(old, "old", old_name, why, whylen) != 0)
    return -1;
  return check_one(new, "new", new_name, why, whylen);
}
