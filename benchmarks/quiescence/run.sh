#!/usr/bin/env bash
# Time to quiescence against thread count, under load and idle.
#
#   benchmarks/quiescence/run.sh [--servers memcached,redis] [--threads 1,2,4,8,16,32,64]
#       [--quiesces K] [--repeats R] [--modes load,light,idle] [--spacing MS] [--hold SEC]
#       [--connections C] [--light-connections L] [--build DIR] [--out DIR] [--prod NAME=BINARY]... [--no-pin]
#       [--smoke]
#
# Production builds (made with the server's quiescence config) of memcached 1.6.18
# and redis 7.0.15: from --prod, else made by scripts/profile-server.sh and cached
# (benchmarks/quiescence/prod-build.sh). For each repeat (whole sweep R times,
# default 3), each server, each thread setting and each mode:
#   memcached  -t N for N in --threads (worker threads; the process also has its
#              main thread and 6 maintenance threads: logger, LRU maintainer and
#              crawler, slab rebalancer, hash table, idle connections)
#   redis      its fixed threads (event loop + 3 bio threads)
#   load       a closed-loop load generator with C connections (default 32):
#              memcaslap -T 1 (get/set 9:1) or redis-benchmark (set), bounded by a
#              timeout, started 1 s before the first quiesce; the server
#              is saturated (it never idles: the worst case)
#   light      the same client with L connections (default 4): the server
#              idles between events (memcaslap's --tps does not limit its
#              rate, and redis-benchmark has none)
#   idle       no client
# the server is started (pinned to CPU 1; the load generator and mcr-ctl to
# CPU 0, unless --no-pin), quiesced W=3 times unrecorded, then K times (default
# 200) with `mcr-ctl quiesce PID --hold SEC --json` (default --hold 0), --spacing
# ms apart (default 5), then stopped. Reported per (server, N, mode): median,
# p90, p99, max of time_to_quiescence_us and grace_period_us and of the slowest
# thread's arrival, first per run, then the median of those over the runs
# (benchmarks/quiescence/summarize.py).
#
# --smoke: --threads 1,4 --quiesces 20 --repeats 1 (a quick manual check).
# Output in DIR (default $MCR_CACHE/bench/quiesce-<date>): raw.tsv (one row per
# quiesce), points.tsv (one row per server run: threads, load throughput during
# the quiesces, load average), summary.md, meta.txt.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/benchmarks/quiescence
cache=${MCR_CACHE:-$HOME/.cache/mcr}
servers=memcached,redis
threads=1,2,4,8,16,32,64
quiesces=200
repeats=3
modes=load,light,idle
lconns=4
spacing=5
hold=0
conns=32
build=$top/build
out=""
pin=1
declare -A prod=()
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --threads) threads=$2; shift ;;
    --quiesces) quiesces=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --modes) modes=$2; shift ;;
    --spacing) spacing=$2; shift ;;
    --hold) hold=$2; shift ;;
    --connections) conns=$2; shift ;;
    --light-connections) lconns=$2; shift ;;
    --build) build=$2; shift ;;
    --out) out=$2; shift ;;
    --prod) prod[${2%%=*}]=${2#*=}; shift ;;
    --no-pin) pin=0 ;;
    --smoke) threads=1,4; quiesces=20; repeats=1 ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quiesce-bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in "$quiesces" "$repeats" "$conns" "$lconns"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "quiesce-bench: bad number '$v'" >&2; exit 2; }
done
ctl=$build/bin/mcr-ctl
[ -x "$ctl" ] || { echo "quiesce-bench: $ctl not found: build mcr first (cmake + ninja)" >&2; exit 2; }
command -v memcaslap >/dev/null && command -v redis-benchmark >/dev/null ||
  { echo "quiesce-bench: memcaslap and redis-benchmark are needed (scripts/setup.sh)" >&2; exit 2; }
