#!/usr/bin/env bash
# Builds memcached 1.6.18 plain (clang-16) and instrumented (mcr-clang), runs
# memcached's own test suite on both and compares the results.
# Options and environment: see tests/real/lib.sh (--mcr-clang PATH, --plain-only).
#
# The whole suite, as `make test` runs it: ./sizes, ./testapp, then every t/*.t
# (what `prove t` runs), 8 test files at a time (as `make test PARALLEL=8`; the
# suite mostly sleeps, so this fits 2 cores). Each t/*.t is run with perl on its
# own so that every TAP case is compared, not just every file.
SERVER=memcached
VERSION=${MCR_MEMCACHED_VERSION:-1.6.18}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MEMCACHED_PARALLEL=${MEMCACHED_PARALLEL:-8}

mcr_binaries() { echo "$1/src/memcached"; echo "$1/src/memcached-debug"; }

# tap_results NAME FILE RC: one line per TAP case, plus the file as a whole.
tap_results() {
  awk -v name="$1" -v rc="$3" '
    /^1\.\.0/ && /#[ \t]*[Ss][Kk][Ii][Pp]/ { skipall = 1 }
    /^1\.\.[0-9]+/ { plan = substr($1, 4) + 0 }
    /^ok[ \t]/ {
      n = $2 + 0; seen++
      if ($0 ~ /#[ \t]*(SKIP|skip)/) print "SKIP\t" name " #" n
      else print "PASS\t" name " #" n
      next
    }
    /^not ok[ \t]/ {
      n = $3 + 0; seen++
      if ($0 ~ /#[ \t]*(TODO|todo)/) print "SKIP\t" name " #" n
      else { print "FAIL\t" name " #" n; bad++ }
      next
    }
    END {
      if (skipall) { print "SKIP\t" name; exit }
      if (rc == 0 && !bad && plan > 0 && seen == plan) print "PASS\t" name
      else printf "FAIL\t%s\n", name
    }' "$2" 2>/dev/null || printf 'FAIL\t%s\n' "$1"
}

run_suite() {
  local kind=$1 out=$2 results=$3
  local dir=$out/src tapdir=$out/tap
  rm -rf "$tapdir"; mkdir -p "$tapdir"
  : >"$results"
  local rc

  log "sizes, testapp ($kind)"
  rc=0; (cd "$dir" && run_group 120 "$tapdir/sizes.out" ./sizes) || rc=$?
  if [ "$rc" -eq 0 ]; then printf 'PASS\tsizes\n' >>"$results"; else printf 'FAIL\tsizes\n' >>"$results"; fi
  rc=0; (cd "$dir" && run_group 300 "$tapdir/testapp.tap" ./testapp) || rc=$?
  tap_results testapp "$tapdir/testapp.tap" "$rc" >>"$results"

  log "t/*.t ($kind), $MEMCACHED_PARALLEL at a time, TAP in $tapdir"
  # The files run in parallel under one process group, each under a time limit.
  (cd "$dir" && ls t/*.t) >"$tapdir/files"
  (cd "$dir" && export TAPDIR=$tapdir && run_group 900 "$tapdir/xargs.log" \
     xargs -a "$tapdir/files" -P "$MEMCACHED_PARALLEL" -n 1 bash -c '
       b=$(basename "$1" .t)
       timeout -k 5 300 perl "$1" >"$TAPDIR/$b.tap" 2>"$TAPDIR/$b.err"
       echo $? >"$TAPDIR/$b.rc"' _) ||
    log "t/*.t ($kind): runner exited $?"
  local f b
  for f in "$dir"/t/*.t; do
    b=$(basename "$f" .t)
    tap_results "t/$b.t" "$tapdir/$b.tap" "$(cat "$tapdir/$b.rc" 2>/dev/null || echo 99)" >>"$results"
  done
  return 0
}

# Runs again the files (or sizes/testapp) that hold the named cases, one at a time.
retry_suite() {
  local kind=$1 out=$2 results=$3 names=$4
  local dir=$out/src tapdir=$out/tap-retry f b rc
  rm -rf "$tapdir"; mkdir -p "$tapdir"
  : >"$results"
  for f in $(sed 's/ #.*//' "$names" | sort -u); do
    log "$f ($kind) again"
    rc=0
    case "$f" in
      sizes) (cd "$dir" && run_group 120 "$tapdir/sizes.out" ./sizes) || rc=$?
             if [ "$rc" -eq 0 ]; then printf 'PASS\tsizes\n'; else printf 'FAIL\tsizes\n'; fi >>"$results" ;;
      testapp) (cd "$dir" && run_group 300 "$tapdir/testapp.tap" ./testapp) || rc=$?
             tap_results testapp "$tapdir/testapp.tap" "$rc" >>"$results" ;;
      t/*.t) b=$(basename "$f" .t)
             (cd "$dir" && run_group 300 "$tapdir/$b.tap" perl "$f") || rc=$?
             tap_results "$f" "$tapdir/$b.tap" "$rc" >>"$results" ;;
    esac
  done
  return 0
}

real_main "$@"
