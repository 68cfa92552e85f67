#!/usr/bin/env bash
# Run-time cost of mcr on real servers: a plain clang-16 build against an mcr-clang
# build of the same source, interleaved in the same run, several repeats.
#
#   benchmarks/overhead/run.sh [--servers redis,lighttpd,memcached] [--repeats N]
#                              [--variants plain,mcr[,mcr-qp]] [--build DIR] [--results FILE]
#
# Variants: plain (clang-16), mcr (mcr-clang with configs/NAME.wrappers, no
# quiescence config), mcr-qp (the production build: the same plus the server's
# quiescence config, made and cached by benchmarks/quiescence/prod-build.sh with
# scripts/profile-server.sh; its quiescent-point hooks are the difference to mcr).
# For each repeat the builds run one after the other (two variants: order
# alternating; three: every order once in 6 repeats), the server pinned to CPU 1
# and the load generator to CPU 0:
#   redis      redis-benchmark -n 100000 -c 50 -t set,get (unpipelined), then
#              -P 16 -n 1000000 -r 1000000 -d 32 (fills ~1M keys: the peak RSS figure)
#   lighttpd   wrk -t1 -c32 -d5s on a 4 KiB static file
#   memcached  memcaslap -T 1 -c 32 -t 5s, 4 worker threads
# Reported: median throughput of each build, ratio to plain of the medians and the
# median of per-repeat ratios (with mcr-qp also mcr-qp/mcr), and the same for the
# server's CPU time per request (user+system, /proc/PID/stat: less sensitive than
# throughput to a busy machine) and for peak RSS (VmHWM). Every load generator
# call is bounded by a timeout. Raw figures go to FILE (default:
# $MCR_CACHE/bench/overhead-<date>.tsv).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MCR_CACHE:-$HOME/.cache/mcr}
servers=redis,lighttpd,memcached
repeats=3
variants=plain,mcr
build=$top/build
results=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --variants) variants=$2; shift ;;
    --build) build=$2; shift ;;
    --results) results=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "overhead: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
mcc=$build/bin/mcr-clang
[ -x "$mcc" ] || { echo "overhead: $mcc not found: build mcr first (cmake + ninja)" >&2; exit 2; }
mkdir -p "$cache/bench"
results=${results:-$cache/bench/overhead-$(date +%Y%m%d-%H%M%S).tsv}
printf 'server\tworkload\trepeat\tbuild\tthroughput\tpeak_rss_kb\tcpu_us_per_req\n' > "$results"
work=$(mktemp -d /tmp/mcr-overhead.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

declare -A version=([redis]=7.0.15 [lighttpd]=1.4.69 [memcached]=1.6.18)
declare -A bin

build_one() { # NAME VARIANT
  local name=$1 variant=$2 cc out
  if [ "$variant" = mcr-qp ]; then
    bin[$name-$variant]=$("$top/benchmarks/quiescence/prod-build.sh" "$name" "${version[$name]}" --build "$build")
    return
  fi
  out=$cache/bench/$name-${version[$name]}-$variant
  local wrappers=""
  if [ "$variant" = plain ]; then cc=clang-16; else
    cc=$mcc
    [ -f "$top/configs/$name.wrappers" ] && wrappers=$top/configs/$name.wrappers
  fi
  # Reuse a build made with the same compiler command; an instrumented one only if
  # it is newer than the runtime it links.
  if [ -f "$out/bench-cc" ] && [ "$(cat "$out/bench-cc")" = "$cc $wrappers" ] &&
     { [ "$variant" = plain ] || [ "$out/bench-cc" -nt "$build/lib/mcr/libmcr_rt.a" ]; }; then
    bin[$name-$variant]=$(sed -n 's/^binary=//p' "$out/build-info")
  else
    echo "overhead: building $name ${version[$name]} ($variant)" >&2
    rm -rf "$out"
    bin[$name-$variant]=$(MCR_WRAPPERS=$wrappers "$top/scripts/build-server.sh" "$name" "${version[$name]}" --cc "$cc" --out "$out" | tail -1)
    echo "$cc $wrappers" > "$out/bench-cc"
  fi
}

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "overhead: server did not listen on port $1" >&2; return 1
}
peak_rss() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
per_req() { awk -v t="$1" -v r="$2" -v hz="$tck" 'BEGIN { if (r > 0) printf "%.3f", t / hz * 1e6 / r }'; }
load() { timeout 120 taskset -c 0 "$@" 2>/dev/null || true; }
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$results"; }

