// The pass checks the config too when clang runs it without mcr-clang: a
// malformed one is a compile error naming the file and line.
// RUN: printf 'mcr-quiescence 1\nprogram srv\nclass main\nqp main > serve > epool_wait\n' > %t.qp
// RUN: env MCR_QUIESCENCE=%t.qp not clang -fpass-plugin=%mcr-plugin -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: error: {{.*}}.qp:4: 'epool_wait' is not a blocking function mcr can park in
int x;
