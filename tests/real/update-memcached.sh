#!/usr/bin/env bash
# memcached 1.6.18 with 4 worker threads and its maintenance threads updated live
# under memcaslap and a checking client (label real-update).
#
# Which update: v2 = 1.6.18 + tests/real/patches/memcached-1.6.18-code.patch
# (one line of code: `stats` answers `STAT mcr_code v2`), the real multi-threaded
# update. With --v2-version 1.6.38, v2 is memcached 1.6.38 (Debian 1.6.38-1),
# the upstream version change: test real-update-memcached-138 (label
# real-update), with --libevent-mcr (libevent compiled by mcr-clang in both
# builds) and configs/memcached-1.6.18-to-1.6.38.renames (two fields 1.6.38 moved
# into a nested struct), passed to mcr-ctl update as --rename-file. Without
# --libevent-mcr the update is refused: libevent's own untyped memory points into
# fields of conn and LIBEVENT_THREAD that move (docs/real-servers.md); a refused
# update makes the test check that v1 served on, and fail.
#
#   1. Builds (tests/real/update-lib.sh): v1 = 1.6.18 through the quiescence
#      pipeline (scripts/profile-server.sh: profiling build, mcr-profile under
#      memcaslap, the config, the production build); v2 built by
#      scripts/build-server.sh with the same mcr-clang, configs/memcached.wrappers,
#      v1's quiescence config and flags. For 1.6.38 the config's slab mover line
#      is changed (its thread waits in pthread_cond_timedwait there: QP2_EDIT
#      below). Reused while none of their inputs changed.
#   2. v1 runs with -t 4 -m 64 -c 1024 -v -o idle_timeout=600,hashpower=13
#      (hashpower 13: the smallest -t 4 allows, so that the hash table grows
#      soon: the assoc thread's work, checked after the update). Stored:
#      3000 keys u:* (10-599 bytes, flags = their number) and 150 keys of 20 000
#      bytes (a slab class for the slab mover). Its threads' names are noted
#      (/proc/PID/task/*/comm: memcached, mc-worker x4, mc-lrumaint,
#      mc-itemcrawler, mc-assocmaint, mc-slabmaint, mc-log, mc-idletimeout).
#      A connection is opened and used (held below).
#   3. Update v1 -> v2 (`mcr-ctl update PID V2 --json --report FILE`) while
#      memcaslap (-T 1 -c 4 -w 1k -v 0.01, 9:1 get/set, 1% of the values
#      verified) and a checking client (quiesce-tool.py load memcached: ONE
#      connection, set then get of the same key, every reply and value compared,
#      a reply later than 5 s is an error) run. Checked when committed:
#      - memcaslap was running when the update began and ended with exit 0, no
#        output on stderr, verify_failed 0; the checking client 0 errors and its
#        connection kept;
#      - the old process is gone; the new one runs; `stats` on a new connection
#        says pid = the new pid, v2 (mcr_code v2, or version 1.6.38), an uptime
#        and total_items not below those of before (the globals came over);
#      - the held connection, opened before the update, answers after it as v2
#        (its `stats`: new pid, v2), reads the key it set before and sets and
#        reads one more;
#      - the 3000 keys, values and flags;
#      - the new process's threads have the names v1's had, each as many times;
#      - its threads work: 8 new connections at once each set and get a key (the
#        listener hands them to the workers in turn); `lru_crawler metadump all`
#        (the crawler thread) lists the 3000 keys; lru_maintainer_juggles grows
#        (the LRU maintainer); enough more keys x:* to pass 1.5 items a bucket
#        make the hash table grow (the assoc thread moves every item:
#        hash_power_level up by one, hash_is_expanding 0) and all keys read
#        back; `slabs reassign` of a page of the 20 000-byte class is carried
#        out (the slab mover: slabs_moved grows); `watch mutations` gets the
#        log lines of 3 sets and `watch connevents` the conn_new and conn_close
#        lines of 3 connections (the logger thread; both kinds checked on v1
#        first). A worker logs conn_new through the logger
#        pthread_getspecific(logger_key) finds, so this needs the thread-specific
#        data of the new threads to follow the startup objects the update
#        replaces (runtime/tsd.c); mutations and conn_close go through
#        c->thread->l. `mcr-ctl status NEW` answers;
#   4. Rollback under the same load: MCR_UPDATE_FAULT=heap:crash, the updated
#      process to v2 again: exit 1 and the crash its only reason, no load error,
#      the same process serves as v2 with the keys, not quiescing, no other
#      process of v2 left.
#   5. SIGTERM: the updated process exits (its main loop ends: "Exiting
#      normally" with -v) within 10 s, no core file.
#   If the update is rolled back instead (exit 1), the reasons are logged (and
#   `mcr-ctl report` of the report file), and v1 is checked to serve on: alive,
#   answers as v1 with the keys, the held connection answered by v1, no load
#   error, no process of v2 left, `mcr-ctl status` not quiescing. The test
#   fails anyway (it asks for a committed update).
# The phases and the clients' pause (mcr-ctl --json) go to the log.
#
# Options:
#   --mcr-clang PATH     mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl and
#                        mcr-profile are taken from the same directory
#   --rebuild            build v1 and v2 even if identical builds are there
#   --no-build           reuse v1, v2 and the config of an earlier run as they are
#   --v2-version 1.6.38  v2 = memcached 1.6.38 (above) instead of the code patch
#   --libevent-mcr       with --v2-version: both versions link a libevent built by
#                        the same mcr-clang from Debian's source (2.1.12-stable,
#                        static, mm_malloc = malloc: scripts/build-server.sh),
#                        so that libevent's allocations have types and its
#                        pointers into memcached's objects are precise; builds in
#                        OUT-libevent
# Environment: MCR_CACHE (default ~/.cache/mcr), MCR_REAL_OUT (default
# $MCR_CACHE/real; builds and run files in $MCR_REAL_OUT/memcached-1.6.18-update,
# or memcached-1.6.18-to-1.6.38-update), MCR_BUILD_DIR (default /work/main/build),
# MCR_UPDATE_LOAD_SECS (memcaslap's run across the update, default 8).
#
# Exit status: 0 every check passed (the update committed); 1 otherwise.
SERVER=memcached
VERSION=1.6.18
PORT_BASE=24680
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/update-lib.sh"

