#!/usr/bin/env bash
# What the quiescent-point hooks cost, from CPU profiles: the mcr build (no
# quiescence config) against the production build (with it) of the same server,
# under the same load, alternately, several repeats.
#
#   benchmarks/quiescence/hook-profile.sh [--servers memcached,redis,lighttpd]
#       [--repeats N] [--seconds S] [--build DIR] [--out DIR]
#
# Each run: the server pinned to CPU 1, the load generator on CPU 0
#   memcached  -t 4, memcaslap -T 1 -c 32 (get/set 9:1)
#   redis      redis-benchmark -c 50 -t set,get, unpipelined (one epoll_wait per
#              few requests: the most hook calls per request)
#   lighttpd   wrk -t1 -c32 on a 4 KiB static file
# and after 1 s of load `perf record -e cpu-clock -F 4000 -p PID -- sleep S`
# (default 5). The hooks' share of the server's CPU samples is summed over the
# symbols only they run: the blocking-function wrappers of the executable that
# are quiescent points (epoll_wait, ...), mcr_quiesce_online/offline/park,
# __mcr_qp_enter/exit, mcr_now_ns, liburcu-bp, and the vDSO (a wrapper at a
# point with a timeout reads the clock; the server's own clock reads are there
# too, in both builds: clock_gettime only). In the mcr build the same
# symbols cost what a wrapper costs outside a quiescent point (a TLS load and a
# branch); the difference between the builds is the hooks' cost.
#
# Builds: mcr as benchmarks/overhead/run.sh makes it (shared cache,
# $MCR_CACHE/bench/NAME-VERSION-mcr), production as
# benchmarks/quiescence/prod-build.sh. Output in DIR (default
# $MCR_CACHE/bench/hooks-<date>): hooks.tsv, summary.md, the perf reports.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/benchmarks/quiescence
cache=${MCR_CACHE:-$HOME/.cache/mcr}
servers=memcached,redis,lighttpd
repeats=5
seconds=5
build=$top/build
out=""
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hook-profile: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v perf >/dev/null || { echo "hook-profile: perf not found (linux-perf)" >&2; exit 2; }
mcc=$build/bin/mcr-clang
[ -x "$mcc" ] || { echo "hook-profile: $mcc not found: build mcr first" >&2; exit 2; }
out=${out:-$cache/bench/hooks-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tsv=$out/hooks.tsv
printf 'server\tvariant\trepeat\tdso\tsymbol\tpct\n' > "$tsv"
work=$(mktemp -d /tmp/mcr-hook-profile.XXXXXX)
pid="" lpid=""
cleanup() {
  [ -n "$lpid" ] && kill "$lpid" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

declare -A version=([redis]=7.0.15 [lighttpd]=1.4.69 [memcached]=1.6.18)
declare -A bin
# The mcr build, as benchmarks/overhead/run.sh makes and caches it.
build_mcr() {
  local name=$1 out=$cache/bench/$1-${version[$1]}-mcr wrappers=""
  [ -f "$top/configs/$name.wrappers" ] && wrappers=$top/configs/$name.wrappers
  if [ -f "$out/bench-cc" ] && [ "$(cat "$out/bench-cc")" = "$mcc $wrappers" ] &&
     [ "$out/bench-cc" -nt "$build/lib/mcr/libmcr_rt.a" ]; then
    bin[$name-mcr]=$(sed -n 's/^binary=//p' "$out/build-info")
  else
    echo "hook-profile: building $name ${version[$name]} (mcr)" >&2
    rm -rf "$out"
    bin[$name-mcr]=$(MCR_WRAPPERS=$wrappers "$top/scripts/build-server.sh" "$name" "${version[$name]}" --cc "$mcc" --out "$out" | tail -1)
    echo "$mcc $wrappers" > "$out/bench-cc"
  fi
}

wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "hook-profile: server did not listen on port $1" >&2; return 1
}

run() { # SERVER VARIANT REPEAT
  local s=$1 v=$2 r=$3 port b=${bin[$1-$2]} dur=$((seconds + 3))
  case "$s" in
    memcached)
      port=7760
      taskset -c 1 "$b" -l 127.0.0.1 -p $port -U 0 -t 4 -m 1024 -u "$(id -un)" >/dev/null 2>&1 &
      pid=$!; wait_port $port
      timeout -k 5 $((dur + 30)) taskset -c 0 memcaslap -s 127.0.0.1:$port -T 1 -c 32 -t ${dur}s >/dev/null 2>&1 &
      lpid=$! ;;
    redis)
      port=7761
      taskset -c 1 "$b" --port $port --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        --dir "$work" >/dev/null 2>&1 &
      pid=$!; wait_port $port
      timeout -k 5 "$dur" taskset -c 0 redis-benchmark -p $port -c 50 -n 100000000 -t set,get -q \
        >/dev/null 2>&1 &
      lpid=$! ;;
    lighttpd)
      port=7762
      mkdir -p "$work/www"
      head -c 4096 /dev/zero | tr '\0' 'x' > "$work/www/file.txt"
      printf 'server.document-root = "%s"\nserver.bind = "127.0.0.1"\nserver.port = %s\nserver.errorlog = "%s"\n' \
        "$work/www" $port "$work/lighttpd.err" > "$work/lighttpd.conf"
      taskset -c 1 "$b" -D -f "$work/lighttpd.conf" -m "$(dirname "$b")" >/dev/null 2>&1 &
      pid=$!; wait_port $port
      timeout -k 5 $((dur + 30)) taskset -c 0 wrk -t1 -c32 -d${dur}s "http://127.0.0.1:$port/file.txt" \
        >/dev/null 2>&1 &
      lpid=$! ;;
  esac
  sleep 1
  local data=$work/perf.data rep=$out/perf-$s-$v-$r.txt
  perf record -q -e cpu-clock -F 4000 -o "$data" -p "$pid" -- sleep "$seconds" >/dev/null 2>&1
  perf report -i "$data" --no-children --sort dso,sym --stdio -q 2>/dev/null > "$rep" || true
  kill "$lpid" 2>/dev/null || true; wait "$lpid" 2>/dev/null || true; lpid=""
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  # "  0.22%  memcached  [.] epoll_wait"
  local exe; exe=$(basename "$b")
  awk -v s="$s" -v v="$v" -v r="$r" -v exe="$exe" '
    BEGIN { split("epoll_wait epoll_pwait poll ppoll select pselect accept accept4 " \
                  "mcr_quiesce_online mcr_quiesce_offline mcr_quiesce_park __mcr_qp_enter " \
                  "__mcr_qp_exit mcr_now_ns", l, " "); for (i in l) hook[l[i]] = 1 }
    $1 ~ /%$/ { p = $1; sub(/%$/, "", p); sym = $4
      if (($2 == exe && (sym in hook)) || $2 ~ /^liburcu-bp/ || ($2 == "[vdso]" && sym ~ /clock_gettime/)) printf "%s\t%s\t%s\t%s\t%s\t%s\n", s, v, r, $2, sym, p
      total += p }
    END { printf "%s\t%s\t%s\t(all)\t(all)\t%.2f\n", s, v, r, total }' "$rep" >> "$tsv"
}

