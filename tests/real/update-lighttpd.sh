#!/usr/bin/env bash
# lighttpd 1.4.69 updated live under wrk (label real-update).
#
#   1. Builds (tests/real/update-lib.sh): scripts/profile-server.sh (profiling
#      build, mcr-profile under wrk, the quiescence config, the production build
#      = v1); v2 = the same source with tests/real/patches/lighttpd-1.4.69-code.patch
#      (adds `X-Mcr-Code: v2` to every HTTP/1.x response), built by
#      scripts/build-server.sh with the same compiler, config, wrappers and
#      flags. Reused while none of their inputs changed.
#   2. v1 runs in the foreground (-D) with a pid file it keeps open, serving a
#      4 KiB file, a directory of 64 files and its listing (mod_dirlisting).
#   3. Update v1 -> v2 while wrk (-t2 -c16, keep-alive) loads the 4 KiB file and
#      a checking client (tests/real/update-check.py) GETs and checks every file
#      on ONE keep-alive connection opened before the update. Checked: mcr-ctl
#      update exits 0 (committed); wrk saw no non-2xx/3xx answer and no socket
#      error; the checking client no failure, v1 answers then v2 answers on the
#      same TCP connection; the pid file names the new pid; the old process is
#      gone; the new one serves (v2, right bytes) and `mcr-ctl status` answers.
#   4. Rollback under the same load: MCR_UPDATE_FAULT=heap:crash, an update of
#      the (now v2) process to v1: exit 1, the same process still serves as v2
#      on the checking client's connection, no failed request, not quiesced,
#      the pid file unchanged; the rollback is the injected crash's.
#   5. SIGTERM: the updated process stops cleanly (plugins unloaded, pid file
#      removed, "server stopped" in its error log).
# The phases and the clients' pause (mcr-ctl --json) go to the log.
#
# Options:
#   --mcr-clang PATH   mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl and
#                      mcr-profile are taken from the same directory
#   --rebuild          build v1 and v2 even if an identical build is there
#   --no-build         reuse v1, v2 and the config of an earlier run as they are
# Environment: MCR_CACHE (default ~/.cache/mcr), MCR_REAL_OUT (default
# $MCR_CACHE/real; the builds go to $MCR_REAL_OUT/lighttpd-1.4.69-update),
# MCR_BUILD_DIR (default /work/main/build), MCR_UPDATE_WRK_SECS (default 8).
#
# Exit status: 0 every check passed; 1 otherwise.
SERVER=lighttpd
VERSION=${MCR_LIGHTTPD_VERSION:-1.4.69}
PORT_BASE=24560
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/update-lib.sh"

CHECK=$REAL_DIR/update-check.py
PATCH=$REAL_DIR/patches/lighttpd-$VERSION-code.patch
WRK_SECS=${MCR_UPDATE_WRK_SECS:-8}
STATUS=0
failed() { log "FAILED: $*"; STATUS=1; }

mcr_clang=${MCR_BUILD_DIR:-/work/main/build}/bin/mcr-clang
while [ $# -gt 0 ]; do
  case "$1" in
    --mcr-clang) mcr_clang=$2; shift 2 ;;
    --mcr-clang=*) mcr_clang=${1#*=}; shift ;;
    --rebuild) export UPDATE_REBUILD=1; shift ;;
    --no-build) export UPDATE_NO_BUILD=1; shift ;;
    -h|--help) sed -n '2,/^# Exit/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$0: unknown argument $1" >&2; exit 1 ;;
  esac
done
[ -x "$mcr_clang" ] || { log "mcr-clang not found at $mcr_clang (build mcr first, or pass --mcr-clang PATH)"; exit 1; }
mcr_clang=$(cd "$(dirname "$mcr_clang")" && pwd)/$(basename "$mcr_clang")
MCR_CTL=$(dirname "$mcr_clang")/mcr-ctl
[ -x "$MCR_CTL" ] || { log "mcr-ctl not found next to $mcr_clang"; exit 1; }
for t in wrk curl python3 patch; do
  command -v "$t" >/dev/null || { log "$t not found (scripts/setup.sh installs it)"; exit 1; }
done

CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-update
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
log "output in $OUT"

