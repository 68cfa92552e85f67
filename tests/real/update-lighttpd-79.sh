#!/usr/bin/env bash
# lighttpd 1.4.69 updated live to lighttpd 1.4.79 under wrk (label real-update):
# a real upstream version change (issue 5), whose request_st, connection,
# chunkqueue, server_config and mod_dirlisting structs change. The update's
# config: configs/lighttpd-1.4.69-to-1.4.79.renames (a function 1.4.79 replaced
# and five new globals its startup sets, kept; passed with mcr-ctl update
# --rename-file), one type line in
# configs/lighttpd.wrappers (plugin_slots), and one user transformation added to
# 1.4.79's mod_dirlisting.c (configs/lighttpd-1.4.69-to-1.4.79.transform.patch,
# 8 lines: a listing in progress at the update needs the mimetypes field 1.4.79
# added; without it 1.4.79 crashed after about 1 in 7 updates). Known gaps
# (docs/real-servers.md): fields 1.4.79 added that only its code sets
# (r->dst_addr) are NULL in the connections carried over, which this config
# never reads.
#
#   1. Builds: v1 = 1.4.69 through the quiescence pipeline
#      (scripts/profile-server.sh: profiling build, mcr-profile under wrk, the
#      quiescence config, the production build); v2 = 1.4.79 built by
#      scripts/build-server.sh with the same mcr-clang, wrappers, v1's
#      quiescence config and the same meson command. Both are static builds of
#      the same three modules (mod_indexfile, mod_dirlisting, mod_staticfile:
#      tests/real/patches/lighttpd-<version>-static.patch), because the new
#      version inherits the old one's argv: with `-m DIR` both would dlopen
#      v1's plugins, and a plugin replaced by another file has no counterpart
#      for the pointers into it. HTTP/2 is off in the config
#      (server.feature-flags): 1.4.69 has it in the core, 1.4.79 in mod_h2,
#      which would be a fourth module in v2 only. Builds are reused while none
#      of their inputs changed.
#      Checked before the update: the versions (-v), the three modules compiled
#      in, and that v2 run alone parks at v1's quiescent point (the idle stack
#      is the same in 1.4.79: `mcr-ctl quiesce` on it).
#   2. v1 runs in the foreground (-D) with a pid file, serving a 4 KiB file, a
#      directory of 64 files and its listing (mod_dirlisting).
#   3. Update v1 -> v2 while wrk (-t2 -c16, keep-alive) loads the 4 KiB file and
#      a checking client (update-check.py) GETs every file and the listing on
#      ONE keep-alive connection opened before the update; each answer's
#      version is its Server: header (lighttpd/1.4.69 or lighttpd/1.4.79).
#      If committed, checked as update-lighttpd.sh does: wrk and the checking
#      client without an error, v1 then v2 on the same connection, the pid
#      file, the old process gone, a new connection answered by v2 with the
#      right bytes, `mcr-ctl status`; then a rollback under the same load
#      (MCR_UPDATE_FAULT=heap:crash, v2 -> v2): exit 1, v2 serves on; SIGTERM
#      stops v2 cleanly.
#      If rolled back (exit 1): the reasons are logged and classified (startup
#      replay, type change, pointer into the old program, crash, other), and
#      the old version is checked to serve on as if nothing happened: alive,
#      answers as v1 with the right bytes, the checking client's connection
#      answered by v1 only and without an error, wrk without an error, the pid
#      file unchanged, the same number of descriptors, no process of v2 left,
#      `mcr-ctl status` answers and is not quiescing. The test then FAILS
#      anyway (it asks for a committed update), saying so.
#
# Options:
#   --mcr-clang PATH   mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl and
#                      mcr-profile are taken from the same directory
#   --rebuild          build v1 and v2 even if identical builds are there
#   --no-build         reuse v1, v2 and the config of an earlier run as they are
# Environment: MCR_CACHE (default ~/.cache/mcr), MCR_REAL_OUT (default
# $MCR_CACHE/real; builds and run files in $MCR_REAL_OUT/lighttpd-1.4.69-to-1.4.79-update),
# MCR_BUILD_DIR (default /work/main/build), MCR_UPDATE_WRK_SECS (default 5).
#
# Exit status: 0 every check passed (the update committed); 1 otherwise.
SERVER=lighttpd
VERSION=1.4.69
V2VERSION=1.4.79
PORT_BASE=24660
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/update-lib.sh"
. "$REAL_DIR/update-lighttpd-lib.sh"

