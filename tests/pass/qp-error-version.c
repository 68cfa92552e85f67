// A config of another format version stops the build.
// RUN: printf 'mcr-quiescence 2\nprogram srv\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:1: unsupported config version 2: this mcr reads version 1
// CHECK-NOT: {{.}}
int x;
