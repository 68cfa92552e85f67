// realloc and reallocarray are sites too (the runtime keeps the old tag, the
// site sets it again).
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#define _GNU_SOURCE
#include <stdlib.h>
struct vec { int *v; size_t n; };
void grow(struct vec *x) {
  x->v = realloc(x->v, 2 * x->n * sizeof(int));
  // CHECK: site [[@LINE-1]] grow realloc array int
  x->v = reallocarray(x->v, x->n, sizeof(int));
  // CHECK: site [[@LINE-1]] grow reallocarray array int
}
