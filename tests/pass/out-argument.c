// A wrapper that returns its object through a pointer argument (out=K): the
// type is what that argument points to, the tag follows the call.
// RUN: printf 'wrapper grow out=0 count=1 size=2\n' > %t.conf
// RUN: %mcr-clang --mcr-wrappers=%t.conf -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
// RUN: %mcr-clang --mcr-wrappers=%t.conf -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=IR %s
#include <stdlib.h>
struct item { int k; };
struct list { struct item **items; unsigned n; };
__attribute__((noinline)) void *grow(void **list, size_t n, size_t elt) {
  void *p = realloc(*list, n * elt);
  if (p)
    *list = p;
  return p;
}
void add(struct list *l) {
  grow((void **)&l->items, l->n + 1, sizeof(*l->items));
  // CHECK: site [[@LINE-1]] add grow array struct item *
  // IR: call ptr @grow(
  // IR-NEXT: call void @__mcr_tag_out(i32 0,
}
