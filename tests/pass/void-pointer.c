// A result kept only in a void * has no type, and says why.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
void *blob;
void f(size_t n) {
  blob = malloc(n);
  // CHECK: site [[@LINE-1]] f malloc - null | reason: result kept only in a 'void *' (global 'blob')
}
// CHECK: summary sites=1 typed=0
