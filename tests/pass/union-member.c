// A pointer stored into a struct that is a member of a union: the IR's struct
// type tells which member.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct str_cfg { char **value; int flags; };
struct num_cfg { long *value; long min, max; };
struct cfg { int kind; union { struct str_cfg s; struct num_cfg n; } data; };
void set(struct cfg *c) {
  c->data.n.value = malloc(sizeof(long));
  // CHECK: site [[@LINE-1]] set malloc single long
  c->data.s.value = malloc(sizeof(char *));
  // CHECK: site [[@LINE-1]] set malloc single char *
}
