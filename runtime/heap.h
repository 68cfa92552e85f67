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
#include <sys/types.h>
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

/* As mcr_heap_tag_new, for an allocator wrapper's result of size bytes
 * (__mcr_tag_sized): a piece deeper inside an object, handed out after the
 * startup, is recorded (pieces.h) when its site's type is worth it. */
void mcr_heap_tag_sized(const void *p, uint32_t tag, size_t size);

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

/* Returns the calling thread's cached free objects to the shared lists (an
 * update's lead calls it in every thread as it parks, so that mcr_heap_export
 * sees every free object). */
void mcr_heap_flush_thread_cache(void);

/* ---- live update: continuing another process's heap at the same addresses ----
 *
 * The heap is one reservation at a random address in [16 TiB, 80 TiB). Each
 * small class's region, the large arena and the span descriptors are split
 * in two halves, "lanes". A process carves (takes never-used memory) only in
 * lane 0, except a process started in update mode, which carves its startup
 * objects in lane 1 above the lane-1 high-water marks of the process it
 * replaces (lane 1 holds the startup objects of every generation). Objects of
 * both lanes are ordinary objects once allocated.
 *
 * Sequence: the OLD process calls mcr_heap_update_env and starts the NEW one
 * with MCR_UPDATE_HEAP=<that value> in its environment. The NEW process, at
 * heap initialisation (its first allocation, possibly inside ld.so), reserves
 * its heap at the old one's address and carves in lane 1. Once the OLD is
 * quiesced (every thread called mcr_heap_flush_thread_cache) it calls
 * mcr_heap_export and mcr_heap_ranges and sends both; from then on until the
 * copy is done, no thread of the OLD may allocate or free. The NEW calls
 * mcr_heap_adopt_prepare, copies every range from the old process to the same
 * address (process_vm_readv), then mcr_heap_adopt. Afterwards the NEW has one
 * ordinary heap holding the old's objects and its own, carves in lane 0 from
 * the old's lane-0 marks, and can itself be the OLD side of the next update.
 *
 * MCR_UPDATE_HEAP's value (mcr_heap_update_env writes it; hex numbers
 * without 0x):
 *   1:<base>:<shift>:<pages1>:<meta1>:<top1 of class 1>,...,<top1 of class 44>
 * base: the reservation's first byte; shift (decimal): log2 of a class
 * region's size, which fixes the whole layout; pages1: index of the first
 * unused page of the large arena's lane 1 (lane 1 starts at page
 * 2^(shift - 9)); meta1: bytes of lane-1 span descriptors in use; top1 of
 * class c: byte offset in class c's region of its lane-1 high-water mark
 * (lane 1 starts at the first object at or after half the region). */
#define MCR_UPDATE_HEAP_ENV "MCR_UPDATE_HEAP"
#define MCR_HEAP_NCLASS 44 /* small classes */
#define MCR_HEAP_NLISTS 256 /* page heap free lists */

/* Writes the value of MCR_UPDATE_HEAP for a process that is to replace this
 * one (NUL-terminated). From then on this process carves in lane 0 only (a
 * process that was itself started in update mode and has not adopted its
 * predecessor gives that up). Returns 0, or -1 (errno ERANGE if len is too
 * small, ENOMEM if the heap could not be initialised). */
int mcr_heap_update_env(char *buf, size_t len);
/* The same for the root of a process tree (docs/coordinator.md): the lane-1
 * marks are the highest of this process's and those of others, processes
 * forked from it (read from their memory; one that cannot be read is left
 * out). */
int mcr_heap_update_env_tree(char *buf, size_t len, const pid_t *others, size_t nothers);

/* 0 if this process was started with MCR_UPDATE_HEAP, holds its heap at the
 * old heap's address and has not adopted yet; else -1 and a reason in why
 * (NUL-terminated, truncated to len), e.g. "the old heap's range
 * 0x...-0x... is taken by /usr/lib/x86_64-linux-gnu/libc.so.6 (0x...-0x...)".
 * A process for which it returns -1 still has a working heap. */
int mcr_heap_update_ready(char *why, size_t len);

/* A heap's state, enough to continue it at the same addresses: plain data,
 * fixed size, no pointer outside the heap's reservation. Lanes are [0] and
 * [1]. */
struct mcr_heap_state {
  uint64_t magic;                      /* MCR_HEAP_STATE_MAGIC */
  uint64_t pid, serial;                /* the exporter, and its export count */
  uint64_t base, size;                 /* the reservation */
  uint32_t shift, nclass;              /* region size 2^shift; MCR_HEAP_NCLASS */
  uint64_t top[MCR_HEAP_NCLASS][2];    /* per class, lane: high-water mark (offset in region) */
  uint64_t free_head[MCR_HEAP_NCLASS]; /* central free lists (word 0 next, word 1 tag slot) */
  uint64_t nfree[MCR_HEAP_NCLASS];
  uint64_t npages[2];                  /* large arena: first unused page index of each lane */
  uint64_t meta_top[2];                /* span descriptors: bump pointer of each lane */
  uint64_t meta_free;                  /* free descriptors */
  uint64_t ph_lists[MCR_HEAP_NLISTS];  /* page heap free runs */
  uint64_t ph_bits[MCR_HEAP_NLISTS / 64];
  uint64_t free_pages, dirty_pages, inuse_pages;
};
#define MCR_HEAP_STATE_MAGIC 0x6d63726865617031ULL /* "mcrheap1" */

