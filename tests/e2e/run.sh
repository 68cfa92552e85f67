#!/usr/bin/env bash
# End-to-end tests: builds small programs with mcr-clang and runs them.
#   run.sh BUILD_DIR TEST
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-e2e-$test.XXXXXX")
trap 'rm -rf "$work"' EXIT
inc=(-I"$top/runtime" -I"$top/runtime/include" -I"$src")

case "$test" in
  tags|layout)
    # The runtime's own API is in the archive linked by mcr-clang.
    "$mcc" -O2 -Wall "${inc[@]}" -o "$work/$test" "$src/$test.c"
    "$work/$test"
    ;;
  shared)
    "$mcc" -O2 -fPIC -shared -o "$work/libplug.so" "$src/plugin.c"
    "$mcc" -O2 "${inc[@]}" -o "$work/shared" "$src/shared.c" -ldl
    "$work/shared" "$work/libplug.so"
    clang-16 -O2 -o "$work/plain-host" "$src/plain-host.c" -ldl
    "$work/plain-host" "$work/libplug.so"
    ;;
  *)
    echo "run.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
