#!/usr/bin/env bash
# nginx, master + 2 workers, updated live as one process tree under wrk
# (docs/coordinator.md, docs/real-servers.md). --code: test real-update-nginx,
# label real-update (CI runs it); without it: real-update-nginx-debian (label
# real-update) and -118 (label real-update).
#
# Which update: v1 = nginx 1.22.1 as Debian ships its upstream source, without
# Debian's patches; v2 = 1.22.1 with every patch of Debian's series (the
# 1.22.1-9+deb12u* package fetch-source.sh --debian-patches extracts), applied
# in the series' order with `patch -p1`. The series changes types and the set of
# modules: bug-973861.patch adds a bitfield `pipeline` in the middle of struct
# ngx_connection_s (each worker's connections), FIX-HTTP2bomb.patch a module
# (ngx_http_header_count_module: one more entry in ngx_modules[], the HTTP
# modules after it get another ctx_index) and a request context. With
# --v1-version 1.18.0, v1 is nginx 1.18.0 (Debian bullseye's source, without
# its patches) and v2 the same 1.22.1 with Debian's patches plus the user
# transformation configs/nginx-1.18.0-to-1.22.1.transform.patch: test
# real-update-nginx-118, label real-update (docs/real-servers.md). Both pass
# configs/nginx-V1-to-1.22.1[-debian].renames to mcr-ctl update: 'reinit',
# the configuration from the new startup.
#
#   1. Builds (tests/real/update-lib.sh): v1 through the quiescence pipeline
#      (scripts/profile-server.sh: profiling build, mcr-profile under wrk with
#      master + 2 workers, the config, the production build); v2 from the
#      1.22.1 upstream tree with the patches in a source cache of its own, built
#      by scripts/build-server.sh with the same mcr-clang, wrappers, v1's
#      quiescence config and flags. Reused while none of their inputs changed.
#   2. v1 runs in the foreground (daemon off, master_process on,
#      worker_processes 2, keep-alive 60 s and 1 000 000 requests), serving a
#      4 KiB file, a directory of 64 files and its autoindex listing; every
#      answer carries `X-Worker-Pid: $pid` (the serving worker's ngx_pid).
#   3. Update the master v1 -> v2 (`mcr-ctl update MASTER V2 --json`) while wrk
#      (-t2 -c16, keep-alive) loads the 4 KiB file and a checking client
#      (tests/real/update-check.py) GETs and checks every file on ONE keep-alive
#      connection opened before the update. How the versions are told apart:
#      - on the checking client's connection, by X-Worker-Pid: a pid of v1's
#        workers is v1, any other pid v2, and after the update the v2 pids seen
#        must be those of the new master's workers (whose /proc/PID/exe is v2's
#        binary). So that connection shows it was served by the new processes
#        on the same TCP connection, not v2's code by its behaviour;
#      - on a new connection, by behaviour: a GET with 1001 request headers is
#        answered 200 (right bytes) by v1 and 400 "Request Header Or Cookie Too
#        Large" by v2 (FIX-HTTP2bomb.patch's max_headers, default 1000).
#      Checked: mcr-ctl exits 0 (committed); wrk 0 socket errors and 0 non-2xx;
#      the checking client 0 failures, the same connection, v1 then v2 answers,
#      its v2 pids among the new workers; the new master is NEWPID with exactly
#      2 workers (children of it, new pids), all three running v2's binary and
#      serving; the old master and workers are gone; the pid file names the new
#      master; a new connection is answered by v2 with the right bytes;
#      `mcr-ctl status` answers for the master; error.log has no alert, crit or
#      emerg.
#   4. Rollback under the same load: MCR_UPDATE_FAULT=heap:crash:child, an
#      update of the (now v2) tree to v2's binary again: one new worker crashes
#      in its transfer: exit 1, the reasons are that crash and the report names
#      the process; the master NEWPID and its 2 workers serve on (same pids,
#      the checking client answered by them only), no other process of v2's
#      binary is left, the master is not quiescing.
#   5. SIGQUIT (graceful shutdown): the workers and the master exit within 10 s,
#      the pid file is removed, error.log gains no alert/crit/emerg.
#   If the update is rolled back instead (exit 1), its reasons and the report's
#   conflicts are logged, and the old tree is checked to serve on: the same
#   master and workers, v1 on a new connection, no load error, no process of
#   v2's binary left, the master not quiescing; it is stopped by SIGQUIT. The
#   test fails anyway (it asks for a committed update).
# The phases and the clients' pause (mcr-ctl --json) go to the log.
#
# Options:
#   --mcr-clang PATH      mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl and
#                         mcr-profile are taken from the same directory
#   --rebuild             build v1 and v2 even if identical builds are there
#   --no-build            reuse v1, v2 and the config of an earlier run as they are
#   --v1-version 1.18.0   v1 = nginx 1.18.0 (above) instead of 1.22.1
#   --code                v2 = 1.22.1 + tests/real/patches/nginx-1.22.1-code.patch (every
#                         response carries X-Mcr-Code: v2), instead of Debian's patches:
#                         a code-only change (test real-update-nginx, label real-update;
#                         output in $MCR_REAL_OUT/nginx-1.22.1-update). New connections
#                         tell the versions apart by that header instead of the probe
#   --respawn             before the update, kill a v1 worker (-9) and wait for the master
#                         to respawn it: the tree updated then holds a worker forked after
#                         the startup (docs/coordinator.md, "Respawned workers"); error.log
#                         is emptied after the respawn (its alert about the kill). With
#                         --code: test real-update-nginx-respawn, label real-update
#   --build-only          make the builds (and check them), print "V1 V2" (the two
#                         binaries) on stdout, and exit (benchmarks/nginx-upgrade
#                         --to-debian uses them)
#   --cache               the config has a proxy cache path (MCR_NGINX_CACHE=1 for
#                         scripts/nginx-conf.sh, in the profiling run too): the master
#                         also forks a cache manager and a cache loader; the update
#                         waits for the loader to exit (about 60 s after the start),
#                         then checks that the new master has a cache manager and no
#                         loader. Output in a directory of its own (-cache)
# Environment: MCR_CACHE (default ~/.cache/mcr), MCR_REAL_OUT (default
# $MCR_CACHE/real; builds and run files in $MCR_REAL_OUT/nginx-1.22.1-update-debian
# or nginx-1.18.0-to-1.22.1-update), MCR_BUILD_DIR (default /work/main/build),
# MCR_UPDATE_WRK_SECS (wrk's run across each update, default 8).
#
# Exit status: 0 every check passed (the update committed); 1 otherwise.
SERVER=nginx
V2VERSION=1.22.1
PORT_BASE=24700
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/update-lib.sh"
. "$REAL_DIR/update-lighttpd-lib.sh"
. "$REAL_DIR/nginx-lib.sh"

