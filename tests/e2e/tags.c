/* Heap objects carry the type of their allocation site, found from any pointer
 * into them; objects allocated inside libc are untyped; freed ones are gone. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "typeof.h"

struct pair {
  int a;
  char *s;
};

struct pair *global_pair;

static int count_tag(const struct mcr_object *o, void *arg) {
  struct mcr_object *want = arg;
  if (o->tag == want->tag)
    want->size++;
  return 0;
}

/* A wrapper with a size prefix (tagged through it) and a pool handing out
 * pieces of one block (the block's tag must stay). */
void *prefixed_alloc(size_t n) {
  size_t *p = malloc(n + sizeof(size_t));
  if (!p)
    return NULL;
  p[0] = n;
  return p + 1;
}
static char *pool_block;
void *pool_alloc(size_t n) {
  static size_t used = 64; /* the pool's own header */
  void *r = pool_block + used;
  used += (n + 15) & ~(size_t)15;
  return r;
}

/* A private free list (memcached's cache.c): cache_put (configured "release
 * cache_put ptr=0") keeps an object for the next cache_get (a wrapper), with
 * the list's link in its first word. */
static void *cache_head;
__attribute__((noinline)) void cache_put(void *o) {
  *(void **)o = cache_head;
  cache_head = o;
}
__attribute__((noinline)) void *cache_get(size_t n) {
  void *o = cache_head;
  if (!o)
    return malloc(n);
  cache_head = *(void **)o;
  return o;
}

int main(void) {
  char b[256];
  struct pair *p = malloc(sizeof(*p));
  CHECK_STR(type_of(p, b, sizeof(b)), "struct pair");
  CHECK_STR(type_of(&p->s, b, sizeof(b)), "struct pair"); /* interior */
  CHECK(malloc_usable_size(p) >= sizeof(*p));

  p->s = strdup("hello");
  CHECK_STR(type_of(p->s + 3, b, sizeof(b)), "char []");

  int *v = calloc(10, sizeof(int));
  CHECK_STR(type_of((char *)v + 17, b, sizeof(b)), "int []");
  v = realloc(v, 100000 * sizeof(int)); /* large: another size class */
  CHECK_STR(type_of(v + 99999, b, sizeof(b)), "int []");

  global_pair = calloc(1, sizeof(struct pair));
  CHECK_STR(type_of(global_pair, b, sizeof(b)), "struct pair");

  FILE *f = fopen("/dev/null", "r"); /* allocated inside libc */
  CHECK(f != NULL);
  CHECK_STR(type_of(f, b, sizeof(b)), "<untyped>");
  fclose(f);

  /* Ten objects from one site: foreach sees each of them. */
  struct pair *many[10];
  for (int i = 0; i < 10; i++)
    many[i] = malloc(sizeof(struct pair));
  struct mcr_object want = {0};
  mcr_heap_find(many[0], &want);
  want.size = 0;
  mcr_heap_foreach(count_tag, &want);
  CHECK_EQ(want.size, 10);
  for (int i = 0; i < 10; i++)
    free(many[i]);

  /* Wrappers (configured in tests/e2e/tags.wrappers). */
  struct pair *pp = prefixed_alloc(sizeof(struct pair));
  CHECK_STR(type_of(pp, b, sizeof(b)), "struct pair");
  pool_block = malloc(4096);
  CHECK_STR(type_of(pool_block, b, sizeof(b)), "char []");
  struct pair *pooled = pool_alloc(sizeof(struct pair));
  CHECK_STR(type_of(pooled, b, sizeof(b)), "char []"); /* still the block's type */
  free(pool_block);
  free((size_t *)pp - 1);

  /* Released to a private free list: no type there (its bytes are the list's,
   * not a struct pair to convert); handed out again: the new caller's type. */
  struct pair *cached = cache_get(sizeof(struct pair));
  CHECK_STR(type_of(cached, b, sizeof(b)), "struct pair");
  cache_put(cached);
  CHECK_STR(type_of(cached, b, sizeof(b)), "<released>");
  int *again = cache_get(4 * sizeof(int));
  CHECK(again == (int *)cached);
  CHECK_STR(type_of(again, b, sizeof(b)), "int []");
  free(again);

  char *s = p->s;
  free(s);
  CHECK_STR(type_of(s, b, sizeof(b)), "<not found>");
  free(p);
  free(v);
  CHECK_DONE();
}
