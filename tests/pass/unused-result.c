// A call whose result is not used is no allocation site (realloc(p, 0) as
// free, a leak): nothing to describe, no tag call.
// RUN: %mcr-clang -O0 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
void drop(void *p, size_t n) {
  realloc(p, 0);
  malloc(n);
}
// CHECK-NOT: site
// CHECK: summary sites=0 typed=0
