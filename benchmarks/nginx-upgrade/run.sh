#!/usr/bin/env bash
# nginx 1.22.1 (master + 2 workers) under wrk, upgraded to the same binary in the
# middle of the load: nginx's own binary upgrade (USR2, WINCH, QUIT) against
# `mcr-ctl update`, in the same run (issue 6):
#
#   benchmarks/nginx-upgrade/run.sh [--build DIR] [--repeats R] [--json OUT]
#       [--work DIR] [--modes LIST] [--duration S] [--at S] [--port P] [--to-debian]
#       [--from VERSION]
#
# --to-debian: the upgrade goes to nginx 1.22.1 with all of Debian's patches
# (FIX-HTTP2bomb.patch adds a module) instead of the same binary: usr2 replaces
# the running binary by the plain build of it (scripts/build-server.sh
# --debian-patches, into $MCR_CACHE/bench/nginx-1.22.1-debian-plain) before the
# USR2; mcr updates to the mcr build tests/real/update-nginx.sh --build-only
# makes (with v1's quiescence config, into $MCR_CACHE/bench/nginx-upgrade-debian)
# with --rename-file configs/nginx-1.22.1-to-1.22.1-debian.renames (reinit). The
# baselines run v1 of each build.
# --from 1.18.0 (with --to-debian): v1 is nginx 1.18.0 (plain build, and the mcr
# build of tests/real/update-nginx.sh --v1-version 1.18.0 --build-only, whose v2
# carries configs/nginx-1.18.0-to-1.22.1.transform.patch), upgraded to 1.22.1 with
# Debian's patches; mcr passes configs/nginx-1.18.0-to-1.22.1.renames.
#
# Builds, or reuses when nothing that goes into them changed:
#   plain  scripts/build-server.sh nginx 1.22.1 --cc clang-16 --reuse
#          into $MCR_CACHE/bench/nginx-1.22.1-plain
#   mcr    scripts/profile-server.sh nginx 1.22.1 --cc BUILD/bin/mcr-clang (its
#          profiling run and the build with the quiescent points, as
#          tests/real/quiesce-nginx.sh does) into $MCR_CACHE/bench/nginx-upgrade/
#          nginx-1.22.1; rebuilt when BUILD's runtime or pass is newer
# BUILD: --build, default ./build. Then R times (default 3), the modes in an
# order rotating between repeats, each on a fresh nginx on 127.0.0.1 (first free
# port from P, default 24620), worker_processes 2, keep-alive (timeout 60 s),
# a 4 KiB static file, under wrk -t2 -c16 -dS (default 10) --timeout 2s and a
# checking client on one keep-alive connection (a GET every 50 ms, status and
# body checked; a failure reconnects):
#   baseline      plain build, daemon on, no upgrade
#   usr2          plain build, daemon on (nginx ignores USR2 when its parent is
#                 not init), at S s (--at, default 3) after wrk started: USR2, wait
#                 for the new master's pid file and its 2 workers, WINCH, wait
#                 for the old workers to exit, QUIT, wait for the old master to go
#   mcr-baseline  mcr build, daemon off (the mcr config), no update
#   mcr           mcr build, at S s: mcr-ctl update MASTER SAME-BINARY --json;
#                 its exit status, committed or not, its conflicts, its pause
#                 (the master and its workers are updated as one process tree:
#                 docs/coordinator.md; results in docs/benchmarks.md)
# Recorded per run: wrk's requests, socket errors (connect/read/write/timeout),
# non-2xx, p50/p99/max latency; the client's failures, reconnects and slowest
# reply; the upgrade's times; after it, which master and workers serve, whether
# they still hold the listening socket of the start (same inode), whether the
# server answers, alert/crit/emerg lines in error.log.
#
# Prints the median table (bench.py summarize; latency ratios to the baseline of
# the same build). Raw records in WORK/raw.jsonl (WORK: --work, default
# $MCR_CACHE/bench/nginx-upgrade-<date>), each run's files in WORK/MODE-N/;
# --json OUT writes the summary and the records as JSON. About 13 s per run:
# ~2.7 min for 3 repeats of the 4 modes, after the builds (plain ~1 min, mcr
# ~3 min on 2 CPUs). Exit 0 when every run completed (whatever mcr's outcome),
# 1 when a run failed, 2 bad usage.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/benchmarks/nginx-upgrade
cache=${MCR_CACHE:-$HOME/.cache/mcr}
build=$top/build repeats=3 jout="" work="" modes=baseline,usr2,mcr-baseline,mcr
duration=10 at=3 port=24620 to_debian=0 from=1.22.1
args=("$@")
die() { echo "nginx-upgrade: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift ;;
    --repeats) repeats=$2; shift ;;
    --json) jout=$2; shift ;;
    --work) work=$2; shift ;;
    --modes) modes=$2; shift ;;
    --duration) duration=$2; shift ;;
    --at) at=$2; shift ;;
    --port) port=$2; shift ;;
    --to-debian) to_debian=1 ;;
    --from) from=$2; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
