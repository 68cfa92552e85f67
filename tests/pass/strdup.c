// strdup and strndup results are char arrays, whatever holds them.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#define _GNU_SOURCE
#include <string.h>
struct user { char *name; };
void *opaque;
void set(struct user *u, const char *s) {
  u->name = strdup(s);
  // CHECK: site [[@LINE-1]] set strdup array char
  opaque = strndup(s, 4);
  // CHECK: site [[@LINE-1]] set strndup array char
}
