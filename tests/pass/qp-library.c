// A quiescent point inside a library (memcached's workers wait in libevent):
// the deepest program frame is worker_libevent, so its call of the library's
// entry point event_base_loop is bracketed; the record names event_base_loop as
// callee and epoll_wait (1) as the blocking function. worker_libevent's own
// epoll_wait call is not that quiescent point.
// RUN: %mcr-clang --mcr-quiescence=%inputs/libevent.qp -O2 -S -emit-llvm %s -o - | FileCheck %s
#include <sys/epoll.h>
struct event_base;
int event_base_loop(struct event_base *, int);

void *worker_libevent(void *arg) {
  struct epoll_event ev;
  epoll_wait(3, &ev, 1, 0);
  event_base_loop(arg, 0); // CHECK-DAG: @__mcr_qp.0 = private global {{.*}} { i32 1347502925, i16 1, i16 1, i32 954708777, i32 [[#@LINE]], ptr @[[CLASS:.mcr.qp.str[.0-9]*]], ptr @[[STACK:.mcr.qp.str[.0-9]*]], ptr @[[CALLER:.mcr.qp.str[.0-9]*]], ptr @[[CALLEE:.mcr.qp.str[.0-9]*]], ptr {{.*}} }, section "mcr_qps"
  return 0;
}
// CHECK-DAG: @[[CLASS]] = {{.*}} c"main > setup_thread\00"
// CHECK-DAG: @[[STACK]] = {{.*}} c"worker_libevent > event_base_loop@libevent-2.1.so.7 > epoll_dispatch@libevent-2.1.so.7 > epoll_wait\00"
// CHECK-DAG: @[[CALLER]] = {{.*}} c"worker_libevent\00"
// CHECK-DAG: @[[CALLEE]] = {{.*}} c"event_base_loop\00"
// CHECK-NOT: @__mcr_qp.1 =
//
// CHECK-LABEL: define {{.*}} @worker_libevent(
// CHECK-NOT: __mcr_qp
// CHECK: call i32 @epoll_wait(
// CHECK-NOT: __mcr_qp
// CHECK: %[[P:.*]] = {{.*}}call ptr @__mcr_qp_enter(ptr nonnull @__mcr_qp.0)
// CHECK-NEXT: call i32 @event_base_loop(
// CHECK-NEXT: call void @__mcr_qp_exit(ptr %[[P]])