IFS=, read -r -a list <<< "$servers"
for s in "${list[@]}"; do
  case "$s" in redis|lighttpd|memcached) ;; *) echo "hook-profile: unknown server '$s'" >&2; exit 2 ;; esac
  build_mcr "$s"
  bin[$s-mcr-qp]=$("$here/prod-build.sh" "$s" "${version[$s]}" --build "$build")
done
{
  echo "command: benchmarks/quiescence/hook-profile.sh ${args[*]}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), repository at $(git -C "$top" rev-parse --short HEAD 2>/dev/null)"
  echo "mcr build: $build, from $("$here/build-source.sh" "$build")"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/meta.txt"
start=$SECONDS
for r in $(seq 1 "$repeats"); do
  if [ $((r % 2)) -eq 1 ]; then order=(mcr mcr-qp); else order=(mcr-qp mcr); fi
  for s in "${list[@]}"; do
    for v in "${order[@]}"; do
      echo "hook-profile: [$((SECONDS - start)) s] $s $v repeat $r/$repeats" >&2
      run "$s" "$v" "$r"
    done
  done
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/meta.txt"
python3 "$here/hooks.py" "$tsv" | tee "$out/summary.md"
echo "hook-profile: done in $((SECONDS - start)) s; perf reports and hooks.tsv in $out" >&2