# --- 1. builds ----------------------------------------------------------------------
update_builds "$OUT" "$mcr_clang" "$PATCH"
log "v1 $V1"
log "v2 $V2 (with $(basename "$PATCH")); builds $BUILD_SECS s"
log "quiescent points ($OUT/$SERVER.qp):"
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$OUT/$SERVER.qp" | sed 's/^/    /' >&2
# The two versions must differ exactly where the patch says (else the test
# could not tell who answered).
grep -q 'X-Mcr-Code: v2' "$V2" && ! grep -q 'X-Mcr-Code: v2' "$V1" ||
  { log "FAILED: v2 does not carry the patch's header (or v1 does)"; exit 1; }

# --- 2. start v1 --------------------------------------------------------------------
RUN=$OUT/urun
rm -rf "$RUN"; mkdir -p "$RUN"
DOCROOT=$RUN/docroot
make_docroot "$DOCROOT"
mkdir -p "$DOCROOT/dir"
python3 -c '
import os, sys
for i in range(64):
    n = 100 + i * 997
    with open(os.path.join(sys.argv[1], "f-%02d.txt" % i), "wb") as f:
        f.write(bytes((i * 7 + j * 13) % 94 + 33 for j in range(n)))' "$DOCROOT/dir"
PORT=$(free_port "$PORT_BASE")
PIDFILE=$RUN/lighttpd.pid
cat >"$RUN/lighttpd.conf" <<CONF
server.document-root = "$DOCROOT"
server.bind          = "127.0.0.1"
server.port          = $PORT
server.errorlog      = "$RUN/error.log"
server.pid-file      = "$PIDFILE"
server.modules       = ( "mod_dirlisting" )
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle     = 60
dir-listing.activate = "enable"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".txt" => "text/plain",
                         ".bin" => "application/octet-stream" )
CONF
# -m: the modules of v1's build. The new version is started by the old process
# with the same arguments, so v2 loads these too (the patch changes the binary).
start_group "$RUN/server.log" "$V1" -D -f "$RUN/lighttpd.conf" -m "$(dirname "$V1")"
SERVER_PID=$GROUP_PID
ping_server() { "${CURL[@]}" --max-time 2 -f -o /dev/null "http://127.0.0.1:$PORT/index.html"; }
if ! wait_up 30; then
  log "FAILED: v1 did not answer on 127.0.0.1:$PORT; $RUN/server.log, error.log:"
  tail -n 20 "$RUN/server.log" "$RUN/error.log" >&2 || true
  exit 1
fi
for ((i = 0; i < 50; i++)); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
V1PID=$SERVER_PID
[ "$(head -n1 "$PIDFILE" 2>/dev/null)" = "$V1PID" ] ||
  failed "the pid file holds '$(cat "$PIDFILE" 2>/dev/null)', not v1's pid $V1PID"
log "v1 (pid $V1PID) on 127.0.0.1:$PORT"
"$MCR_CTL" status "$V1PID" >"$RUN/status-v1.txt" 2>&1 || true
sed 's/^/    /' "$RUN/status-v1.txt" >&2

# version_of: which version answers a fresh connection (v1 / v2 / none), and
# with the right bytes
version_of() {
  local h
  h=$("${CURL[@]}" -D - -o "$RUN/got.txt" "http://127.0.0.1:$PORT/file-4k.txt") || { echo none; return; }
  cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt" || { echo wrong-bytes; return; }
  if grep -qi '^X-Mcr-Code: v2' <<<"$h"; then echo v2; else echo v1; fi
}
[ "$(version_of)" = v1 ] || failed "v1 answers as $(version_of)"

