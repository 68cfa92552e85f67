/*
 * image.h - translating pointers into the old process's program image.
 *
 * After an update has copied the old process's heap to the same addresses and its
 * globals by name, some words still point into the OLD process's executable and
 * shared libraries: function pointers, pointers to globals and const tables, string
 * literals, libc's FILE vtables, locale data. This maps each such address to the
 * equivalent one in THIS (the new) process:
 *
 *  - the executable (old: /proc/PID/exe, new: /proc/self/exe; different files and
 *    layouts): by the .symtab symbol that contains the address (functions, data
 *    objects, labels), to the symbol of the same name (statics: of the same source
 *    file, from the STT_FILE symbol before them) at the same offset; an address no
 *    symbol contains but inside .rodata (string literals) by content: the same
 *    bytes, NUL included, in the new executable's read-only data;
 *  - a shared library (and the vDSO): the same file on both sides (same path,
 *    device and inode, same program headers) has the same layout, so by offset from
 *    its load address; .bss included;
 *  - any other private file mapping (locale-archive, ...): by file offset, to a
 *    mapping of the same file in the new process that covers that offset;
 *  - the argument and environment block at the top of the first stack (args.h):
 *    by offset, for the part both processes' blocks share.
 *
 * Runs in the new process, with the old one alive and stopped, same uid
 * (/proc/PID/maps, /proc/PID/exe, process_vm_readv). Everything it keeps comes from
 * the caller's arena and from read-only file mappings: never the program's malloc,
 * whose heap is being overwritten. One thread at a time per map.
 */
#ifndef MCR_IMAGE_H
#define MCR_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mcr_arena;
struct mcr_image_map;

/* Reads both processes' mappings and the two executables' symbol tables. 0 and *out,
 * or -1 with a message in err (the old process is gone, a file cannot be read, ...).
 * The map lives in a (which must outlive it). */
int mcr_image_map_open(struct mcr_image_map **out, pid_t old_pid, struct mcr_arena *a,
                       char *err, size_t errlen);

/* Whether v points into the old process's image (a loaded segment of its executable
 * or of a library, .bss included, the vDSO, or a private file mapping), its argument
 * block, or its main thread's stack below that (never translated). A few
 * comparisons: meant for every aligned word of the heap. */
int mcr_image_is_old(const struct mcr_image_map *m, uintptr_t v);

/* Whether v points into the old main thread's stack below the argument block, or
 * into another of its threads' stacks (mcr_image_set_thread_stacks):
 * a local variable of a function on it (such a word is in the map, and
 * mcr_image_translate refuses it). */
int mcr_image_in_old_stack(const struct mcr_image_map *m, uintptr_t v);

/* The same test over n words (a heap range): stores the indexes i of the words for
 * which it holds into idx, which has room for n, in order; returns how many. About
 * twice as fast as a call per word (no call, the test inlined). */
size_t mcr_image_scan(const struct mcr_image_map *m, const uintptr_t *words, size_t n,
                      size_t *idx);

/* The new address equivalent to old, an address for which mcr_image_is_old holds:
 * 0 and *new_out, or -1 with why naming what has no equivalent (the symbol, string
 * or library). Memoized: asking again for the same address costs a hash look-up. */
int mcr_image_translate(struct mcr_image_map *m, uintptr_t old, uintptr_t *new_out,
                        char *why, size_t whylen);

/* Run-time address and size of the executable's data symbol (STT_OBJECT or
 * STT_NOTYPE) name on side 0 (old process) or 1 (this process). file is the source
 * file name of a static (as its STT_FILE symbol has it, e.g. "a.c"; a basename also
 * matches a longer name), or NULL for a global (or a static whose name is unique).
 * Returns 0, -1 when there is no such symbol, -2 when several match. */
int mcr_image_symbol(struct mcr_image_map *m, int side, const char *name, const char *file,
                     uintptr_t *addr, size_t *size);

/* Renamed functions (rename.h): in every map opened after this call, an address
 * inside the old executable's function OLD translates to the same offset in the
 * new executable's function NEW instead of a function named OLD; the usual rules
 * (size, offset) apply. r must stay valid (static storage); NULL for none. The
 * pairs should have passed mcr_rename_check: a NEW that is not one function of
 * the new executable makes every address inside OLD a conflict saying so. */
struct mcr_renames;
void mcr_image_set_renames(const struct mcr_renames *r);

/* The old process's other threads' stacks (n ranges [lo[i], hi[i])), before the
 * map is built: pointers into them are not translated, as into its main thread's
 * stack (mcr_image_in_old_stack). The arrays must outlive the map. */
void mcr_image_set_thread_stacks(const uintptr_t *lo, const uintptr_t *hi, size_t n);
/* Except the old threads' registered stack objects paired with this process's
 * (stackobj.h): a pointer into [old_lo[i], old_lo[i] + size[i]) translates to
 * new_lo[i] at the same offset, and sets used[i]. The arrays must stay valid
 * while they are set. */
void mcr_image_set_stack_objects(const uintptr_t *old_lo, const uintptr_t *new_lo,
                                 const uint64_t *size, uint8_t *used, size_t n);
const struct mcr_renames *mcr_image_renames(void); /* what was set, or NULL */

/* Counts for the update report. Translations are per distinct address. */
struct mcr_image_stats {
  size_t by_symbol;  /* executable addresses translated through a symbol */
  size_t by_library; /* library/vDSO/file-mapping addresses, by offset */
  size_t by_string;  /* string literals found by content */
  size_t by_args;    /* into the argument and environment block, by offset (args.h) */
  size_t failed;     /* addresses with no equivalent */
  size_t renamed;    /* of by_symbol, through a renamed function (mcr_image_set_renames) */
  size_t lookups;    /* mcr_image_translate calls (memo hits included) */
  size_t old_ranges; /* disjoint address ranges mcr_image_is_old tests */
  size_t old_objects, new_objects; /* loaded ELF objects and file mappings per side */
};
void mcr_image_stats(const struct mcr_image_map *m, struct mcr_image_stats *st);

/* Unmaps the executables' files (the rest goes with the arena). NULL is allowed. */
void mcr_image_map_close(struct mcr_image_map *m);

#endif /* MCR_IMAGE_H */
