# Shared by tests/real/test-<server>.sh; sourced, not run.
#
# A test script sets SERVER, VERSION and defines:
#   run_suite KIND BIN_DIR RESULTS   KIND is plain|mcr; writes one line per test case,
#                                    "PASS<TAB>name", "FAIL<TAB>name" or "SKIP<TAB>name",
#                                    to RESULTS; its exit status is ignored (the
#                                    results file is what counts)
#   mcr_binaries OUT                 the binaries of an instrumented build that must
#                                    carry the mcr_types section (one path a line)
# then calls real_main "$@".
#
# Options of every test script:
#   --mcr-clang PATH   instrumented compiler (default: $MCR_BUILD_DIR/bin/mcr-clang)
#   --plain-only       build and test with clang-16 only (while mcr-clang does not exist)
#   --rebuild          rebuild the plain build even if an identical one is cached
# Environment:
#   MCR_CACHE          cache root (default ~/.cache/mcr); sources in $MCR_CACHE/src
#   MCR_REAL_OUT       where the builds go (default $MCR_CACHE/real)
#   MCR_BUILD_DIR      mcr's build directory (default /work/main/build)
#   (not MCR_CLANG: that one tells mcr-clang which clang to run)
#   MCR_DEBIAN_PATCHES=1  build the Debian-patched source instead of pure upstream
#
# Exit status: 0 when the instrumented build passes everything the plain build
# passes (and is instrumented); 1 otherwise, or when a build fails.

set -euo pipefail

REAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$REAL_DIR/../.." && pwd)
BUILD_SERVER=$REPO/scripts/build-server.sh
PLAIN_CC=${MCR_PLAIN_CC:-clang-16}

log() { echo "[$SERVER] $*" >&2; }

# --- process groups started by a test: killed on any exit -------------------
REAL_PGIDS=()
# start_group LOGFILE CMD...: runs CMD in its own session/process group in the
# background; sets GROUP_PID (also the group id).
start_group() {
  local logf=$1; shift
  setsid "$@" >"$logf" 2>&1 </dev/null &
  GROUP_PID=$!
  REAL_PGIDS+=("$GROUP_PID")
}
# run_group TIMEOUT LOGFILE CMD...: runs CMD in its own process group, waits at
# most TIMEOUT seconds, then kills the group; returns CMD's status (124 on timeout).
run_group() {
  local tmo=$1 logf=$2; shift 2
  start_group "$logf" "$@"
  local pid=$GROUP_PID waited=0 rc=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$((tmo * 10))" ]; then
      log "timeout after ${tmo}s: $*"
      kill -TERM -- "-$pid" 2>/dev/null || true
      sleep 1
      kill -KILL -- "-$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 124
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$pid" || rc=$?
  # Anything the suite left behind in its group (daemonized servers) goes too.
  kill -TERM -- "-$pid" 2>/dev/null || true
  return "$rc"
}
kill_groups() {
  local g
  for g in "${REAL_PGIDS[@]+"${REAL_PGIDS[@]}"}"; do
    kill -TERM -- "-$g" 2>/dev/null || true
  done
  sleep 0.2
  for g in "${REAL_PGIDS[@]+"${REAL_PGIDS[@]}"}"; do
    kill -KILL -- "-$g" 2>/dev/null || true
  done
}
trap 'kill_groups' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- builds --------------------------------------------------------------------
# build KIND CC OUT [build-server options]: sets BUILT_BIN; returns non-zero on failure.
build() {
  local kind=$1 cc=$2 out=$3; shift 3
  local opts=()
  [ "${MCR_DEBIAN_PATCHES:-0}" = 1 ] && opts+=(--debian-patches)
  log "building $kind ($cc) in $out"
  BUILT_BIN=$("$BUILD_SERVER" "$SERVER" "$VERSION" --cc "$cc" --out "$out" \
              "${opts[@]+"${opts[@]}"}" "$@") || return 1
  BUILD_SECS[$kind]=$(sed -n 's/^seconds=//p' "$out/build-info")
}

# check_instrumented FILE...: every FILE has an ELF section named mcr_types.
check_instrumented() {
  local f ok=0 sections
  for f in "$@"; do
    if [ ! -f "$f" ]; then
      log "NOT INSTRUMENTED: $f does not exist"
      ok=1
    # (read all of readelf's output first: with pipefail, grep -q closing the
    # pipe early would make readelf die of SIGPIPE and the test fail at random)
    elif sections=$(readelf -S -W "$f" 2>/dev/null) &&
         grep -qE '[[:space:]]mcr_types([[:space:]]|$)' <<<"$sections"; then
      log "instrumented: $f has section mcr_types"
    else
      log "NOT INSTRUMENTED: $f has no mcr_types section (readelf -S $f)"
      ok=1
    fi
  done
  return "$ok"
}