out=${out:-$cache/bench/quiesce-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
raw=$out/raw.tsv points=$out/points.tsv
printf 'server\tthreads_opt\tmode\trepeat\ti\tok\tttq_us\tgrace_us\tslowest_us\tslowest_name\tslowest_state\tnthreads\tntasks\theld_us\tresume_us\tctl_wall_us\tloadavg\n' > "$raw"
printf 'server\tthreads_opt\tmode\trepeat\tnthreads\tntasks\tload_ops_per_s\tload_alive\tloadavg_start\tloadavg_end\tseconds\tserver_cpus\tserver_waiting\n' > "$points"
work=$(mktemp -d /tmp/mcr-quiesce-bench.XXXXXX)
spid="" lpid=""
cleanup() {
  [ -n "$lpid" ] && kill "$lpid" 2>/dev/null
  [ -n "$spid" ] && kill "$spid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

declare -A version=([redis]=7.0.15 [memcached]=1.6.18)
IFS=, read -r -a slist <<< "$servers"
IFS=, read -r -a tlist <<< "$threads"
IFS=, read -r -a mlist <<< "$modes"
for s in "${slist[@]}"; do
  case "$s" in redis|memcached) ;; *) echo "quiesce-bench: unknown server '$s' (redis, memcached)" >&2; exit 2 ;; esac
  if [ -z "${prod[$s]:-}" ]; then
    prod[$s]=$("$here/prod-build.sh" "$s" "${version[$s]}" --build "$build")
  fi
  [ -x "${prod[$s]}" ] || { echo "quiesce-bench: ${prod[$s]} is not executable" >&2; exit 2; }
done
for m in "${mlist[@]}"; do
  case "$m" in load|light|idle) ;; *) echo "quiesce-bench: unknown mode '$m' (load, light, idle)" >&2; exit 2 ;; esac
done

if [ "$pin" -eq 1 ]; then scpu=(taskset -c 1); ccpu=(taskset -c 0); else scpu=(); ccpu=(); fi
{
  echo "command: benchmarks/quiescence/run.sh ${args[*]}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "repository: $(git -C "$top" rev-parse --short HEAD 2>/dev/null) $(git -C "$top" log -1 --format=%s 2>/dev/null)"
  echo "mcr build: $build, from $("$here/build-source.sh" "$build")"
  echo "machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "pinned: $([ "$pin" -eq 1 ] && echo 'server CPU 1, load generator and mcr-ctl CPU 0' || echo no)"
  for s in "${slist[@]}"; do echo "$s: ${prod[$s]}"; done
  echo "quiesces $quiesces, repeats $repeats, spacing ${spacing} ms, hold $hold s, connections $conns (light: $lconns)"
} > "$out/meta.txt"
sed 's/^/quiesce-bench: /' "$out/meta.txt" >&2

free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "quiesce-bench: server did not listen on port $1" >&2; return 1
}
# requests served so far
served() { # SERVER PORT
  case "$1" in
    memcached)
      { (exec 3<>"/dev/tcp/127.0.0.1/$2" && printf 'stats\r\nquit\r\n' >&3 && timeout 5 cat <&3) 2>/dev/null || true; } |
        tr -d '\r' | awk '$2 == "cmd_get" || $2 == "cmd_set" {n += $3} END {print n + 0}' ;;
    redis)
      { timeout 5 redis-cli -h 127.0.0.1 -p "$2" info stats 2>/dev/null || true; } |
        tr -d '\r' | awk -F: '$1 == "total_commands_processed" {print $2 + 0}' ;;
  esac
}
# The server's threads: time running and time runnable but waiting for a CPU
# (ns, from /proc/PID/task/*/schedstat; threads that ended in between are missed)
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{r += $1; w += $2} END {print r + 0, w + 0}'; }
stop_all() {
  if [ -n "$lpid" ]; then kill "$lpid" 2>/dev/null || true; wait "$lpid" 2>/dev/null || true; lpid=""; fi
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=""; fi
}

