#!/usr/bin/env bash
# Run-time cost of mcr on real servers: a plain clang-16 build against an mcr-clang
# build of the same source, interleaved in the same run, several repeats.
#
#   benchmarks/overhead/run.sh [--servers redis,lighttpd,memcached] [--repeats N]
#                              [--build DIR] [--results FILE]
#
# For each repeat the two builds run one after the other (order alternating), the
# server pinned to CPU 1 and the load generator to CPU 0:
#   redis      redis-benchmark -n 100000 -c 50 -t set,get (unpipelined), then
#              -P 16 -n 1000000 -r 1000000 -d 32 (fills ~1M keys: the peak RSS figure)
#   lighttpd   wrk -t1 -c32 -d5s on a 4 KiB static file
#   memcached  memcaslap -T 1 -c 32 -t 5s, 4 worker threads
# Reported: median throughput of each build, ratio mcr/plain of the medians and the
# median of per-repeat ratios, and the same for peak RSS (VmHWM). Raw figures go to
# FILE (default: $MCR_CACHE/bench/overhead-<date>.tsv).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MCR_CACHE:-$HOME/.cache/mcr}
servers=redis,lighttpd,memcached
repeats=3
build=$top/build
results=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --build) build=$2; shift ;;
    --results) results=$2; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "overhead: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mcc=$build/bin/mcr-clang
[ -x "$mcc" ] || { echo "overhead: $mcc not found: build mcr first (cmake + ninja)" >&2; exit 2; }
mkdir -p "$cache/bench"
results=${results:-$cache/bench/overhead-$(date +%Y%m%d-%H%M%S).tsv}
printf 'server\tworkload\trepeat\tbuild\tthroughput\tpeak_rss_kb\n' > "$results"
work=$(mktemp -d /tmp/mcr-overhead.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

declare -A version=([redis]=7.0.15 [lighttpd]=1.4.69 [memcached]=1.6.18)
declare -A bin

build_one() { # NAME VARIANT
  local name=$1 variant=$2 cc out
  out=$cache/bench/$name-${version[$name]}-$variant
  if [ "$variant" = plain ]; then cc=clang-16; else
    cc=$mcc
    [ -f "$top/configs/$name.wrappers" ] && cc="$mcc --mcr-wrappers=$top/configs/$name.wrappers"
  fi
  # Reuse a build made with the same compiler command; an instrumented one only if
  # it is newer than the runtime it links.
  if [ -f "$out/bench-cc" ] && [ "$(cat "$out/bench-cc")" = "$cc" ] &&
     { [ "$variant" = plain ] || [ "$out/bench-cc" -nt "$build/lib/mcr/libmcr_rt.a" ]; }; then
    bin[$name-$variant]=$(sed -n 's/^binary=//p' "$out/build-info")
  else
    echo "overhead: building $name ${version[$name]} ($variant)" >&2
    rm -rf "$out"
    bin[$name-$variant]=$("$top/scripts/build-server.sh" "$name" "${version[$name]}" --cc "$cc" --out "$out" | tail -1)
    echo "$cc" > "$out/bench-cc"
  fi
}

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "overhead: server did not listen on port $1" >&2; return 1
}
peak_rss() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$results"; }

run_redis() { # VARIANT REPEAT
  local port=7601
  taskset -c 1 "${bin[redis-$1]}" --port $port --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
  pid=$!
  wait_port $port
  local out
  out=$(taskset -c 0 redis-benchmark -p $port -n 100000 -c 50 -t set,get -q 2>/dev/null | tr '\r' '\n')
  record redis set "$2" "$1" "$(echo "$out" | awk '/^SET: [0-9.]+ requests per second/ {print $2; exit}')" ""
  record redis get "$2" "$1" "$(echo "$out" | awk '/^GET: [0-9.]+ requests per second/ {print $2; exit}')" ""
  out=$(taskset -c 0 redis-benchmark -p $port -n 1000000 -r 1000000 -d 32 -c 50 -P 16 -t set,get -q 2>/dev/null | tr '\r' '\n')
  record redis set-P16 "$2" "$1" "$(echo "$out" | awk '/^SET: [0-9.]+ requests per second/ {print $2; exit}')" ""
  record redis get-P16 "$2" "$1" "$(echo "$out" | awk '/^GET: [0-9.]+ requests per second/ {print $2; exit}')" "$(peak_rss $pid)"
  stop
}

run_lighttpd() {
  local port=7602 dir=$work/www
  mkdir -p "$dir"
  head -c 4096 /dev/urandom | base64 -w 76 | head -c 4096 > "$dir/file.txt"
  local bindir
  bindir=$(dirname "${bin[lighttpd-$1]}")
  cat > "$work/lighttpd.conf" <<EOF
server.document-root = "$dir"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$work/lighttpd.err"
EOF
  taskset -c 1 "${bin[lighttpd-$1]}" -D -f "$work/lighttpd.conf" -m "$bindir" >/dev/null 2>&1 &
  pid=$!
  wait_port $port
  local rps
  rps=$(taskset -c 0 wrk -t1 -c32 -d5s "http://127.0.0.1:$port/file.txt" 2>/dev/null | awk '/^Requests\/sec/ {print $2}')
  record lighttpd wrk "$2" "$1" "$rps" "$(peak_rss $pid)"
  stop
}

run_memcached() {
  local port=7603
  taskset -c 1 "${bin[memcached-$1]}" -l 127.0.0.1 -p $port -U 0 -t 4 -m 1024 >/dev/null 2>&1 &
  pid=$!
  wait_port $port
  local tps
  tps=$(taskset -c 0 memcaslap -s 127.0.0.1:$port -T 1 -c 32 -t 5s 2>/dev/null | awk '/TPS:/ {for (i = 1; i <= NF; i++) if ($i == "TPS:") v = $(i+1)} END {print v}')
  record memcached memcaslap "$2" "$1" "$tps" "$(peak_rss $pid)"
  stop
}

IFS=, read -r -a list <<< "$servers"
for s in "${list[@]}"; do
  case "$s" in redis|lighttpd|memcached) ;; *) echo "overhead: unknown server '$s'" >&2; exit 2 ;; esac
  build_one "$s" plain
  build_one "$s" mcr
done
for r in $(seq 1 "$repeats"); do
  # Alternate which build goes first, so drift over the run hits both alike.
  if [ $((r % 2)) -eq 1 ]; then order="plain mcr"; else order="mcr plain"; fi
  for s in "${list[@]}"; do
    for v in $order; do
      echo "overhead: $s $v repeat $r/$repeats" >&2
      "run_$s" "$v" "$r"
    done
  done
done

python3 "$top/benchmarks/overhead/summarize.py" "$results"
echo "raw figures: $results"