CHECK=$REAL_DIR/update-check.py
WRK_SECS=${MCR_UPDATE_WRK_SECS:-8}
NPROBE=1001   # request headers of the probe: one more than v2's max_headers
STATUS=0
failed() { log "FAILED: $*"; STATUS=1; }

update_args wrk curl python3 patch -- "$@"
VERSION=$V2VERSION
CODE=0
RESPAWN=0
RESPAWNED=
BUILD_ONLY=0
set -- "${UPDATE_ARGS[@]+"${UPDATE_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --code) CODE=1; shift ;;
    --respawn) RESPAWN=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --cache) export MCR_NGINX_CACHE=1; shift ;;
    --v1-version) VERSION=$2; shift 2 ;;
    --v1-version=*) VERSION=${1#*=}; shift ;;
    *) echo "$0: unknown argument $1" >&2; exit 1 ;;
  esac
done

CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
[ "$CODE" = 0 ] || [ "$VERSION" = "$V2VERSION" ] ||
  { echo "$0: --code updates $V2VERSION to itself: no --v1-version" >&2; exit 1; }
if [ "$CODE" = 1 ]; then
  OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-update
elif [ "$VERSION" = "$V2VERSION" ]; then
  OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-update-debian
else
  OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-to-$V2VERSION-update
fi
[ "${MCR_NGINX_CACHE:-0}" != 1 ] || OUT=$OUT-cache # another profile: the cache processes' points
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
log "output in $OUT"

