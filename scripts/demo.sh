#!/usr/bin/env bash
# mcr's demo on a fresh machine: installs what is missing, builds mcr, builds the
# example server (tests/servers/kvstore.c) with CC=mcr-clang, shows the type
# tags mcr-clang gave its allocation sites and globals, then runs the server,
# fills it over a socket, and shows the same answers an uninstrumented build gives.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${MCR_BUILD:-$top/build}
work=$(mktemp -d /tmp/mcr-demo.XXXXXX)
port=${MCR_DEMO_PORT:-7411}
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "1. dependencies (Debian packages)"
"$top/scripts/setup.sh"
echo "ok"

step "2. build mcr"
t0=$(date +%s%N)
cmake -S "$top" -B "$build" -G Ninja >/dev/null
ninja -C "$build" >/dev/null
echo "built in $(( ($(date +%s%N) - t0) / 1000000 )) ms: $build/bin"

step "3. build the example server with CC=mcr-clang"
echo "\$ $build/bin/mcr-clang -O2 -o kvstore tests/servers/kvstore.c"
"$build/bin/mcr-clang" -O2 -Wall -o "$work/kvstore" "$top/tests/servers/kvstore.c"
readelf -S "$work/kvstore" | grep -E 'mcr_(types|sites)' | awk '{print "section", $2}'

step "4. the type tags: every allocation site and global, with its type"
echo "\$ mcr-ctl types kvstore"
"$build/bin/mcr-ctl" types "$work/kvstore"

step "5. run it and fill it over a socket"
MCR_HEAP_CENSUS="$work/census.txt" "$work/kvstore" -p "$port" 2>"$work/server.log" &
pid=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
exec 3<>"/dev/tcp/127.0.0.1/$port"
for i in $(seq 1 5); do printf 'SET key%d value-%d\n' "$i" "$i" >&3; done
printf 'GET key3\nCOUNT\nSTATS\n' >&3
for _ in $(seq 8); do read -r -t 5 line <&3 && echo "kvstore> $line"; done

step "6. ask the running server about itself (its control socket)"
echo "\$ mcr-ctl status $pid"
"$build/bin/mcr-ctl" status "$pid"
exec 3<&-
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

step "7. its live heap when it stopped, by allocation site and type (MCR_HEAP_CENSUS)"
cat "$work/census.txt"

cat <<EOT

Done. The server ran on mcr's runtime: every heap object it allocated carries the
type tag of its allocation site (step 7 counted them from the tags), which is what a
live update will use to move its state to a new version. (Live update itself arrives with the coordinator: see
README.md, "Status".)
EOT