CHECK=$REAL_DIR/update-check.py
# the functions 1.4.79 replaced (mcr-ctl update --rename-file): the update's config
RENAMES=$REPO/configs/lighttpd-$VERSION-to-$V2VERSION.renames
PREP1=$REAL_DIR/patches/lighttpd-$VERSION-static.patch
PREP2=$REAL_DIR/patches/lighttpd-$V2VERSION-static.patch
# the user transformation 1.4.79 needs (mod_dirlisting's handler_ctx): the update's config
TRANSFORM=$REPO/configs/lighttpd-$VERSION-to-$V2VERSION.transform.patch
WRK_SECS=${MCR_UPDATE_WRK_SECS:-5}
TAG1=lighttpd/$VERSION
TAG2=lighttpd/$V2VERSION
MODULES=(mod_indexfile mod_dirlisting mod_staticfile)
STATUS=0
failed() { log "FAILED: $*"; STATUS=1; }

update_args wrk curl python3 patch nm -- "$@"
[ ${#UPDATE_ARGS[@]} -eq 0 ] || { echo "$0: unknown argument ${UPDATE_ARGS[0]}" >&2; exit 1; }

CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-to-$V2VERSION-update
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
log "output in $OUT"

# --- 1. builds ----------------------------------------------------------------------
# v1 through the pipeline (OUT/$SERVER.qp, OUT/prod), v2 with v1's config
# (OUT/v2), each from its version's source with its static patch; reused when
# OUT/update-key matches. Sets V1, V2, QP, BUILD_SECS.
upgrade_builds() {
  local s=$SECONDS src1 src2 key
  QP=$OUT/$SERVER.qp
  src1=$("$UPDATE_FETCH" "$SERVER" "$VERSION") || { log "FAILED: fetch-source.sh $SERVER $VERSION"; exit 1; }
  src2=$("$UPDATE_FETCH" "$SERVER" "$V2VERSION") || { log "FAILED: fetch-source.sh $SERVER $V2VERSION"; exit 1; }
  key=$(update_key "$mcr_clang" "$src1 $src2" "$PREP1" "$PREP2" "$TRANSFORM")
  if ! update_reuse "$OUT" "$key"; then
    rm -f "$OUT/update-key"
    update_prep_source "$src1" "$OUT/v1-cache" "$PREP1" >/dev/null || exit 1
    update_prep_source "$src2" "$OUT/v2-cache" "$PREP2" "$TRANSFORM" >/dev/null || exit 1
    V1=$(MCR_CACHE=$OUT/v1-cache "$UPDATE_PROFILE" "$SERVER" "$VERSION" --cc "$mcr_clang" --out "$OUT") ||
      { log "FAILED: scripts/profile-server.sh $SERVER $VERSION failed (logs in $OUT)"; exit 1; }
    V2=$(MCR_CACHE=$OUT/v2-cache MCR_WRAPPERS=$REPO/configs/$SERVER.wrappers MCR_PROFILE= \
         MCR_QUIESCENCE=$QP "$UPDATE_BUILD" "$SERVER" "$V2VERSION" --cc "$mcr_clang" --out "$OUT/v2") ||
      { log "FAILED: the v2 build ($SERVER $V2VERSION) failed (see $OUT/v2/build.log)"; exit 1; }
    echo "$key" >"$OUT/update-key"
  fi
  BUILD_SECS=$((SECONDS - s))
}

upgrade_builds
log "v1 $V1"
log "v2 $V2; builds $BUILD_SECS s"
log "quiescent points ($QP):"
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$QP" | sed 's/^/    /' >&2
for v in "V1 $TAG1" "V2 $TAG2"; do
  set -- $v
  b=${!1}
  ver=$("$b" -v 2>&1 || true)
  grep -qF "$2 " <<<"$ver" || { log "FAILED: $1 ($b -v: $(head -n1 <<<"$ver")) is not $2"; exit 1; }
  syms=$(nm "$b" 2>/dev/null || true)
  for m in "${MODULES[@]}"; do
    grep -q " T ${m}_plugin_init\$" <<<"$syms" ||
      { log "FAILED: $1 has no ${m} compiled in (not a static build of the three modules?)"; exit 1; }
  done
done
grep -q ' T mcr_transform_type_handler_ctx$' <<<"$(nm "$V2" 2>/dev/null)" ||
  { log "FAILED: v2 lacks the user transformation mcr_transform_type_handler_ctx ($TRANSFORM)"; exit 1; }
log "v1 is $TAG1, v2 $TAG2, both static with ${MODULES[*]}; v2 with the transformation of handler_ctx"
if "$MCR_CTL" check --help >/dev/null 2>&1; then
  "$MCR_CTL" check "$V1" "$V2" >"$OUT/check.txt" 2>&1 || true
  log "mcr-ctl check v1 v2 ($OUT/check.txt): $(head -n1 "$OUT/check.txt")"
fi

RUN=$OUT/urun
rm -rf "$RUN"; mkdir -p "$RUN"
DOCROOT=$RUN/docroot
lighttpd_docroot

# write_conf FILE PORT DIR: the same config for both versions. Values both
# accept: 1.4.79 refuses max-keep-alive-requests above 65535 (1.4.69 took
# 1000000: v2's startup exited on it); the listen backlog is 1.4.69's default
# (1.4.79's is 4096: listen(fd, 4096) against the old listen(fd, 1024) is a
# startup replay conflict).
write_conf() {
  cat >"$1" <<CONF
server.document-root = "$DOCROOT"
server.bind          = "127.0.0.1"
server.port          = $2
server.errorlog      = "$3/error.log"
server.pid-file      = "$3/lighttpd.pid"
server.modules       = ( "mod_dirlisting" )
server.feature-flags = ( "server.h2proto" => "disable" )
server.listen-backlog = 1024
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle     = 60
dir-listing.activate = "enable"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".txt" => "text/plain",
                         ".bin" => "application/octet-stream" )
CONF
}

# v2 alone: does it park at v1's quiescent point? (a config written for 1.4.69's
# stacks compiled into 1.4.79: the link-time check found the marked call; this
# checks the whole stack at run time)
ALONE=$RUN/v2-alone
mkdir -p "$ALONE"
APORT=$(free_port $((PORT_BASE + 10)))
write_conf "$ALONE/lighttpd.conf" "$APORT" "$ALONE"
start_group "$ALONE/server.log" "$V2" -D -f "$ALONE/lighttpd.conf"
SERVER_PID=$GROUP_PID
PORT=$APORT
if wait_up 30; then
  "$MCR_CTL" quiesce "$SERVER_PID" --json >"$ALONE/quiesce.json" 2>&1 || true
  want=$(sed -n 's/^[[:space:]]*qp[[:space:]]\{1,\}//p' "$QP" | head -n1)
  got=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["threads"][0]["point"]["stack"] if j.get("quiesced") else "not quiesced")' "$ALONE/quiesce.json" 2>/dev/null || echo "no answer")
  if [ "$got" = "$want" ]; then log "v2 alone parks at v1's quiescent point: $got"
  else failed "v2 alone: quiesce gave '$got', v1's config says '$want' ($ALONE/quiesce.json)"; fi
