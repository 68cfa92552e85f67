// An element of an array of pointers (a field, or reached through a pointer).
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct entry { int k; struct entry *next; };
struct table { struct entry **buckets; struct entry *fixed[8]; };

void put(struct table *t, int i) {
  t->buckets = calloc(64, sizeof(struct entry *));
  // CHECK: site [[@LINE-1]] put calloc array struct entry *
  t->buckets[i] = malloc(sizeof(struct entry));
  // CHECK: site [[@LINE-1]] put malloc single struct entry
  t->fixed[i & 7] = malloc(sizeof(struct entry));
  // CHECK: site [[@LINE-1]] put malloc single struct entry
}
