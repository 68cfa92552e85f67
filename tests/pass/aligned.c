// posix_memalign returns its object through a pointer argument; aligned_alloc
// like malloc. The tag call for posix_memalign checks its result first.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=IR %s
#include <stdlib.h>
struct page { char bytes[4096]; };
struct page *a(void) {
  struct page *p;
  if (posix_memalign((void **)&p, 4096, sizeof(*p)))
    return NULL;
  // CHECK: site [[@LINE-2]] a posix_memalign single struct page
  // IR: call i32 @posix_memalign
  // IR-NEXT: call void @__mcr_tag_out(i32
  return p;
}
struct page *b(void) {
  struct page *q = aligned_alloc(4096, sizeof(struct page));
  // CHECK: site [[@LINE-1]] b aligned_alloc single struct page
  return q;
}