# --- comparison ------------------------------------------------------------------
# count RESULTS STATUS
count() { awk -F'\t' -v s="$2" '$1 == s {n++} END {print n + 0}' "$1"; }

# regressions PLAIN MCR: prints "name<TAB>note" for each test that passes plain
# but not instrumented (names may repeat in a suite: compared as counts).
# A TAP case "FILE #N" that did not run at all is no regression when FILE passed
# as a whole: some files vary their number of cases from run to run.
regressions() {
  awk -F'\t' '
    FNR == NR { if ($1 == "PASS") plain[$2]++; next }
    { if ($1 == "PASS") mcr[$2]++; else if ($1 == "FAIL") mfail[$2]++ }
    END {
      for (t in plain) if (mcr[t] < plain[t]) {
        if (!(t in mfail) && (i = index(t, " #")) > 0 && mcr[substr(t, 1, i - 1)] > 0) continue
        printf "%s\t%s\n", t, (t in mfail) ? "fails" : "did not run"
      }
    }' "$1" "$2" | sort
}

# retry_suite KIND OUT RESULTS NAMES: runs again the tests named in the file
# NAMES (one a line) and writes their results to RESULTS. This default runs the
# whole suite again; a test script may define a narrower one.
if ! declare -F retry_suite >/dev/null; then
  retry_suite() { run_suite "$1" "$2" "$3"; }
fi

declare -A BUILD_SECS=() SUITE_SECS=()

