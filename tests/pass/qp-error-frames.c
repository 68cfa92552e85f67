// A blocking stack has at least the start routine and the blocking function.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\n   qp epoll_wait\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:4: stack 'epoll_wait' has 1 frame: a blocking call stack has at least 2 (the thread's start routine ... the blocking function)
// CHECK-NOT: {{.}}
int x;
