// sizeof multiples: n * sizeof(T) and calloc(n, sizeof T) are arrays of T;
// exactly sizeof(T) or calloc(1, sizeof T) is a single T.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct item { long key; void *val; };
void keep(void *);

void h(size_t n) {
  struct item *a = malloc(n * sizeof(struct item));
  // CHECK: site [[@LINE-1]] h malloc array struct item
  struct item *b = calloc(n, sizeof(*b));
  // CHECK: site [[@LINE-1]] h calloc array struct item
  struct item *c = calloc(1, sizeof(*c));
  // CHECK: site [[@LINE-1]] h calloc single struct item
  struct item *d = malloc(4 * sizeof(struct item));
  // CHECK: site [[@LINE-1]] h malloc array struct item
  int *e = malloc(sizeof(int));
  // CHECK: site [[@LINE-1]] h malloc single int
  keep(a); keep(b); keep(c); keep(d); keep(e);
}
