#!/usr/bin/env bash
# tests/image: translating pointers into an old process's program image
# (runtime/image.c). Builds the program of prog.c in two versions with mcr-clang,
# runs v1, and has v2 translate v1's published addresses (check.c).
#   run.sh BUILD_DIR TEST      TEST: translate | errors | perf
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-image-$test.XXXXXX")
pids=()
cleanup() {
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
inc=(-I"$top/runtime" -I"$top/runtime/include" -I"$top/tests/runtime" -I"$src")

# v1 and v2: the same sources, -DV2, units in another order; dup.c compiled in its
# own directory twice (both STT_FILE symbols read "dup.c")
build() { # build VERSION-FLAGS OUT SOURCES...
  local flags=$1 out=$2; shift 2
  local objs=()
  mkdir -p "$work/obj-$out"
  for d in dup1 dup2; do
    (cd "$src/$d" && "$mcc" -O2 -Wall $flags -c dup.c -o "$work/obj-$out/$d.o")
    objs+=("$work/obj-$out/$d.o")
  done
  "$mcc" -O2 -Wall $flags "${inc[@]}" -o "$work/$out" "$@" "${objs[@]}" -ldl
}
build "" prog-v1 "$src/prog.c" "$src/unit-a.c" "$src/unit-b.c"
build -DV2 prog-v2 "$src/unit-b.c" "$src/check.c" "$src/prog.c" "$src/unit-a.c"

# wait_file FILE: until it exists (5 s at most)
wait_file() {
  for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.05; done
  echo "FAIL: $1 did not appear"; exit 1
}

case $test in
translate|perf)
  # three copies of one library: one both load, one only v1 loads, one replaced
  # on disk (a new file at the same path) between v1's and v2's dlopen
  clang-16 -O2 -fPIC -shared -o "$work/libextra-same.so" "$src/extra.c"
  cp "$work/libextra-same.so" "$work/libextra-gone.so"
  cp "$work/libextra-same.so" "$work/libextra-replaced.so"
  "$work/prog-v1" "$work/published" extra_same:"$work/libextra-same.so" \
    extra_gone:"$work/libextra-gone.so" extra_replaced:"$work/libextra-replaced.so" &
  pids+=($!)
  v1=$!
  wait_file "$work/published"
  cp "$work/libextra-replaced.so" "$work/libextra-replaced.so.new"
  mv "$work/libextra-replaced.so.new" "$work/libextra-replaced.so"
  if [ "$test" = perf ]; then
    "$work/prog-v2" perf "$v1" "$work/published"
  else
    "$work/prog-v2" check "$v1" "$work/published" \
      extra_same:"$work/libextra-same.so" -:"$work/libextra-replaced.so"
  fi
  ;;
errors)
  "$work/prog-v2" errors
  ;;
*)
  echo "unknown test $test"; exit 2 ;;
esac
