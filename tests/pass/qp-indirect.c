// A blocking function CALLER reaches only through a pointer cannot be matched:
// nothing is marked, the compile succeeds (the link-time check of mcr-clang
// reports the quiescent point as not instrumented).
// RUN: %mcr-clang --mcr-quiescence=%inputs/direct.qp -O0 -S -emit-llvm %s -o - | FileCheck %s
// CHECK-NOT: mcr_qp
#include <sys/epoll.h>

static int (*wait_fn)(int, struct epoll_event *, int, int) = epoll_wait;

void serve(int ep) {
  struct epoll_event ev[8];
  while (wait_fn(ep, ev, 8, -1) >= 0)
    ;
}