# --- 1. builds ----------------------------------------------------------------------
if [ "$CODE" = 1 ]; then
  PATCHES=("$REAL_DIR/patches/nginx-$V2VERSION-code.patch")
  V2_DESC="$V2VERSION + tests/real/patches/nginx-$V2VERSION-code.patch"
else
  DEBSRC=$("$UPDATE_FETCH" "$SERVER" "$V2VERSION" --debian-patches) ||
    { log "FAILED: fetch-source.sh $SERVER $V2VERSION --debian-patches"; exit 1; }
  PATCHES=()
  while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    [ -f "$DEBSRC/debian/patches/$p" ] || { log "FAILED: the series names $p, not in $DEBSRC/debian/patches"; exit 1; }
    PATCHES+=("$DEBSRC/debian/patches/$p")
  done <"$DEBSRC/debian/patches/series"
  V2_DESC="$V2VERSION + Debian's $(sed -n 's/^debian_version=//p' "$DEBSRC/.mcr-source") patches (${#PATCHES[@]} of ${#PATCHES[@]})"
  # the user transformation an update across versions needs, after Debian's
  # patches (configs/nginx-V1-to-V2.transform.patch says why)
  TRANSFORM=$REPO/configs/$SERVER-$VERSION-to-$V2VERSION.transform.patch
  if [ "$VERSION" != "$V2VERSION" ] && [ -f "$TRANSFORM" ]; then
    PATCHES+=("$TRANSFORM")
    V2_DESC="$V2_DESC + the user transformation $(basename "$TRANSFORM")"
  else
    TRANSFORM=
  fi
fi

# v1 = $VERSION through the pipeline; v2 = 1.22.1's upstream tree + the patches,
# built with v1's config (update-lib.sh)
update_builds "$OUT" "$mcr_clang" --v2-version "$V2VERSION" "${PATCHES[@]}"
log "v1 $V1 ($VERSION, no Debian patch)"
log "v2 $V2 ($V2_DESC); builds $BUILD_SECS s"
if [ "$CODE" = 1 ]; then
  grep -q 'X-Mcr-Code: v2' "$V2" && ! grep -q 'X-Mcr-Code: v2' "$V1" ||
    { log "FAILED: v2 does not carry the code patch's header (or v1 does)"; exit 1; }
# v2's source is Debian's (dpkg-source -x) file for file (patch -p1 leaves
# *.orig copies where a hunk applied with an offset)
else
  # (with a transformation: Debian's tree with it applied)
  WANT=$DEBSRC
  if [ -n "$TRANSFORM" ]; then
    WANT=$OUT/debian-plus-transform
    rm -rf "$WANT"; cp -a "$DEBSRC" "$WANT"
    patch -s -p1 -d "$WANT" <"$TRANSFORM" ||
      { log "FAILED: $TRANSFORM does not apply to $DEBSRC"; exit 1; }
  fi
  if d=$(diff -rq -x debian -x .pc -x .mcr-source -x '*.orig' "$V2SRC" "$WANT" 2>&1); then
    log "v2's source tree is the one dpkg-source -x gives ($DEBSRC), debian/ aside${TRANSFORM:+, plus the transformation}"
  else
    log "FAILED: v2's source differs from $WANT:"; echo "$d" | head -n 20 >&2; exit 1
  fi
  [ -z "$TRANSFORM" ] || rm -rf "$WANT"
fi
if [ -n "${TRANSFORM:-}" ]; then
  grep -q ' T mcr_transform_type_ngx_connection_t$' <<<"$(nm "$V2" 2>/dev/null)" ||
    { log "FAILED: v2 lacks the user transformation mcr_transform_type_ngx_connection_t ($TRANSFORM)"; exit 1; }