point() { # SERVER THREADS_OPT MODE REPEAT
  local s=$1 n=$2 mode=$3 r=$4 port la0 la1 t0 t1 c0 c1 alive=1 ops nthreads ntasks
  t0=$(date +%s.%N)
  la0=$(cut -d' ' -f1 /proc/loadavg)
  case "$s" in
    memcached)
      port=$(free_port 7720)
      local user=()
      [ "$(id -u)" -ne 0 ] || user=(-u root)
      "${scpu[@]}" "${prod[$s]}" -l 127.0.0.1 -p "$port" -U 0 -t "$n" -m 1024 -c 4096 \
        -o idle_timeout=600 "${user[@]}" >"$work/server.log" 2>&1 &
      spid=$! ;;
    redis)
      port=$(free_port 7740)
      "${scpu[@]}" "${prod[$s]}" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$work" >"$work/server.log" 2>&1 &
      spid=$! ;;
  esac
  wait_port "$port"
  if [ "$mode" != idle ]; then
    local c=$conns
    [ "$mode" = light ] && c=$lconns
    case "$s" in
      memcached)
        timeout -k 5 900 "${ccpu[@]}" memcaslap -s "127.0.0.1:$port" -T 1 -c "$c" -t 800s \
          >"$work/load.log" 2>&1 &
        lpid=$! ;;
      redis)
        timeout -k 5 900 "${ccpu[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$c" \
          -n 2000000000 -r 100000 -d 32 -t set -q >"$work/load.log" 2>&1 &
        lpid=$! ;;
    esac
    sleep 1
  else
    sleep 0.3
  fi
  local b0 b1 p0 p1
  c0=$(served "$s" "$port"); local tq0; tq0=$(date +%s.%N)
  b0=$(sched_ns "$spid")
  "${ccpu[@]}" python3 "$here/quiesce.py" --ctl "$ctl" --pid "$spid" --count "$quiesces" \
    --spacing-ms "$spacing" --hold "$hold" --label "$s,$n,$mode,$r" --out "$raw" || true
  b1=$(sched_ns "$spid")
  c1=$(served "$s" "$port"); local tq1; tq1=$(date +%s.%N)
  # CPU used by the server (in CPUs), and how many of its threads were waiting
  # for a CPU on average: with the same threads and load, more waiting means
  # other work took the CPU
  local run_cpus wait_threads
  read -r run_cpus wait_threads < <(echo "$b0 $b1 $tq0 $tq1" | awk '{ t = ($6 - $5) * 1e9; if (t <= 0) t = 1
    printf "%.2f %.2f\n", ($3 - $1) / t, ($4 - $2) / t }')
  if [ "$mode" != idle ] && ! kill -0 "$lpid" 2>/dev/null; then
    alive=0
    echo "quiesce-bench: warning: the load generator exited early: $(tail -c 300 "$work/load.log")" >&2
  fi
  [ "$mode" != idle ] || alive=""
  ops=$(awk -v a="$c0" -v b="$c1" -v t="$tq0" -v u="$tq1" 'BEGIN {printf "%.0f", (b - a) / (u - t)}')
  ntasks=$(ls "/proc/$spid/task" 2>/dev/null | wc -l)
  nthreads=$(awk -F'\t' -v s="$s" -v n="$n" -v m="$mode" -v r="$r" \
             '$1 == s && $2 == n && $3 == m && $4 == r && $6 == 1 {v = $12} END {print v}' "$raw")
  stop_all
  la1=$(cut -d' ' -f1 /proc/loadavg)
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%s\t%s\n' "$s" "$n" "$mode" "$r" "$nthreads" \
    "$ntasks" "$ops" "$alive" "$la0" "$la1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
    "$run_cpus" "$wait_threads" >> "$points"
  echo "quiesce-bench: the server ran on $run_cpus CPUs, $wait_threads of its threads waited for one (averages)" >&2
}

start=$SECONDS
for r in $(seq 1 "$repeats"); do
  # Alternate the order of thread counts and modes, so drift hits all alike.
  if [ $((r % 2)) -eq 1 ]; then order=("${tlist[@]}"); morder=("${mlist[@]}")
  else order=(); for ((i = ${#tlist[@]} - 1; i >= 0; i--)); do order+=("${tlist[$i]}"); done
       morder=(); for ((i = ${#mlist[@]} - 1; i >= 0; i--)); do morder+=("${mlist[$i]}"); done
  fi
  for s in "${slist[@]}"; do
    if [ "$s" = redis ]; then ns=(fixed); else ns=("${order[@]}"); fi
    for n in "${ns[@]}"; do
      for m in "${morder[@]}"; do
        echo "quiesce-bench: [$((SECONDS - start)) s] run $r/$repeats: $s $([ "$s" = memcached ] && echo "-t $n") $m" >&2
        point "$s" "$n" "$m" "$r"
      done
    done
  done
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - start)) s" >> "$out/meta.txt"
python3 "$here/summarize.py" "$raw" "$points" > "$out/summary.md"
cat "$out/summary.md"
echo "quiesce-bench: done in $((SECONDS - start)) s; raw figures and summary in $out" >&2
