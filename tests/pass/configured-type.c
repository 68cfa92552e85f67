// A 'type' line gives the type of allocations inference leaves untyped in
// matching functions (lighttpd plugins: void *mod_x_init(void) returns
// ck_calloc(1, sizeof(plugin_data))); typed sites keep their inferred type.
// RUN: printf 'type mod_*_init plugin_data\n' > %t.conf
// RUN: %mcr-clang --mcr-wrappers=%t.conf -O2 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites | FileCheck %s
// RUN: %mcr-clang -O2 -c %s -o %t2.o && %mcr-ctl types --json %t2.o | %sites | FileCheck --check-prefix=NOCONF %s
#include <stdlib.h>
typedef struct { int id; char *name; } plugin_data;
struct other { long x; };
void *mod_access_init(void) {
  return calloc(1, sizeof(plugin_data));
  // CHECK: site [[@LINE-1]] mod_access_init calloc single plugin_data
  // NOCONF: site [[@LINE-2]] mod_access_init calloc - null
}
void *mod_access_other(void) {
  return calloc(1, sizeof(struct other));
  // CHECK: site [[@LINE-1]] mod_access_other calloc - null
}
struct other *mod_typed_init(void) {
  return malloc(sizeof(struct other));
  // CHECK: site [[@LINE-1]] mod_typed_init malloc single struct other
}
