// Only the deepest program frame of a quiescent point is marked, in the unit
// that defines it: the unit with main and run_loop (OUTER) gets nothing, even
// though run_loop calls poll too; the unit with poll_once (INNER) gets the
// markers around its poll call.
// RUN: %mcr-clang --mcr-quiescence=%inputs/deeper.qp -DOUTER -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=OUTER %s
// RUN: %mcr-clang --mcr-quiescence=%inputs/deeper.qp -DINNER -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=INNER %s
// OUTER-NOT: mcr_qp
// INNER: @__mcr_qp.0 = private global {{.*}} i32 861969842, i32 [[#@LINE+24]], {{.*}} section "mcr_qps"
// INNER-NOT: @__mcr_qp.1 =
// INNER-LABEL: define {{.*}} @poll_once(
// INNER: call ptr @__mcr_qp_enter(ptr nonnull @__mcr_qp.0)
// INNER-NEXT: call i32 @poll(
// INNER-NEXT: call void @__mcr_qp_exit(
#include <poll.h>
int poll_once(struct pollfd *p);

#ifdef OUTER
void run_loop(struct pollfd *p) {
  poll(p, 1, 0);
  while (poll_once(p) >= 0)
    ;
}
int main(void) {
  struct pollfd p = {0, POLLIN, 0};
  run_loop(&p);
  return 0;
}
#endif

#ifdef INNER
int poll_once(struct pollfd *p) {
  return poll(p, 1, -1); // the record's line
}
#endif
