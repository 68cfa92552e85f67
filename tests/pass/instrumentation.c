// What the pass inserts: a tag call right after each allocation with its site
// record, the table in section mcr_types, site records in mcr_sites, and a
// constructor registering the output's type section.
// RUN: %mcr-clang -O2 -S -emit-llvm %s -o - | FileCheck %s
#include <stdlib.h>
struct s { int a; };
struct s *f(void) { return malloc(sizeof(struct s)); }
// CHECK-DAG: @__mcr_type_table = private constant {{.*}} section "mcr_types", align 8
// CHECK-DAG: @__mcr_sites = private global [1 x %struct.mcr_site] {{.*}} section "mcr_sites"
// CHECK-DAG: @llvm.global_ctors = {{.*}} @mcr.module_ctor
// CHECK-DAG: @llvm.used = {{.*}} @__mcr_type_table
// CHECK: %[[P:.*]] = {{.*}}call {{.*}}ptr @malloc(i64 {{.*}}4)
// CHECK-NEXT: call void @__mcr_tag(ptr {{.*}}%[[P]], ptr {{.*}}@__mcr_sites
// CHECK: define internal void @mcr.module_ctor()
// CHECK-NEXT: call void @__mcr_register_types(ptr {{.*}}@__start_mcr_types, ptr {{.*}}@__stop_mcr_types)
