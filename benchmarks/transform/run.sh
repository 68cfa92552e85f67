#!/usr/bin/env bash
# The cost of type transformation in a live update (issue 5's goal: the transfer
# rate for a changed type stays within 2x of the unchanged-type rate), on the
# example server tests/servers/kvstore.c:
#
#   benchmarks/transform/run.sh [--build DIR] [--keys N] [--repeats R] [--json OUT]
#       [--work DIR]
#
# Builds kvstore versions 1, 2 (same types, a code change) and 3 (changed types:
# struct entry reordered with a new field, so every entry is converted and moved
# to a bigger slot and every pointer to it remapped; plus a few changed globals)
# with BUILD's mcr-clang, as tests/update/run.sh does: one profiling build run
# under a SET load by mcr-profile, then each version with --mcr-quiescence and
# -DKV_VERSION=N. Then R times (default 5): two fresh version-1 servers on
# 127.0.0.1, both filled with the same N keys (default 300000; "keyI" ->
# "value-I", pipelined, both at once), then `mcr-ctl update PID v2 --json` on one
# (the baseline: unchanged types) and `mcr-ctl update PID v3 --json` on the
# other (changed types), the order alternating between repeats. After each
# update COUNT, VERSION and 500 sampled keys are checked on the new process; an
# update that did not commit or fails the check is reported and not counted.
#
# Prints the median table (summarize.py): the pause, the per-phase times, the
# transfer rate (the old heap's size / the pause) and the transform phase per
# converted object, with the ratios changed / unchanged, and the load average
# (uptime) before and after. Raw records in WORK/raw.jsonl (WORK: --work, default
# $MCR_CACHE/bench/transform-<date>); --json OUT writes the summary as JSON.
#
# kvstore's hash table has a fixed 1024 buckets, so a fill costs O(N^2): two
# servers filled at once took 2-4 s with 300000 keys, 50-70 s with 1000000 on the
# project's 2-CPU machine (a whole run: 0.5 and 5.5 minutes).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/benchmarks/transform
cache=${MCR_CACHE:-$HOME/.cache/mcr}
build=$top/build keys=300000 repeats=5 jout="" work=""
args=("$@")
die() { echo "transform-bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift ;;
    --keys) keys=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --json) jout=$2; shift ;;
    --work) work=$2; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for v in "$keys" "$repeats"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "bad number '$v'"
done
[ "$keys" -ge 2 ] || die "--keys must be at least 2"
build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory '$build'"
mcc=$build/bin/mcr-clang prof=$build/bin/mcr-profile ctl=$build/bin/mcr-ctl
for b in "$mcc" "$prof" "$ctl"; do
  [ -x "$b" ] || die "$b missing: build mcr first (cmake + ninja)"
done
command -v python3 >/dev/null || die "python3 is needed"
if [ -n "$jout" ]; then
  mkdir -p "$(dirname "$jout")"
  jout=$(cd "$(dirname "$jout")" && pwd)/$(basename "$jout")
fi
work=${work:-$cache/bench/transform-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -f "$work/raw.jsonl"

pids=()
cleanup() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

load_before=$(uptime)
{
  echo "command: benchmarks/transform/run.sh ${args[*]}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "repository: $(git -C "$top" rev-parse --short HEAD 2>/dev/null) $(git -C "$top" log -1 --format=%s 2>/dev/null | cut -c1-100)"
  echo "mcr build: $build (runtime library built $(date -u -r "$build/lib/mcr/libmcr_rt.a" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo '?'))"
  echo "machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "uptime before: $load_before"
  echo "keys $keys, repeats $repeats"
} >"$work/meta.txt"
sed 's/^/transform-bench: /' "$work/meta.txt" >&2

# --- the three versions, as tests/update/run.sh builds them --------------------------
cflags=(-O2 -g -Wall -Wextra -I"$top/runtime/include")
src=$top/tests/servers/kvstore.c
mkdir -p "$work/prof"
"$mcc" --mcr-profile "${cflags[@]}" -o "$work/prof/kvstore" "$src" 2>"$work/build.log" ||
  die "profiling build failed (see $work/build.log)"
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$prof" -o "$work/kvstore.qp" --duration 3 -- "$work/prof/kvstore" -p "$pport" >"$work/profile.log" 2>&1 &
pids+=($!)
python3 "$here/bench.py" fill "$pport" 2000 || die "the load while profiling failed"
wait "${pids[0]}" || die "mcr-profile failed (see $work/profile.log)"
pids=()
for v in 1 2 3; do
  mkdir -p "$work/v$v"
  "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -DKV_VERSION=$v \
    -o "$work/v$v/kvstore" "$src" 2>>"$work/build.log" ||
    die "production build of version $v failed (see $work/build.log)"
done
echo "transform-bench: kvstore versions 1, 2, 3 built in $work" >&2

# --- the measurements ----------------------------------------------------------------
rc=0
python3 "$here/bench.py" run --ctl "$ctl" --v1 "$work/v1/kvstore" --v2 "$work/v2/kvstore" \
  --v3 "$work/v3/kvstore" --keys "$keys" --repeats "$repeats" --work "$work" || rc=$?
load_after=$(uptime)
echo "uptime after: $load_after" >>"$work/meta.txt"
{
  echo "## benchmarks/transform/run.sh ${args[*]}"
  echo
  python3 "$here/summarize.py" "$work/raw.jsonl" ${jout:+--json "$jout"} || rc=1
  echo
  echo "uptime before: $load_before"
  echo "uptime after:  $load_after"
} | tee "$work/summary.md"
if [ -n "$jout" ]; then
  python3 - "$jout" "$work/meta.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["meta"] = dict(l.rstrip("\n").split(": ", 1) for l in open(sys.argv[2]) if ": " in l)
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY
fi
[ "$rc" -eq 0 ] || echo "transform-bench: some updates failed (see $work/raw.jsonl)" >&2
exit "$rc"
