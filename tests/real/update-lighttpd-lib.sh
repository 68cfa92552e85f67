# shellcheck shell=bash
# Shared by tests/real/update-lighttpd.sh and update-lighttpd-79.sh (update-nginx.sh
# takes its docroot and load functions); sourced after update-lib.sh, not run.
# The caller sets RUN (run directory), DOCROOT, PORT,
# PIDFILE, WRK_SECS, CHECK (update-check.py) and defines version_of (which
# version answers a fresh connection: v1, v2, none, wrong-bytes, ...).
#
#   lighttpd_docroot         DOCROOT: make_docroot's files and a directory of 64
#   lighttpd_start_v1 ARG... starts V1 with ARGs; sets V1PID (exits if it does not answer)
#   load_begin NAME EXPECT   the checking client on one keep-alive connection
#                            (CHECK_ARGS: its extra arguments), then wrk for WRK_SECS
#   load_end NAME [rolled-back]
#                            waits for both; 0 when neither saw an error (rolled-back:
#                            the client's "no answer from v2" is expected, a v2
#                            answer is an error)
#   fd_snapshot PID          its descriptors but sockets and served files, sorted
#   check_committed          after a committed update to NEWPID: the old process
#                            gone, the pid file, v2 answers, the files, mcr-ctl status
#   rollback_after_commit BIN
#                            MCR_UPDATE_FAULT=heap:crash update of NEWPID to BIN under
#                            load: rolled back by the crash, NEWPID serves on with its
#                            pid file and descriptors, not quiescing; sets rrc, RBPAUSE
#   stop_cleanly             SIGTERM: NEWPID stops, "server stopped", pid file removed
#   summary_loads            a line per load (update, rollback) for the summary

CHECK_ARGS=()

lighttpd_docroot() {
  make_docroot "$DOCROOT"
  mkdir -p "$DOCROOT/dir"
  python3 -c '
import os, sys
for i in range(64):
    n = 100 + i * 997
    with open(os.path.join(sys.argv[1], "f-%02d.txt" % i), "wb") as f:
        f.write(bytes((i * 7 + j * 13) % 94 + 33 for j in range(n)))' "$DOCROOT/dir"
}

ping_server() { "${CURL[@]}" --max-time 2 -f -o /dev/null "http://127.0.0.1:$PORT/index.html"; }

# v1 runs in RUN with core dumps on (the new version inherits both), so that a
# crash of the new version after a commit leaves a core for new_process_died.
lighttpd_start_v1() {
  rm -f "$RUN"/core "$RUN"/core.*
  start_group "$RUN/server.log" bash -c 'cd "$1" && ulimit -c unlimited 2>/dev/null; shift; exec "$@"' \
    _ "$RUN" "$V1" "$@"
  SERVER_PID=$GROUP_PID
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
}

load_begin() {
  local name=$1 expect=$2
  LOAD_PIDS=()
  start_group "$RUN/$name.check.log" timeout -k 5 300 python3 "$CHECK" --port "$PORT" \
    --docroot "$DOCROOT" --expect "$expect" --out "$RUN/$name.check" "${CHECK_ARGS[@]}"
  CHECK_PID=$GROUP_PID
  LOAD_PIDS+=("$GROUP_PID")
  start_group "$RUN/$name.wrk" timeout -k 5 $((WRK_SECS + 60)) \
    wrk -t2 -c16 -d"${WRK_SECS}s" "http://127.0.0.1:$PORT/file-4k.txt"
  WRK_PID=$GROUP_PID
  LOAD_PIDS+=("$GROUP_PID")
  sleep 2
}

load_end() {
  local name=$1 mode=${2:-} rc=0
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
  python3 - "$RUN/$name.check" "$name" "$mode" "$SERVER" >&2 <<'PY' || rc=1
import json, sys
j = json.load(open(sys.argv[1]))
v = j["versions"]
rolled_back = sys.argv[3] == "rolled-back"
errs = [e for e in j["first_errors"]
        if not (rolled_back and e.split(" ", 1)[-1].startswith("no answer from v2"))]
n = j["errors"] - (len(j["first_errors"]) - len(errs))
print("[%s] %s: checking client, one keep-alive connection (%s): %d requests, %d errors%s, "
      "%d from v1 then %d from v2 (first v2 at #%s), %d reconnects, longest gap %.1f ms at %.2f s"
      % (sys.argv[4], sys.argv[2], j["local"], j["ops"], n,
         " (besides the expected 'no answer from v2')" if rolled_back else "",
         v["v1"], v["v2"], j["first_v2"], j["reconnects"], j["max_gap_ms"], j["max_gap_at"]))
for e in errs:
    print("    " + e)
bad = n > 0 or j["ops"] == 0 or (rolled_back and v["v2"] > 0)
sys.exit(1 if bad else 0)
PY
  return "$rc"
}

