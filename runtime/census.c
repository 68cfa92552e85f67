/*
 * census.c - an opt-in count of the live heap by allocation site and type.
 *
 * With MCR_HEAP_CENSUS=FILE in the environment, the process writes, when it
 * exits normally, one line per allocation site with live objects:
 *     COUNT BYTES TYPE FILE:LINE FUNCTION
 * sorted by bytes, and one line for untyped objects (allocated by code the
 * pass did not see). Without the variable nothing happens. It never writes to
 * the program's own stdout or stderr.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap.h"
#include "typetab.h"
#include "types.h"

struct tally {
  size_t count, bytes;
};

struct census {
  struct tally *by_tag; /* indexed by tag, limit entries */
  uint32_t limit;
};

static int count_object(const struct mcr_object *o, void *arg) {
  struct census *c = arg;
  uint32_t t = o->tag < c->limit ? o->tag : MCR_TAG_UNTYPED;
  c->by_tag[t].count++;
  c->by_tag[t].bytes += o->size;
  return 0;
}

static void describe(uint32_t tag, char *type, size_t tlen, char *where, size_t wlen) {
  snprintf(type, tlen, tag == MCR_TAG_RELEASED ? "<released>" : "<untyped>");
  snprintf(where, wlen, "-");
  struct mcr_typetab tt;
  struct mcr_site_rec r;
  if (mcr_site_record(tag, &tt, &r) != 0)
    return;
  if (r.type == MCR_NO_TYPE ||
      mcr_type_render_shape(&tt, r.type, r.shape, type, tlen) < 0)
    snprintf(type, tlen, "<no type>");
  const char *file = mcr_typetab_str(&tt, r.file);
  const char *fn = mcr_typetab_str(&tt, r.function);
  const char *base = file ? strrchr(file, '/') : NULL;
  snprintf(where, wlen, "%s:%u %s", base ? base + 1 : (file ? file : "?"), r.line,
           fn ? fn : "?");
}

static int by_bytes(const void *a, const void *b, void *arg) {
  const struct tally *t = arg;
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  if (t[x].bytes != t[y].bytes)
    return t[x].bytes < t[y].bytes ? 1 : -1;
  return x < y ? -1 : x > y;
}

static void write_census(void) {
  const char *path = getenv("MCR_HEAP_CENSUS");
  if (!path || !*path)
    return;
  struct census c;
  c.limit = mcr_site_id_limit();
  size_t len = c.limit * (sizeof(struct tally) + sizeof(uint32_t));
  void *mem = mcr_map_anon(len, 0);
  if (mem == MAP_FAILED)
    return;
  c.by_tag = mem;
  uint32_t *order = (uint32_t *)(c.by_tag + c.limit);
  mcr_heap_foreach(count_object, &c);
  uint32_t n = 0;
  for (uint32_t t = MCR_TAG_UNTYPED; t < c.limit; t++)
    if (c.by_tag[t].count)
      order[n++] = t;
  qsort_r(order, n, sizeof(*order), by_bytes, c.by_tag);

  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (f) {
    fprintf(f, "# mcr heap census of pid %d: COUNT BYTES TYPE SITE FUNCTION\n", getpid());
    for (uint32_t i = 0; i < n; i++) {
      char type[256], where[512];
      describe(order[i], type, sizeof(type), where, sizeof(where));
      fprintf(f, "%zu %zu %s\t%s\n", c.by_tag[order[i]].count, c.by_tag[order[i]].bytes,
              type, where);
    }
    fclose(f);
  } else if (fd >= 0) {
    close(fd);
  }
  munmap(mem, len);
}

__attribute__((constructor)) static void census_init(void) {
  const char *path = getenv("MCR_HEAP_CENSUS");
  if (path && *path)
    atexit(write_census);
}
