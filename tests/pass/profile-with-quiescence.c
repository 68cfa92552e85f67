// A build is either the profiling variant or the production one.
// RUN: printf 'mcr-quiescence 1\nprogram p\n' > %t.qp
// RUN: not %mcr-clang --mcr-profile --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// RUN: env MCR_PROFILE=1 not %mcr-clang --mcr-quiescence=%t.qp -c %s -o %t.o 2>&1 | FileCheck %s
// CHECK: mcr-clang: error: --mcr-profile (or MCR_PROFILE) and --mcr-quiescence (or MCR_QUIESCENCE) do not go together: profile with the first, then build with the config it wrote
int x;
