// The config names the program it was profiled from.
// RUN: printf 'mcr-quiescence 1\nclass main\nqp main > serve > epoll_wait\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:3: no 'program NAME' line (the profiled executable's name)
// CHECK-NOT: {{.}}
int x;
