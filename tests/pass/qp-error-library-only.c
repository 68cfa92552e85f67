// A quiescent point with no frame of the program before the blocking function has no call mcr-clang could mark.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nqp start_thread@libc.so.6 > loop@libx.so.1 > poll\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:4: quiescent point 'start_thread@libc.so.6 > loop@libx.so.1 > poll' has no frame of the program before 'poll' (all are in shared libraries): there is no call mcr-clang could mark
// CHECK-NOT: {{.}}
int x;
