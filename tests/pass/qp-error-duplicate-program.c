// 'program' is given once.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nprogram other\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:4: duplicate 'program' line (the first is on line 2)
// CHECK-NOT: {{.}}
int x;
