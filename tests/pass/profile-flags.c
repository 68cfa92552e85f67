// --mcr-profile (or MCR_PROFILE=1) builds with every call frame of the source
// kept: no inlining, no sibling calls, frame pointers, whatever the user's own
// flags say (mcr's come after them). Without it: no call table.
// RUN: %mcr-clang -finline-functions -fomit-frame-pointer --mcr-profile -O2 -S -emit-llvm %s -o - | FileCheck %s
// RUN: env MCR_PROFILE=1 %mcr-clang -O2 -S -emit-llvm %s -o - | FileCheck %s
// RUN: %mcr-clang -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=PLAIN %s
// PLAIN-NOT: mcr_calls
// PLAIN: define {{.*}} @caller
// PLAIN-NOT: call {{.*}}@leaf
static int leaf(int x) { return x * 2; }
int caller(int x) { return leaf(x) + 1; }
// CHECK: @__mcr_calls = {{.*}}section "mcr_calls"
// CHECK: define {{.*}}i32 @caller({{.*}} #[[ATTR:[0-9]+]]
// CHECK: call {{.*}}i32 @leaf(
// CHECK: attributes #[[ATTR]] = { {{.*}}noinline {{.*}}"disable-tail-calls"="true" "frame-pointer"="all"
