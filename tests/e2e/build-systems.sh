#!/usr/bin/env bash
# mcr-clang as the C compiler of CMake and meson projects: configure (compiler
# detection and feature checks), build a static library, a shared library and an
# executable under -Wall -Werror, run it, and check the outputs are instrumented.
#   build-systems.sh BUILD_DIR
set -uo pipefail
build=$1
mcc="$build/bin/mcr-clang"
w=$(mktemp -d "${TMPDIR:-/tmp}/mcr-buildsys.XXXXXX")
trap 'rm -rf "$w"' EXIT
pass=0
fail=0
check() { local what=$1; shift; if "$@" >"$w/last.log" 2>&1; then echo "ok: $what"; pass=$((pass + 1)); else echo "FAIL: $what"; sed 's/^/    /' "$w/last.log" | tail -15; fail=$((fail + 1)); fi; }
instrumented() { readelf -S "$1" 2>/dev/null | grep ' mcr_types ' >/dev/null; }

mkdir -p "$w/src"
cat > "$w/src/util.c" <<'C'
#include <stdlib.h>
struct u { int x; };
struct u *mk(void) { return malloc(sizeof(struct u)); }
C
cat > "$w/src/plug.c" <<'C'
#include <stdlib.h>
char *plug(void) { return malloc(8); }
C
cat > "$w/src/main.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
struct u *mk(void);
int main(void) { void *p = mk(); puts(p ? "made" : "none"); free(p); return 0; }
C
cat > "$w/src/CMakeLists.txt" <<'C'
cmake_minimum_required(VERSION 3.20)
project(hello C)
include(CheckIncludeFile)
check_include_file(sys/epoll.h HAVE_EPOLL)
if(NOT HAVE_EPOLL)
  message(FATAL_ERROR "feature check failed under mcr-clang")
endif()
add_library(util STATIC util.c)
add_library(plug SHARED plug.c)
add_executable(hello main.c)
target_link_libraries(hello util)
C
cat > "$w/src/meson.build" <<'C'
project('hello', 'c')
assert(meson.get_compiler('c').has_header('sys/epoll.h'), 'feature check failed')
util = static_library('util', 'util.c')
shared_library('plug', 'plug.c')
executable('hello', 'main.c', link_with: util)
C

check "cmake: configure with CMAKE_C_COMPILER=mcr-clang" \
  cmake -S "$w/src" -B "$w/cmake" -G Ninja -DCMAKE_C_COMPILER="$mcc" -DCMAKE_C_FLAGS="-Wall -Werror"
check "cmake: build" ninja -C "$w/cmake"
check "cmake: program runs" bash -c "'$w/cmake/hello' | grep -q made"
check "cmake: executable instrumented" instrumented "$w/cmake/hello"
check "cmake: shared library instrumented" instrumented "$w/cmake/libplug.so"

check "meson: setup with CC=mcr-clang" env CC="$mcc" CFLAGS="-Wall -Werror" meson setup "$w/meson" "$w/src"
check "meson: build" ninja -C "$w/meson"
check "meson: program runs" bash -c "'$w/meson/hello' | grep -q made"
check "meson: executable instrumented" instrumented "$w/meson/hello"
check "meson: shared library instrumented" instrumented "$w/meson/libplug.so"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
