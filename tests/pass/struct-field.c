// The type of a struct field the result is stored into, also nested fields
// and fields reached through several pointers.
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct buf { char *data; unsigned len; };
struct conn { int fd; struct buf in; struct conn *next; double *stats; };
struct server { struct conn *conns; };

void g(struct server *s) {
  s->conns = malloc(sizeof(struct conn));
  // CHECK: site [[@LINE-1]] g malloc single struct conn
  s->conns->in.data = malloc(4096);
  // CHECK: site [[@LINE-1]] g malloc array char
  s->conns->next = calloc(1, sizeof(struct conn));
  // CHECK: site [[@LINE-1]] g calloc single struct conn
  s->conns->stats = malloc(8 * sizeof(double));
  // CHECK: site [[@LINE-1]] g malloc array double
}
