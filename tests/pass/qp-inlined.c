// The markers are placed before inlining, so they go wherever the marked
// function's body ends up: here serve is inlined into main at -O2.
// RUN: %mcr-clang --mcr-quiescence=%inputs/direct.qp -O2 -S -emit-llvm %s -o - | FileCheck %s
// CHECK-NOT: define {{.*}} @serve(
// CHECK-LABEL: define {{.*}} @main(
// CHECK: %[[P:.*]] = {{.*}}call ptr @__mcr_qp_enter(ptr nonnull @__mcr_qp.0)
// CHECK-NEXT: call i32 @epoll_wait(
// CHECK-NEXT: call void @__mcr_qp_exit(ptr %[[P]])
// CHECK-NOT: define {{.*}} @serve(
#include <sys/epoll.h>

static void serve(int ep) {
  struct epoll_event ev[8];
  while (epoll_wait(ep, ev, 8, -1) >= 0)
    ;
}

int main(void) {
  serve(epoll_create1(0));
  return 0;
}
