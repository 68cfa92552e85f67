/*
 * heap.h - mcr's tagged heap: the allocator behind malloc() in every program
 * built by mcr-clang.
 *
 * Every heap object, including those allocated by uninstrumented libraries, is
 * known with its size and a tag (abi.h: MCR_TAG_FREE, MCR_TAG_UNTYPED, or a site
 * id from MCR_TAG_FIRST_SITE to MCR_TAG_MAX; stored in 16 bits), and any pointer into an object (interior
 * too) maps to the object in O(1). Thread-safe, fork-safe, async-signal-unsafe
 * like malloc itself.
 */
#ifndef MCR_HEAP_H
#define MCR_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct mcr_object {
  void *base;    /* first byte of the object */
  size_t size;   /* usable size (what malloc_usable_size returns) */
  uint32_t tag;  /* MCR_TAG_* or a site id */
};

/* Allocation primitives; malloc.c maps the C API onto them. align is a power of
 * two; 0 means the default (16). New objects carry MCR_TAG_UNTYPED. */
void *mcr_heap_alloc(size_t size, size_t align);
void *mcr_heap_calloc(size_t n, size_t size);
void *mcr_heap_realloc(void *p, size_t size); /* keeps the tag */
void mcr_heap_free(void *p);
size_t mcr_heap_usable_size(const void *p); /* 0 for NULL or foreign pointers */

/* Maps any pointer into a live heap object (base or interior) to that object.
 * Returns 0 and fills *out, or -1 if p is not inside a live object. */
int mcr_heap_find(const void *p, struct mcr_object *out);

/* Sets the tag of the live object containing p, if p is its base or at most
 * MCR_TAG_MAX_HEADER bytes into it (an allocator wrapper's size prefix); a
 * pointer deeper inside is a sub-allocation (a pool's) and leaves the tag
 * alone. No-op if p is NULL or not inside a live object. */
void mcr_heap_set_tag(const void *p, uint32_t tag);

/* As mcr_heap_set_tag, for the object this thread allocated last (the case of
 * __mcr_tag right after an allocation): then without a lookup. */
void mcr_heap_tag_new(const void *p, uint32_t tag);

/* Calls fn on every live object (tag != MCR_TAG_FREE); stops and returns fn's
 * value if it is non-zero. Not safe against concurrent allocation: call it
 * while the program is quiesced. fn may allocate but must not free heap
 * objects. Objects allocated by fn may or may not be visited. */
int mcr_heap_foreach(int (*fn)(const struct mcr_object *obj, void *arg), void *arg);

struct mcr_heap_stats {
  size_t live_objects;   /* tag != FREE */
  size_t live_bytes;     /* sum of usable sizes of live objects */
  size_t mapped_bytes;   /* memory the heap holds from the OS */
  size_t metadata_bytes; /* of which used for tags and span metadata */
};
void mcr_heap_stats(struct mcr_heap_stats *st);

/* Returns the calling thread's cached free objects to the shared lists and
 * all free pages to the OS (malloc_trim). Returns 1 if memory was released. */
int mcr_heap_trim(void);

#endif /* MCR_HEAP_H */