run_redis() { # VARIANT REPEAT
  local port=7601
  taskset -c 1 "${bin[redis-$1]}" --port $port --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
  pid=$!
  wait_port $port
  local t n opts c0 out rps rss
  for t in set get set-P16 get-P16; do
    case $t in
      *-P16) n=1000000; opts=(-n $n -r 1000000 -d 32 -c 50 -P 16) ;;
      *) n=100000; opts=(-n $n -c 50) ;;
    esac
    c0=$(cpu_ticks $pid)
    out=$(load redis-benchmark -p $port "${opts[@]}" -t "${t%-P16}" -q | tr '\r' '\n')
    rps=$(echo "$out" | awk '/^[A-Z]+: [0-9.]+ requests per second/ {print $2; exit}')
    rss=""
    [ $t = get-P16 ] && rss=$(peak_rss $pid)
    record redis $t "$2" "$1" "$rps" "$rss" "$(per_req $(( $(cpu_ticks $pid) - c0 )) $n)"
  done
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
  local c0 out rps reqs
  c0=$(cpu_ticks $pid)
  out=$(load wrk -t1 -c32 -d5s "http://127.0.0.1:$port/file.txt")
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  record lighttpd wrk "$2" "$1" "$rps" "$(peak_rss $pid)" "$(per_req $(( $(cpu_ticks $pid) - c0 )) "${reqs:-0}")"
  stop
}

run_memcached() {
  local port=7603
  taskset -c 1 "${bin[memcached-$1]}" -l 127.0.0.1 -p $port -U 0 -t 4 -m 1024 -u "$(id -un)" >/dev/null 2>&1 &
  pid=$!
  wait_port $port
  local c0 out tps ops
  c0=$(cpu_ticks $pid)
  out=$(load memcaslap -s 127.0.0.1:$port -T 1 -c 32 -t 5s)
  tps=$(echo "$out" | awk '/TPS:/ {for (i = 1; i <= NF; i++) if ($i == "TPS:") v = $(i+1)} END {print v}')
  ops=$(echo "$out" | awk '/TPS:/ {for (i = 1; i <= NF; i++) if ($i == "Ops:") v = $(i+1)} END {print v}')
  record memcached memcaslap "$2" "$1" "$tps" "$(peak_rss $pid)" "$(per_req $(( $(cpu_ticks $pid) - c0 )) "${ops:-0}")"
  stop
}

IFS=, read -r -a list <<< "$servers"
IFS=, read -r -a vlist <<< "$variants"
for v in "${vlist[@]}"; do
  case "$v" in plain|mcr|mcr-qp) ;; *) echo "overhead: unknown variant '$v' (plain, mcr, mcr-qp)" >&2; exit 2 ;; esac
done
for s in "${list[@]}"; do
  case "$s" in redis|lighttpd|memcached) ;; *) echo "overhead: unknown server '$s'" >&2; exit 2 ;; esac
  for v in "${vlist[@]}"; do build_one "$s" "$v"; done
done
nv=${#vlist[@]}
for r in $(seq 1 "$repeats"); do
  # Vary which build goes first, so drift over the run hits all alike: with two,
  # alternate; with more, rotate every second repeat and reverse every other one
  # (three variants: each of the 6 orders once in 6 repeats).
  if [ "$nv" -le 2 ]; then rot=0; else rot=$(( (r - 1) / 2 % nv )); fi
  order=()
  for ((i = 0; i < nv; i++)); do order+=("${vlist[$(( (i + rot) % nv ))]}"); done
  if [ $((r % 2)) -eq 0 ]; then
    rev=(); for ((i = nv - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done; order=("${rev[@]}")
  fi
  for s in "${list[@]}"; do
    for v in "${order[@]}"; do
      echo "overhead: $s $v repeat $r/$repeats" >&2
      "run_$s" "$v" "$r"
    done
  done
done

python3 "$top/benchmarks/overhead/summarize.py" "$results"
echo "raw figures: $results"