# --- the load around each update ------------------------------------------------------
# load_begin NAME EXPECT: the checking client (its connection is up before this
# returns), then wrk for WRK_SECS
load_begin() {
  local name=$1 expect=$2
  LOAD_PIDS=()
  start_group "$RUN/$name.check.log" timeout -k 5 300 python3 "$CHECK" --port "$PORT" \
    --docroot "$DOCROOT" --expect "$expect" --out "$RUN/$name.check"
  CHECK_PID=$GROUP_PID
  LOAD_PIDS+=("$GROUP_PID")
  start_group "$RUN/$name.wrk" timeout -k 5 $((WRK_SECS + 60)) \
    wrk -t2 -c16 -d"${WRK_SECS}s" "http://127.0.0.1:$PORT/file-4k.txt"
  WRK_PID=$GROUP_PID
  LOAD_PIDS+=("$GROUP_PID")
  sleep 2
}
# load_end NAME: wrk ends by itself; then the checking client is stopped.
# 0 when neither saw an error.
load_end() {
  local name=$1 rc=0
  wait_pids $((WRK_SECS + 60)) "$WRK_PID"
  sleep 0.5
  kill -INT "$CHECK_PID" 2>/dev/null || true
  wait_pids 30 "$CHECK_PID"
  python3 "$QTOOL" wrk "$RUN/$name.wrk" >"$RUN/$name.wrk.json"
  load_ok "$name: wrk -t2 -c16 -d${WRK_SECS}s" "$RUN/$name.wrk.json" || rc=1
  sed -n '/requests in/,$p' "$RUN/$name.wrk" | sed 's/^/    /' >&2
  # wrk ran its whole time (so it was running when the update came)
  python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["seconds"] < float(sys.argv[2]) - 1)' \
    "$RUN/$name.wrk.json" "$WRK_SECS" 2>/dev/null || { log "$name: wrk did not run ${WRK_SECS} s"; rc=1; }
  if [ ! -s "$RUN/$name.check" ]; then
    log "$name: the checking client wrote no summary ($RUN/$name.check.log):"
    tail -n 20 "$RUN/$name.check.log" >&2 || true
    return 1
  fi
  python3 - "$RUN/$name.check" "$name" >&2 <<'PY' || rc=1
import json, sys
j = json.load(open(sys.argv[1]))
v = j["versions"]
print("[lighttpd] %s: checking client, one keep-alive connection (%s): %d requests, %d errors, "
      "%d from v1 then %d from v2 (first v2 at #%s), %d reconnects, longest gap %.1f ms at %.2f s"
      % (sys.argv[2], j["local"], j["ops"], j["errors"], v["v1"], v["v2"], j["first_v2"],
         j["reconnects"], j["max_gap_ms"], j["max_gap_at"]))
for e in j["first_errors"]:
    print("    " + e)
sys.exit(1 if j["errors"] else 0)
PY
  return "$rc"
}

# --- 3. v1 -> v2 under load -------------------------------------------------------------
log "update v1 -> v2 under load (wrk -t2 -c16 -d${WRK_SECS}s + the checking client)"
load_begin update v1,v2
rc=0
timeout -k 5 120 "$MCR_CTL" update "$V1PID" "$V2" --json >"$RUN/update.json" 2>"$RUN/update.err" || rc=$?
log "mcr-ctl update $V1PID $V2 --json: exit $rc"
[ ! -s "$RUN/update.err" ] || sed 's/^/    /' "$RUN/update.err" >&2
[ -s "$RUN/update.json" ] && update_log_json "$RUN/update.json"
load_end update || failed "requests failed during the update (or the connection was not answered by v2)"
[ "$rc" -eq 0 ] || failed "mcr-ctl update exited $rc (0 = committed)"
NEWPID=$(json_field "$RUN/update.json" new_pid 2>/dev/null || echo 0)
PAUSE_MS=$(pause_ms "$RUN/update.json")
if [ "$rc" -eq 0 ]; then
  for ((i = 0; i < 50; i++)); do alive "$V1PID" || break; sleep 0.1; done
  if alive "$V1PID"; then failed "the old process $V1PID still runs"
  else log "the old process $V1PID is gone"; fi
  [ "$NEWPID" -gt 0 ] && alive "$NEWPID" || failed "the new process $NEWPID does not run"
  pf=$(tr '\n\0' ' @' <"$PIDFILE" 2>/dev/null || true)
  if [ "$pf" = "$NEWPID " ]; then log "the pid file names the new process $NEWPID"
  else failed "the pid file holds '$pf', expected '$NEWPID' alone"; fi
  v=$(version_of)
  if [ "$v" = v2 ]; then log "a new connection is answered by v2 with the right bytes"
  else failed "a new connection after the update: $v (expected v2)"; fi
  http_check_data || failed "the files after the update"
  if "$MCR_CTL" status "$NEWPID" >"$RUN/status-v2.txt" 2>&1; then
    log "mcr-ctl status $NEWPID answers:"
    sed 's/^/    /' "$RUN/status-v2.txt" >&2
  else
    failed "mcr-ctl status $NEWPID: $(head -c 300 "$RUN/status-v2.txt")"
  fi
fi

