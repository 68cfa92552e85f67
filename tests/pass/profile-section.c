// The call table is one blob per unit in section mcr_calls, 8-aligned and
// retained (llvm.used), so it survives --gc-sections and the blobs of all units
// can be walked by size in the executable.
// RUN: %mcr-clang --mcr-profile -O2 -S -emit-llvm %s -o - | FileCheck --check-prefix=IR %s
// IR-DAG: @__mcr_calls = private constant [{{[0-9]+}} x i8] c"MCCL{{.*}}", section "mcr_calls", align 8
// IR-DAG: @llvm.used = {{.*}}ptr @__mcr_calls
// RUN: %mcr-clang --mcr-profile -O2 -DOTHER -c %s -o %t-other.o
// RUN: %mcr-clang --mcr-profile -O2 -ffunction-sections -fdata-sections -Wl,--gc-sections %s %t-other.o -o %t
// RUN: %calls %t | FileCheck --check-prefix=EXE %s
// EXE: blob calls=1
// EXE-NEXT: call main other {{.*}}profile-section.c:[[#@LINE+9]] depth=0
// EXE-NEXT: blob calls=1
// EXE-NEXT: call other getpid {{.*}}profile-section.c:[[#@LINE+5]] depth=0
// EXE-NOT: {{.}}
#include <unistd.h>
int other(void);
#ifdef OTHER
int other(void) { return getpid(); }
#else
int main(void) { return other() == 0; }
#endif