fi
# the probe's difference is in v2's binary only
[ "$CODE" = 1 ] || grep -q 'client sent too many header lines' "$V2" && ! grep -q 'client sent too many header lines' "$V1" ||
  { log "FAILED: v2 does not carry FIX-HTTP2bomb.patch's max_headers (or v1 does)"; exit 1; }
log "quiescent points ($QP):"
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$QP" | sed 's/^/    /' >&2
"$MCR_CTL" check "$V1" "$V2" >"$OUT/check.txt" 2>&1 || true
if [ "$BUILD_ONLY" = 1 ]; then
  echo "$V1 $V2"
  exit 0
fi
log "mcr-ctl check v1 v2 ($OUT/check.txt): $(head -n1 "$OUT/check.txt")"

# --- 2. start v1 --------------------------------------------------------------------
RUN=$OUT/urun
rm -rf "$RUN"; mkdir -p "$RUN/conf" "$RUN/logs"
DOCROOT=$RUN/docroot
lighttpd_docroot
PORT=$(free_port "$PORT_BASE")
PIDFILE=$RUN/logs/nginx.pid
ERRLOG=$RUN/logs/error.log
nginx_conf "$RUN" "$V1" "$PORT" "$DOCROOT" '    large_client_header_buffers 4 32k;' \
  '        add_header X-Worker-Pid $pid always;
        location /dir/ { autoindex on; }'
# in RUN with core dumps on (core_pattern "core"; the new version inherits both)
start_group "$RUN/server.log" bash -c 'cd "$1" && ulimit -c unlimited 2>/dev/null; shift; exec "$@"' \
  _ "$RUN" "$V1" -p "$RUN/" -c conf/nginx.conf
SERVER_PID=$GROUP_PID
if ! wait_up 30; then
  log "FAILED: v1 did not answer on 127.0.0.1:$PORT; $RUN/server.log, error.log:"
  tail -n 20 "$RUN/server.log" "$ERRLOG" >&2 || true
  exit 1
fi
V1PID=$SERVER_PID
# workers PID: the children of PID, sorted, on one line
# (by their title: the cache manager and loader are the master's children too)
workers() { { pgrep -P "$1" -f 'worker process' || true; } | sort -n | tr '\n' ' ' | sed 's/ $//'; }
# cache_procs PID: the master's cache manager and loader children, "manager loader"
cache_procs() {
  echo "$({ pgrep -P "$1" -f 'cache manager process' || true; } | wc -l)" \
       "$({ pgrep -P "$1" -f 'cache loader process' || true; } | wc -l)"
}
# exe_pids BIN: the processes running BIN, sorted, on one line
exe_pids() {
  local f
  for f in /proc/[0-9]*/exe; do
    if [ "$(readlink "$f" 2>/dev/null)" = "$1" ]; then f=${f#/proc/}; echo "${f%/exe}"; fi
  done | sort -n | tr '\n' ' ' | sed 's/ $//'
}
V1W=$(workers "$V1PID")
for ((i = 0; i < 50; i++)); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
[ "$(cat "$PIDFILE" 2>/dev/null)" = "$V1PID" ] ||
  failed "the pid file holds '$(cat "$PIDFILE" 2>/dev/null)', not v1's master $V1PID"
log "v1 master $V1PID, workers $V1W, on 127.0.0.1:$PORT"
if [ "$RESPAWN" = 1 ]; then
  victim=${V1W%% *}
  kill -9 "$victim"
  now=""
  for ((i = 0; i < 100; i++)); do
    now=$(workers "$V1PID")
    [ "$(wc -w <<<"$now")" = 2 ] && ! grep -qw "$victim" <<<"$now" && break
    sleep 0.1
  done
  if [ "$(wc -w <<<"$now")" = 2 ] && ! grep -qw "$victim" <<<"$now"; then
    for w in $now; do case " $V1W " in *" $w "*) ;; *) RESPAWNED=$w ;; esac; done
    log "worker $victim killed (-9); the master respawned it as $RESPAWNED: workers now $now"
  else
    failed "the master did not respawn worker $victim (workers: $now)"
  fi
  V1W=$now
  : >"$ERRLOG" # its alert about the killed worker
