// Globals, static locals and thread-locals are described with their types and
// flags; string literals and extern declarations are not.
// RUN: %mcr-clang -O0 -c %s -o %t.o && %mcr-ctl types --json %t.o | %sites > %t.txt
// RUN: FileCheck %s < %t.txt
// RUN: FileCheck --check-prefix=EXTERN %s < %t.txt
#include <stddef.h>
struct config { int port; char name[32]; };
union value { long i; double d; void *p; };
enum state { IDLE, BUSY = 5 };
struct flags { unsigned a : 3, b : 5; int c; };
typedef int (*handler_t)(void *, int);

struct config config;
// CHECK-DAG: global config config - struct config
static union value last;
// CHECK-DAG: global last last static union value
__thread int tls_counter;
// CHECK-DAG: global tls_counter tls_counter thread_local int
enum state state = BUSY;
// CHECK-DAG: global state state - enum state
struct flags fl;
// CHECK-DAG: global fl fl - struct flags
handler_t handlers[4];
// CHECK-DAG: global handlers handlers - handler_t [4]
void (*hook)(void);
// CHECK-DAG: global hook hook - void (*)(void)
char *names[2][3];
// CHECK-DAG: global names names - char *[2][3]
extern int not_here;
// EXTERN-NOT: global not_here
const char *greeting = "hello";
// CHECK-DAG: global greeting greeting - char *

int tick(void) {
  static int calls;
  // CHECK-DAG: global calls tick.calls static,static_local int
  last.i = calls;
  return ++calls + not_here + (int)sizeof(union value);
}
