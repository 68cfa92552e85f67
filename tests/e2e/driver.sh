#!/usr/bin/env bash
# mcr-clang as a drop-in CC: each check compares with clang-16 or inspects the
# output. Prints one line per check and "N passed, N failed" at the end.
#   driver.sh BUILD_DIR
set -uo pipefail
build=$1
mcc="$build/bin/mcr-clang"
clang=clang-16
w=$(mktemp -d "${TMPDIR:-/tmp}/mcr-driver.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$w"' EXIT
cd "$w"
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
has_types() { readelf -S "$1" 2>/dev/null | grep ' mcr_types ' >/dev/null; }

cat > a.c <<'C'
#include <stdlib.h>
#include "a.h"
struct s { int x; };
struct s *make(void) { return malloc(sizeof(struct s)); }
C
echo '#define A 1' > a.h
cat > main.c <<'C'
#include <stdio.h>
#include <stdlib.h>
struct s;
struct s *make(void);
int main(void) { void *p = make(); printf("made %s\n", p ? "ok" : "null"); free(p); return 0; }
C
printf 'int broken( { return 0 }\n' > bad.c
printf '\t.text\n\t.globl f\nf:\n\tret\n' > f.s

# Preprocessing and dependency output: exactly what clang gives.
"$clang" -E a.c > e.want 2>&1; "$mcc" -E a.c > e.got 2>&1
check "-E output identical to clang-16" cmp e.want e.got
"$clang" -M a.c > m.want; "$mcc" -M a.c > m.got
check "-M output identical" cmp m.want m.got
"$clang" -MM a.c > mm.want; "$mcc" -MM a.c > mm.got
check "-MM output identical" cmp mm.want mm.got
"$mcc" -MD -MF a.d -c a.c -o a.o
check "-MD -MF writes the dependency file" grep -q 'a.h' a.d
check "-c output is instrumented" has_types a.o

# Response files are read for classification and passed through to clang.
printf -- '-c\na.c\n-o\nrsp.o\n' > args.rsp
"$mcc" @args.rsp
check "response file: compiled and instrumented" has_types rsp.o

# The profiling variant: the call table, also through the environment.
has_calls() { readelf -S "$1" 2>/dev/null | grep ' mcr_calls ' >/dev/null; }
"$mcc" --mcr-profile -c a.c -o prof.o
check "--mcr-profile: object has mcr_calls" has_calls prof.o
MCR_PROFILE=1 "$mcc" -c a.c -o prof-env.o
check "MCR_PROFILE=1: object has mcr_calls" has_calls prof-env.o
check "plain build: no mcr_calls" bash -c "! readelf -S a.o | grep -q ' mcr_calls '"
"$mcc" --mcr-profile -Wall -Wextra -Werror -c a.c -o pw.o 2> pw.err
check "--mcr-profile -Werror: builds, nothing on stderr" test -s pw.o -a ! -s pw.err
printf 'mcr-quiescence 1\nprogram prog\nclass main\nqp main > make > read\n' > q.qp
"$mcc" --mcr-quiescence=q.qp -E a.c > eq.got 2>&1
check "--mcr-quiescence: -E output identical" cmp e.want eq.got
"$mcc" --mcr-quiescence=q.qp -Wall -Wextra -Werror -c a.c -o qw.o 2> qw.err
check "--mcr-quiescence -Werror: builds, nothing on stderr" test -s qw.o -a ! -s qw.err

# Link steps: an executable gets the runtime; a shared object gets stubs.
"$mcc" -c main.c -o main.o
"$mcc" main.o a.o -o prog
check "link-only step: executable has the runtime (malloc, __mcr_tag)" \
  bash -c "nm prog | grep -qE ' T malloc$' && nm prog | grep -qE ' T __mcr_tag$'"
check "linked program runs" bash -c "./prog | grep -q 'made ok'"
check "runtime entry points exported for shared objects" \
  bash -c "nm -D prog | grep -qE ' T __mcr_tag$'"
"$mcc" -fPIC -shared a.c -o liba.so
check "-shared: no malloc of its own" bash -c "! nm -D --defined-only liba.so | grep -qE ' malloc$'"
check "-shared: weak stub entry points" bash -c "nm liba.so | grep -qE ' W __mcr_tag$'"
check "-shared: instrumented" has_types liba.so
"$mcc" -c f.s -o f.o 2> s.err
check "assembler input: no warnings" test ! -s s.err
"$mcc" -O2 main.c a.c -o prog2 2> one.err
check "compile and link in one step" bash -c "./prog2 | grep -q 'made ok'"
check "one-step build: no warnings" test ! -s one.err

# No extra warnings: a clean file stays clean under -Werror.
"$mcc" -Wall -Wextra -Werror -c a.c -o w.o 2> w.err
check "-Wall -Wextra -Werror: builds, nothing on stderr" test ! -s w.err
"$mcc" -g0 -c a.c -o g0.o
check "-g0 still gets types (mcr adds -g last)" has_types g0.o

# A failing compile: clang's own output and exit code, nothing added.
"$clang" -c bad.c -o bad.o 2> bad.want; want=$?
"$mcc" -c bad.c -o bad.o 2> bad.got; got=$?
check "failing compile: same exit code as clang ($want)" test "$want" = "$got"
check "failing compile: same diagnostics as clang" cmp bad.want bad.got

# Queries pass through.
check "--version answers" bash -c "'$mcc' --version | grep -q 'clang version 16'"
check "--mcr-help answers" bash -c "'$mcc' --mcr-help | grep -q 'mcr-wrappers'"
check "--mcr-help documents the profiling and production variants" \
  bash -c "'$mcc' --mcr-help | grep -q -- '--mcr-profile ' && '$mcc' --mcr-help | grep -q -- '--mcr-quiescence=FILE'"
"$mcc" --mcr-bogus -c a.c 2> bogus.err; rc=$?
check "unknown --mcr- option: exit 1 and a message" \
  bash -c "test $rc = 1 && grep -q \"unknown option '--mcr-bogus'\" bogus.err"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
