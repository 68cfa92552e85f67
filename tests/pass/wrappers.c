// Calls to configured allocator wrappers are sites; the malloc inside a
// wrapper is not (its callers' tags describe the object).
// RUN: %mcr-clang --mcr-wrappers=%inputs/wrappers.conf -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
// RUN: env MCR_WRAPPERS=%inputs/wrappers.conf %mcr-clang -O2 -c %s -o %t2.o && %mcr-ctl types --json %t2.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -c %s -o %t3.o && %mcr-ctl types --json %t3.o | %sites | FileCheck --check-prefix=NOCONF %s
#include <stdlib.h>
#include <string.h>
void *xmalloc(size_t n) { void *p = malloc(n + 8); return p ? (char *)p + 8 : NULL; }
void *xcalloc(size_t n, size_t s) { return calloc(n, s); }
char *xstrdup(const char *s) { char *d = xmalloc(strlen(s) + 1); return strcpy(d, s); }
// CHECK-NOT: site {{[0-9]+}} xmalloc
// CHECK-NOT: site {{[0-9]+}} xcalloc
// CHECK-NOT: site {{[0-9]+}} xstrdup
struct obj { int type; void *ptr; };
struct obj *mk(void) {
  struct obj *o = xmalloc(sizeof(*o));
  // CHECK: site [[@LINE-1]] mk xmalloc single struct obj
  // NOCONF-NOT: site [[@LINE-2]]
  o->ptr = xstrdup("v");
  // CHECK: site [[@LINE-1]] mk xstrdup array char
  return o;
}
struct obj *mkv(size_t n) {
  struct obj *v = xcalloc(n, sizeof(struct obj));
  // CHECK: site [[@LINE-1]] mkv xcalloc array struct obj
  return v;
}
