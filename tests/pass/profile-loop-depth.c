// Each call's loop depth in its function (LoopInfo on the IR as clang emits
// it, before optimization: the same at -O0 and -O2). A loop's condition is
// inside the loop; a loop without exit is a loop too.
// RUN: %mcr-clang --mcr-profile -O0 -c %s -o %t0.o
// RUN: %calls %t0.o | FileCheck %s
// RUN: %mcr-clang --mcr-profile -O2 -c %s -o %t2.o
// RUN: %calls %t2.o | FileCheck %s
// CHECK: blob calls=7
void work(int);
int more(void);

void loops(int n) {
  work(0);                        // CHECK-DAG: call loops work {{.*}}:[[@LINE]] depth=0
  for (int i = 0; i < n; i++) {
    work(1);                      // CHECK-DAG: call loops work {{.*}}:[[@LINE]] depth=1
    for (int j = 0; j < n; j++)
      work(2);                    // CHECK-DAG: call loops work {{.*}}:[[@LINE]] depth=2
  }
  while (more())                  // CHECK-DAG: call loops more {{.*}}:[[@LINE]] depth=1
    work(3);                      // CHECK-DAG: call loops work {{.*}}:[[@LINE]] depth=1
  work(4);                        // CHECK-DAG: call loops work {{.*}}:[[@LINE]] depth=0
}

void forever(void) {
  for (;;)
    work(5);                      // CHECK-DAG: call forever work {{.*}}:[[@LINE]] depth=1
}
