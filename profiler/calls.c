/*
 * calls.c - the "mcr_calls" records of a profiling build (mcr/qp.h), read
 * from the executable file: for each call site, caller, callee, file:line and
 * whether it is inside a loop of the caller.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../mcr-ctl/elf.h"
#include "mcr/qp.h"
#include "profiler.h"

/* The string at off (from the blob's start), or NULL if it does not end inside. */
static const char *blob_str(const unsigned char *blob, size_t size, uint32_t off)
{
  if (off >= size || !memchr(blob + off, '\0', size - off))
    return NULL;
  return (const char *)blob + off;
}

/* Appends the records of one blob; returns its size, 0 if it is not one. */
static size_t load_blob(struct calls *c, const unsigned char *p, size_t left, size_t *cap)
{
  struct mcr_calls_header h;

  if (left < sizeof(h))
    return 0;
  memcpy(&h, p, sizeof(h));
  if (h.magic != MCR_CALLS_MAGIC || h.version != MCR_CALLS_VERSION || h.size < sizeof(h) ||
      h.size > left || h.calls_off > h.size ||
      (size_t)h.ncalls > (h.size - h.calls_off) / sizeof(struct mcr_call_rec) ||
      h.strings_off > h.size)
    return 0;
  for (uint32_t i = 0; i < h.ncalls; i++) {
    struct mcr_call_rec r;
    struct call_rec *out;

    memcpy(&r, p + h.calls_off + i * sizeof(r), sizeof(r));
    if (c->n == *cap) {
      size_t ncap = *cap ? *cap * 2 : 1024;
      struct call_rec *n = realloc(c->recs, ncap * sizeof(*n));
      if (!n)
        return (size_t)-1;
      c->recs = n;
      *cap = ncap;
    }
    out = &c->recs[c->n];
    out->caller = blob_str(p, h.size, r.caller);
    out->callee = blob_str(p, h.size, r.callee);
    out->file = blob_str(p, h.size, r.file);
    if (!out->caller || !out->callee || !out->file)
      continue; /* a damaged record: skip it, keep the others */
    out->line = r.line;
    out->loop_depth = r.loop_depth;
    out->indirect = (r.flags & MCR_CALL_INDIRECT) != 0;
    c->n++;
  }
  return h.size;
}

static int rec_cmp(const void *a, const void *b)
{
  return strcmp(((const struct call_rec *)a)->caller, ((const struct call_rec *)b)->caller);
}

int calls_load(struct calls *c, const char *path)
{
  struct mcr_elf *e = calloc(1, sizeof(*e));
  struct mcr_elf_section sec;
  size_t pos = 0, cap = 0;
  char msg[256];

  memset(c, 0, sizeof(*c));
  if (!e) {
    prof_err("%s: %s", path, strerror(ENOMEM));
    return -1;
  }
  if (mcr_elf_open(e, path, msg, sizeof(msg)) != MCR_ELF_OK) {
    prof_err("%s: %s", path, msg);
    free(e);
    return -1;
  }
  c->elf = e;
  if (mcr_elf_section(e, MCR_CALLS_SECTION, &sec) != 0 || !sec.data)
    return 0;
  c->present = 1;
  /* blobs are 8-byte padded and concatenated; skip zero padding between them */
  while (pos + 8 <= sec.size) {
    size_t n = load_blob(c, sec.data + pos, sec.size - pos, &cap);
    if (n == (size_t)-1) {
      prof_err("%s: %s", path, strerror(ENOMEM));
      return -1;
    }
    pos += n ? (n + 7) & ~(size_t)7 : 8;
  }
  qsort(c->recs, c->n, sizeof(*c->recs), rec_cmp);
  return 0;
}

void calls_free(struct calls *c)
{
  if (c->elf) {
    mcr_elf_close(c->elf);
    free(c->elf);
  }
  free(c->recs);
  memset(c, 0, sizeof(*c));
}

/* "NAME@SONAME" -> does it name NAME? */
static int names(const char *frame, const char *name)
{
  size_t n = strlen(name);
  return !strncmp(frame, name, n) && (frame[n] == '\0' || frame[n] == '@');
}

size_t calls_find(const struct calls *c, const char *caller, const char *callee,
                  const struct call_rec **out, size_t max)
{
  size_t n = 0, lo = 0, hi = c->n;
  char chk[128];

  /* the caller's records are one run of the sorted array: find its start */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(c->recs[mid].caller, caller) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  /* -D_FORTIFY_SOURCE builds call __read_chk where the stack says read */
  snprintf(chk, sizeof(chk), "__%s_chk", callee);
  for (size_t i = lo; i < c->n && !strcmp(c->recs[i].caller, caller) && n < max; i++)
    if (!c->recs[i].indirect &&
        (names(callee, c->recs[i].callee) || !strcmp(c->recs[i].callee, chk)))
      out[n++] = &c->recs[i];
  if (n)
    return n;
  for (size_t i = lo; i < c->n && !strcmp(c->recs[i].caller, caller) && n < max; i++)
    if (c->recs[i].indirect)
      out[n++] = &c->recs[i];
  return n;
}