else
  failed "v2 alone did not answer on 127.0.0.1:$APORT ($ALONE/server.log, error.log)"
  tail -n 5 "$ALONE/server.log" "$ALONE/error.log" >&2 2>/dev/null || true
fi
kill -TERM "$SERVER_PID" 2>/dev/null || true
wait_pids 10 "$SERVER_PID"

# --- 2. start v1 --------------------------------------------------------------------
PORT=$(free_port "$PORT_BASE")
PIDFILE=$RUN/lighttpd.pid
write_conf "$RUN/lighttpd.conf" "$PORT" "$RUN"
# No -m: the modules are compiled in (the new version gets these same arguments).
lighttpd_start_v1 -D -f "$RUN/lighttpd.conf"

# version_of: which version answers a fresh connection (v1 / v2 / none /
# wrong-bytes / other:TAG), by its Server: header
version_of() {
  local h s
  h=$("${CURL[@]}" -D - -o "$RUN/got.txt" "http://127.0.0.1:$PORT/file-4k.txt") || { echo none; return; }
  cmp -s "$RUN/got.txt" "$DOCROOT/file-4k.txt" || { echo wrong-bytes; return; }
  s=$(sed -n 's/^[Ss]erver: *//p' <<<"$h" | tr -d '\r')
  case "$s" in "$TAG1") echo v1 ;; "$TAG2") echo v2 ;; *) echo "other:$s" ;; esac
}
[ "$(version_of)" = v1 ] || failed "v1 answers as $(version_of)"