MTOOL=$REAL_DIR/update-memcached.py
PATCH=$REAL_DIR/patches/memcached-$VERSION-code.patch
# 1.6.38's slab mover (slabs_mover.c) waits with a timeout: v1's point for that
# class, changed so that v2 links (the link-time check wants every qp found)
QP2_EDIT='s/^qp slab_rebalance_thread > pthread_cond_wait$/qp slab_rebalance_thread > pthread_cond_timedwait/'
LOAD_SECS=${MCR_UPDATE_LOAD_SECS:-8}
NKEYS=3000
NFILL=150
STATUS=0
failed() { log "FAILED: $*"; STATUS=1; }

update_args memcaslap python3 patch -- "$@"
V2VERSION=""
LIBEVENT_MCR=0
LIBEVENT_VERSION=2.1.12-stable
set -- "${UPDATE_ARGS[@]+"${UPDATE_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --libevent-mcr) LIBEVENT_MCR=1; shift ;;
    --v2-version) V2VERSION=$2; shift 2 ;;
    --v2-version=*) V2VERSION=${1#*=}; shift ;;
    *) echo "$0: unknown argument $1" >&2; exit 1 ;;
  esac
done

[ "$LIBEVENT_MCR" -eq 0 ] || [ -n "$V2VERSION" ] ||
  { echo "$0: --libevent-mcr goes with --v2-version" >&2; exit 1; }
CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
if [ -z "$V2VERSION" ]; then
  OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-update
  V2_DESC="$VERSION + $(basename "$PATCH")"
  V2_STAT=mcr_code; V2_VALUE=v2      # how `stats` tells v2 from v1
else
  OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-to-$V2VERSION-update
  [ "$LIBEVENT_MCR" -eq 0 ] || OUT=$OUT-libevent
  V2_DESC=$V2VERSION
  V2_STAT=version; V2_VALUE=$V2VERSION
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
log "output in $OUT"

