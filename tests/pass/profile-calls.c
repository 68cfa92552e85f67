// The profiling build's call table: every call of every function the unit
// emits, with its caller (static functions by their plain name), callee, file
// and line, and loop depth 0 outside loops. Intrinsics (the memcpy below
// becomes llvm.memcpy) and mcr's own hooks (__mcr_tag after malloc) are not
// calls of the program and are left out.
// RUN: %mcr-clang --mcr-profile -O2 -c %s -o %t.o
// RUN: %calls %t.o | FileCheck %s --implicit-check-not=memcpy --implicit-check-not=__mcr
// CHECK: blob calls=4
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int helper(int x) { return x + (int)getpid(); } // CHECK-DAG: call helper getpid {{.*}}profile-calls.c:[[@LINE]] depth=0

int run(char *dst, const char *src) {
  memcpy(dst, src, 8);
  char *p = malloc(16); // CHECK-DAG: call run malloc {{.*}}profile-calls.c:[[@LINE]] depth=0
  int r = helper(1);    // CHECK-DAG: call run helper {{.*}}profile-calls.c:[[@LINE]] depth=0
  free(p);              // CHECK-DAG: call run free {{.*}}profile-calls.c:[[@LINE]] depth=0
  return r;
}