# --- 4. rollback under load -------------------------------------------------------------
RBPAUSE="-"
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  log "rollback under load: MCR_UPDATE_FAULT=heap:crash mcr-ctl update $NEWPID $V1"
  fds=$(ls "/proc/$NEWPID/fd" | wc -l)
  load_begin rollback v2
  rrc=0
  MCR_UPDATE_FAULT=heap:crash timeout -k 5 120 "$MCR_CTL" update "$NEWPID" "$V1" --json \
    --report "$RUN/rollback-report.json" >"$RUN/rollback.json" 2>"$RUN/rollback.err" || rrc=$?
  log "mcr-ctl update (heap:crash): exit $rrc"
  [ ! -s "$RUN/rollback.err" ] || sed 's/^/    /' "$RUN/rollback.err" >&2
  [ -s "$RUN/rollback.json" ] && update_log_json "$RUN/rollback.json"
  load_end rollback || failed "requests failed during the rolled-back update (or not all from v2)"
  [ "$rrc" -eq 1 ] || failed "mcr-ctl update with heap:crash exited $rrc (1 = rolled back)"
  # rolled back because of the injected crash, not refused earlier for another reason
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["reasons"]
sys.exit(0 if r and all("crashed" in x or "killed by signal 9" in x for x in r) else 1)' \
    "$RUN/rollback.json" 2>/dev/null ||
    failed "the rollback's reasons are not (only) the injected crash at heap (see above)"
  RBPAUSE=$(pause_ms "$RUN/rollback.json")
  alive "$NEWPID" || failed "the process $NEWPID died in the rollback"
  pf=$(tr '\n\0' ' @' <"$PIDFILE" 2>/dev/null || true)
  [ "$pf" = "$NEWPID " ] || failed "after the rollback the pid file holds '$pf', expected '$NEWPID'"
  v=$(version_of)
  if [ "$v" = v2 ]; then log "after the rollback v2 (pid $NEWPID) still serves, right bytes"
  else failed "after the rollback: $v (expected v2)"; fi
  http_check_data || failed "the files after the rollback"
  [ "$(ls "/proc/$NEWPID/fd" | wc -l)" = "$fds" ] ||
    failed "$(ls "/proc/$NEWPID/fd" | wc -l) descriptors after the rollback, was $fds"
  "$MCR_CTL" status "$NEWPID" --json 2>/dev/null | grep -q '"quiescing": false' ||
    failed "mcr-ctl status $NEWPID after the rollback: not answering or still quiescing"
else
  failed "rollback not tried (the update did not commit)"
fi

# --- 5. the updated process stops cleanly ---------------------------------------------
# lighttpd's shutdown unloads its plugins (dlclose of the handles in the
# transferred state) and frees what it allocated, old objects included.
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  kill -TERM "$NEWPID"
  for ((i = 0; i < 100; i++)); do alive "$NEWPID" || break; sleep 0.1; done
  if alive "$NEWPID"; then
    failed "the updated process $NEWPID did not stop within 10 s of SIGTERM"
  elif tail -n 1 "$RUN/error.log" | grep -q 'server stopped' && [ ! -e "$PIDFILE" ]; then
    log "SIGTERM: the updated process $NEWPID stopped cleanly (error.log: server stopped; pid file removed)"
  else
    failed "the updated process $NEWPID did not stop cleanly on SIGTERM; error.log ends with: $(tail -n 2 "$RUN/error.log")"
  fi
fi

# --- summary ----------------------------------------------------------------------------
echo "==== $SERVER-$VERSION: live update under wrk ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
echo "  update v1 ($V1PID) -> v2 ($NEWPID): exit $rc, pause $PAUSE_MS ms" >&2
for n in update rollback; do
  [ -s "$RUN/$n.wrk.json" ] || continue
  python3 - "$RUN/$n.wrk.json" "$RUN/$n.check" "$n" >&2 <<'PY' || true
import json, sys
w = json.load(open(sys.argv[1]))
try:
    c = json.load(open(sys.argv[2]))
except (OSError, ValueError):
    c = {"ops": 0, "errors": "?", "versions": {"v1": 0, "v2": 0}}
print("  %-8s wrk %d requests (%.0f/s), %d non-2xx/3xx, socket errors %s; checking client "
      "%d requests, %s errors (v1 %d, v2 %d)"
      % (sys.argv[3], w["ops"], w["ops_per_s"], w["non_2xx_3xx"],
         "/".join(str(v) for v in w["socket_errors"].values()), c["ops"], c["errors"],
         c["versions"]["v1"], c["versions"]["v2"]))
PY
done
echo "  rollback (heap:crash): exit ${rrc:-?}, pause $RBPAUSE ms" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
