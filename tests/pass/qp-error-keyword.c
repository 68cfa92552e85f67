// Lines start with one of the format's keywords.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nqp main > serve > epoll_wait\nquiescent main > serve > poll\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:5: expected 'program', 'class', 'qp' or 'reject', found 'quiescent'
// CHECK-NOT: {{.}}
int x;
