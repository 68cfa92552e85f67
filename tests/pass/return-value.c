// A result returned directly: the function's return type.
// RUN: %mcr-clang -O0 -c %s -o %t0.o && %mcr-ctl types --json %t0.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -c %s -o %t2.o && %mcr-ctl types --json %t2.o | %sites | FileCheck %s
#include <stdlib.h>
struct node { struct node *l, *r; };
struct node *new_node(void) { return calloc(1, sizeof(struct node)); }
// CHECK: site [[@LINE-1]] new_node calloc single struct node