fi
if [ "${MCR_NGINX_CACHE:-0}" = 1 ]; then
  # the loader finishes about 60 s after the start; the master reaps it
  for ((i = 0; i < 900; i++)); do [ "$(cache_procs "$V1PID")" = "1 0" ] && break; sleep 0.1; done
  if [ "$(cache_procs "$V1PID")" = "1 0" ]; then
    log "the cache loader exited after $((i / 10)) s; the cache manager runs"
  else
    failed "cache processes of the master (manager loader): $(cache_procs "$V1PID"), expected 1 0"
  fi
  V1CM=$(pgrep -P "$V1PID" -f 'cache manager process' || true)
fi
"$MCR_CTL" status "$V1PID" >"$RUN/status-v1.txt" 2>&1 || true
sed 's/^/    /' "$RUN/status-v1.txt" >&2

# version_of: which version answers a new connection (v1 / v2 / none / ...):
# a GET of the 4 KiB file with NPROBE request headers
for ((i = 0; i < NPROBE; i++)); do echo "X-Mcr-Probe-$i: $i"; done >"$RUN/probe-headers"
version_of() {
  local code
  if [ "$CODE" = 1 ]; then # by the code patch's header
    "${CURL[@]}" -D "$RUN/got.hdr" -o "$RUN/got.txt" "http://127.0.0.1:$PORT/file-4k.txt" ||
      { echo none; return; }
    cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt" || { echo wrong-bytes; return; }
    if grep -qi '^X-Mcr-Code: v2' "$RUN/got.hdr"; then echo v2; else echo v1; fi
    return
  fi
  code=$("${CURL[@]}" -H "@$RUN/probe-headers" -o "$RUN/got.txt" -w '%{http_code}' \
           "http://127.0.0.1:$PORT/file-4k.txt") || { echo none; return; }
  case "$code" in
    200) if cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt"; then echo v1; else echo wrong-bytes; fi ;;
    400) if grep -q 'Request Header Or Cookie Too Large' "$RUN/got.txt"; then
           # and without the probe's headers, the right bytes
           "${CURL[@]}" -o "$RUN/got.txt" "http://127.0.0.1:$PORT/file-4k.txt" &&
             cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt" && echo v2 || echo v2-wrong-bytes
         else echo "400-other"; fi ;;
    *) echo "status-$code" ;;
  esac
}
[ "$(version_of)" = v1 ] || failed "v1 answers the probe as $(version_of)"
errlog_bad() { { grep -E '\[(alert|crit|emerg)\]' "$ERRLOG" 2>/dev/null || true; } | head -n 5; }

# --- 3. v1 -> v2 under load -------------------------------------------------------------
log "update v1 -> v2 under load (wrk -t2 -c16 -d${WRK_SECS}s + the checking client)"
CHECK_ARGS=(--version-header X-Worker-Pid --v1-value "${V1W// /,}" --v2-value '*')
load_begin update v1,v2
rc=0
# what the user declares for this pair of versions (--reinit), if anything
MAP=$REPO/configs/$SERVER-$VERSION-to-$V2VERSION-debian.renames
[ "$VERSION" = "$V2VERSION" ] || MAP=$REPO/configs/$SERVER-$VERSION-to-$V2VERSION.renames
MAP_ARGS=()
[ "$CODE" = 1 ] || [ ! -f "$MAP" ] || MAP_ARGS=(--rename-file "$MAP")
timeout -k 5 180 "$MCR_CTL" update "$V1PID" "$V2" --json --report "$RUN/update.report" \
  "${MAP_ARGS[@]+"${MAP_ARGS[@]}"}" >"$RUN/update.json" 2>"$RUN/update.err" || rc=$?
