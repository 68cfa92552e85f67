// A config without the 'mcr-quiescence 1' header stops the build at its first line that is not a comment.
// RUN: printf '# my config\n\nprogram srv\nclass main\n' > %t.qp
// RUN: not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.qp:3: expected the header 'mcr-quiescence 1' as the first line, found 'program' (is this a quiescence config written by mcr-profile?)
// CHECK-NOT: {{.}}
int x;