# (sockets: the clients' connections come and go; served files: lighttpd keeps
# those open in its stat cache)
fd_snapshot() {
  local f
  for f in /proc/"$1"/fd/*; do
    echo "${f##*/} -> $(readlink "$f" 2>/dev/null)"
  done | grep -v -e ' -> socket:' -e " -> $DOCROOT/" | sort
}

check_committed() {
  for ((i = 0; i < 50; i++)); do alive "$V1PID" || break; sleep 0.1; done
  if alive "$V1PID"; then failed "the old process $V1PID still runs"
  else log "the old process $V1PID is gone"; fi
  [ "$NEWPID" -gt 0 ] && alive "$NEWPID" || { failed "the new process $NEWPID does not run"; new_process_died "$V2"; }
  local pf v
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
}

# What is known of the new version's death: its logs' ends and, from its core
# (core_pattern "core" puts it in RUN), a backtrace.
new_process_died() {
  local bin=$1 core
  log "server.log and error.log end with:"
  tail -n 5 "$RUN/server.log" "$RUN/error.log" 2>/dev/null | sed 's/^/    /' >&2
  core=$(ls -t "$RUN"/core "$RUN"/core.* 2>/dev/null | head -n 1 || true)
  if [ -n "$core" ] && command -v gdb >/dev/null; then
    log "backtrace from $core ($(cat /proc/sys/kernel/core_pattern 2>/dev/null)):"
    gdb -batch -ex bt "$bin" "$core" 2>/dev/null | grep -E '^#|signal' | head -n 25 | sed 's/^/    /' >&2
  else
    log "no core in $RUN (core_pattern: $(cat /proc/sys/kernel/core_pattern 2>/dev/null))"
  fi
}

rollback_after_commit() {
  local bin=$1 pf v
  log "rollback under load: MCR_UPDATE_FAULT=heap:crash mcr-ctl update $NEWPID $bin"
  fd_snapshot "$NEWPID" >"$RUN/fds-before-rollback.txt"
  load_begin rollback v2
  rrc=0
  MCR_UPDATE_FAULT=heap:crash timeout -k 5 120 "$MCR_CTL" update "$NEWPID" "$bin" --json \
    --report "$RUN/rollback.report" >"$RUN/rollback.json" 2>"$RUN/rollback.err" || rrc=$?
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
  fd_snapshot "$NEWPID" >"$RUN/fds-after-rollback.txt"
  if ! cmp -s "$RUN/fds-before-rollback.txt" "$RUN/fds-after-rollback.txt"; then
    failed "v2's descriptors other than sockets changed in the rollback (< before, > after):"
    diff "$RUN/fds-before-rollback.txt" "$RUN/fds-after-rollback.txt" | grep '^[<>]' | sed 's/^/    /' >&2 || true
  fi
  "$MCR_CTL" status "$NEWPID" --json 2>/dev/null | grep -q '"quiescing": false' ||
    failed "mcr-ctl status $NEWPID after the rollback: not answering or still quiescing"
}

# lighttpd's shutdown unloads its plugins and frees what it allocated, old
# objects included.
stop_cleanly() {
  kill -TERM "$NEWPID"
  for ((i = 0; i < 100; i++)); do alive "$NEWPID" || break; sleep 0.1; done
  if alive "$NEWPID"; then
    failed "the updated process $NEWPID did not stop within 10 s of SIGTERM"
  elif tail -n 1 "$RUN/error.log" | grep -q 'server stopped' && [ ! -e "$PIDFILE" ]; then
    log "SIGTERM: the updated process $NEWPID stopped cleanly (error.log: server stopped; pid file removed)"
  else
    failed "the updated process $NEWPID did not stop cleanly on SIGTERM; error.log ends with: $(tail -n 2 "$RUN/error.log")"
  fi
}

summary_loads() {
  local n
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
}