# each answer's version by its Server: header
CHECK_ARGS=(--version-header Server --v1-value "$TAG1" --v2-value "$TAG2")

# classify FILE: the reasons of a rolled-back update, by kind, and a verdict
classify() {
  python3 - "$1" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1])).get("reasons", [])
kinds = [
    ("type change", ("changed size", "changes type", "type change", "layout", "narrow",
                     "does not fit", "transform", "field")),
    ("startup replay", ("startup", "the new version closed the channel")),
    ("pointer into the old program", ("pointer into the old program", "no counterpart")),
    ("new version crashed", ("killed by signal", "crashed")),
]
seen = {}
for x in r:
    k = next((name for name, keys in kinds if any(s in x for s in keys)), "other")
    seen.setdefault(k, []).append(x)
for k, xs in seen.items():
    print("[lighttpd]   refused for: %s (%d reason%s), first: %s"
          % (k, len(xs), "" if len(xs) == 1 else "s", xs[0][:300]))
if "type change" in seen:
    print("[lighttpd]   verdict: refused for a type change")
else:
    print("[lighttpd]   verdict: refused BEFORE any type change was looked at: %s"
          % ", ".join(seen) if seen else "[lighttpd]   verdict: rolled back without a reason")
PY
}

# --- 3. v1 -> v2 under load -------------------------------------------------------------
log "update v1 ($TAG1) -> v2 ($TAG2) under load (wrk -t2 -c16 -d${WRK_SECS}s + the checking client)"
fd_snapshot "$V1PID" >"$RUN/fds-before.txt"
SLOG1=$(wc -l <"$RUN/server.log"); ELOG1=$(wc -l <"$RUN/error.log")
load_begin update v1,v2
# v2 waits a second once its startup is replayed (MCR_UPDATE_FAULT=ready:delay) and
# clients connect meanwhile: v1 accepts it at the lowest free number, the one v2's own
# listening socket got when it took over v1's (1.4.79 makes it at another call stack),
# so the transfer hands v2 a connection at that number. The rollback step below is the
# next update of that process: its replay must still find the listening socket (it
# bound for real and failed before runtime b4f24ce; about 1 run in 8 when
# left to chance).
python3 -c 'import socket, sys, time
held = []
for _ in range(4):  # a few, in case a directory listing holds that number for a moment
    time.sleep(0.15)
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
time.sleep(4)' "$PORT" &
HOLDER=$!
rc=0
MCR_UPDATE_FAULT=ready:delay timeout -k 5 120 "$MCR_CTL" update "$V1PID" "$V2" --json \
  --report "$RUN/update.report" \
  --rename-file "$RENAMES" >"$RUN/update.json" 2>"$RUN/update.err" || rc=$?