# --- main --------------------------------------------------------------------------
real_main() {
  local mcr_clang=${MCR_BUILD_DIR:-/work/main/build}/bin/mcr-clang
  local plain_only=0 rebuild=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --mcr-clang) mcr_clang=$2; shift 2 ;;
      --mcr-clang=*) mcr_clang=${1#*=}; shift ;;
      --plain-only) plain_only=1; shift ;;
      --rebuild) rebuild=1; shift ;;
      -h|--help) sed -n '/^# Options/,/^# Exit/p' "$REAL_DIR/lib.sh" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "$0: unknown argument $1" >&2; exit 1 ;;
    esac
  done

  local cache=${MCR_CACHE:-$HOME/.cache/mcr}
  local outroot=${MCR_REAL_OUT:-$cache/real}
  local tag=$SERVER-$VERSION
  [ "${MCR_DEBIAN_PATCHES:-0}" = 1 ] && tag=$tag-debian
  local plain_out=$outroot/$tag-plain mcr_out=$outroot/$tag-mcr
  local res_dir=$outroot/$tag-results
  mkdir -p "$res_dir"
  local t0=$SECONDS status=0

  if [ "$plain_only" -eq 0 ]; then
    if [ ! -x "$mcr_clang" ]; then
      log "mcr-clang not found at $mcr_clang (build the project first, or pass --mcr-clang PATH;"
      log "--plain-only runs the plain build alone)"
      exit 1
    fi
    mcr_clang=$(cd "$(dirname "$mcr_clang")" && pwd)/$(basename "$mcr_clang")
  fi

  # Plain build: reused when nothing that goes into it changed.
  local reuse=(--reuse)
  [ "$rebuild" -eq 1 ] && reuse=()
  if ! build plain "$PLAIN_CC" "$plain_out" "${reuse[@]+"${reuse[@]}"}"; then
    log "FAILED: the plain build with $PLAIN_CC failed (see $plain_out/build.log)"
    exit 1
  fi
  local plain_bin=$BUILT_BIN

  local s=$SECONDS
  run_suite plain "$plain_out" "$res_dir/plain.results" || true
  SUITE_SECS[plain]=$((SECONDS - s))
  local pp pf ps
  pp=$(count "$res_dir/plain.results" PASS)
  pf=$(count "$res_dir/plain.results" FAIL)
  ps=$(count "$res_dir/plain.results" SKIP)
  log "plain ($PLAIN_CC): $pp pass, $pf fail, $ps skip in ${SUITE_SECS[plain]} s"
  if [ "$pp" -eq 0 ]; then
    log "FAILED: the plain build passed no test at all: the suite itself is broken here"
    status=1
  fi

  if [ "$plain_only" -eq 1 ]; then
    log "SUMMARY $tag: plain build ${BUILD_SECS[plain]} s ($plain_bin), suite ${SUITE_SECS[plain]} s:" \
        "$pp pass, $pf fail, $ps skip; instrumented build not run (--plain-only)"
    [ "$pf" -eq 0 ] || sed -n 's/^FAIL\t/    plain fails: /p' "$res_dir/plain.results" >&2
    log "total $((SECONDS - t0)) s"
    exit "$status"
  fi

  # Instrumented build: always rebuilt (mcr-clang's pass and runtime change).
  local wrappers=$REPO/configs/$SERVER.wrappers
  if [ -f "$wrappers" ]; then export MCR_WRAPPERS=$wrappers; fi
  if ! build mcr "$mcr_clang" "$mcr_out"; then
    log "FAILED: the instrumented build with $mcr_clang failed (see $mcr_out/build.log)"
    log "reproduce: MCR_WRAPPERS=${MCR_WRAPPERS:-} $BUILD_SERVER $SERVER $VERSION --cc $mcr_clang --out $mcr_out"
    exit 1
  fi
  unset MCR_WRAPPERS

  local inst=0
  mapfile -t bins < <(mcr_binaries "$mcr_out")
  check_instrumented "${bins[@]}" || inst=1

  s=$SECONDS
  run_suite mcr "$mcr_out" "$res_dir/mcr.results" || true
  SUITE_SECS[mcr]=$((SECONDS - s))
  local mp mf ms
  mp=$(count "$res_dir/mcr.results" PASS)
  mf=$(count "$res_dir/mcr.results" FAIL)
  ms=$(count "$res_dir/mcr.results" SKIP)
  log "instrumented (mcr-clang): $mp pass, $mf fail, $ms skip in ${SUITE_SECS[mcr]} s"

  # Tests that pass plain but not instrumented get one more try (timing-sensitive
  # tests exist in every suite); those that pass then are reported as flaky.
  local regress flaky=""
  regressions "$res_dir/plain.results" "$res_dir/mcr.results" >"$res_dir/regressed"
  if [ -s "$res_dir/regressed" ]; then
    log "$(wc -l <"$res_dir/regressed") tests pass plain but not instrumented: trying them again"
    cut -f1 "$res_dir/regressed" >"$res_dir/regressed.names"
    : >"$res_dir/mcr-retry.results"
    retry_suite mcr "$mcr_out" "$res_dir/mcr-retry.results" "$res_dir/regressed.names" || true
    # Retried tests count with their retry results, the others with the first run's.
    awk -F'\t' 'FNR == NR { retried[$1] = 1; next }
                 FILENAME ~ /retry/ { if ($2 in retried) print; next }
                 !($2 in retried) { print }' \
      "$res_dir/regressed.names" "$res_dir/mcr.results" "$res_dir/mcr-retry.results" \
      >"$res_dir/mcr-final.results"
    regress=$(regressions "$res_dir/plain.results" "$res_dir/mcr-final.results")
    if [ -z "$regress" ]; then
      flaky=$(cut -f1 "$res_dir/regressed")
    else
      flaky=$(cut -f1 "$res_dir/regressed" | grep -vxF -f <(printf '%s\n' "$regress" | cut -f1) || true)
    fi
  else
    regress=""
  fi
  [ -z "$regress" ] || status=1
  [ "$inst" -eq 0 ] || status=1

  echo "==== $tag: plain (clang-16) vs instrumented (mcr-clang) ====" >&2
  printf '  %-14s build %6s s  suite %4s s  %5d pass %4d fail %4d skip\n' \
    plain "${BUILD_SECS[plain]}" "${SUITE_SECS[plain]}" "$pp" "$pf" "$ps" >&2
  printf '  %-14s build %6s s  suite %4s s  %5d pass %4d fail %4d skip\n' \
    instrumented "${BUILD_SECS[mcr]}" "${SUITE_SECS[mcr]}" "$mp" "$mf" "$ms" >&2
  [ "$pf" -eq 0 ] || { echo "  failing in the plain build too (not counted):" >&2
                       sed -n 's/^FAIL\t/    /p' "$res_dir/plain.results" >&2; }
  if [ -n "$flaky" ]; then
    echo "  flaky (failed instrumented once, passed on retry; not counted):" >&2
    printf '%s\n' "$flaky" | sed 's/^/    /' >&2
  fi
  if [ -n "$regress" ]; then
    echo "  REGRESSIONS: pass plain, not instrumented (also on retry):" >&2
    printf '%s\n' "$regress" | awk -F'\t' '{printf "    %s%s\n", $1, ($2 == "fails") ? "" : "  (" $2 ")"}' >&2
  fi
  [ "$inst" -eq 0 ] || echo "  NOT INSTRUMENTED: no mcr_types section in ${bins[*]}" >&2
  echo "  results: $res_dir/{plain,mcr}.results; total $((SECONDS - t0)) s" >&2
  if [ "$status" -eq 0 ]; then
    echo "  RESULT: OK (instrumented passes everything the plain build passes)" >&2
  else
    echo "  RESULT: FAILED" >&2
  fi
  exit "$status"
}