# --- 1. builds ----------------------------------------------------------------------
# v2 = another upstream version: v1 through the pipeline, v2 from its own
# source with v1's config (QP2_EDIT applied: OUT/memcached-v2.qp); reused when
# OUT/update-key matches. Sets V1, V2, QP, BUILD_SECS.
upgrade_builds() {
  local s=$SECONDS src1 src2 key edit=$OUT/qp2.sed
  QP=$OUT/$SERVER.qp
  echo "$QP2_EDIT" >"$edit"
  src1=$("$UPDATE_FETCH" "$SERVER" "$VERSION") || { log "FAILED: fetch-source.sh $SERVER $VERSION"; exit 1; }
  src2=$("$UPDATE_FETCH" "$SERVER" "$V2VERSION") || { log "FAILED: fetch-source.sh $SERVER $V2VERSION"; exit 1; }
  local extra=() srcs="$src1 $src2" lsrc
  if [ "$LIBEVENT_MCR" -eq 1 ]; then
    lsrc=$("$UPDATE_FETCH" libevent "$LIBEVENT_VERSION") ||
      { log "FAILED: fetch-source.sh libevent $LIBEVENT_VERSION"; exit 1; }
    srcs="$srcs $lsrc"
    extra=(--libevent "$LIBEVENT_VERSION") # each build compiles it (build-server.sh)
  fi
  key=$(update_key "$mcr_clang" "$srcs" "$edit" ${lsrc:+"$REPO/configs/libevent.wrappers"})
  if ! update_reuse "$OUT" "$key"; then
    rm -f "$OUT/update-key"
    V1=$("$UPDATE_PROFILE" "$SERVER" "$VERSION" --cc "$mcr_clang" --out "$OUT" \
         "${extra[@]+"${extra[@]}"}") ||
      { log "FAILED: scripts/profile-server.sh $SERVER $VERSION failed (logs in $OUT)"; exit 1; }
    sed -f "$edit" "$QP" >"$OUT/$SERVER-v2.qp"
    V2=$(MCR_WRAPPERS=$REPO/configs/$SERVER.wrappers MCR_PROFILE= MCR_QUIESCENCE=$OUT/$SERVER-v2.qp \
         "$UPDATE_BUILD" "$SERVER" "$V2VERSION" --cc "$mcr_clang" --out "$OUT/v2" \
         "${extra[@]+"${extra[@]}"}") ||
      { log "FAILED: the v2 build ($SERVER $V2VERSION) failed (see $OUT/v2/build.log)"; exit 1; }
    echo "$key" >"$OUT/update-key"
  fi
  BUILD_SECS=$((SECONDS - s))
}

if [ -z "$V2VERSION" ]; then
  update_builds "$OUT" "$mcr_clang" "$PATCH"
  # the patch's line is in v2's binary only
  grep -q 'mcr_code' "$V2" && ! grep -q 'mcr_code' "$V1" ||
    { log "FAILED: v2 does not carry $(basename "$PATCH") (or v1 does)"; exit 1; }
else
  upgrade_builds
  diff "$QP" "$OUT/$SERVER-v2.qp" | sed -n 's/^\([<>]\)/    v2 config \1/p' >&2 || true
fi
log "v1 $V1"
log "v2 $V2 ($V2_DESC); builds $BUILD_SECS s"
log "quiescent points ($QP):"
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$QP" | sed 's/^/    /' >&2
"$MCR_CTL" check "$V1" "$V2" >"$OUT/check.txt" 2>&1 || true
log "mcr-ctl check v1 v2 ($OUT/check.txt): $(head -n1 "$OUT/check.txt")"

# --- 2. start v1 --------------------------------------------------------------------
RUN=$OUT/urun
rm -rf "$RUN"; mkdir -p "$RUN"
PORT=$(free_port "$PORT_BASE")
ARGS=(-l 127.0.0.1 -p "$PORT" -U 0 -t 4 -m 64 -c 1024 -v -o idle_timeout=600,hashpower=13)
[ "$(id -u)" -ne 0 ] || ARGS+=(-u root)   # memcached refuses root without -u
# in RUN with core dumps on (core_pattern "core"; the new version inherits both)
start_group "$RUN/server.log" bash -c 'cd "$1" && ulimit -c unlimited 2>/dev/null; shift; exec "$@"' \
  _ "$RUN" "$V1" "${ARGS[@]}"
SERVER_PID=$GROUP_PID
MC() { timeout -k 5 "${MC_TIMEOUT:-60}" python3 "$MTOOL" "$1" "$PORT" "${@:2}"; }
ping_server() { MC_TIMEOUT=3 MC stats >/dev/null 2>&1; }
if ! wait_up 30; then
  log "FAILED: v1 did not answer on 127.0.0.1:$PORT; $RUN/server.log:"
  tail -n 20 "$RUN/server.log" >&2 || true
  exit 1
