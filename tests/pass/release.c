// A configured release function (release NAME ptr=K): the object is untagged
// right before each call, except inside a release function (its own caller did).
// RUN: printf 'release put ptr=1\nrelease put_locked ptr=1\n' > %t.conf
// RUN: %mcr-clang --mcr-wrappers=%t.conf -O2 -S -emit-llvm %s -o - | FileCheck %s
struct cache {
  void *head;
};
__attribute__((noinline)) void put(struct cache *c, void *o) {
  *(void **)o = c->head;
  c->head = o;
}
__attribute__((noinline)) void put_locked(struct cache *c, void *o) {
  put(c, o);
}
void user(struct cache *c, void *o) {
  put_locked(c, o);
}
// CHECK-LABEL: define {{.*}}@put_locked(
// CHECK-NOT: __mcr_untag
// CHECK: call void @put(
// CHECK-LABEL: define {{.*}}@user(
// CHECK: call void @__mcr_untag(ptr [[O:%[0-9]+]])
// CHECK-NEXT: call void @put_locked(ptr noundef %{{[0-9]+}}, ptr noundef [[O]])
