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
. "$REAL_DIR/update-lighttpd-lib.sh"

CHECK=$REAL_DIR/update-check.py
PATCH=$REAL_DIR/patches/lighttpd-$VERSION-code.patch
WRK_SECS=${MCR_UPDATE_WRK_SECS:-8}
STATUS=0
failed() { log "FAILED: $*"; STATUS=1; }

update_args wrk curl python3 patch -- "$@"
[ ${#UPDATE_ARGS[@]} -eq 0 ] || { echo "$0: unknown argument ${UPDATE_ARGS[0]}" >&2; exit 1; }

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
lighttpd_docroot
PORT=$(free_port "$PORT_BASE")
PIDFILE=$RUN/lighttpd.pid
# max-keep-alive-requests: 1.4.69 keeps it in 16 bits (1000000 became 16960, and a
# fast machine's checking client passed that in 8 s: its connection closed)
cat >"$RUN/lighttpd.conf" <<CONF
server.document-root = "$DOCROOT"
server.bind          = "127.0.0.1"
server.port          = $PORT
server.errorlog      = "$RUN/error.log"
server.pid-file      = "$PIDFILE"
server.modules       = ( "mod_dirlisting" )
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle     = 60
dir-listing.activate = "enable"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".txt" => "text/plain",
                         ".bin" => "application/octet-stream" )
CONF
# -m: the modules of v1's build. The new version is started by the old process
# with the same arguments, so v2 loads these too (the patch changes the binary).
lighttpd_start_v1 -D -f "$RUN/lighttpd.conf" -m "$(dirname "$V1")"

# version_of: which version answers a fresh connection (v1 / v2 / none), and
# with the right bytes
version_of() {
  local h
  h=$("${CURL[@]}" -D - -o "$RUN/got.txt" "http://127.0.0.1:$PORT/file-4k.txt") || { echo none; return; }
  cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt" || { echo wrong-bytes; return; }
  if grep -qi '^X-Mcr-Code: v2' <<<"$h"; then echo v2; else echo v1; fi
}
[ "$(version_of)" = v1 ] || failed "v1 answers as $(version_of)"

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
[ "$rc" -ne 0 ] || check_committed

# --- 4. rollback under load -------------------------------------------------------------
RBPAUSE="-"
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  rollback_after_commit "$V1"
else
  failed "rollback not tried (the update did not commit)"
fi

# --- 5. the updated process stops cleanly ---------------------------------------------
[ "$rc" -ne 0 ] || ! alive "$NEWPID" || stop_cleanly

# --- summary ----------------------------------------------------------------------------
echo "==== $SERVER-$VERSION: live update under wrk ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
echo "  update v1 ($V1PID) -> v2 ($NEWPID): exit $rc, pause $PAUSE_MS ms" >&2
summary_loads
echo "  rollback (heap:crash): exit ${rrc:-?}, pause $RBPAUSE ms" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
