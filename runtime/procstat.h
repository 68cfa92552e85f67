/*
 * procstat.h - a process's /proc/PID/stat and this process's /proc/self/maps,
 * each read and parsed in one place.
 *
 * Used by the update (a tree's parents and children, the argument block's
 * addresses, the threads' stacks) and the quiesce (a stuck thread's stack). No
 * allocation: safe while the program's heap is being replaced.
 */
#ifndef MCR_PROCSTAT_H
#define MCR_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MCR_STAT_PPID 4         /* the parent */
#define MCR_STAT_STARTSTACK 28  /* where argc is, at the top of the first stack */
#define MCR_STAT_ARG_START 48   /* the argument strings */
#define MCR_STAT_ARG_END 49
#define MCR_STAT_FIELDS 53      /* fields are numbered from 1, as in proc(5) */

/* The state letter (field 3) into *state (may be NULL) and numeric fields 4 and
 * up into v[4...] (those the kernel did not write are 0). 0, or -1 when the
 * process is gone or its stat is unreadable. */
int mcr_proc_stat(pid_t pid, char *state, unsigned long long v[MCR_STAT_FIELDS]);

/* pid's parent, or -1 (gone, or a zombie when live_only). */
pid_t mcr_proc_parent(pid_t pid, int live_only);

/* One line of /proc/self/maps: [lo, hi) and its permissions ("rw-p"). */
struct mcr_map {
  uintptr_t lo, hi;
  char perms[5];
};

/* This process's mappings into up to max entries of m, in address order;
 * returns how many were read (0 when the file is unreadable). */
size_t mcr_proc_maps(struct mcr_map *m, size_t max);

/* The mapping of m[0..n) that holds addr, or NULL. */
const struct mcr_map *mcr_proc_map_at(const struct mcr_map *m, size_t n, uintptr_t addr);

#endif /* MCR_PROCSTAT_H */
