#!/usr/bin/env bash
# Builds redis 7.0.15 plain (clang-16) and instrumented (mcr-clang), runs a subset
# of redis's own test suite (./runtest) on both and compares the results.
# Options and environment: see tests/real/lib.sh (--mcr-clang PATH, --plain-only).
#
# Subset (docs/real-servers.md says why): the units below with `--tags -slow`,
# 2 test clients. The full suite takes far longer than CI's budget on 2 cores.
SERVER=redis
VERSION=${MCR_REDIS_VERSION:-7.0.15}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_UNITS=(
  unit/type/string unit/type/incr unit/type/list unit/type/hash unit/type/set
  unit/type/zset unit/type/stream
  unit/expire unit/keyspace unit/multi unit/pubsub unit/scan unit/info-command
  unit/dump unit/other unit/scripting unit/bitops unit/sort unit/auth unit/acl
  unit/introspection
  integration/rdb integration/aof integration/replication-2
)

mcr_binaries() { echo "$1/src/src/redis-server"; }

# runtest's output -> results: [ok]: name (N ms) / [err]: name in tests/... /
# [exception]: ... / [timeout]: ... / [skip]: name
parse_runtest() {
  sed -e 's/\x1b\[[0-9;]*m//g' "$1" | awk '
    /^\[ok\]: /        { s = substr($0, 7); sub(/ \([0-9]+ ms\)$/, "", s); print "PASS\t" s; next }
    /^\[err\]: /       { s = substr($0, 8); sub(/ in tests\/[^ ]*$/, "", s); print "FAIL\t" s; next }
    /^\[exception\]: / { print "FAIL\texception: " substr($0, 14); next }
    /^\[timeout\]: /   { print "FAIL\ttimeout: " substr($0, 12); next }
    /^\[skip\]: /      { print "SKIP\t" substr($0, 9); next }
  '
}

# Plain and instrumented runs get port ranges of their own (runtest starts many
# servers: --baseport/--portcount bound them).
runtest() {
  local kind=$1 out=$2 results=$3 logf=$4; shift 4
  local base
  case "$kind" in plain) base=23100 ;; *) base=23600 ;; esac
  local args=(--baseport "$base" --portcount 500 --timeout 300 --tags -slow "$@")
  local u
  for u in "${REDIS_UNITS[@]}"; do args+=(--single "$u"); done
  local rc=0
  (cd "$out/src" && run_group 1200 "$logf" ./runtest "${args[@]}") || rc=$?
  parse_runtest "$logf" >"$results"
  [ "$rc" -eq 0 ] || log "runtest ($kind) exited $rc"
  return 0
}

run_suite() {
  log "runtest ($1): ${#REDIS_UNITS[@]} units, log $2/runtest.log"
  runtest "$1" "$2" "$3" "$2/runtest.log" --clients 2
}

# Only the named tests (runtest --only matches names exactly), one client.
retry_suite() {
  local only=() n
  while IFS= read -r n; do only+=(--only "$n"); done <"$4"
  log "runtest ($1) again for $(wc -l <"$4") tests, log $2/runtest-retry.log"
  runtest "$1" "$2" "$3" "$2/runtest-retry.log" --clients 1 "${only[@]}"
}

real_main "$@"