UPDATED_AT=$(date +%s)
log "mcr-ctl update $V1PID $V2 --json ${MAP_ARGS[*]+"${MAP_ARGS[*]}"}: exit $rc"
[ ! -s "$RUN/update.err" ] || sed 's/^/    /' "$RUN/update.err" >&2
[ -s "$RUN/update.json" ] && update_log_json "$RUN/update.json"
NEWPID=$(json_field "$RUN/update.json" new_pid 2>/dev/null || echo 0)
PAUSE_MS=$(pause_ms "$RUN/update.json")
NEWW=""
if [ "$rc" -eq 0 ]; then
  load_end update || failed "requests failed during the update (or the connection was not answered by v2)"
else
  load_end update rolled-back || failed "requests failed during the rolled-back update (or v2 answered)"
fi

if [ "$rc" -eq 0 ]; then
  # the old tree is gone, the new one runs v2 and serves
  for ((i = 0; i < 50; i++)); do
    left=$(for p in $V1PID $V1W; do if alive "$p"; then echo "$p"; fi; done | tr '\n' ' ')
    [ -z "$left" ] && break; sleep 0.1
  done
  if [ -n "$left" ]; then failed "old processes still run: $left"
  else log "the old master $V1PID and workers $V1W are gone"; fi
  NEWW=$(workers "$NEWPID")
  if [ "$NEWPID" -gt 0 ] && alive "$NEWPID" && [ "$(wc -w <<<"$NEWW")" = 2 ]; then
    log "new master $NEWPID, workers $NEWW (its children)"
  else
    failed "the new master '$NEWPID' does not run with 2 workers (children: '$NEWW')"
    new_process_died "$V2"
  fi
  for p in $NEWW; do
    case " $V1W " in *" $p "*) failed "worker $p was v1's" ;; esac
  done
  if [ "${MCR_NGINX_CACHE:-0}" = 1 ]; then # the loader finished: not forked again
    if [ "$(cache_procs "$NEWPID")" = "1 0" ] && ! alive "$V1CM" &&
       grep -q "finished (exit status 0): not forked again" "$RUN/update.json"; then
      log "the new master has a cache manager ($(pgrep -P "$NEWPID" -f 'cache manager process')) and no loader; the notes say the old loader finished"
      # its timer event is a local of its loop, in the global timer tree (moved to
      # the new manager's same variable: docs/update.md, "Stack objects"); the
      # timer fires at least every 10 s: the same manager still runs after that
      NEWCM=$(pgrep -P "$NEWPID" -f 'cache manager process')
      while [ $(( $(date +%s) - UPDATED_AT )) -lt 12 ]; do sleep 0.5; done
      if [ "$(pgrep -P "$NEWPID" -f 'cache manager process')" = "$NEWCM" ] &&
         ! grep -q 'cache manager process [0-9]* exited on signal' "$ERRLOG"; then
        log "the new cache manager $NEWCM still runs $(( $(date +%s) - UPDATED_AT )) s after the update (its timer ran)"
      else
        failed "the new cache manager $NEWCM did not survive its timer: now '$(pgrep -P "$NEWPID" -f 'cache manager process' || true)'; $(grep 'exited on signal' "$ERRLOG" | tail -2)"
      fi
    else
      failed "cache processes of the new master (manager loader): $(cache_procs "$NEWPID"), expected 1 0; the old manager $V1CM alive: $(alive "$V1CM" && echo yes || echo no); or no note about the finished loader"
    fi
  fi
  if [ "$RESPAWN" = 1 ]; then # the respawn was paired with the dead worker's startup fork
    if grep -q "its child $RESPAWNED, forked later at [^\"]*ngx_spawn_process (a respawn)" \
         "$RUN/update.json"; then
      log "the notes name the respawned worker $RESPAWNED as the dead worker's replacement"
    else failed "the update's notes do not name the respawned worker $RESPAWNED"; fi
  fi
  exes=$(exe_pids "$V2")
  want=$(echo "$NEWPID" $NEWW $(pgrep -P "$NEWPID" -f 'cache manager process' || true) |
         tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
  if [ "$exes" = "$want" ]; then log "the processes running v2's binary: $exes (the new master and workers)"
  else failed "the processes running v2's binary are '$exes', expected '$want'"; fi
  # the checking client's v2 answers came from the new workers
  python3 - "$RUN/update.check" "$NEWW" <<'PY' >&2 || failed "the checking client's v2 answers did not all come from the new workers"
import json, sys
j = json.load(open(sys.argv[1]))
new = set(sys.argv[2].split())
seen = set(j["v2_values"])
print("[nginx] the checking client's connection was served after the update by worker(s) %s"
      % " ".join(sorted(seen)))
sys.exit(0 if seen and seen <= new else 1)
PY
  pf=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ "$pf" = "$NEWPID" ]; then log "the pid file names the new master $NEWPID"
  else failed "the pid file holds '$pf', expected '$NEWPID'"; fi
  v=$(version_of)
  if [ "$v" = v2 ]; then log "a new connection is answered by v2 ($([ "$CODE" = 1 ] && echo "X-Mcr-Code: v2" || echo "the probe: 400 to $NPROBE headers"); the file's right bytes)"
  else failed "a new connection after the update: $v (expected v2)"; fi
  http_check_data || failed "the files after the update"
  if "$MCR_CTL" status "$NEWPID" >"$RUN/status-v2.txt" 2>&1; then
    log "mcr-ctl status $NEWPID answers:"
    sed 's/^/    /' "$RUN/status-v2.txt" >&2
  else
    failed "mcr-ctl status $NEWPID: $(head -c 300 "$RUN/status-v2.txt")"
  fi
  bad=$(errlog_bad)
  if [ -n "$bad" ]; then failed "alert/crit/emerg in error.log:"; echo "$bad" | sed 's/^/    /' >&2
  else log "error.log: no alert, crit or emerg"; fi
