// The type of a global (or static) the result is stored into.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct config { int port; };
struct config *cfg;
static long *counters;

void init(int n) {
  cfg = malloc(sizeof(*cfg));
  // CHECK: site [[@LINE-1]] init malloc single struct config
  counters = malloc(n * sizeof(long));
  // CHECK: site [[@LINE-1]] init malloc array long
}
long get(int i) { return counters[i]; }
