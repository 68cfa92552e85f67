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
    printf 'wrapper prefixed_alloc size=0\nwrapper pool_alloc size=0\n' > "$work/wrappers"
    "$mcc" --mcr-wrappers="$work/wrappers" -O2 -Wall "${inc[@]}" -o "$work/$test" "$src/$test.c"
    "$work/$test"
    ;;
  shared)
    "$mcc" -O2 -fPIC -shared -o "$work/libplug.so" "$src/plugin.c"
    "$mcc" -O2 "${inc[@]}" -o "$work/shared" "$src/shared.c" -ldl
    "$work/shared" "$work/libplug.so"
    clang-16 -O2 -o "$work/plain-host" "$src/plain-host.c" -ldl
    "$work/plain-host" "$work/libplug.so"
    ;;
  install)
    # An installed tree works on its own: mcr-clang finds lib/mcr beside bin/.
    cmake --install "$build" --prefix "$work/inst" >/dev/null
    "$work/inst/bin/mcr-clang" -O2 -o "$work/kvstore" "$top/tests/servers/kvstore.c"
    "$work/inst/bin/mcr-ctl" types --json "$work/kvstore" > "$work/types.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s); sys.exit(0 if s["sites"] == s["typed"] == 5 else 1)' "$work/types.json"
    ;;
  census)
    # kvstore's live heap, counted from the tags, matches what the client stored.
    "$mcc" -O2 -o "$work/kvstore" "$top/tests/servers/kvstore.c"
    port=$((20000 + RANDOM % 20000))
    MCR_HEAP_CENSUS="$work/census.txt" "$work/kvstore" -p "$port" 2>"$work/log" &
    pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    for i in $(seq 1 40); do printf 'SET key%d value-%d\n' "$i" "$i" >&3; done
    printf 'DEL key7\nCOUNT\n' >&3
    for _ in $(seq 42); do read -r -t 5 reply <&3; done
    echo "last reply: $reply"
    exec 3<&-
    kill "$pid"; wait "$pid" || true
    cat "$work/census.txt"
    count() { awk -F'\t' -v t="$1" -v s="$2" '$2 ~ s { split($1, a, " "); if (index($1, t)) print a[1] }' "$work/census.txt"; }
    fail=0
    expect() {
      if [ "$(count "$1" "$2")" = "$3" ]; then echo "ok: $3 live '$1' from $2"
      else echo "FAIL: '$1' from $2: $(count "$1" "$2"), expected $3"; fail=1; fi
    }
    [ "$reply" = "COUNT 39" ] || { echo "FAIL: server replied '$reply'"; fail=1; }
    expect "struct entry" "kvstore.c:81 set" 39
    expect "char []" "kvstore.c:84 set" 39
    expect "char []" "kvstore.c:90 set" 39
    expect "struct entry *[]" "kvstore.c:204 main" 1
    exit $fail
    ;;
  *)
    echo "run.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