else
  # --- rolled back: the old tree serves on, nothing of v2 left -------------------------
  log "ROLLED BACK: the update to $V2_DESC was refused; the old tree must serve on. The report:"
  "$MCR_CTL" report "$RUN/update.report" >"$RUN/update-report.txt" 2>&1 || true
  sed 's/^/    /' "$RUN/update-report.txt" | head -n 60 >&2
  sleep 0.5
  if alive "$V1PID" && [ "$(workers "$V1PID")" = "$V1W" ]; then
    log "the old master $V1PID and its workers $V1W run on"
  else
    failed "after the rollback: master $V1PID alive: $(alive "$V1PID" && echo yes || echo no), workers '$(workers "$V1PID")', expected '$V1W'"
  fi
  exes=$(exe_pids "$V2")
  if [ -z "$exes" ]; then log "no process of v2's binary is left"
  else failed "processes of v2's binary left: $exes"; fi
  v=$(version_of)
  [ "$v" = v1 ] && log "a new connection is answered by v1, right bytes" || failed "after the rollback: $v (expected v1)"
  http_check_data || failed "the files after the rollback"
  "$MCR_CTL" status "$V1PID" --json 2>/dev/null | grep -q '"quiescing": false' ||
    failed "mcr-ctl status $V1PID after the rollback: not answering or still quiescing"
  bad=$(errlog_bad)
  [ -z "$bad" ] || { failed "alert/crit/emerg in error.log:"; echo "$bad" | sed 's/^/    /' >&2; }
  failed "the update was rolled back (exit $rc), not committed"
fi

# --- 4. rollback under load (a new worker crashes in its transfer) ------------------------
RBPAUSE="-"
if [ "$rc" -eq 0 ] && alive "$NEWPID"; then
  log "rollback under load: MCR_UPDATE_FAULT=heap:crash:child mcr-ctl update $NEWPID $V2"
  CHECK_ARGS=(--version-header X-Worker-Pid --v1-value "${NEWW// /,}" --v2-value '*')
  load_begin rollback v1
  rrc=0
  MCR_UPDATE_FAULT=heap:crash:child timeout -k 5 180 "$MCR_CTL" update "$NEWPID" "$V2" --json \
    --report "$RUN/rollback.report" >"$RUN/rollback.json" 2>"$RUN/rollback.err" || rrc=$?
  log "mcr-ctl update (heap:crash:child): exit $rrc"
  [ ! -s "$RUN/rollback.err" ] || sed 's/^/    /' "$RUN/rollback.err" >&2
  [ -s "$RUN/rollback.json" ] && update_log_json "$RUN/rollback.json"
  load_end rollback ||
    failed "requests failed during the rolled-back update (or answered by another process than $NEWW)"
  [ "$rrc" -eq 1 ] || failed "mcr-ctl update with heap:crash:child exited $rrc (1 = rolled back)"
  RBPAUSE=$(pause_ms "$RUN/rollback.json")
  # rolled back because a new worker crashed, and the report names it
  "$MCR_CTL" report "$RUN/rollback.report" --json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
