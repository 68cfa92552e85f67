// A config that cannot be read stops the build with the reason.
// RUN: not %mcr-clang --mcr-quiescence=%t.missing -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: cannot read quiescence config '{{.*}}.missing': No such file or directory
int x;
