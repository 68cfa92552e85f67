// Comments take a whole line: a trailing '# ...' is not part of the format.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nqp main > serve > epoll_wait   # the event loop\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:4: bad frame 'epoll_wait   # the event loop': expected NAME or NAME@SONAME, frames separated by ' > ' ('#' comments must be on a line of their own)
// CHECK-NOT: {{.}}
int x;