named = [x["message"] for x in c if x["kind"] == "crash" and x["message"].startswith("process ")]
for m in named:
    print("[nginx] the report: " + m)
sys.exit(0 if named else 1)' >&2 ||
    { "$MCR_CTL" report "$RUN/rollback.report" 2>&1 | head -n 30 >&2
      failed "the rollback's report does not name a crashed worker"; }
  sleep 0.5
  if alive "$NEWPID" && [ "$(workers "$NEWPID")" = "$NEWW" ]; then
    log "after the rollback the master $NEWPID and its workers $NEWW serve on"
  else
    failed "after the rollback: master $NEWPID alive: $(alive "$NEWPID" && echo yes || echo no), workers '$(workers "$NEWPID")', expected '$NEWW'"
  fi
  exes=$(exe_pids "$V2")
  if [ "$exes" = "$want" ]; then log "no other process of v2's binary is left"
  else failed "the processes of v2's binary after the rollback: '$exes', expected '$want'"; fi
  v=$(version_of)
  [ "$v" = v2 ] && log "a new connection is answered by v2" || failed "after the rollback: $v (expected v2)"
  http_check_data || failed "the files after the rollback"
  "$MCR_CTL" status "$NEWPID" --json 2>/dev/null | grep -q '"quiescing": false' ||
    failed "mcr-ctl status $NEWPID after the rollback: not answering or still quiescing"
  bad=$(errlog_bad)
  [ -z "$bad" ] || { failed "alert/crit/emerg in error.log after the rollback:"; echo "$bad" | sed 's/^/    /' >&2; }
elif [ "$rc" -eq 0 ]; then
  failed "rollback not tried (the new master is not running)"
fi

# --- 5. SIGQUIT: graceful shutdown of whichever tree serves ----------------------------
if [ "$rc" -eq 0 ]; then MASTER=$NEWPID WS=$NEWW; else MASTER=$V1PID WS=$V1W; fi
if alive "$MASTER"; then
  kill -QUIT "$MASTER"
  for ((i = 0; i < 100; i++)); do
    left=$(for p in $MASTER $WS; do if alive "$p"; then echo "$p"; fi; done | tr '\n' ' ')
    [ -z "$left" ] && break; sleep 0.1
  done
  if [ -n "$left" ]; then
    failed "SIGQUIT: still running after 10 s: $left"
  elif [ -e "$PIDFILE" ]; then
    failed "SIGQUIT: the master $MASTER exited but left its pid file"
  elif [ -n "$(errlog_bad)" ]; then
    failed "SIGQUIT: alert/crit/emerg in error.log: $(errlog_bad | head -n 2)"
  else
    log "SIGQUIT: the master $MASTER and workers $WS exited, the pid file is removed ($(grep -c 'exit' "$ERRLOG") exit lines in error.log)"
  fi
fi

# --- summary ----------------------------------------------------------------------------
echo "==== $SERVER $VERSION -> $V2_DESC: live update of the tree under wrk ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
echo "  update master $V1PID (workers $V1W) -> $NEWPID (workers ${NEWW:--}): exit $rc, pause $PAUSE_MS ms" >&2
summary_loads
[ "$rc" -ne 0 ] || echo "  rollback (heap:crash:child): exit ${rrc:-?}, pause $RBPAUSE ms" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
