// A 'void *' local that the program then uses as bytes, or stores on into a
// typed slot, gives the type (redis sds: void *sh = malloc(); s = (char *)sh + hdrlen).
// RUN: %mcr-clang -O0 -c %s -o %t0.o && %mcr-ctl types --json %t0.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -c %s -o %t2.o && %mcr-ctl types --json %t2.o | %sites | FileCheck %s
#include <stdlib.h>
struct obj { int type; };
char *str(size_t hdr, size_t n) {
  void *sh = malloc(hdr + n + 1);
  // CHECK: site [[@LINE-1]] str malloc array char
  char *s = (char *)sh + hdr;
  return s;
}
struct obj *typed_later(void) {
  void *p = malloc(sizeof(struct obj));
  // CHECK: site [[@LINE-1]] typed_later malloc single struct obj
  struct obj *o = p;
  return o;
}
