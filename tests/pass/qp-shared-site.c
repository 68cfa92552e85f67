// Several quiescent points can end at the same call (aeMain reached two ways,
// or the same stack in two thread classes): each gets its record, so the link
// check finds every id, and the call is bracketed once, with the first.
// RUN: %mcr-clang --mcr-quiescence=%inputs/redis.qp -O2 -S -emit-llvm %s -o - | FileCheck %s
// (ids are hashes of the stacks: 1653939156, 3101549582 printed signed)
// CHECK-DAG: @__mcr_qp.0 = private global {{.*}} i32 1653939156, i32 [[#@LINE+14]], ptr @[[MAIN:.mcr.qp.str[.0-9]*]], {{.*}} section "mcr_qps"
// CHECK-DAG: @__mcr_qp.1 = private global {{.*}} i32 -1193417714, i32 [[#@LINE+13]], ptr @[[MAIN]], {{.*}} section "mcr_qps"
// CHECK-DAG: @__mcr_qp.2 = private global {{.*}} i32 1653939156, i32 [[#@LINE+12]], ptr @[[IO:.mcr.qp.str[.0-9]*]], {{.*}} section "mcr_qps"
// CHECK-DAG: @[[IO]] = {{.*}} c"main > start_io_thread\00"
// CHECK-NOT: @__mcr_qp.3 =
// CHECK-LABEL: define {{.*}} @aeApiPoll(
// CHECK: %[[P:.*]] = {{.*}}call ptr @__mcr_qp_enter(ptr nonnull @__mcr_qp.0)
// CHECK-NEXT: call i32 @epoll_wait(
// CHECK-NEXT: call void @__mcr_qp_exit(ptr %[[P]])
// CHECK-NOT: __mcr_qp
// CHECK: ret
#include <sys/epoll.h>

int aeApiPoll(int ep, struct epoll_event *ev) {
  return epoll_wait(ep, ev, 64, 100); // the line of all three records
}
