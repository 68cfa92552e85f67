/*
 * arena.c - mmap-backed bump allocator; see arena.h.
 *
 * Chunks form a singly linked list through a small header at the start of each.
 * Allocation bumps within the current chunk; a request that does not fit gets a new
 * chunk (the rest of the old one is abandoned: requests are small next to a chunk,
 * and a big one gets a chunk of its own without retiring the current chunk).
 */
#define _GNU_SOURCE
#include "arena.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_CHUNK (1u << 20)

struct chunk {
  struct chunk *next;
  size_t size; /* of the whole mapping */
};

struct mcr_arena {
  struct chunk *chunks; /* all of them, newest first; the first holds this header */
  char *cur, *end;      /* free space of the current chunk */
  size_t mapped;
};

static size_t page_size(void)
{
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? (size_t)p : 4096;
}

static struct chunk *map_chunk(size_t size)
{
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  struct chunk *c = p;
  c->size = size;
  c->next = NULL;
  return c;
}

struct mcr_arena *mcr_arena_create(void)
{
  struct chunk *c = map_chunk(ARENA_CHUNK);
  if (!c)
    return NULL;
  struct mcr_arena *a = (struct mcr_arena *)(c + 1);
  a->chunks = c;
  a->cur = (char *)(a + 1);
  a->end = (char *)c + c->size;
  a->mapped = c->size;
  return a;
}

static char *align_up(char *p, size_t align)
{
  return (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
}

void *mcr_arena_alloc(struct mcr_arena *a, size_t size, size_t align)
{
  size_t page = page_size();

  if (align == 0)
    align = 16;
  if ((align & (align - 1)) || align > page) {
    errno = EINVAL;
    return NULL;
  }
  if (size == 0)
    size = 1;
  char *p = align_up(a->cur, align);
  if (p <= a->end && size <= (size_t)(a->end - p)) {
    a->cur = p + size;
    return p;
  }
  /* a new chunk: the header, then the request at its alignment */
  size_t hdr = (sizeof(struct chunk) + align - 1) & ~(align - 1);
  if (size > SIZE_MAX - hdr - page) {
    errno = EINVAL;
    return NULL;
  }
  size_t need = (hdr + size + page - 1) & ~(page - 1);
  int own = need > ARENA_CHUNK / 4; /* big: its own chunk, keep bumping the current one */
  struct chunk *c = map_chunk(own ? need : ARENA_CHUNK);
  if (!c)
    return NULL;
  c->next = a->chunks;
  a->chunks = c;
  a->mapped += c->size;
  p = (char *)c + hdr;
  if (!own) {
    a->cur = p + size;
    a->end = (char *)c + c->size;
  }
  return p;
}

char *mcr_arena_strndup(struct mcr_arena *a, const char *s, size_t n)
{
  char *d = mcr_arena_alloc(a, n + 1, 1);
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *mcr_arena_strdup(struct mcr_arena *a, const char *s)
{
  return mcr_arena_strndup(a, s, strlen(s));
}

size_t mcr_arena_mapped(const struct mcr_arena *a)
{
  return a->mapped;
}

void mcr_arena_destroy(struct mcr_arena *a)
{
  if (!a)
    return;
  struct chunk *c = a->chunks; /* a itself lives in the last chunk of the list */
  while (c) {
    struct chunk *next = c->next;
    munmap(c, c->size);
    c = next;
  }
}
