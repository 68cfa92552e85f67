// A rejected stack says why after ': '.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nreject main > handle > read\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:4: 'reject' needs ': REASON' after the stack
// CHECK-NOT: {{.}}
int x;
