/*
 * prog.h - the test program of tests/image in its two versions (prog.c built with
 * and without -DV2): the addresses both versions publish under the same names.
 */
#ifndef IMAGE_PROG_H
#define IMAGE_PROG_H

#include <stdint.h>

struct entry {
  const char *name;
  uintptr_t addr;
};

/* This version's addresses; returns how many (at most max). */
int prog_table(struct entry *out, int max);

int *a_counter(void);
int *b_counter(void);
int *dup1_var(void);
int *dup2_var(void);

#endif
