#!/usr/bin/env bash
# The pause clients see during a live update of redis 7.0.15 holding N keys,
# against its baselines (issue 4's goal: the mcr update's pause <= 2x the time to
# memcpy the live heap + 5 ms, and >= 10x shorter than CRIU dump+restore and
# than a restart with RDB reload, measured in the same run).
#
#   benchmarks/update/run.sh [--keys N] [--repeats R] [--build DIR] [--out DIR]
#       [--redis BINARY] [--new BINARY] [--methods memcpy,criu,restart,mcr,mcr-writes]
#       [--skip-criu] [--copies K] [--port P] [--images DIR] [--keep-images]
#
# redis: the mcr-clang build with redis's quiescence config (the .qp that
# benchmarks/quiescence/prod-build.sh makes; made here if missing), built by
# scripts/build-server.sh into $MCR_CACHE/bench/update/redis-7.0.15 and rebuilt
# when BUILD's runtime or pass is newer; --redis BINARY uses that one instead.
# It runs on 127.0.0.1:P (default: first free from 24460), no persistence
# except the RDB of the restart method, filled with N keys (default 1000000;
# 16-byte keys, 64-byte values, through redis-cli --pipe). Then R times
# (default 3), each repeat starting one method later than the previous:
#   memcpy   live heap size (mcr-ctl status --json if it reports heap bytes,
#            else /proc/PID/status VmRSS; the record says which) and the median
#            time of K (default 7) memcpys of that size into mapped memory
#            (memcpy-time.c; also into fresh memory, page faults included)
#   criu     criu dump -t PID --shell-job --tcp-established --skip-in-flight
#            (the task is killed), then criu restore --shell-job
#            --tcp-established -d: wall time of each (CRIU 4.1.1 from
#            scripts/build-criu.sh; needs root, and iptables). Images in
#            --images DIR, default a directory in /dev/shm (tmpfs: CRIU's best
#            case, no disk writes), removed after each restore unless --keep-images
#   restart  SAVE (not counted), SIGTERM, start again: time from the stop until
#            PING answers and DBSIZE == N (stop_ms, SIGTERM until reaped,
#            includes up to one cron tick in which redis still serves)
#   mcr      mcr-ctl update PID NEW --json (NEW: --new, default the same binary):
#            its reported pause; skipped while `mcr-ctl update --help` fails
#   mcr-writes  the same while a client rewrites random keys with their own values
#            as fast as it can (pipelined SETs): the heap pages written between the
#            pre-copy and the quiesce are copied in the pause
# Around criu, restart and mcr two probes (probe.py) PING every 1 ms, one on a
# persistent connection and one with a new connection per PING; the longest gap
# between two good replies is the pause a client sees. After each, DBSIZE == N
# and 2000 sampled GETs are checked.
#
# Output in DIR (default $MCR_CACHE/bench/update-<date>): raw.jsonl (one JSON
# object per measurement), summary.md (benchmarks/update/summarize.py),
# meta.txt, redis.log, probe-*.json.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/benchmarks/update
cache=${MCR_CACHE:-$HOME/.cache/mcr}
keys=1000000 repeats=3 build=$top/build out="" redis="" new="" copies=7 port=""
methods=memcpy,criu,restart,mcr,mcr-writes skip_criu=0 keep=() images=""
args=("$@")
die() { echo "update-bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    --redis) redis=$2; shift ;;
    --new) new=$2; shift ;;
    --methods) methods=$2; shift ;;
    --skip-criu) skip_criu=1 ;;
    --copies) copies=$2; shift ;;
    --port) port=$2; shift ;;
    --images) images=$2; shift ;;
    --keep-images) keep=(--keep-images) ;;
    -h|--help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for v in "$keys" "$repeats" "$copies"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "bad number '$v'"
done
if [ "$skip_criu" -eq 1 ]; then
  methods=$(tr ',' '\n' <<<"$methods" | grep -vx criu | paste -sd, -)
