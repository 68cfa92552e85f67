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

fill() { # fill PORT: connect, store five keys, read the replies
  local p=$1 i line
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    sleep 0.1
  done
  exec 3<>"/dev/tcp/127.0.0.1/$p"
  for i in $(seq 1 5); do printf 'SET key%d value-%d\n' "$i" "$i" >&3; done
  printf 'GET key3\nCOUNT\nSTATS\n' >&3
  for _ in $(seq 8); do read -r -t 5 line <&3 && echo "kvstore> $line"; done
}

step "3. find its quiescent points: a profiling build under a workload"
mkdir -p "$work/prof"
echo "\$ mcr-clang --mcr-profile -O2 -o prof/kvstore tests/servers/kvstore.c"
"$build/bin/mcr-clang" --mcr-profile -O2 -Wall -o "$work/prof/kvstore" "$top/tests/servers/kvstore.c"
echo "\$ mcr-profile -o kvstore.qp --duration 3 -- prof/kvstore -p $port   (and a client filling it)"
"$build/bin/mcr-profile" -o "$work/kvstore.qp" --duration 3 -- "$work/prof/kvstore" -p "$port" \
  >"$work/profile.log" 2>&1 &
prof=$!
fill "$port" >/dev/null
exec 3<&-
wait "$prof" || { cat "$work/profile.log"; exit 1; }
sed -n '/^mcr-profile: /,$p' "$work/profile.log"
echo "--- kvstore.qp (without comments):"
grep -v '^#' "$work/kvstore.qp" | grep -v '^$'

step "4. build the example server with CC=mcr-clang and its quiescent points"
echo "\$ mcr-clang --mcr-quiescence=kvstore.qp -O2 -o kvstore tests/servers/kvstore.c"
"$build/bin/mcr-clang" --mcr-quiescence="$work/kvstore.qp" -O2 -Wall -o "$work/kvstore" \
  "$top/tests/servers/kvstore.c"
readelf -S "$work/kvstore" | grep -E 'mcr_(types|sites|qps)' | awk '{print "section", $2}'
echo "\$ mcr-ctl types kvstore"
"$build/bin/mcr-ctl" types "$work/kvstore"

step "5. run it, fill it over a socket, keep the client connected"
MCR_HEAP_CENSUS="$work/census.txt" "$work/kvstore" -p "$port" 2>"$work/server.log" &
pid=$!
fill "$port"

step "6. ask the running server about itself (its control socket)"
echo "\$ mcr-ctl status $pid"
"$build/bin/mcr-ctl" status "$pid"

step "7. quiesce it for one second while the client sends a request"
echo "\$ mcr-ctl quiesce $pid --hold 1"
"$build/bin/mcr-ctl" quiesce "$pid" --hold 1 &
q=$!
sleep 0.3
t0=$(date +%s%N)
printf 'GET key5\n' >&3
read -r -t 5 line <&3
echo "kvstore> $line   (sent during the hold; answered $(( ($(date +%s%N) - t0) / 1000000 )) ms later, after the resume)"
wait "$q"
printf 'COUNT\n' >&3
read -r -t 5 line <&3 && echo "kvstore> $line   (same connection, after the quiesce)"
exec 3<&-
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

step "8. its live heap when it stopped, by allocation site and type (MCR_HEAP_CENSUS)"
cat "$work/census.txt"

cat <<EOT

Done. The server ran on mcr's runtime: every heap object it allocated carries the
type tag of its allocation site (step 8 counted them from the tags), and its thread
parks at the quiescent point mcr-profile found (step 7), which is where a live update
will move its state to a new version. (Live update itself arrives with the
coordinator: see README.md, "Status".)
EOT
