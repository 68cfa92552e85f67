#!/bin/sh
# Allocator microbenchmark: glibc malloc vs mcr's tagged heap on bench.c's
# redis-like mix. Builds both variants into a temporary directory, runs each
# configuration REPS times (alternating allocators), prints medians and ratios.
#
# usage: benchmarks/alloc/run.sh [REPS] [REQUESTS]   (defaults: 5, 1000000)
set -eu
REPS=${1:-5}
REQUESTS=${2:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
RT=$HERE/../../runtime
CC=${CC:-cc}
OUT=$(mktemp -d /tmp/mcr-bench-alloc.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

CFLAGS="-std=gnu11 -O2 -g -Wall -Wextra"
$CC $CFLAGS -o "$OUT/bench-glibc" "$HERE/bench.c" -lpthread
# the runtime's flags (runtime/CMakeLists.txt), linked whole-archive as mcr-clang does
$CC $CFLAGS -fno-builtin -ftls-model=initial-exec -fPIC -I"$RT" -I"$RT/include" \
  -c "$RT/heap.c" -o "$OUT/heap.o"
$CC $CFLAGS -fno-builtin -fPIC -I"$RT" -I"$RT/include" -c "$RT/malloc.c" -o "$OUT/malloc.o"
ar rcs "$OUT/libheap.a" "$OUT/heap.o" "$OUT/malloc.o"
$CC $CFLAGS -o "$OUT/bench-mcr" "$HERE/bench.c" \
  -Wl,--whole-archive "$OUT/libheap.a" -Wl,--no-whole-archive -lpthread

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "requests per thread: $REQUESTS, repeats: $REPS, cc: $($CC --version | head -1)"
printf "%-8s %12s %12s %8s %14s %14s %8s\n" threads glibc_ns/op mcr_ns/op ratio glibc_rss_kB mcr_rss_kB ratio
for T in 1 2; do
  : >"$OUT/glibc.$T"; : >"$OUT/mcr.$T"
  i=0
  while [ $i -lt "$REPS" ]; do
    "$OUT/bench-glibc" $T "$REQUESTS" >>"$OUT/glibc.$T"
    "$OUT/bench-mcr" $T "$REQUESTS" >>"$OUT/mcr.$T"
    i=$((i + 1))
  done
  gns=$(field ns_per_op <"$OUT/glibc.$T" | median)
  mns=$(field ns_per_op <"$OUT/mcr.$T" | median)
  grss=$(field peak_rss_kb <"$OUT/glibc.$T" | median)
  mrss=$(field peak_rss_kb <"$OUT/mcr.$T" | median)
  printf "%-8s %12s %12s %8s %14s %14s %8s\n" "$T" "$gns" "$mns" \
    "$(echo "$mns $gns" | awk '{printf "%.3f", $1 / $2}')" "$grss" "$mrss" \
    "$(echo "$mrss $grss" | awk '{printf "%.3f", $1 / $2}')"
done