/* The heap's reservation (both lanes, metadata included). */
int mcr_heap_reservation(uintptr_t *base, size_t *size);

/* Snapshot of this process's heap for a successor. Call with every other
 * thread quiesced and their caches flushed; the heap must then stay unchanged
 * until the successor has copied mcr_heap_ranges. Returns 0, or -1 if the
 * heap is not initialised. */
int mcr_heap_export(struct mcr_heap_state *st);

struct mcr_heap_range {
  uint64_t start, len;
};

/* The address ranges of the heap st describes that hold its state (objects,
 * tags, page map, span descriptors and large objects, in address order,
 * byte-exact at lane-1 ends): what the new process copies. Fills out[0..max)
 * and returns how many ranges there are (more than max: call again with
 * more room). Called in the process that exported st, right after the export,
 * it leaves out free page runs; elsewhere it cannot read the page map and
 * lists every used page of the large arena. */
size_t mcr_heap_ranges(const struct mcr_heap_state *st, struct mcr_heap_range *out, size_t max);

/* The allocation sites (tags) that handed out a piece of a heap object (a pool
 * allocator wrapper's result inside a pool block) after the startup ended, a bit
 * each. The pieces pieces.h records are known to an update; of the others it
 * knows only this bit, so it refuses when such a site's type changed
 * (runtime/transfer.c, read_pieces). */
const uint8_t *mcr_heap_piece_sites(void);
/* Sets tag's bit (an update's new process: the old process's sites). */
void mcr_heap_mark_piece_site(uint32_t tag);
#define MCR_PIECE_SITES_BYTES ((MCR_TAG_MAX + 1) / 8)

/* In the NEW process: makes every range of mcr_heap_ranges(old) read-write,
 * after checking that old is a heap at this heap's address and geometry and
 * that none of its ranges overlaps this process's own objects. Returns 0, or
 * -1 with mcr_heap_adopt_error() saying why (the heap is unchanged). */
int mcr_heap_adopt_prepare(const struct mcr_heap_state *old);

/* In the NEW process, after mcr_heap_adopt_prepare and the copy: takes over
 * the old heap. Every tag of an old live object becomes map_tag(tag, arg)
 * (called once per distinct tag, not under a heap lock; it may allocate; a
 * result of MCR_TAG_FREE or above MCR_TAG_MAX makes the object
 * MCR_TAG_UNTYPED). Free lists and free page runs are merged with this
 * process's; lane-0 marks become the old's. Cost: linear in the number of
 * the old's object slots (2 bytes each) and large objects. Call with the
 * other threads parked outside the allocator (their cached free objects stay
 * valid). Returns 0, or -1 with mcr_heap_adopt_error() saying why. */
int mcr_heap_adopt(const struct mcr_heap_state *old, uint32_t (*map_tag)(uint32_t tag, void *arg),
                   void *arg);

/* ---- type conversion ahead of the pause (xform_heap.c) ---- */

/* In the NEW process, after the pre-copy copied every range of
 * mcr_heap_ranges(old) to the same addresses and before mcr_heap_adopt: calls fn
 * on every small object the copy shows live, with the tag the old process wrote
 * (its own site numbering). Large objects are not visited. The copy is not a
 * consistent snapshot (the old process ran meanwhile): what it shows is a hint
 * that the pages written since correct. Returns fn's non-zero value, 0, or -1
 * if old is not a heap at this heap's address and geometry. */
int mcr_heap_foreach_copied(const struct mcr_heap_state *old,
                            int (*fn)(const struct mcr_object *obj, void *arg), void *arg);

/* Calls fn once on every live small object whose bytes or tag slot intersect
 * one of r[0..n) (sorted by address, disjoint), in address order, then on every
 * live large object. Same rules as mcr_heap_foreach. */
int mcr_heap_foreach_touched(const struct mcr_heap_range *r, size_t n,
                             int (*fn)(const struct mcr_object *obj, void *arg), void *arg);

/* The parts of st's small-class regions that hold no object (each lane, from
 * its high-water mark to its end), in address order: fills out[0..max) and
 * returns how many there are (2 per class). */
size_t mcr_heap_small_unused(const struct mcr_heap_state *st, struct mcr_heap_range *out,
                             size_t max);

/* Why mcr_heap_adopt_prepare or mcr_heap_adopt failed last. */
const char *mcr_heap_adopt_error(void);

/* The runtime's own anonymous memory (PROT_READ|PROT_WRITE, MAP_PRIVATE|
 * MAP_ANONYMOUS|flags), by the system call: never logged as the program's
 * mapping, whichever thread asks (startup.c logs
 * the program's anonymous mappings). MAP_FAILED on failure, as mmap. */
void *mcr_map_anon(size_t len, int flags);

#endif /* MCR_HEAP_H */
