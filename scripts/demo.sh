#!/usr/bin/env bash
# mcr's demo on a fresh machine: installs what is missing, builds mcr, builds the
# example server (tests/servers/kvstore.c) with CC=mcr-clang, finds its quiescent
# points with a profiling run, builds version 1 and version 2 (a code change),
# starts version 1, fills it, keeps a client connected with a half-sent request,
# and live-updates it to version 2: the keys, the connection and the half-sent
# request survive, the pid file names the new process.
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

step "4. build versions 1 and 2 of the example server with their quiescent points"
echo "\$ mcr-clang --mcr-quiescence=kvstore.qp -O2 -o v1/kvstore tests/servers/kvstore.c"
echo "\$ mcr-clang --mcr-quiescence=kvstore.qp -O2 -DKV_VERSION=2 -o v2/kvstore tests/servers/kvstore.c"
mkdir -p "$work/v1" "$work/v2"
for v in 1 2; do
  "$build/bin/mcr-clang" --mcr-quiescence="$work/kvstore.qp" -O2 -Wall -DKV_VERSION=$v \
    -o "$work/v$v/kvstore" "$top/tests/servers/kvstore.c"
done
readelf -S "$work/v1/kvstore" | grep -E 'mcr_(types|sites|qps)' | awk '{print "section", $2}'

step "5. run version 1, fill it over a socket, keep the client connected"
"$work/v1/kvstore" -p "$port" -f "$work/kvstore.pid" 2>"$work/server.log" &
pid=$!
fill "$port"
printf 'VERSION\n' >&3
read -r -t 5 line <&3 && echo "kvstore> $line"
echo "\$ mcr-ctl status $pid"
"$build/bin/mcr-ctl" status "$pid"

step "6. live-update it to version 2 while the client is connected"
printf 'SET half-sent hel' >&3
echo "(the client sent 'SET half-sent hel' without its end of line: the server has read it"
echo " into its connection buffer and waits for the rest)"
echo "\$ mcr-ctl update $pid v2/kvstore"
"$build/bin/mcr-ctl" update "$pid" "$work/v2/kvstore"
old=$pid
pid=$(cat "$work/kvstore.pid")
kill -0 "$old" 2>/dev/null && { echo "the old process still runs"; exit 1; }
echo "old process $old has exited; the pid file names the new process $pid"

step "7. the same connection, after the update"
printf 'lo\n' >&3
read -r -t 5 line <&3 && echo "kvstore> $line   (the rest of the half-sent request)"
for c in "GET half-sent" "GET key3" COUNT STATS VERSION; do
  printf '%s\n' "$c" >&3
  read -r -t 5 line <&3 && echo "kvstore> $line   ($c)"
done
exec 3<&-
echo "\$ mcr-ctl status $pid"
"$build/bin/mcr-ctl" status "$pid"
kill "$pid"; pid=""

cat <<EOT

Done. Version 1 of the server was replaced by version 2 without a restart: the new
process replayed the old one's startup (same listening socket, no EADDRINUSE), took
over its heap, its globals and its connections, and answered on the same connection,
finishing a request that was half-read when the update started. See docs/update.md.
EOT
