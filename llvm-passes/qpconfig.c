/*
 * qpconfig.c - the quiescence config parser; see qpconfig.h. The format is
 * documented in docs/quiescence.md ("Config file format"). The first error
 * stops the parse: a config is machine-written, so one precise message beats a
 * list of follow-on ones.
 */
#include "qpconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_CLASS ((size_t)-1)

struct parser {
  const char *name;
  unsigned line;
  char *err;
  size_t errlen;
};

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int fail(struct parser *p, const char *fmt, ...)
{
  va_list ap;
  int n;

  if (!p->errlen)
    return -1;
  n = snprintf(p->err, p->errlen, "%s:%u: ", p->name, p->line ? p->line : 1);
  if (n >= 0 && (size_t)n < p->errlen) {
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static char *dup_n(const char *s, size_t n)
{
  char *d = malloc(n + 1);

  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static int is_alnum(int c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Function names as symbol tables and debug info spell them. */
static int name_char(int c) { return is_alnum(c) || c == '_' || c == '.' || c == '$'; }
/* Shared-object names: libevent-2.1.so.7, libstdc++.so.6. */
static int soname_char(int c) { return is_alnum(c) || c == '_' || c == '.' || c == '-' || c == '+'; }

/* Trims s in place; returns the first non-space character. */
static char *trim(char *s)
{
  size_t n;

  while (is_space((unsigned char)*s))
    s++;
  n = strlen(s);
  while (n && is_space((unsigned char)s[n - 1]))
    s[--n] = 0;
  return s;
}

static void stack_free(struct mcr_qpc_stack *st)
{
  for (size_t i = 0; i < st->nframes; i++)
    free(st->frames[i]);
  free(st->frames);
  free(st->text);
  memset(st, 0, sizeof(*st));
}

static int frame_ok(const char *f, size_t n)
{
  size_t i = 0;

  while (i < n && name_char((unsigned char)f[i]))
    i++;
  if (i == 0)
    return 0;
  if (i == n)
    return 1;
  if (f[i] != '@' || i + 1 == n)
    return 0;
  for (i++; i < n; i++)
    if (!soname_char((unsigned char)f[i]))
      return 0;
  return 1;
}

/* "f0 > f1 > ... > fn" into st; frames are checked, spacing around '>' is free. */
static int parse_stack(struct parser *p, const char *s, struct mcr_qpc_stack *st)
{
  size_t n = 1, len = 0;
  const char *seg = s;

  memset(st, 0, sizeof(*st));
  for (const char *q = s; *q; q++)
    n += *q == '>';
  st->frames = calloc(n, sizeof(*st->frames));
  if (!st->frames)
    return fail(p, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const char *e = strchr(seg, '>');
    const char *b = seg;
    size_t fl;

    if (!e)
      e = seg + strlen(seg);
    seg = *e ? e + 1 : e;
    while (b < e && is_space((unsigned char)*b))
      b++;
    while (e > b && is_space((unsigned char)e[-1]))
      e--;
    fl = (size_t)(e - b);
    if (!fl) {
      stack_free(st);
      return fail(p, "empty frame %zu in stack '%s' (frames are separated by ' > ')", i + 1,
                  s);
    }
    if (!frame_ok(b, fl)) {
      int comment = memchr(b, '#', fl) != NULL;

      stack_free(st);
      return fail(p, "bad frame '%.*s': expected NAME or NAME@SONAME, frames separated by "
                  "' > '%s",
                  (int)fl, b,
                  comment ? " ('#' comments must be on a line of their own)" : "");
    }
    st->frames[i] = dup_n(b, fl);
    st->nframes = i + 1;
    if (!st->frames[i]) {
      stack_free(st);
      return fail(p, "out of memory");
    }
    len += fl + 3;
  }
  st->text = malloc(len + 1);
  if (!st->text) {
    stack_free(st);
    return fail(p, "out of memory");
  }
  len = 0;
  for (size_t i = 0; i < n; i++) {
    size_t fl = strlen(st->frames[i]);

    if (i) {
      memcpy(st->text + len, " > ", 3);
      len += 3;
    }
    memcpy(st->text + len, st->frames[i], fl);
    len += fl;
  }
  st->text[len] = 0;
  return 0;
}

/* A blocking call stack: at least the start routine and the blocking function,
 * which is one the runtime wraps. */
static int check_blocking(struct parser *p, const struct mcr_qpc_stack *st,
                          enum mcr_blockfn *fn)
{
  const char *last = st->frames[st->nframes - 1];
  char names[512];
  size_t off = 0;

  if (st->nframes < 2)
    return fail(p, "stack '%s' has %zu frame: a blocking call stack has at least 2 (the "
                "thread's start routine ... the blocking function)",
                st->text, st->nframes);
  *fn = mcr_blockfn_lookup(last);
  if (*fn != MCR_BLOCK_NONE)
    return 0;
  names[0] = 0;
  for (int i = 1; i < MCR_BLOCK_COUNT && off < sizeof(names); i++) {
    int k = snprintf(names + off, sizeof(names) - off, "%s%s", i > 1 ? ", " : "",
                     mcr_blockfn_names[i]);
    if (k < 0)
      break;
    off += (size_t)k;
  }
  return fail(p, "'%s' is not a blocking function mcr can park in; the last frame must be "
              "one of: %s",
              last, names);
}

static int push(void **arr, size_t *n, size_t size)
{
  void *a = realloc(*arr, (*n + 1) * size);

  if (!a)
    return -1;
  *arr = a;
  memset((char *)a + *n * size, 0, size);
  (*n)++;
  return 0;
}

static int parse_header(struct parser *p, const char *kw, const char *rest)
{
  char *end;
  long v;

  if (strcmp(kw, "mcr-quiescence"))
    return fail(p, "expected the header 'mcr-quiescence 1' as the first line, found '%s' "
                "(is this a quiescence config written by mcr-profile?)",
                kw);
  errno = 0;
  v = strtol(rest, &end, 10);
  if (!*rest || *end || errno)
    return fail(p, "bad header: expected 'mcr-quiescence 1', found 'mcr-quiescence %s'", rest);
  if (v != 1)
    return fail(p, "unsupported config version %ld: this mcr reads version 1", v);
  return 0;
}

static int parse_program(struct parser *p, struct mcr_qpconfig *c, const char *rest)
{
  if (c->program)
    return fail(p, "duplicate 'program' line (the first is on line %u)", c->program_line);
  if (!*rest || strpbrk(rest, " \t/"))
    return fail(p, "'program' needs the profiled executable's name, without directory "
                "(found '%s')",
                rest);
  c->program = dup_n(rest, strlen(rest));
  c->program_line = p->line;
  return c->program ? 0 : fail(p, "out of memory");
}

static int parse_class(struct parser *p, struct mcr_qpconfig *c, const char *rest)
{
  struct mcr_qpc_stack st;

  if (parse_stack(p, rest, &st))
    return -1;
  for (size_t i = 0; i < c->nclasses; i++) {
    if (!strcmp(c->classes[i].stack.text, st.text)) {
      stack_free(&st);
      return fail(p, "class '%s' is already defined on line %u", c->classes[i].stack.text,
                  c->classes[i].line);
    }
  }
  if (push((void **)&c->classes, &c->nclasses, sizeof(*c->classes))) {
    stack_free(&st);
    return fail(p, "out of memory");
  }
  c->classes[c->nclasses - 1].stack = st;
  c->classes[c->nclasses - 1].line = p->line;
  return 0;
}

static int parse_qp(struct parser *p, struct mcr_qpconfig *c, size_t cls, const char *rest)
{
  struct mcr_qpc_qp q = {0};
  size_t i;

  if (cls == NO_CLASS)
    return fail(p, "'qp' before any 'class' line: a quiescent point belongs to the thread "
                "class above it");
  if (parse_stack(p, rest, &q.stack))
    return -1;
  if (check_blocking(p, &q.stack, &q.blockfn))
    goto bad;
  /* The deepest frame of the program itself: its call to the next frame is
   * what the pass can bracket (library code is not compiled by mcr-clang). */
  for (i = q.stack.nframes - 1; i > 0 && strchr(q.stack.frames[i - 1], '@'); i--)
    ;
  if (i == 0) {
    fail(p, "quiescent point '%s' has no frame of the program before '%s' (all are in "
         "shared libraries): there is no call mcr-clang could mark",
         q.stack.text, q.stack.frames[q.stack.nframes - 1]);
    goto bad;
  }
  q.caller = i - 1;
  q.callee = dup_n(q.stack.frames[i], strcspn(q.stack.frames[i], "@"));
  q.cls = cls;
  q.id = mcr_qp_hash(q.stack.text);
  q.line = p->line;
  if (!q.callee) {
    fail(p, "out of memory");
    goto bad;
  }
  for (i = 0; i < c->nqps; i++) {
    if (c->qps[i].cls == cls && !strcmp(c->qps[i].stack.text, q.stack.text)) {
      fail(p, "quiescent point '%s' is already listed for this class on line %u",
           q.stack.text, c->qps[i].line);
      goto bad;
    }
  }
  if (push((void **)&c->qps, &c->nqps, sizeof(*c->qps))) {
    fail(p, "out of memory");
    goto bad;
  }
  c->qps[c->nqps - 1] = q;
  return 0;
bad:
  stack_free(&q.stack);
  free(q.callee);
  return -1;
}

static int parse_reject(struct parser *p, struct mcr_qpconfig *c, size_t cls, char *rest)
{
  struct mcr_qpc_reject r = {0};
  char *colon = strchr(rest, ':');
  char *reason;
  enum mcr_blockfn fn;

  if (cls == NO_CLASS)
    return fail(p, "'reject' before any 'class' line: a rejected stack belongs to the thread "
                "class above it");
  if (!colon || !*(reason = trim(colon + 1)))
    return fail(p, "'reject' needs ': REASON' after the stack");
  *colon = 0;
  if (parse_stack(p, trim(rest), &r.stack))
    return -1;
  if (check_blocking(p, &r.stack, &fn))
    goto bad;
  r.reason = dup_n(reason, strlen(reason));
  r.cls = cls;
  r.line = p->line;
  if (!r.reason || push((void **)&c->rejects, &c->nrejects, sizeof(*c->rejects))) {
    fail(p, "out of memory");
    goto bad;
  }
  c->rejects[c->nrejects - 1] = r;
  return 0;
bad:
  stack_free(&r.stack);
  free(r.reason);
  return -1;
}

int mcr_qpconfig_parse(const char *text, size_t len, const char *name,
                       struct mcr_qpconfig *c, char *err, size_t errlen)
{
  struct parser p = {name, 0, err, errlen};
  const char *pos = text, *end = text + len;
  char *buf = NULL;
  size_t cls = NO_CLASS;
  int have_header = 0, rc = -1;

  memset(c, 0, sizeof(*c));
  if (errlen)
    err[0] = 0;
  c->path = dup_n(name, strlen(name));
  if (!c->path) {
    fail(&p, "out of memory");
    goto out;
  }
  while (pos < end) {
    const char *nl = memchr(pos, '\n', (size_t)(end - pos));
    const char *le = nl ? nl : end;
    char *s, *kw, *rest, *tmp;

    p.line++;
    tmp = realloc(buf, (size_t)(le - pos) + 1);
    if (!tmp) {
      fail(&p, "out of memory");
      goto out;
    }
    buf = tmp;
    memcpy(buf, pos, (size_t)(le - pos));
    buf[le - pos] = 0;
    if (memchr(pos, 0, (size_t)(le - pos))) {
      fail(&p, "NUL byte: this is not a text file");
      goto out;
    }
    pos = nl ? nl + 1 : end;
    s = trim(buf);
    if (!*s || *s == '#')
      continue;
    kw = s;
    rest = s + strcspn(s, " \t");
    if (*rest)
      *rest++ = 0;
    rest = trim(rest);
    if (!have_header) {
      if (parse_header(&p, kw, rest))
        goto out;
      have_header = 1;
    } else if (!strcmp(kw, "program")) {
      if (parse_program(&p, c, rest))
        goto out;
    } else if (!strcmp(kw, "class")) {
      if (parse_class(&p, c, rest))
        goto out;
      cls = c->nclasses - 1;
    } else if (!strcmp(kw, "qp")) {
      if (parse_qp(&p, c, cls, rest))
        goto out;
    } else if (!strcmp(kw, "reject")) {
      if (parse_reject(&p, c, cls, rest))
        goto out;
    } else {
      fail(&p, "expected 'program', 'class', 'qp' or 'reject', found '%s'", kw);
      goto out;
    }
  }
  if (!have_header) {
    fail(&p, "no header: a quiescence config starts with 'mcr-quiescence 1'");
    goto out;
  }
  if (!c->program) {
    fail(&p, "no 'program NAME' line (the profiled executable's name)");
    goto out;
  }
  rc = 0;
out:
  free(buf);
  if (rc)
    mcr_qpconfig_free(c);
  return rc;
}

int mcr_qpconfig_read(const char *path, struct mcr_qpconfig *c, char *err, size_t errlen)
{
  FILE *f = fopen(path, "rb");
  char *text = NULL, *tmp;
  size_t len = 0, cap = 0, n;
  int rc = -1;

  memset(c, 0, sizeof(*c));
  if (!f)
    goto io;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      tmp = realloc(text, cap);
      if (!tmp) {
        errno = ENOMEM;
        goto io;
      }
      text = tmp;
    }
    n = fread(text + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  if (ferror(f))
    goto io; /* errno from the failed read (EISDIR for a directory) */
  rc = mcr_qpconfig_parse(text ? text : "", len, path, c, err, errlen);
  goto out;
io:
  if (errlen)
    snprintf(err, errlen, "cannot read quiescence config '%s': %s", path, strerror(errno));
out:
  if (f)
    fclose(f);
  free(text);
  return rc;
}

void mcr_qpconfig_free(struct mcr_qpconfig *c)
{
  for (size_t i = 0; i < c->nclasses; i++)
    stack_free(&c->classes[i].stack);
  for (size_t i = 0; i < c->nqps; i++) {
    stack_free(&c->qps[i].stack);
    free(c->qps[i].callee);
  }
  for (size_t i = 0; i < c->nrejects; i++) {
    stack_free(&c->rejects[i].stack);
    free(c->rejects[i].reason);
  }
  free(c->classes);
  free(c->qps);
  free(c->rejects);
  free(c->program);
  free(c->path);
  memset(c, 0, sizeof(*c));
}