fi
V1PID=$SERVER_PID
# mstat NAME [SUB]: one `stats` value, on a new connection (empty: no answer)
mstat() { { MC stats ${2:+"$2"} 2>/dev/null || true; } | sed -n "s/^$1 //p"; }
# version_of: v1 or v2 by `stats` on a new connection (none: no answer)
version_of() {
  local st
  st=$(MC stats 2>/dev/null) || { echo none; return; }
  if [ "$(sed -n "s/^$V2_STAT //p" <<<"$st")" = "$V2_VALUE" ]; then echo v2
  elif [ "$(sed -n 's/^version //p' <<<"$st")" = "$VERSION" ] && ! grep -q '^mcr_code ' <<<"$st"; then echo v1
  else echo "other ($(sed -n 's/^version //p' <<<"$st"))"; fi
}
# thread_names PID: "NAME xCOUNT" per name, sorted; the runtime's mcr-* threads left out
thread_names() {
  local t
  for t in /proc/"$1"/task/*; do cat "$t/comm" 2>/dev/null || true; done | { grep -v '^mcr-' || true; } |
    sort | uniq -c | awk '{printf "%s x%d\n", $2, $1}'
}
[ "$(version_of)" = v1 ] || failed "v1 answers as $(version_of)"
MC fill "$NKEYS" >"$RUN/fill.log" 2>&1 && MC filler "$NFILL" >>"$RUN/fill.log" 2>&1 ||
  { cat "$RUN/fill.log" >&2; log "FAILED: storing the data set"; exit 1; }
log "$(tr '\n' ';' <"$RUN/fill.log")"
MC check "$NKEYS" >"$RUN/check-before.log" 2>&1 ||
  { cat "$RUN/check-before.log" >&2; log "FAILED: the data set is wrong before the update"; exit 1; }
# the watch checks on v1: both kinds logged in full (else the check is broken)
MC watch mutations >"$RUN/watch-v1.log" 2>&1 && MC watch connevents >>"$RUN/watch-v1.log" 2>&1 ||
  { cat "$RUN/watch-v1.log" >&2; log "FAILED: v1's logger thread does not forward the log lines"; exit 1; }
UPTIME1=$(mstat uptime); ITEMS1=$(mstat total_items); HP1=$(mstat hash_power_level)
thread_names "$V1PID" >"$RUN/threads-v1.txt"
# the main thread is named after the executable; the others name themselves
sed -i "s|^$(basename "$V1") x|MAIN x|" "$RUN/threads-v1.txt"
log "v1 (pid $V1PID) on 127.0.0.1:$PORT: uptime $UPTIME1 s, total_items $ITEMS1, hash_power_level $HP1;" \
  "threads: $(tr '\n' ' ' <"$RUN/threads-v1.txt")"
for n in mc-worker mc-lrumaint mc-itemcrawler mc-assocmaint mc-slabmaint mc-log mc-idletimeout; do
  grep -q "^$n x" "$RUN/threads-v1.txt" || failed "v1 has no thread named $n (-t 4 and the maintenance threads expected)"
done
grep -qx 'mc-worker x4' "$RUN/threads-v1.txt" || failed "v1 does not have 4 mc-worker threads"
"$MCR_CTL" status "$V1PID" >"$RUN/status-v1.txt" 2>&1 || true
start_group "$RUN/held.log" timeout -k 5 600 python3 "$MTOOL" held "$PORT" "$RUN"
HELD_PID=$GROUP_PID
for ((i = 0; i < 100; i++)); do [ -s "$RUN/held.ready" ] && break; sleep 0.1; done
[ -s "$RUN/held.ready" ] || { cat "$RUN/held.log" >&2; log "FAILED: the held connection did not start"; exit 1; }
log "held connection open (local port $(cat "$RUN/held.ready")), held:before set"

# --- the load: memcaslap and the checking client ----------------------------------------
# load_begin NAME: both in the background; load_end NAME: waits, 0 when neither
# saw an error
load_begin() {
  local name=$1
  qload_start "$RUN/$name.check" memcached --port "$PORT" --conns 1 --prefix "c$name" --timeout 5
  CHECK_PID=$GROUP_PID
  start_group "$RUN/$name.memcaslap" timeout -k 5 $((LOAD_SECS + 60)) memcaslap -s "127.0.0.1:$PORT" \
    -T 1 -c 4 -w 1k -t "${LOAD_SECS}s" -v 0.01
  SLAP_PID=$GROUP_PID
  sleep 2
  alive "$SLAP_PID" && SLAP_AT_START=1 || SLAP_AT_START=0
}
load_end() {
  local name=$1 rc=0 src=0 f=$RUN/$1.memcaslap
  for ((i = 0; i < (LOAD_SECS + 60) * 10; i++)); do alive "$SLAP_PID" || break; sleep 0.1; done
  wait "$SLAP_PID" || src=$?
  kill -TERM "$CHECK_PID" 2>/dev/null || true
  wait_pids 30 "$CHECK_PID"
  [ "$SLAP_AT_START" = 1 ] || { log "$name: memcaslap had ended before the update began"; rc=1; }
  # memcaslap: exit 0, its summary, verify_failed 0, nothing else on its output
  # (it reports connection and protocol errors there)
  local ops vf extra
  ops=$(sed -n 's/^Run time: .* Ops: \([0-9]*\) .*/\1/p' "$f")
  vf=$(sed -n 's/^verify_failed: *//p' "$f")
  extra=$(grep -vE '^(servers|threads count|concurrency|run time|windows size|set proportion|get proportion|cmd_get|cmd_set|get_misses|verify_misses|verify_failed|expired_get|unexpired_unget|written_bytes|read_bytes|object_bytes|packet_disorder|packet_drop|udp_timeout):|^Run time: |^$' "$f" || true)
  if [ "$src" -eq 0 ] && [ -n "$ops" ] && [ "$ops" -gt 0 ] && [ "$vf" = 0 ] && [ -z "$extra" ]; then
    log "$name: memcaslap exit 0, $(grep '^Run time: ' "$f"), verify_failed 0"
  else
    log "$name: memcaslap exit $src, ops '${ops:-none}', verify_failed '${vf:-none}'; $f:"
    [ -z "$extra" ] || head -n 10 <<<"$extra" | sed 's/^/    /' >&2
    rc=1
  fi
  load_ok "$name: checking client (1 connection, set/get pairs)" "$RUN/$name.check" || rc=1
  [ "$(json_field "$RUN/$name.check" connections_left 2>/dev/null)" = 1 ] ||
    { log "$name: the checking client lost its connection"; rc=1; }
  return "$rc"
}

# rollback_serves_on PID WHICH: after a rolled-back update, PID serves on as WHICH
# (v1 or v2) with the keys, not quiescing, no process of V2 but PID left
rollback_serves_on() {
  local pid=$1 want=$2 v left="" d st
  alive "$pid" || { failed "the process $pid died in the rollback"; return; }
  v=$(version_of)
  [ "$v" = "$want" ] && [ "$(mstat pid)" = "$pid" ] && log "after the rollback $want (pid $pid) answers" ||
    failed "after the rollback: $v, pid $(mstat pid) (expected $want, pid $pid)"
  MC check "$NKEYS" >"$RUN/check-rollback.log" 2>&1 && log "after the rollback, $(tail -n1 "$RUN/check-rollback.log")" ||
    { sed 's/^/    /' "$RUN/check-rollback.log" >&2; failed "the keys after the rollback"; }
  for d in /proc/[0-9]*; do
    if [ "${d#/proc/}" != "$pid" ] && [ "$(readlink "$d/exe" 2>/dev/null)" = "$V2" ]; then left="$left ${d#/proc/}"; fi
  done
  if [ -z "$left" ]; then log "no other process of v2 is left"; else failed "processes of v2 left after the rollback:$left"; fi
  st=$("$MCR_CTL" status "$pid" --json 2>/dev/null || true)
  grep -q '"quiescing": false' <<<"$st" && log "mcr-ctl status $pid answers, not quiescing" ||
    failed "mcr-ctl status $pid after the rollback: not answering or still quiescing"
}

# --- 3. the update under load --------------------------------------------------------
log "update v1 -> v2 ($V2_DESC) under memcaslap -T 1 -c 4 -w 1k -t ${LOAD_SECS}s and the checking client"
load_begin update
rc=0
# what the user declares for this pair of versions (moved fields), if anything
MAP=$REPO/configs/$SERVER-$VERSION-to-$V2VERSION.renames
MAP_ARGS=()
[ -z "$V2VERSION" ] || [ ! -f "$MAP" ] || MAP_ARGS=(--rename-file "$MAP")
timeout -k 5 120 "$MCR_CTL" update "$V1PID" "$V2" --json --report "$RUN/update-report" \
  "${MAP_ARGS[@]+"${MAP_ARGS[@]}"}" >"$RUN/update.json" 2>"$RUN/update.err" || rc=$?
log "mcr-ctl update $V1PID $V2 --json ${MAP_ARGS[*]+"${MAP_ARGS[*]}"}: exit $rc"
[ ! -s "$RUN/update.err" ] || sed 's/^/    /' "$RUN/update.err" >&2
[ -s "$RUN/update.json" ] && update_log_json "$RUN/update.json"
NEWPID=$(json_field "$RUN/update.json" new_pid 2>/dev/null || echo 0)
PAUSE_MS=$(pause_ms "$RUN/update.json")
load_end update && LOAD1=ok || { LOAD1=errors; failed "the load saw errors during the update (above)"; }
touch "$RUN/held.go"
wait_pids 60 "$HELD_PID"
# held_check PID WHICH: the held connection's answers after the update
held_check() {
  python3 - "$RUN/held.json" "$1" "$2" "$V2_STAT" "$V2_VALUE" >&2 <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
pid, which, stat, val = sys.argv[2:]
b, a = j["before"], j.get("after") or {}
def ver(s):
    return "v2" if s.get(stat) == val else "v1" if s.get("mcr_code") is None and s.get("version") == "1.6.18" else "other"
print("[memcached] held connection (local port %s): before: pid %s, %s; after: pid %s, %s; get held:before %r; "
      "set/get held:after %s/%r; errors %s" % (j["local_port"], b["pid"], ver(b), a.get("pid"), ver(a),
      j.get("get_before"), j.get("set_after"), j.get("get_after"), j["errors"]))
ok = (not j["errors"] and ver(b) == "v1" and j["set_before"] == "STORED" and a.get("pid") == pid
      and ver(a) == which and j.get("get_before") == [5, "set-before-the-update"]
      and j.get("set_after") == "STORED" and j.get("get_after") == [6, "set-after-the-update"])
sys.exit(0 if ok else 1)
PY
}
RESULT_LINE=""
if [ "$rc" -eq 0 ]; then
  # --- committed ---------------------------------------------------------------------
  RESULT_LINE="committed"
  for ((i = 0; i < 50; i++)); do alive "$V1PID" || break; sleep 0.1; done
  if alive "$V1PID"; then failed "the old process $V1PID still runs"; else log "the old process $V1PID is gone"; fi
  wait "$V1PID" 2>/dev/null || true
  if [ "$NEWPID" -gt 0 ] 2>/dev/null && alive "$NEWPID"; then log "the new process $NEWPID runs"
  else failed "the new process $NEWPID does not run"; fi
  held_check "$NEWPID" v2 && log "the connection opened before the update is answered by v2 (pid $NEWPID)" ||
    failed "the connection opened before the update (above, $RUN/held.log)"
  st=$(MC stats 2>/dev/null || true)
  sv() { sed -n "s/^$1 //p" <<<"$st"; }
  v=$(version_of)
  [ "$v" = v2 ] && [ "$(sv pid)" = "$NEWPID" ] && log "a new connection: v2 answers, stats pid $(sv pid)" ||
    failed "a new connection after the update: $v, stats pid '$(sv pid)' (expected v2, $NEWPID)"
  [ -n "$(sv uptime)" ] && [ "$(sv uptime)" -ge "$UPTIME1" ] && [ "$(sv total_items)" -ge "$ITEMS1" ] &&
    log "stats: uptime $UPTIME1 -> $(sv uptime) s, total_items $ITEMS1 -> $(sv total_items) (v1's globals carried over)" ||
    failed "stats after the update: uptime '$(sv uptime)' (was $UPTIME1), total_items '$(sv total_items)' (was $ITEMS1)"
  if MC check "$NKEYS" >"$RUN/check-after.log" 2>&1; then log "after the update, $(tail -n1 "$RUN/check-after.log")"
  else sed 's/^/    /' "$RUN/check-after.log" >&2; failed "the keys after the update"; fi
  # the threads: the same names, each as many times
  thread_names "$NEWPID" >"$RUN/threads-v2.txt"
  sed -i "s|^$(basename "$V2") x|MAIN x|" "$RUN/threads-v2.txt"
  if cmp -s "$RUN/threads-v1.txt" "$RUN/threads-v2.txt"; then
    log "the new process's threads: $(tr '\n' ' ' <"$RUN/threads-v2.txt")(as v1's)"
  else
    failed "the new process's threads differ from v1's (< v1, > v2):"
    diff "$RUN/threads-v1.txt" "$RUN/threads-v2.txt" | grep '^[<>]' | sed 's/^/    /' >&2 || true
  fi
  # ... and they work
  MC workers 8 >"$RUN/workers.log" 2>&1 && log "$(cat "$RUN/workers.log")" ||
    failed "new connections after the update: $(cat "$RUN/workers.log")"
  MC metadump "$NKEYS" >"$RUN/metadump.log" 2>&1 && log "LRU crawler: $(cat "$RUN/metadump.log")" ||
    failed "LRU crawler after the update: $(head -c 300 "$RUN/metadump.log")"
  j1=$(mstat lru_maintainer_juggles); sleep 2.5; j2=$(mstat lru_maintainer_juggles)
  [ -n "$j2" ] && [ "$j2" -gt "${j1:-0}" ] && log "LRU maintainer: lru_maintainer_juggles $j1 -> $j2 in 2.5 s" ||
    failed "LRU maintainer: lru_maintainer_juggles '$j1' -> '$j2' in 2.5 s (not running?)"
  # enough keys to pass 1.5 items a bucket (memcaslap's keys count too), at most 150 000
  HP2=$(mstat hash_power_level); CUR=$(mstat curr_items)
  NEXPAND=$(( (3 << HP2) / 2 - CUR + 2000 ))
  [ "$NEXPAND" -ge 2000 ] || NEXPAND=2000
  [ "$NEXPAND" -le 150000 ] || { failed "the hash table (2^$HP2 buckets, $CUR items) needs over 150 000 more keys to grow"; NEXPAND=150000; }
  MC expand 0 "$NEXPAND" >"$RUN/expand.log" 2>&1 || failed "storing the $NEXPAND keys x:*: $(cat "$RUN/expand.log")"
  for ((i = 0; i < 100; i++)); do
    hp=$(mstat hash_power_level); he=$(mstat hash_is_expanding)
    [ "${hp:-0}" -gt "${HP2:-0}" ] && [ "$he" = 0 ] && break
    sleep 0.1
  done
  if [ "${hp:-0}" -gt "${HP2:-0}" ] && [ "$he" = 0 ]; then
    log "assoc thread: $NEXPAND more keys ($CUR -> $(mstat curr_items) items): the hash table grew, hash_power_level $HP2 -> $hp, expansion done"
  else
    failed "assoc thread: after $NEXPAND more keys hash_power_level '$HP2' -> '$hp', hash_is_expanding '$he' (10 s)"
  fi
  MC check "$NEXPAND" x >"$RUN/check-x.log" 2>&1 && MC check "$NKEYS" >>"$RUN/check-x.log" 2>&1 &&
    log "after the expansion: $(tail -n2 "$RUN/check-x.log" | tr '\n' ';')" ||
    { sed 's/^/    /' "$RUN/check-x.log" >&2; failed "the keys after the hash table's expansion"; }
  MC reassign >"$RUN/reassign.log" 2>&1 && log "slab mover: $(cat "$RUN/reassign.log")" ||
    failed "slab mover: $(cat "$RUN/reassign.log")"
  # the logger thread: the workers' log lines reach a watcher
  MC watch mutations >"$RUN/watch-v2.log" 2>&1 && log "logger thread: $(cat "$RUN/watch-v2.log")" ||
    failed "logger thread: $(cat "$RUN/watch-v2.log")"
  wrc=0; MC watch connevents >>"$RUN/watch-v2.log" 2>&1 || wrc=$?
  if [ "$wrc" -eq 0 ]; then log "logger thread: $(tail -n1 "$RUN/watch-v2.log")"
  elif [ "$wrc" -eq 2 ]; then
    failed "logger thread: $(tail -n1 "$RUN/watch-v2.log"): conn_new is logged through" \
      "pthread_getspecific(logger_key): the workers' thread-specific data did not follow their loggers"
  else failed "logger thread: $(tail -n1 "$RUN/watch-v2.log")"; fi
  if "$MCR_CTL" status "$NEWPID" >"$RUN/status-v2.txt" 2>&1; then log "mcr-ctl status $NEWPID answers ($(grep -c . "$RUN/status-v2.txt") lines)"
  else failed "mcr-ctl status $NEWPID: $(head -c 300 "$RUN/status-v2.txt")"; fi
elif [ "$rc" -eq 1 ]; then
  # --- rolled back: v1 must serve on ----------------------------------------------------
  RESULT_LINE="ROLLED BACK (not committed)"
  log "ROLLED BACK: the update to $V2_DESC was refused; v1 (pid $V1PID) must serve on. The report:"
  "$MCR_CTL" report "$RUN/update-report" 2>&1 | sed 's/^/    /' >&2 || true
  held_check "$V1PID" v1 && log "the connection opened before the update is answered by v1" ||
    failed "the connection opened before the update (above)"
  rollback_serves_on "$V1PID" v1
  failed "the update was rolled back: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("conflicts", [])))' \
    "$RUN/update.json" 2>/dev/null || echo '?') conflict(s), $RUN/update-report"
else
  RESULT_LINE="mcr-ctl update exit $rc"
  failed "mcr-ctl update exited $rc (0 = committed, 1 = rolled back)"
fi

# --- 4. rollback under load (after a commit) ---------------------------------------------
rrc=-; RBPAUSE=-; LOAD2=-
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  log "rollback under load: MCR_UPDATE_FAULT=heap:crash mcr-ctl update $NEWPID $V2"
  load_begin rollback
  rrc=0
  MCR_UPDATE_FAULT=heap:crash timeout -k 5 120 "$MCR_CTL" update "$NEWPID" "$V2" --json \
    --report "$RUN/rollback.report" >"$RUN/rollback.json" 2>"$RUN/rollback.err" || rrc=$?
  log "mcr-ctl update (heap:crash): exit $rrc"
  [ -s "$RUN/rollback.json" ] && update_log_json "$RUN/rollback.json"
  RBPAUSE=$(pause_ms "$RUN/rollback.json")
  load_end rollback && LOAD2=ok || { LOAD2=errors; failed "the load saw errors during the rolled-back update"; }
  [ "$rrc" -eq 1 ] || failed "mcr-ctl update with heap:crash exited $rrc (1 = rolled back)"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["reasons"]
sys.exit(0 if r and all("crashed" in x or "killed by signal 9" in x for x in r) else 1)' \
    "$RUN/rollback.json" 2>/dev/null || failed "the rollback's reasons are not (only) the injected crash at heap"
  rollback_serves_on "$NEWPID" v2
fi

# --- 5. SIGTERM ---------------------------------------------------------------------------
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  kill -TERM "$NEWPID"
  for ((i = 0; i < 100; i++)); do alive "$NEWPID" || break; sleep 0.1; done
  if alive "$NEWPID"; then failed "the updated process $NEWPID did not stop within 10 s of SIGTERM"
  elif grep -q '^Exiting normally' "$RUN/server.log"; then log "SIGTERM: the updated process $NEWPID exited normally"
  else failed "the updated process $NEWPID ended without 'Exiting normally'; server.log ends with: $(tail -n 3 "$RUN/server.log")"; fi
fi
for c in "$RUN"/core*; do
  [ -e "$c" ] || continue
  failed "core file $c"
  command -v gdb >/dev/null && gdb -batch -ex bt "$V2" "$c" 2>/dev/null | grep -E '^#' | head -n 15 | sed 's/^/    /' >&2
done

# --- summary ----------------------------------------------------------------------------
echo "==== $SERVER $VERSION -> $V2_DESC: live update of 4 workers and the maintenance threads under memcaslap ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
echo "  update v1 ($V1PID) -> v2 ($NEWPID): exit $rc, pause $PAUSE_MS ms: $RESULT_LINE; load: $LOAD1" >&2
for n in update rollback; do
  [ -s "$RUN/$n.check" ] || continue
  echo "  $n: memcaslap $(sed -n 's/^Run time: //p' "$RUN/$n.memcaslap"); checking client" \
    "$(json_field "$RUN/$n.check" ops) requests, $(json_field "$RUN/$n.check" errors) errors" >&2
done
[ "$rc" -ne 0 ] || echo "  rollback (heap:crash): exit $rrc, pause $RBPAUSE ms; load: $LOAD2" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
