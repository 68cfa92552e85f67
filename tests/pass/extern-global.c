// A field of a global this unit only declares (extern): the IR's struct type
// names the debug-info type (redis: server.cluster = zmalloc(...)).
// RUN: %mcr-clang -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
#include <stdlib.h>
struct cluster { int nodes; };
struct server { int port; struct cluster *cluster; char **argv; };
extern struct server server;
void init(void) {
  server.cluster = malloc(sizeof(struct cluster));
  // CHECK: site [[@LINE-1]] init malloc single struct cluster
  server.argv = calloc(4, sizeof(char *));
  // CHECK: site [[@LINE-1]] init calloc array char *
}
