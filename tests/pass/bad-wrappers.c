// A malformed wrapper config stops the build with the file and line.
// RUN: printf 'wrapper ok size=0\nallocator zmalloc\n' > %t.conf
// RUN: not %mcr-clang --mcr-wrappers=%t.conf -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: {{.*}}.conf:2: expected 'wrapper NAME [size=N] [count=M] [out=K] [string]', 'release NAME [ptr=N]' or 'type FUNCTION TYPE', found 'allocator'
// RUN: printf 'release cache_free size=1\n' > %t.rel
// RUN: not %mcr-clang --mcr-wrappers=%t.rel -c %s -o %t.o 2>&1 | FileCheck --check-prefix=RELEASE %s
// RELEASE: mcr-clang: error: {{.*}}.rel:1: bad attribute 'size=1' for release cache_free: expected ptr=N
// RUN: not %mcr-clang --mcr-wrappers=%t.missing -c %s -o %t.o 2>&1 | FileCheck --check-prefix=MISSING %s
// MISSING: mcr-clang: error: cannot read allocator wrapper file '{{.*}}.missing': No such file or directory
int x;
