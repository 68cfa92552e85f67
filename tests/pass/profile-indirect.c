// A call through a function pointer has callee "*" and the indirect flag.
// RUN: %mcr-clang --mcr-profile -O2 -c %s -o %t.o
// RUN: %calls %t.o | FileCheck %s
// CHECK: blob calls=3
struct ops {
  int (*read)(void *, char *, int);
};
void (*hook)(int);
int direct(int);

int dispatch(struct ops *o, char *buf) {
  hook(1);                        // CHECK-DAG: call dispatch * {{.*}}:[[@LINE]] depth=0 indirect
  while (o->read(o, buf, 4) > 0)  // CHECK-DAG: call dispatch * {{.*}}:[[@LINE]] depth=1 indirect
    ;
  return direct(2);               // CHECK-DAG: call dispatch direct {{.*}}:[[@LINE]] depth=0{{$}}
}
