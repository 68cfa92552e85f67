// A quiescent point whose blocking function the program calls itself: every
// call of epoll_wait in serve (its CALLER) is bracketed by __mcr_qp_enter /
// __mcr_qp_exit with its own record in section mcr_qps (magic, version,
// blockfn 1 = epoll_wait, id = hash of the stack, the call's line, strings).
// The same call in another function is left alone.
// RUN: %mcr-clang --mcr-quiescence=%inputs/direct.qp -O0 -S -emit-llvm %s -o - | FileCheck %s
// RUN: env MCR_QUIESCENCE=%inputs/direct.qp %mcr-clang -O0 -S -emit-llvm %s -o - | FileCheck %s
#include <sys/epoll.h>

static void serve(int ep) {
  struct epoll_event ev[8];
  for (;;) {
    int n = epoll_wait(ep, ev, 8, -1); // CHECK-DAG: @__mcr_qp.0 = private global { i32, i16, i16, i32, i32, ptr, ptr, ptr, ptr, ptr } { i32 1347502925, i16 1, i16 1, i32 1256232467, i32 [[#@LINE]], ptr @[[CLASS:.mcr.qp.str[.0-9]*]], ptr @[[STACK:.mcr.qp.str[.0-9]*]], ptr @[[CALLER:.mcr.qp.str[.0-9]*]], ptr @[[CALLEE:.mcr.qp.str[.0-9]*]], ptr @[[FILE:.mcr.qp.str[.0-9]*]] }, section "mcr_qps", align 8
    if (n < 0)
      break;
  }
  epoll_wait(ep, ev, 8, 0); // CHECK-DAG: @__mcr_qp.1 = private global {{.*}} i32 1256232467, i32 [[#@LINE]], {{.*}} section "mcr_qps", align 8
}

void drain(int ep) {
  struct epoll_event ev;
  epoll_wait(ep, &ev, 1, 0);
}

int main(void) {
  serve(epoll_create1(0));
  return 0;
}
// CHECK-DAG: @[[CLASS]] = private unnamed_addr constant [5 x i8] c"main\00"
// CHECK-DAG: @[[STACK]] = private unnamed_addr constant [26 x i8] c"main > serve > epoll_wait\00"
// CHECK-DAG: @[[CALLER]] = private unnamed_addr constant [6 x i8] c"serve\00"
// CHECK-DAG: @[[CALLEE]] = private unnamed_addr constant [11 x i8] c"epoll_wait\00"
// CHECK-DAG: @[[FILE]] = private unnamed_addr constant {{.*}}qp-direct.c\00"
// CHECK-DAG: @llvm.used = {{.*}}ptr @__mcr_qp.0, ptr @__mcr_qp.1
//
// CHECK-LABEL: define dso_local void @drain(
// CHECK-NOT: __mcr_qp
// CHECK: call i32 @epoll_wait(
// CHECK-NOT: __mcr_qp
// CHECK: ret void
//
// CHECK-LABEL: define internal void @serve(
// CHECK: %[[P:.*]] = call ptr @__mcr_qp_enter(ptr @__mcr_qp.0)
// CHECK-NEXT: call i32 @epoll_wait(i32 noundef %{{.*}}, ptr noundef %{{.*}}, i32 noundef 8, i32 noundef -1)
// CHECK-NEXT: call void @__mcr_qp_exit(ptr %[[P]])
// CHECK: %[[Q:.*]] = call ptr @__mcr_qp_enter(ptr @__mcr_qp.1)
// CHECK-NEXT: call i32 @epoll_wait(i32 noundef %{{.*}}, ptr noundef %{{.*}}, i32 noundef 8, i32 noundef 0)
// CHECK-NEXT: call void @__mcr_qp_exit(ptr %[[Q]])
// CHECK: ret void
//
// CHECK-DAG: declare ptr @__mcr_qp_enter(ptr)
// CHECK-DAG: declare void @__mcr_qp_exit(ptr)