wait "$HOLDER" 2>/dev/null || true
log "mcr-ctl update $V1PID $V2 --json: exit $rc"
[ ! -s "$RUN/update.err" ] || sed 's/^/    /' "$RUN/update.err" >&2
[ -s "$RUN/update.json" ] && update_log_json "$RUN/update.json"
NEWPID=$(json_field "$RUN/update.json" new_pid 2>/dev/null || echo 0)
PAUSE_MS=$(pause_ms "$RUN/update.json")
RESULT_LINE=""
if [ "$rc" -eq 1 ]; then
  # --- rolled back: the old version must serve on as if nothing happened ----------------
  serve_ok=1 state_ok=1 broken=()
  load_end update rolled-back ||
    { failed "requests failed during the rolled-back update (or answered by v2)"; serve_ok=0; }
  log "ROLLED BACK: the update to $TAG2 was refused; v1 (pid $V1PID) must serve on"
  [ -s "$RUN/update.json" ] && classify "$RUN/update.json"
  log "what the new version wrote (server.log, error.log since the update began):"
  tail -n +"$((SLOG1 + 1))" "$RUN/server.log" | sed 's/^/    server.log: /' >&2
  tail -n +"$((ELOG1 + 1))" "$RUN/error.log" | sed 's/^/    error.log: /' >&2
  if alive "$V1PID"; then log "v1 (pid $V1PID) is alive"; else failed "v1 (pid $V1PID) died in the rollback"; serve_ok=0; fi
  v=$(version_of)
  if [ "$v" = v1 ]; then log "a new connection is answered by v1 with the right bytes"
  else failed "after the rollback a new connection: $v (expected v1)"; serve_ok=0; fi
  http_check_data || { failed "the files after the rollback"; serve_ok=0; }
  if [ ! -e "$PIDFILE" ]; then
    # (lighttpd's exit path truncates and unlinks its pid file: a new version
    # whose startup ran the pid file's open for real and then failed removes
    # the old version's)
    failed "after the rollback the pid file $PIDFILE is gone (v1 still runs as $V1PID)"
    state_ok=0; broken+=("its pid file is gone")
  else
    pf=$(tr '\n\0' ' @' <"$PIDFILE" 2>/dev/null || true)
    [ "$pf" = "$V1PID " ] || { failed "after the rollback the pid file holds '$pf', expected '$V1PID'"
                              state_ok=0; broken+=("its pid file holds '$pf'"); }
  fi
  fd_snapshot "$V1PID" >"$RUN/fds-after.txt"
  if cmp -s "$RUN/fds-before.txt" "$RUN/fds-after.txt"; then
    log "v1's descriptors other than sockets are those it had before the update ($(wc -l <"$RUN/fds-after.txt"))"
  else
    failed "v1's descriptors other than sockets changed in the rollback (< before, > after):"
    diff "$RUN/fds-before.txt" "$RUN/fds-after.txt" | grep '^[<>]' | sed 's/^/    /' >&2 || true
    state_ok=0; broken+=("its descriptors changed")
  fi
  left=$(pgrep -P "$V1PID" 2>/dev/null | tr '\n' ' ' || true)
  [ -z "$left" ] || { failed "processes left under v1 after the rollback: $left"; state_ok=0; broken+=("processes left: $left"); }
  st=$("$MCR_CTL" status "$V1PID" --json 2>/dev/null || true)
  if grep -q '"quiescing": false' <<<"$st"; then
    log "mcr-ctl status $V1PID answers, not quiescing"
  else
    failed "mcr-ctl status $V1PID after the rollback: not answering or still quiescing"
    state_ok=0; broken+=("mcr-ctl status")
  fi
  RESULT_LINE="the update was ROLLED BACK (not committed); the old version "
  if [ "$serve_ok" -eq 1 ]; then RESULT_LINE+="served every request, right bytes, no error"
  else RESULT_LINE+="did NOT serve on correctly"; fi
  if [ "$state_ok" -eq 1 ]; then RESULT_LINE+=", its state intact"
  else RESULT_LINE+=", but the rollback left it changed: $(IFS=';'; echo "${broken[*]}" | sed 's/;/; /g')"; fi
  failed "$RESULT_LINE"
elif [ "$rc" -ne 0 ]; then
  load_end update rolled-back || true
  failed "mcr-ctl update exited $rc (0 = committed, 1 = rolled back)"
  alive "$V1PID" && [ "$(version_of)" = v1 ] && log "v1 still answers" || failed "v1 does not answer"
else
  # --- committed: the checks of update-lighttpd.sh --------------------------------------
  load_end update || failed "requests failed during the update (or the connection was not answered by v2)"
  check_committed
  RESULT_LINE="committed"
fi

# --- 4. rollback under load (after a commit) ---------------------------------------------
RBPAUSE="-"
rrc="-"
[ "$rc" -ne 0 ] || ! alive "$NEWPID" || rollback_after_commit "$V2"

# --- 5. the updated process stops cleanly ---------------------------------------------
[ "$rc" -ne 0 ] || ! alive "$NEWPID" || stop_cleanly

# --- summary ----------------------------------------------------------------------------
echo "==== $SERVER $VERSION -> $V2VERSION: live update under wrk ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
echo "  update v1 ($V1PID) -> v2 ($NEWPID): exit $rc, pause $PAUSE_MS ms: $RESULT_LINE" >&2
summary_loads
[ "$rc" -ne 0 ] || echo "  rollback (heap:crash): exit $rrc, pause $RBPAUSE ms" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
