/*
 * pieces.h - the pool pieces handed out after the startup (issue 6).
 *
 * A pool allocator (nginx's ngx_palloc, apr's apr_palloc) carves the objects
 * it hands out from blocks it got from malloc: such a piece is no heap object,
 * so an update finds it only if it was recorded. The startup's pieces are
 * startup records (startup.h); this file keeps the ones handed out after it,
 * by an allocator wrapper that passes the size (__mcr_tag_sized), when the
 * site's type is one an update may have to convert (not bytes: a string's
 * pieces are only marked in the heap's per-site bitmap, heap.h).
 *
 * Per block, the pieces sorted by address. A piece handed out over recorded
 * ones (the pool was reset, or its block freed and taken again) ends them;
 * a freed block ends all of its own (heap.c calls mcr_pieces_block_freed),
 * and a block realloc moves takes them along (mcr_pieces_block_moved).
 * Memory comes from mmap, never from the heap it describes.
 */
#ifndef MCR_PIECES_H
#define MCR_PIECES_H

#include <stddef.h>
#include <stdint.h>

struct mcr_piece {
  uint64_t addr;
  uint32_t size;
  uint32_t tag; /* its site's */
};

/* Whether tag's pieces are worth recording (its type is known and not bytes).
 * Decided once per tag. */
int mcr_pieces_track(uint32_t tag);

/* Whether every piece of tag handed out after the startup is recorded (its
 * pieces are tracked, and none was lost for want of memory). */
int mcr_pieces_complete(uint32_t tag);

/* A piece [p, p+size) of tag handed out inside the heap object at block. */
void mcr_pieces_record(uintptr_t block, uintptr_t p, size_t size, uint32_t tag);

/* How many blocks hold recorded pieces (heap.c's free asks for the block only
 * when there are any). */
extern size_t mcr_pieces_nblocks;

/* The heap object at block is freed: its pieces end. */
void mcr_pieces_block_freed(uintptr_t block);

/* The heap object at from moved to to (realloc), its first len bytes copied:
 * its pieces move with it. */
void mcr_pieces_block_moved(uintptr_t from, uintptr_t to, size_t len);

/* Every recorded piece, block by block, in address order; fn returns non-0 to
 * stop. Returns how many were visited. */
size_t mcr_pieces_foreach(int (*fn)(const struct mcr_piece *p, void *arg), void *arg);

/* Around fork (heap.c's handlers). */
void mcr_pieces_fork_prepare(void);
void mcr_pieces_fork_parent(void);
void mcr_pieces_fork_child(void);

#endif /* MCR_PIECES_H */