fi
build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory '$build'"
ctl=$build/bin/mcr-ctl mcc=$build/bin/mcr-clang
[ -x "$ctl" ] && [ -x "$mcc" ] || die "$ctl or $mcc missing: build mcr first (cmake + ninja)"
command -v redis-cli >/dev/null || die "redis-cli is needed (redis-tools; scripts/setup.sh)"
command -v python3 >/dev/null || die "python3 is needed"

# --- what is run ------------------------------------------------------------------
if [ -z "$redis" ]; then
  qp=$cache/bench/qp/redis-7.0.15/redis.qp
  if [ ! -f "$qp" ]; then
    echo "update-bench: no quiescence config $qp yet: profiling redis (prod-build.sh)" >&2
    "$top/benchmarks/quiescence/prod-build.sh" redis 7.0.15 --build "$build" >/dev/null
  fi
  rdir=$cache/bench/update/redis-7.0.15
  info=$rdir/build-info
  if [ -f "$info" ] && [ "$info" -nt "$build/lib/mcr/libmcr_rt.a" ] &&
     [ "$info" -nt "$build/lib/mcr/MCRPass.so" ] && [ "$info" -nt "$qp" ] &&
     [ "$(sed -n 's/^cc=//p' "$info")" = "$mcc" ] &&
     [ -x "$(sed -n 's/^binary=//p' "$info")" ]; then
    redis=$(sed -n 's/^binary=//p' "$info")
    echo "update-bench: reusing $redis" >&2
  else
    echo "update-bench: building redis 7.0.15 with $mcc and $qp into $rdir" >&2
    redis=$(MCR_QUIESCENCE=$qp "$top/scripts/build-server.sh" redis 7.0.15 --cc "$mcc" --out "$rdir")
  fi
fi
[ -x "$redis" ] || die "$redis is not executable"
criu=""
if tr ',' '\n' <<<"$methods" | grep -qx criu; then
  [ "$(id -u)" -eq 0 ] || die "criu needs root (uid $(id -u)); run as root or pass --skip-criu"
  criu=$("$top/scripts/build-criu.sh")
fi
memcpy=$cache/bench/update/memcpy-time
mkdir -p "$(dirname "$memcpy")"
if [ ! -x "$memcpy" ] || [ "$here/memcpy-time.c" -nt "$memcpy" ]; then
  cc=$(command -v clang-16 || command -v cc)
  "$cc" -O2 -Wall -o "$memcpy" "$here/memcpy-time.c" || die "compiling memcpy-time.c failed"
fi

free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
port=${port:-$(free_port 24460)}
own_images=0
if [ -n "$criu" ] && [ -z "$images" ]; then
  if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
    images=$(mktemp -d /dev/shm/mcr-update-bench.XXXXXX)/criu-img
    own_images=1
  fi
fi
cleanup() { [ "$own_images" -eq 0 ] || rm -rf "$(dirname "$images")"; }
trap cleanup EXIT
out=${out:-$cache/bench/update-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
{
  echo "command: benchmarks/update/run.sh ${args[*]}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "repository: $(git -C "$top" rev-parse --short HEAD 2>/dev/null) $(git -C "$top" log -1 --format=%s 2>/dev/null | cut -c1-100)"
  echo "mcr build: $build"
  echo "redis: $redis"
  echo "criu: ${criu:-skipped}${criu:+ ($("$criu" --version | head -n1)), images in ${images:-$out/criu-img}}"
  echo "machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "keys $keys, repeats $repeats, methods $methods, memcpy copies $copies, port $port"
} >"$out/meta.txt"
sed 's/^/update-bench: /' "$out/meta.txt" >&2

rc=0
python3 "$here/bench.py" --redis "$redis" ${new:+--new "$new"} --ctl "$ctl" \
  ${criu:+--criu "$criu"} --memcpy "$memcpy" --port "$port" --keys "$keys" \
  --repeats "$repeats" --copies "$copies" --methods "$methods" --work "$out" \
  --out "$out" ${images:+--images "$images"} "${keep[@]+"${keep[@]}"}" || rc=$?
python3 "$here/summarize.py" "$out" | tee "$out/summary.md"
[ "$rc" -eq 0 ] || echo "update-bench: some measurements failed (see $out/raw.jsonl)" >&2
exit "$rc"
