// A quiescent point belongs to a thread class: 'qp' before any 'class' is an error.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nqp main > serve > epoll_wait\nclass main\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:3: 'qp' before any 'class' line: a quiescent point belongs to the thread class above it
// CHECK-NOT: {{.}}
int x;
