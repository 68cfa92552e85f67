// A struct ending in a flexible array member, allocated with room for it.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
#include <string.h>
struct str { unsigned len; char buf[]; };
struct str *mk(const char *s) {
  size_t n = strlen(s);
  struct str *r = malloc(sizeof(struct str) + n + 1);
  // CHECK: site [[@LINE-1]] mk malloc flex struct str
  r->len = n;
  memcpy(r->buf, s, n + 1);
  return r;
}
struct str *mk16(void) {
  struct str *r = malloc(sizeof(struct str) + 16);
  // CHECK: site [[@LINE-1]] mk16 malloc flex struct str
  return r;
}
