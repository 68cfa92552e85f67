/*
 * arena.h - a bump allocator on its own mmap'd memory, for the runtime's working
 * memory during an update.
 *
 * While the new process copies the old heap into place, the program's malloc (our
 * tagged heap, heap.c) is the very thing being overwritten, so the transfer's own
 * tables (symbol indexes, memo tables, strings for reports) come from here instead.
 * Memory is taken from the kernel in chunks (anonymous private mappings, 1 MiB or
 * the request rounded up to pages when larger) and handed out by bumping a pointer;
 * nothing is freed one by one: mcr_arena_destroy unmaps every chunk at once.
 *
 * Not thread-safe: one arena belongs to one thread (the update worker). Never calls
 * malloc; a failed mmap returns NULL (the caller reports it), nothing aborts.
 */
#ifndef MCR_ARENA_H
#define MCR_ARENA_H

#include <stddef.h>

struct mcr_arena;

/* A new, empty arena (its header lives in its first chunk), or NULL with errno. */
struct mcr_arena *mcr_arena_create(void);

/* size bytes aligned to align (a power of two, at most the page size; 0 means 16),
 * zero-filled (fresh anonymous memory), valid until the arena is destroyed. NULL
 * with errno on failure (ENOMEM, or EINVAL for a bad alignment or a size that
 * overflows). size 0 returns a valid unique pointer. */
void *mcr_arena_alloc(struct mcr_arena *a, size_t size, size_t align);

/* A copy of the NUL-terminated s (or of its first n bytes, plus a NUL, for
 * mcr_arena_strndup), or NULL. */
char *mcr_arena_strdup(struct mcr_arena *a, const char *s);
char *mcr_arena_strndup(struct mcr_arena *a, const char *s, size_t n);

/* Bytes mapped from the kernel so far (all chunks), for reports. */
size_t mcr_arena_mapped(const struct mcr_arena *a);

/* Unmaps every chunk; a NULL arena is allowed. */
void mcr_arena_destroy(struct mcr_arena *a);

#endif /* MCR_ARENA_H */
