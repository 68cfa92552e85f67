// The type of a local variable the result is stored into; at -O0 and -O2.
// RUN: %mcr-clang -O0 -c %s -o %t0.o && %mcr-ctl types --json %t0.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -c %s -o %t2.o && %mcr-ctl types --json %t2.o | %sites | FileCheck %s
#include <stdlib.h>
struct point { int x, y; };
typedef struct point point_t;

void use(void *);

void f(void) {
  struct point *p = malloc(sizeof(*p));
  // CHECK: site [[@LINE-1]] f malloc single struct point
  point_t *q = malloc(sizeof(point_t));
  // CHECK: site [[@LINE-1]] f malloc single point_t
  use(p);
  use(q);
}