for v in "$repeats" "$duration" "$port"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "bad number '$v'"
done
[[ "$at" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad --at '$at'"
awk -v a="$at" -v d="$duration" 'BEGIN { exit !(a < d - 1) }' ||
  die "--at $at must be at least 1 s before the end of the load (--duration $duration)"
build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory '$build'"
mcc=$build/bin/mcr-clang ctl=$build/bin/mcr-ctl
[ -x "$mcc" ] && [ -x "$ctl" ] || die "$mcc or $ctl missing: build mcr first (cmake + ninja)"
for t in wrk python3 clang-16; do
  command -v "$t" >/dev/null || die "$t is needed (scripts/setup.sh)"
done
if [ -n "$jout" ]; then
  mkdir -p "$(dirname "$jout")"
  jout=$(cd "$(dirname "$jout")" && pwd)/$(basename "$jout")
fi

# --- the two builds -----------------------------------------------------------------
[ "$from" = 1.22.1 ] || [ "$to_debian" = 1 ] || die "--from $from needs --to-debian"
plain=$("$top/scripts/build-server.sh" nginx "$from" --cc clang-16 \
          --out "$cache/bench/nginx-$from-plain" --reuse) ||
  die "the plain build failed (see $cache/bench/nginx-$from-plain/build.log)"
newargs=()
if [ "$to_debian" = 1 ]; then
  plain_new=$("$top/scripts/build-server.sh" nginx 1.22.1 --cc clang-16 --debian-patches \
                --out "$cache/bench/nginx-1.22.1-debian-plain" --reuse) ||
    die "the plain build with Debian's patches failed (see $cache/bench/nginx-1.22.1-debian-plain/build.log)"
  echo "nginx-upgrade: the mcr builds of v1 and v2 (tests/real/update-nginx.sh --build-only)" >&2
  built=$(MCR_REAL_OUT=$cache/bench/nginx-upgrade-debian \
    "$top/tests/real/update-nginx.sh" --mcr-clang "$mcc" --v1-version "$from" --build-only) ||
    die "tests/real/update-nginx.sh --build-only failed (logs in $cache/bench/nginx-upgrade-debian)"
  read -r mcr mcr_new <<<"$(tail -n 1 <<<"$built")"
  [ -x "$mcr" ] && [ -x "$mcr_new" ] || die "no mcr builds from tests/real/update-nginx.sh --build-only"
  renames=nginx-$from-to-1.22.1.renames
  [ "$from" != 1.22.1 ] || renames=nginx-1.22.1-to-1.22.1-debian.renames
  [ -f "$top/configs/$renames" ] || die "no configs/$renames for an update from $from"
  newargs=(--plain-new "$plain_new" --mcr-new "$mcr_new"
           --update-arg=--rename-file
           --update-arg="$top/configs/$renames")
else
mdir=$cache/bench/nginx-upgrade/nginx-1.22.1
info=$mdir/prod/build-info
if [ -f "$info" ] && [ "$info" -nt "$build/lib/mcr/libmcr_rt.a" ] &&
   [ "$info" -nt "$build/lib/mcr/MCRPass.so" ] && [ "$info" -nt "$mcc" ] &&
   [ "$(sed -n 's/^cc=//p' "$info")" = "$mcc" ] &&
   [ -x "$(sed -n 's/^binary=//p' "$info")" ]; then
  mcr=$(sed -n 's/^binary=//p' "$info")
  echo "nginx-upgrade: reusing $mcr" >&2
else
  echo "nginx-upgrade: profiling and building nginx 1.22.1 with $mcc into $mdir" >&2
  mcr=$("$top/scripts/profile-server.sh" nginx 1.22.1 --cc "$mcc" --out "$mdir") ||
    die "scripts/profile-server.sh failed (logs in $mdir)"
fi
fi

work=${work:-$cache/bench/nginx-upgrade-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
rm -f "$work/raw.jsonl"
{
  echo "command: benchmarks/nginx-upgrade/run.sh ${args[*]}"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "repository: $(git -C "$top" rev-parse --short HEAD 2>/dev/null) $(git -C "$top" log -1 --format=%s 2>/dev/null | cut -c1-100)"
  echo "mcr build: $build (runtime library built $(date -u -r "$build/lib/mcr/libmcr_rt.a" '+%Y-%m-%d %H:%M:%S UTC'))"
  echo "plain nginx: $plain"
  echo "mcr nginx: $mcr"
  [ "$to_debian" = 0 ] || echo "upgraded from $from to: plain $plain_new, mcr $mcr_new (1.22.1 with Debian's patches)"
  echo "machine: $(uname -srm), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "repeats $repeats, modes $modes, wrk -t2 -c16 -d${duration}s, upgrade at ${at} s, ports from $port"
} >"$work/meta.txt"
sed 's/^/nginx-upgrade: /' "$work/meta.txt" >&2

rc=0
python3 "$here/bench.py" run --plain "$plain" --mcr "$mcr" --ctl "$ctl" --work "$work" \
  --repeats "$repeats" --modes "$modes" --port-base "$port" --duration "$duration" \
  --at "$at" "${newargs[@]+"${newargs[@]}"}" || rc=1
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/meta.txt"
python3 "$here/bench.py" summarize "$work" ${jout:+--json "$jout"} | tee "$work/summary.md" || rc=1
echo "nginx-upgrade: records in $work/raw.jsonl${jout:+, JSON in $jout}" >&2
exit "$rc"
