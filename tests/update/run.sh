#!/usr/bin/env bash
# Live update end to end (label "update"): the example server tests/servers/kvstore.c
# through the whole pipeline (profile -> config -> production builds of version 1
# and version 2, a code change) and then:
#   kvstore    v1 -> v2 with 3000 keys, a connection holding a half-sent line, a pid
#              file: committed, every key intact, the line completed on the same
#              connection, VERSION 2, a new pid that the pid file names, the old
#              process gone, a second update v2 -> v1 on top
#   load       v1 -> v2 while a client runs SET/GET on 4 connections: no failure
#   rollback   MCR_UPDATE_FAULT=PHASE:crash and PHASE:hang for every phase: exit 1,
#              the old process serves with its keys, its connection, the same
#              descriptors, not quiesced; then a clean update still works
#   badinput   a server that forks a worker at startup whose worker never reaches a
#              quiescent point: refused, the report names the worker, no process of
#              the new version left;
#              NEW missing / not executable / not ELF / not built by mcr-clang /
#              another program; a PID without mcr, a PID an mcr process forked (not
#              the root of its tree); an update while another runs: refused, exit 2
#              (1 for the busy case), the process untouched
#   prefork    a process tree (kvstore v12: a master, 2 workers forked at startup,
#              each with its own table, a MAP_SHARED counter page): v12 -> v13 with
#              keys and a half-sent line on connections to both workers: committed,
#              every connection keeps its worker (same index, new pid) and keys,
#              VERSION 13, the shared counter goes on, 3 processes of the new
#              version and none of the old; v13 -> v12 on top; a crash in a worker's
#              transfer (heap:crash:child) rolls the whole tree back: the old 3
#              serve, nothing of the new version left, the report names the worker;
#              a v13 with one worker fewer is refused, naming the old worker left over
#   stackobj   kvstore v22 -> v23 -> v22: a global points to a struct on serve()'s
#              stack (holding pointers to itself and to a string of the program;
#              v23 declares another of that type before it): committed, the global
#              points to the new serve()'s same variable, which holds the old count
#              and its pointers moved; -> v24 (a field added to the struct):
#              refused naming the global
#   pool       the thread-pool server tests/servers/poolkv.c (an epoll thread, 4
#              workers on a heap mutex + condition variable, a maintenance thread
#              in pthread_cond_timedwait, per-worker heap structs kept in locals):
#              v1 -> v2 with 2000 keys, a half-sent line and a checking load
#              client: committed, no failed request, keys, line, VERSION, TICKS
#              still counting, WORKERS carried over, each worker's thread-local
#              counter (converted 32 -> 64 bits) and thread-local pointer to its
#              heap note carried over (TLS); a global pointing into a worker's
#              stack (its count of jobs) moved to the new worker's by v2 -> v2
#              (stack objects); a rollback (stacks:crash)
#              leaves v2 serving; v2 -> v3 (no maintenance thread) is refused with a
#              conflict of kind thread; then v2 -> v1 commits
#   transform  changed types (kvstore versions 3-6, see tests/servers/kvstore.c): with
#              3000 keys and a connection holding a half-sent line, v1 -> v4 (a
#              narrowing that overflows), v1 -> v5 (a connection object of a changed
#              type referenced from a byte buffer and from epoll), v1 -> v6 (a
#              startup that no longer matches) are each refused with the conflict
#              named in the report (mcr-ctl report --json) while v1 serves on,
#              untouched; then v1 -> v3 (entries reordered, grown and moved, stats
#              narrowed and extended, an enum reordered, an array widened and grown,
#              a config field added, a field renamed with a user transformation
#              MCR_TRANSFORM_GLOBAL) commits with every key, the line, STATS
#              converted, and serve()'s stack pointer into the startup array
#              `slots` (a field inserted in v3) at the converted old element (SLOT);
#              and v3 -> v1 back. v1 -> v7 (a startup that fails and
#              removes the pid file on its way out) rolls back with the pid file
#              naming v1 again; v1 -> v8 converts the connection objects in place
#              (epoll and a byte buffer point to them) and the held connection works
#
#   mappings   an anonymous shared mapping of the startup (kvstore v11): mapped at the
#              old address by the new startup, its contents copied: committed, the
#              count kept in it carried over
#   rename     renamed functions (kvstore version 9: the function each connection
#              points to, conn.on_line, is renamed): bad renames are refused before
#              anything is done (exit 2: a NEW that is not a function of the new
#              executable, an OLD not in the old one, data, a malformed pair, a bad
#              line of a --rename-file); without a rename the update is refused
#              (kind image, naming the function and the object) and v1 serves on;
#              with --rename-file (command=run_command) it commits, and a
#              connection held across it still runs its lines; config.pidfile, a
#              pointer into the argument strings, reads its path after the update;
#              v9 -> v14 (a new global its startup sets) is refused naming the
#              global, and commits with a rename file's keep-new line
#   report     conflict reports: v1 -> v2 with MCR_UPDATE_FAULT=heap:crash, read back
#              by mcr-ctl report and --json (kind crash, the signal, a fix, program,
#              pids, phases), mcr-ctl update --json's conflicts[], the default report
#              path /tmp/mcr-update-PID-*.report; v1 -> v6: kind startup, the call as
#              the object, the stack, a fix; the old process serves its keys after each
#
#   run.sh BUILD_DIR TEST
# On failure the work directory is kept and its path printed.
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
prof="$build/bin/mcr-profile"
ctl="$build/bin/mcr-ctl"
client="$src/kvclient.py"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-update-$test.XXXXXX")
cflags=(-O2 -g -Wall -Wextra -Werror -I"$top/runtime/include")
pids=()
keep=0
cleanup() {
  local rc=$?
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -s "$work/pidfile" ] && kill -9 "$(cat "$work/pidfile")" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ $keep = 1 ]; then echo "files kept in $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  keep=1
  exit 1
}
ok() { echo "ok: $*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# the pipeline: profile version 1 under a workload, then both versions with its config
build_versions() { # [VERSION...] (default 1 2)
  local port p versions=("${@:-1}")
  [ $# -gt 0 ] || versions=(1 2)
  mkdir -p "$work/prof"
  "$mcc" --mcr-profile "${cflags[@]}" -DKV_VERSION="${prof_version:-1}" -o "$work/prof/kvstore" \
    "$top/tests/servers/kvstore.c" || fail "profiling build"
  port=$(free_port)
  "$prof" -o "$work/kvstore.qp" --duration 3 -- "$work/prof/kvstore" -p "$port" \
    "${prof_args[@]+"${prof_args[@]}"}" >"$work/profile.log" 2>&1 &
  p=$!
  python3 "$client" fill "$port" 200 || fail "load while profiling"
  wait "$p" || fail "mcr-profile"
  for v in "${versions[@]}"; do
    mkdir -p "$work/v$v"
    "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -DKV_VERSION=$v -o "$work/v$v/kvstore" \
      "$top/tests/servers/kvstore.c" || fail "production build of version $v"
  done
  ok "kvstore versions ${versions[*]} built with their quiescent points"
}

# start BINARY [ARGS]: the server on a fresh port; sets $port and $pid
start() {
  local bin=$1
  shift
  port=$(free_port)
  rm -f "$work/pidfile"
  "$bin" -p "$port" -f "$work/pidfile" "$@" >>"$work/server.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do [ -s "$work/pidfile" ] && break; sleep 0.05; done
  [ -s "$work/pidfile" ] || fail "the server did not start"
}

fdcount() { ls "/proc/$1/fd" | wc -l; }
# fdsettle PID N: the descriptor count once it equals N (a client that just closed its
# connection may not have been seen by the server yet), or after 2 s the count as it is
fdsettle() {
  local c
  for _ in $(seq 40); do
    c=$(fdcount "$1")
    [ "$c" = "$2" ] && break
    sleep 0.05
  done
  echo "$c"
}
alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }

update() { # update PID BIN [ARGS]: runs mcr-ctl update, output in update.log
  local p=$1 bin=$2
  shift 2
  "$ctl" update "$p" "$bin" --json "$@" >"$work/update.json" 2>>"$work/update.log"
}

# update_refused PID BIN NAME [ARGS]: mcr-ctl update PID BIN ARGS exits 1 (rolled
# back), its report read back into $work/NAME.json (mcr-ctl report --json)
update_refused() {
  local p=$1 bin=$2 name=$3 rc=0
  shift 3
  update "$p" "$bin" "$@" --report "$work/$name.report" || rc=$?
  [ $rc = 1 ] || fail "update to $bin ($name): mcr-ctl update exited $rc, expected 1 (refused)"
  "$ctl" report "$work/$name.report" --json >"$work/$name.json" ||
    fail "mcr-ctl report $work/$name.report"
}

# bad_update BIN MESSAGE_PART ARGS...: mcr-ctl update $pid BIN ARGS exits 2 with
# MESSAGE_PART in its message, the process untouched ($fds descriptors)
bad_update() {
  local bin=$1 part=$2 rc=0
  shift 2
  "$ctl" update "$pid" "$bin" "$@" >"$work/out.log" 2>&1 || rc=$?
  [ $rc = 2 ] || { cat "$work/out.log"; fail "mcr-ctl update $*: exit $rc, expected 2"; }
  grep -q -- "$part" "$work/out.log" || { cat "$work/out.log"; fail "$*: no '$part' in the message"; }
  alive "$pid" && [ "$(fdcount "$pid")" = "$fds" ] || fail "$*: the process was touched"
  ok "refused (2): $(head -1 "$work/out.log")"
}

new_pid_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["new_pid"])' "$work/update.json"; }

# ask CMD WANT WHAT: CMD on the connection at descriptor 3 is answered WANT
ask() {
  printf '%s\n' "$1" >&3
  read -r -t 5 line <&3 && [ "$line" = "$2" ] || fail "$3: $1 answered '$line', expected '$2'"
}

case "$test" in
stackobj)
  # kvstore v22: a global points to a struct on serve()'s stack (its tick counter,
  # holding a pointer to itself and one to a string of the program), as nginx's
  # timer tree to its cache manager's event. mcr-clang registers serve()'s local
  # variables whose address escapes (serve is on the quiescent point's stack); the
  # update copies the tick into the new serve()'s and moves the global to it
  build_versions 22 23 24
  start "$work/v22/kvstore"
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  ask "SET held 1" OK v22
  printf 'TICKS\n' >&3
  read -r -t 5 line <&3 && [[ "$line" =~ ^TICKS\ ([0-9]+)\ self\ 1\ name\ serve\'s\ tick$ ]] ||
    fail "v22: TICKS answered '$line'"
  before=${BASH_REMATCH[1]}
  [ "$before" -ge 2 ] || fail "v22: TICKS $before, expected at least 2 events"
  for to in 23 22; do
    update "$pid" "$work/v$to/kvstore" ||
      fail "-> v$to (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
    pid=$(new_pid_of)
    python3 - "$work/update.json" <<'PY' || fail "-> v$to: no stack objects copied: $(cat "$work/update.json")"
import json, re, sys
d = json.load(open(sys.argv[1]))
ph = " ".join(p.get("detail", "") for p in d.get("phases", []) if p.get("name") == "stack-objects")
print("  stack-objects: " + ph)
m = re.search(r"^(\d+) of (\d+) registered stack objects", ph)
sys.exit(0 if m and int(m.group(1)) >= 1 else 1)
PY
    ask VERSION "VERSION $to" "v$to"
    printf 'TICKS\n' >&3
    read -r -t 5 line <&3 && [[ "$line" =~ ^TICKS\ ([0-9]+)\ self\ 1\ name\ serve\'s\ tick$ ]] ||
      fail "v$to: TICKS answered '$line' (the tick's pointers into the stack and the program not moved?)"
    after=${BASH_REMATCH[1]}
    # the count goes on from the old process's (the new serve()'s own tick counted
    # nothing: no event reached it before the update)
    [ "$after" -gt "$before" ] || fail "v$to: TICKS $after after the update, $before before: not carried over"
    ask "GET held" "VALUE 1" "v$to"
    ok "-> v$to committed: the global points to the new serve()'s tick, which counts on from $before ($after), its pointers to itself and to the program's string moved"
    before=$after
  done
  # v24 added a field to struct tick: the old tick is not copied into a variable
  # of another layout, so the global's pointer to it refuses the update; mcr-ctl
  # check says so beforehand
  "$ctl" check "$work/v22/kvstore" "$work/v24/kvstore" >"$work/check24.txt" 2>&1 || true
  grep -A3 "^Refused (1)" "$work/check24.txt" | grep -q "serve()'s local variable 'tick'" ||
    fail "mcr-ctl check v22 v24 does not list serve()'s tick as refused: $(cat "$work/check24.txt")"
  update_refused "$pid" "$work/v24/kvstore" changed
  python3 - "$work/changed.json" <<'PY' || fail "-> v24: the report does not name the pointer into the stack: $(cat "$work/changed.json")"
import json, sys
c = json.load(open(sys.argv[1]))["conflicts"]
print("   conflicts: %s" % [(x["kind"], x["object"]) for x in c])
t = [x for x in c if x["kind"] == "image" and "ticker" in x["object"]
     and "serve's local variable 'tick'" in x["message"] and "type changed" in x["message"]]
for x in t:
    print("   message: %s\n   fix: %s" % (x["message"], x["fix"]))
sys.exit(0 if t else 1)
PY
  alive "$pid" || fail "the refused update to v24: v22 died"
  ask VERSION "VERSION 22" "v22 after the refusal"
  printf 'TICKS\n' >&3
  read -r -t 5 line <&3 && [[ "$line" =~ ^TICKS\ ([0-9]+)\ self\ 1\ name\ serve\'s\ tick$ ]] ||
    fail "v22 after the refusal: TICKS answered '$line'"
  ok "-> v24 (struct tick changed) refused naming ticker; v22 serves on"
  ;;
pieces)
  # v19 changed struct mod_conf, whose objects are pieces of a pool (pool_alloc, a
  # wrapper with a size argument: tests/servers/kvstore.wrappers): the startup's
  # (each module's configuration, alive, reached through the context's array of
  # pointers, itself a piece) and the one MODS takes after the startup (recorded:
  # runtime/pieces.h). They grow, so they cannot stay in their pool: each is
  # converted into an object of its own and the pointers to it are rewritten.
  # The held connection then reads every module's setting through them (with a
  # stale pointer it would read the old layout: another value). First to v16 itself:
  # the new process records the old one's pieces too, so that the update after it
  # knows them (that one knows at least 2 recorded: the piece MODS took before the
  # first update and the one after it). Then v19, back to v16 (they shrink:
  # converted where they are, and again kept: 2), and to v19 with --reinit. Then v20 ->
  # v21, the same change, but MODS takes its piece with a wrapper declared without
  # its size: not recorded, so refused, naming the type; v20 serves on
  cflags+=(--mcr-wrappers="$top/tests/servers/kvstore.wrappers")
  prof_version=16 build_versions 16 19 20 21
  start "$work/v16/kvstore"
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  ask MODS "MODS core=1 log=1 stats=3" v16
  for step in "16 1" "19 2" "16 1" "19 2 --reinit"; do
    set -- $step
    update "$pid" "$work/v$1/kvstore" ${3:-} ||
      fail "-> v$step (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
    python3 - "$work/update.json" "$1" "$2" <<'PY' || fail "-> v$step: the report does not say the pieces were known and converted: $(cat "$work/update.json")"
import json, re, sys
d = json.load(open(sys.argv[1]))
notes = " ".join(d.get("notes", []))
known = re.search(r"pool pieces known to the transform: (\d+) recorded after the startup, (\d+) of the startup's", notes)
conv = re.search(r"(\d+) pool pieces of changed types converted", notes)
for n in d.get("notes", []):
    if "pool pieces" in n:
        print("  note: " + n)
# to v19: the three modules' configurations and MODS' pieces at least
sys.exit(0 if known and int(known.group(1)) >= int(sys.argv[3]) and (sys.argv[2] != "19" or (conv and int(conv.group(1)) >= 1)) else 1)
PY
    pid=$(new_pid_of)
    ask VERSION "VERSION $1" "v$step"
    ask MODS "MODS core=1 log=1 stats=3" "v$step on the held connection"
    ok "-> v$1${3:+ $3} committed: pool pieces of struct mod_conf (the startup's and the ones MODS took after it, at least $2 recorded) known$([ "$1" = 19 ] && echo " and converted"); the held connection reads every module's setting through them"
  done
  exec 3>&-
  kill "$pid" 2>/dev/null
  start "$work/v20/kvstore"
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  ask MODS "MODS core=1 log=1 stats=3" v20
  update_refused "$pid" "$work/v21/kvstore" v21
  python3 - "$work/v21.json" <<'PY' || fail "v20 -> v21: the report does not name the pieces not recorded: $(cat "$work/v21.json")"
import json, sys
cs = [c for c in json.load(open(sys.argv[1]))["conflicts"] if c["kind"] == "type"]
sys.exit(0 if any("not recorded" in c["message"] and "mod_conf" in c["message"] for c in cs) else 1)
PY
  alive "$pid" || fail "v20 -> v21: the old process died"
  ask MODS "MODS core=1 log=1 stats=3" "v20 after the refusal"
  ok "v20 -> v21 refused: struct mod_conf pieces taken after the startup by a wrapper without its size are not recorded; v20 serves on"
  exec 3>&-
  ;;
epolldata)
  # v18's struct conn no longer fits its slot (as v5's) and only the kernel's epoll
  # registrations (their data) refer to connections without a type: refused
  # (pinned by the epoll data) until --epoll-data-pointers declares the data
  # pointers; then committed, each connection moved and its registration
  # following it
  build_versions 1 18
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 300
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  ask "SET held 1" OK v1
  update_refused "$pid" "$work/v18/kvstore" v18
  python3 - "$work/v18.json" <<'PY' || fail "v1 -> v18: not refused for the epoll data: $(cat "$work/v18.json")"
import json, sys
cs = json.load(open(sys.argv[1]))["conflicts"]
sys.exit(0 if cs and all(c["kind"] == "pinned" and "epoll registration's data" in c["message"]
                         for c in cs) else 1)
PY
  ask "GET held" "VALUE 1" "v1 after the refusal"
  ok "v1 -> v18 refused (pinned by the epoll registrations' data), v1 serves on"
  update "$pid" "$work/v18/kvstore" --epoll-data-pointers ||
    fail "v1 -> v18 --epoll-data-pointers (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  grep -q "epoll registrations' data (declared pointers" "$work/update.json" ||
    fail "v1 -> v18: no note of the registrations that follow: $(cat "$work/update.json")"
  pid=$(new_pid_of)
  ask "GET held" "VALUE 1" "v18 on the held connection"
  ask VERSION "VERSION 18" v18
  python3 "$client" check "$port" 300 18 >/dev/null || fail "v18: the keys"
  exec 3>&-
  ok "v1 -> v18 --epoll-data-pointers committed: the held connection (moved) is served, its registration followed it, the keys are there"
  ;;
reinit)
  # v17 inserts a module before log and changes log's default (as Debian's nginx
  # inserts ngx_http_header_count_module): the configuration its startup builds
  # (pieces of a pool, module indexes) is another one. Without --reinit the
  # update refuses (count_module: a new global the startup set); with it, the
  # held connection's context leads to the new configuration (count=7, log=2,
  # the new indexes) while the cycle's count, changed since the startup, is the
  # old process's
  cflags+=(--mcr-wrappers="$top/tests/servers/kvstore.wrappers")
  prof_version=16 build_versions 16 17
  start "$work/v16/kvstore"
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  ask "SET held 1" OK v16
  ask MODS "MODS core=1 log=1 stats=3" v16
  ask REQS "REQS 3" v16
  update_refused "$pid" "$work/v17/kvstore" v17
  python3 - "$work/v17.json" <<'PY' || fail "v16 -> v17: no global conflict naming count_module: $(cat "$work/v17.json")"
import json, sys
cs = json.load(open(sys.argv[1]))["conflicts"]
sys.exit(0 if any(c["kind"] == "global" and "count_module" in c["object"] for c in cs) else 1)
PY
  ask MODS "MODS core=1 log=1 stats=3" "v16 after the refusal"
  ok "v16 -> v17 without --reinit refused (global count_module), v16 serves on"
  update "$pid" "$work/v17/kvstore" --reinit ||
    fail "v16 -> v17 --reinit (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  python3 - "$work/update.json" <<'PY' || fail "v16 -> v17: no reinit phase in $(cat "$work/update.json")"
import json, re, sys
d = json.load(open(sys.argv[1]))
ph = " ".join(p.get("detail", "") for p in d.get("phases", []) if p.get("name") == "reinit")
m = re.search(r"(\d+) of (\d+) startup objects unchanged since the startup", ph)
print("  reinit: " + ph)
for n in d.get("notes", []):
    if "reinit" in n:
        print("  note: " + n)
sys.exit(0 if m and int(m.group(1)) > 0 else 1)
PY
  pid=$(new_pid_of)
  ask MODS "MODS core=1 count=7 log=2 stats=3" "v17 on the held connection"
  ask REQS "REQS 6" "v17 (the old count was 5)"
  ask "GET held" "VALUE 1" v17
  ask VERSION "VERSION 17" v17
  # the scratch piece's end is the next piece's start: not moved with that piece
  ask SCRATCH "SCRATCH 16 SCRATCH" v17
  exec 4<>"/dev/tcp/127.0.0.1/$port"
  printf 'MODS\n' >&4
  read -r -t 5 line <&4 && [ "$line" = "MODS core=1 count=7 log=2 stats=3" ] ||
    fail "v17 on a new connection: MODS answered '$line'"
  exec 4>&-
  ok "v16 -> v17 --reinit committed: the held connection reads the new configuration (count=7, log=2), the cycle's count, its scratch piece (whose end is the next piece's start) and the table carried over"
  # and back: v17's configuration (whose context points to the cycle carried over)
  # is again startup state the old process never changed
  update "$pid" "$work/v16/kvstore" --reinit ||
    fail "v17 -> v16 --reinit (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  pid=$(new_pid_of)
  ask MODS "MODS core=1 log=1 stats=3" "v16 again on the held connection"
  ask REQS "REQS 12" "v16 again (the old count was 11)"
  ask SCRATCH "SCRATCH 16 SCRATCH" "v16 again"
  ask VERSION "VERSION 16" "v16 again"
  ok "v17 -> v16 --reinit committed: the held connection reads v16's configuration again, the count carried over twice"
  exec 3>&-
  ;;
kvstore)
  build_versions
  # a service manager's notification socket: the old process must send MAINPID=new
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2], "w").close()
while True:
    open(sys.argv[2], "a").write(s.recv(4096).decode() + "\n")
' "$work/notify.sock" "$work/notify.log" &
pids+=($!)
  for _ in $(seq 100); do [ -e "$work/notify.log" ] && break; sleep 0.05; done
  NOTIFY_SOCKET="$work/notify.sock" start "$work/v1/kvstore"
  old=$pid
  fdcount "$old" >"$work/fds-before"
  # requests served before the update leave runtime data in freed heap memory
  # (pointers into the quiescent-point table): not a reason to refuse
  "$ctl" status "$old" >/dev/null && "$ctl" quiesce "$old" >/dev/null ||
    fail "status/quiesce before the update"
  python3 "$client" session "$port" 3000 2 "$ctl" update "$old" "$work/v2/kvstore" \
    >"$work/session.log" 2>&1 || { cat "$work/session.log"; fail "update v1 -> v2"; }
  cat "$work/session.log"
  for _ in $(seq 100); do alive "$old" || break; sleep 0.05; done
  ! alive "$old" || fail "the old process $old still runs"
  ok "the old process exited"
  new=$(cat "$work/pidfile")
  [ "$new" != "$old" ] && alive "$new" || fail "the pid file names $new"
  ok "the pid file names the new process $new"
  grep -qx "MAINPID=$new" "$work/notify.log" || fail "NOTIFY_SOCKET got: $(cat "$work/notify.log")"
  ok "the service manager was sent MAINPID=$new"
  "$ctl" status "$new" >"$work/status.log" 2>&1 || fail "mcr-ctl status of the new process"
  ok "mcr-ctl status answers for the new process"
  # the update's own descriptors (channel, startup log, userfaultfd, pagemap) are
  # not the program's: none may be left in the new process
  leaked=$(ls -l "/proc/$new/fd" | grep -E 'userfaultfd|pagemap|mcr-startup-log' || true)
  [ -z "$leaked" ] || fail "the new process holds the update's descriptors: $leaked"
  [ "$(fdcount "$new")" -le "$(( $(cat "$work/fds-before") + 2 ))" ] ||
    fail "the new process has $(fdcount "$new") descriptors, the old had $(cat "$work/fds-before")"
  ok "no descriptor of the update itself left in the new process ($(fdcount "$new") open)"
  # and back: the new process is itself updatable
  update "$new" "$work/v1/kvstore" || fail "update v2 -> v1 (exit $?)"
  python3 "$client" check "$port" 3000 1 || fail "keys after the second update"
  ok "second update v2 -> v1 committed"
  ;;
load)
  build_versions
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 1000
  python3 "$client" load "$port" 6 "$work/load.out" &
  l=$!
  pids+=("$l")
  sleep 2
  update "$pid" "$work/v2/kvstore" || fail "update under load"
  wait "$l"
  cat "$work/load.out"
  read -r _ reqs _ fails _ gap <"$work/load.out"
  [ "$fails" = 0 ] && [ "$reqs" -gt 100 ] || fail "load: $reqs requests, $fails failures"
  ok "$reqs requests during the update, 0 failed, longest gap $gap ms"
  python3 "$client" check "$port" 1000 2 || fail "keys after the update"
  ;;
rollback)
  build_versions
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 500
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  fds=$(fdcount "$pid")
  for phase in startup ready precopy precopied heap globals stacks fds commit; do
    for how in crash hang; do
      rc=0
      MCR_UPDATE_FAULT=$phase:$how update "$pid" "$work/v2/kvstore" --timeout 2 --report "$work/rollback.report" || rc=$?
      [ $rc = 1 ] || fail "$phase:$how: mcr-ctl update exited $rc, expected 1 (rolled back)"
      alive "$pid" || fail "$phase:$how: the old process died"
      printf 'GET key7\n' >&3
      read -r -t 5 line <&3 || fail "$phase:$how: no answer on the connection"
      [ "$line" = "VALUE value-7" ] || fail "$phase:$how: answered '$line'"
      python3 "$client" check "$port" 500 1 >/dev/null || fail "$phase:$how: keys after the rollback"
      [ "$(fdsettle "$pid" "$fds")" = "$fds" ] || fail "$phase:$how: $(fdcount "$pid") descriptors, was $fds"
      [ "$(cat "$work/pidfile")" = "$pid" ] || fail "$phase:$how: the pid file names $(cat "$work/pidfile")"
      "$ctl" status "$pid" --json | grep -q '"quiescing": false' ||
        fail "$phase:$how: still quiescing after the rollback"
      ok "$phase:$how rolled back: old process serving, keys, connection, $fds descriptors, pid file intact"
    done
  done
  exec 3<&-
  update "$pid" "$work/v2/kvstore" || fail "a clean update after the rollbacks"
  python3 "$client" check "$port" 500 2 || fail "keys after the update"
  ok "a clean update after 18 rollbacks committed"
  ;;
transform)
  build_versions 1 3 4 5 6 7 8
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 3000
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'STATS\n' >&3
  read -r -t 5 before <&3 || fail "no STATS before"
  printf 'SLOT\nSLOT\n' >&3
  read -r -t 5 line <&3 && read -r -t 5 line <&3 && [ "$line" = "SLOT 1 2 self 1 same 1" ] ||
    fail "v1: SLOT answered '$line'"
  fds=$(fdcount "$pid")
  # refused: VERSION KIND WORDS...: the report names the conflict
  refused() {
    local v=$1 kind=$2
    shift 2
    update_refused "$pid" "$work/v$v/kvstore" "v$v"
    python3 - "$work/v$v.json" "$kind" "$@" <<'PY' || fail "v1 -> v$v: the report does not name the conflict ($kind $*): $(cat "$work/v$v.json")"
import json, sys
r = json.load(open(sys.argv[1]))
kind, words = sys.argv[2], sys.argv[3:]
cs = [c for c in r["conflicts"] if c["kind"] == kind or not kind]
text = json.dumps(cs)
sys.exit(0 if cs and all(w in text for w in words) else 1)
PY
    alive "$pid" || fail "v1 -> v$v: the old process died"
    [ "$(cat "$work/pidfile" 2>/dev/null)" = "$pid" ] ||
      fail "v1 -> v$v: the pid file holds '$(cat "$work/pidfile" 2>/dev/null)', not $pid"
    printf 'GET key7\n' >&3
    read -r -t 5 line <&3 || fail "v1 -> v$v: no answer on the connection after the rollback"
    [ "$line" = "VALUE value-7" ] || fail "v1 -> v$v: answered '$line'"
    python3 "$client" check "$port" 3000 1 >/dev/null || fail "v1 -> v$v: keys after the rollback"
    [ "$(fdsettle "$pid" "$fds")" = "$fds" ] || fail "v1 -> v$v: $(fdcount "$pid") descriptors, was $fds"
    ok "v1 -> v$v refused ($kind: $*), v1 serves on with its keys and connection"
  }
  refused 4 narrowing commands "does not fit"
  refused 5 pinned epoll "struct conn" "cannot stay where it is"
  refused 6 startup listen
  refused 7 "" "exited"
  exec 3<&-
  python3 "$client" session "$port" 3000 3 "$ctl" update "$pid" "$work/v3/kvstore" \
    >"$work/session.log" 2>&1 || { cat "$work/session.log"; fail "update v1 -> v3"; }
  cat "$work/session.log"
  pid=$(cat "$work/pidfile")
  python3 - "$port" "$before" <<'PY' || fail "STATS after v1 -> v3"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"STATS\nGET key1\nGET key1\nHITS key1\n")
buf = b""
while buf.count(b"\n") < 4:
    buf += s.recv(4096)
stats, _, _, hits = buf.decode().splitlines()[:4]
f = dict(kv.split("=") for kv in stats.split()[1:])
before = dict(kv.split("=") for kv in sys.argv[2].split()[1:])
# keys narrowed, cmds moved (it only grows), mode reordered (v1 MODE_SERVING=1
# is v3's 0), gets new (zero at the update, then the session's 3000 GETs)
# conns was renamed connections: the user transformation carried it (1: this one)
ok = (f["keys"] == "3001" and int(f["cmds"]) > int(before["cmds"]) and f["mode"] == "0" and
      f["conns"] == "1" and
      before["mode"] == "1" and 3000 <= int(f["gets"]) < 3100 and hits == "HITS 3")
print("STATS before:", sys.argv[2]); print("STATS after: ", stats, "|", hits)
sys.exit(0 if ok else 1)
PY
  ok "v1 -> v3 committed: keys, the half-sent line, converted STATS"
  # struct slot changed: serve()'s stack pointer into the new startup's array
  # must now point into the converted old array (count 2 carried over)
  exec 4<>"/dev/tcp/127.0.0.1/$port"
  printf 'SLOT\n' >&4
  read -r -t 5 line <&4 || fail "v3: no answer to SLOT"
  exec 4<&-
  [ "$line" = "SLOT 1 3 self 1 same 1" ] ||
    fail "v3: SLOT answered '$line', expected 'SLOT 1 3 self 1 same 1' (the stack's pointer into the startup array)"
  ok "v1 -> v3: serve()'s stack pointer into the startup array of changed type is the converted old element ($line)"
  update "$pid" "$work/v1/kvstore" || fail "update v3 -> v1 (exit $?)"
  python3 "$client" check "$port" 3000 1 || fail "keys after v3 -> v1"
  ok "v3 -> v1 committed (a removed field, a widened field narrowed back)"
  # v1 -> v8: a connection object converted in place while epoll and last_conn
  # point to it (words of unknown meaning that stay right)
  pid=$(cat "$work/pidfile")
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'SET held before\n' >&3
  read -r -t 5 line <&3 && [ "$line" = OK ] || fail "v1: SET on the held connection"
  update "$pid" "$work/v8/kvstore" || fail "update v1 -> v8 (exit $?): $(tail -3 "$work/update.log")"
  grep -q '"name": "transform"' "$work/update.json" || fail "v1 -> v8: no transform phase"
  printf 'GET held\nVERSION\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "VALUE before" ] || fail "v8: GET on the held connection: '$line'"
  read -r -t 5 line <&3 && [ "$line" = "VERSION 8" ] || fail "v8: VERSION on the held connection: '$line'"
  exec 3<&-
  python3 "$client" check "$port" 3000 8 || fail "keys after v1 -> v8"
  ok "v1 -> v8 committed: connection objects converted in place, the held connection works"
  ;;
mappings)
  # an anonymous shared mapping of the startup (kvstore v11 counts commands in one,
  # through a global pointer): the new startup maps it at the old address and the
  # transfer copies its contents. Before, the update committed and the new version
  # crashed at its first command (the pointer led to nothing mapped)
  build_versions 11
  start "$work/v11/kvstore"
  python3 "$client" fill "$port" 100
  before=$(python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.sendall(b"SHARED\n"); print(s.recv(100).decode().split()[1])' "$port")
  [ "$before" -ge 101 ] || fail "SHARED before the update: $before, expected at least 101"
  update "$pid" "$work/v11/kvstore" || { cat "$work/update.log"; fail "update v11 -> v11 (exit $?)"; }
  grep -q '"name": *"mappings"' "$work/update.json" && python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
d = [p["detail"] for p in j["phases"] if p["name"] == "mappings"]
sys.exit(0 if j["committed"] and d and d[0].startswith("1 anonymous mappings") else 1)' "$work/update.json" ||
    fail "no mappings phase with the 1 anonymous mapping: $(cat "$work/update.json")"
  new=$(new_pid_of)
  after=$(python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.sendall(b"SHARED\n"); print(s.recv(100).decode().split()[1])' "$port") ||
    fail "no answer after the update"
  [ "$after" = $((before + 1)) ] || fail "SHARED after the update: $after, expected $((before + 1))"
  alive "$new" || fail "the new process $new died"
  python3 "$client" check "$port" 100 11 >/dev/null || fail "keys after the update"
  ok "an anonymous shared mapping of the startup carried over at its address: SHARED $before -> $after"
  ;;
rename)
  build_versions 1 9 14
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 500
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'SET held before\n' >&3
  read -r -t 5 line <&3 && [ "$line" = OK ] || fail "v1: SET on the held connection"
  fds=$(fdcount "$pid")
  bad_rename() { bad_update "$work/v9/kvstore" "$@"; }
  bad_rename "'no_such_fn' is not a function of the new executable" --rename command=no_such_fn
  bad_rename "'no_such_fn' is not a function of the old executable" --rename no_such_fn=run_command
  bad_rename "'stats' is data in the new executable" --rename command=stats
  bad_rename "expected OLD=NEW" --rename command
  bad_rename "renamed twice" --rename command=run_command --rename command=readable
  printf '# comment\n\ncommand run_command\n' >"$work/bad.renames"
  bad_rename "bad.renames:3: expected OLD=NEW" --rename-file "$work/bad.renames"
  bad_rename "No such file" --rename-file "$work/missing.renames"
  # without the rename: refused, the function and the connection objects named
  update_refused "$pid" "$work/v9/kvstore" v9
  python3 - "$work/v9.json" <<'PY' || fail "v1 -> v9: the report does not name the function: $(cat "$work/v9.json")"
import json, sys
cs = [c for c in json.load(open(sys.argv[1]))["conflicts"] if c["kind"] == "image"]
sys.exit(0 if cs and all("'command'" in c["message"] and c["object"].startswith("heap object")
                          and "--rename" in c["fix"] for c in cs) else 1)
PY
  alive "$pid" || fail "v1 -> v9: the old process died"
  printf 'GET held\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "VALUE before" ] || fail "v1 after the refusal: '$line'"
  ok "v1 -> v9 without a rename refused (image: function 'command'), v1 serves on"
  # with the rename (a file, a comment and a blank line in it)
  printf '# kvstore 1 -> 9\n\n  command=run_command   # renamed\n' >"$work/v9.renames"
  update "$pid" "$work/v9/kvstore" --rename-file "$work/v9.renames" ||
    fail "v1 -> v9 with --rename-file (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  grep -q 'renamed functions.*command=run_command' "$work/update.json" ||
    fail "v1 -> v9: no note of the rename: $(cat "$work/update.json")"
  printf 'GET held\nVERSION\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "VALUE before" ] || fail "v9: GET on the held connection: '$line'"
  read -r -t 5 line <&3 && [ "$line" = "VERSION 9" ] || fail "v9: VERSION on the held connection: '$line'"
  exec 3<&-
  python3 "$client" check "$port" 500 9 || fail "keys after v1 -> v9"
  ok "v1 -> v9 committed with --rename-file command=run_command: the held connection runs its lines"
  # the argument block: config.pidfile points into -f's argument string; after two
  # updates (v1 -> v9 above, v9 -> v14 below) it still reads the same path
  pid=$(new_pid_of)
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'PIDFILE\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "PIDFILE $work/pidfile" ] ||
    fail "v9: config.pidfile (into the argument strings) reads '$line', expected '$work/pidfile'"
  ok "v9: config.pidfile, a pointer into the argument strings, reads the path after the update"
  # a new global the startup sets: refused without --keep-new, the global named
  update_refused "$pid" "$work/v14/kvstore" v14 --rename run_command=command
  python3 - "$work/v14.json" <<'PY' || fail "v9 -> v14: the report does not name new_at_startup: $(cat "$work/v14.json")"
import json, sys
cs = [c for c in json.load(open(sys.argv[1]))["conflicts"] if c["kind"] == "global"]
sys.exit(0 if cs and all(c["object"] == "global new_at_startup" and "--keep-new" in c["message"]
                         and "keep-new new_at_startup" in c["fix"] for c in cs) else 1)
PY
  printf 'GET held\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "VALUE before" ] || fail "v9 after the refusal: '$line'"
  ok "v9 -> v14 refused (global new_at_startup: set by the new startup, no counterpart), v9 serves on"
  printf 'run_command=command\nkeep-new new_at_startup  # v14 sets it from nothing the old state holds\n' >"$work/v14.renames"
  update "$pid" "$work/v14/kvstore" --rename-file "$work/v14.renames" ||
    fail "v9 -> v14 with keep-new (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  printf 'NEWGLOBAL\nPIDFILE\nGET held\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "NEWGLOBAL 14" ] || fail "v14: NEWGLOBAL: '$line'"
  read -r -t 5 line <&3 && [ "$line" = "PIDFILE $work/pidfile" ] || fail "v14: PIDFILE: '$line'"
  read -r -t 5 line <&3 && [ "$line" = "VALUE before" ] || fail "v14: GET held: '$line'"
  exec 3<&-
  ok "v9 -> v14 committed with keep-new new_at_startup: its startup value kept, the held connection served"
  ;;
movefield)
  # v15 moved struct slot's `served` into a nested struct (counters.served), and
  # the global last_served points into the field: matched by name the field is
  # removed, so the update refuses, naming the field and --move-field; declared,
  # the count and the pointer carry over
  build_versions 1 15
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 300
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'SLOT\nSLOT\nSERVED\n' >&3
  read -r -t 5 line <&3 && read -r -t 5 line <&3 && read -r -t 5 line <&3 &&
    [ "$line" = "SERVED 2 ptr 1" ] || fail "v1: SERVED answered '$line'"
  fds=$(fdcount "$pid")
  move="slot.served=counters.served"
  # check previews the move
  "$ctl" check "$work/v1/kvstore" "$work/v15/kvstore" >"$work/check.txt" ||
    fail "mcr-ctl check v1 v15 exited $?"
  grep -qE "removed +served +long .*if it is counters.served now, declare it: --move-field slot.served=counters.served" "$work/check.txt" ||
    fail "check v1 v15 does not show served removed, with the move to declare: $(cat "$work/check.txt")"
  "$ctl" check "$work/v1/kvstore" "$work/v15/kvstore" --move-field "$move" >"$work/check-move.txt" ||
    fail "mcr-ctl check --move-field exited $?"
  grep -qE "moved +served -> counters.served +long +offset 8 -> 16" "$work/check-move.txt" ||
    fail "check --move-field does not show the move: $(cat "$work/check-move.txt")"
  ! grep -qE "removed +served" "$work/check-move.txt" || fail "check --move-field still shows served removed"
  "$ctl" check "$work/v1/kvstore" "$work/v15/kvstore" --json >"$work/check.json" || true
  python3 - "$work/check.json" <<'PY' || fail "check --json: no move_field for served: $(cat "$work/check.json")"
import json, sys
d = json.load(open(sys.argv[1]))
cs = [c for t in d["transformable"] for c in t["changes"] if c["change"] == "removed"]
sys.exit(0 if [c["move_field"] for c in cs] == ["slot.served=counters.served"] else 1)
PY
  ok "mcr-ctl check shows served removed (suggesting --move-field slot.served=counters.served), and moved with it"
  bad_move() { bad_update "$work/v15/kvstore" "$@"; }
  bad_move "the old version's slot has no field 'nope'" --move-field slot.nope=counters.served
  bad_move "no field 'nope' where the path counters.nope leads" --move-field slot.served=counters.nope
  bad_move "still has a field 'id'" --move-field slot.id=counters.served
  bad_move "no struct named 'nosuch'" --move-field nosuch.served=counters.served
  bad_move "expected TYPE.OLD=NEW" --move-field slot.served
  bad_move "is moved twice" --move-field "$move" --move-field slot.served=counters.hits
  printf 'move-field slot.served\n' >"$work/bad.renames"
  bad_move "bad.renames:1: expected 'move-field TYPE.OLD=NEW'" --rename-file "$work/bad.renames"
  # undeclared: refused, the report names the field and the option
  update_refused "$pid" "$work/v15/kvstore" v15
  python3 - "$work/v15.json" <<'PY' || fail "v1 -> v15: the report does not name the field: $(cat "$work/v15.json")"
import json, sys
cs = [c for c in json.load(open(sys.argv[1]))["conflicts"] if c["kind"] == "type"]
sys.exit(0 if cs and all("field 'served' (long)" in c["message"] and
                         "--move-field slot.served=counters.served" in c["fix"] for c in cs) else 1)
PY
  alive "$pid" || fail "v1 -> v15: the old process died"
  printf 'SERVED\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "SERVED 2 ptr 1" ] || fail "v1 after the refusal: '$line'"
  ok "v1 -> v15 without --move-field refused (type: field 'served', the fix gives --move-field slot.served=counters.served), v1 serves on"
  # declared (in a rename file): committed, the count and last_served carried over
  printf '# kvstore 1 -> 15\nmove-field %s\n' "$move" >"$work/v15.renames"
  update "$pid" "$work/v15/kvstore" --rename-file "$work/v15.renames" ||
    fail "v1 -> v15 with move-field (exit $?): $(tail -3 "$work/update.log"; cat "$work/update.json")"
  grep -q "fields moved.*slot.served=counters.served" "$work/update.json" ||
    fail "v1 -> v15: no note of the move: $(cat "$work/update.json")"
  printf 'SERVED\nSLOT\nSERVED\nVERSION\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "SERVED 2 ptr 1" ] ||
    fail "v15: SERVED answered '$line', expected 'SERVED 2 ptr 1' (the count and the pointer into the moved field)"
  read -r -t 5 line <&3 && [ "$line" = "SLOT 1 3 self 1 same 1" ] || fail "v15: SLOT answered '$line'"
  read -r -t 5 line <&3 && [ "$line" = "SERVED 3 ptr 1" ] || fail "v15: SERVED after SLOT answered '$line'"
  read -r -t 5 line <&3 && [ "$line" = "VERSION 15" ] || fail "v15: VERSION answered '$line'"
  exec 3<&-
  python3 "$client" check "$port" 300 15 || fail "keys after v1 -> v15"
  ok "v1 -> v15 committed with move-field $move: the count and the pointer into the field carried over, the held connection served"
  ;;

report)
  # conflict reports of rolled-back updates, read back with mcr-ctl report (the
  # narrowing kind is in the transform case)
  build_versions 1 2 6
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 300 || fail "fill"
  # rolled_back NAME NEW [ARGS]: mcr-ctl update exits 1, the old process serves
  rolled_back() {
    local name=$1 new=$2 rc=0
    shift 2
    "$ctl" update "$pid" "$new" "$@" >"$work/$name.out" 2>"$work/$name.log" || rc=$?
    [ $rc = 1 ] || { cat "$work/$name.out"; fail "$name: mcr-ctl update exited $rc, expected 1"; }
    alive "$pid" || fail "$name: the old process died"
    python3 "$client" check "$port" 300 1 >/dev/null || fail "$name: keys after the rollback"
  }

  # check_json NAME FILE PYTHON-CONDITIONS: each line of conditions must hold for r,
  # the JSON in FILE (j: its conflicts of the kind asked)
  check_json() {
    local name=$1 file=$2 cond=$3
    python3 - "$file" "$cond" <<'EOF' || { cat "$file"; fail "$name: JSON check"; }
import json, sys
r = json.load(open(sys.argv[1]))
for c in sys.argv[2].strip().splitlines():
    if not eval(c.strip()):
        print("not true:", c.strip())
        sys.exit(1)
EOF
  }

  # 1. the new version crashes in the transfer
  MCR_UPDATE_FAULT=heap:crash rolled_back crash "$work/v2/kvstore" --report "$work/crash.report" --json
  check_json "update --json" "$work/crash.out" '
    r["committed"] is False and r["report"].endswith("crash.report")
    any(c["kind"] == "crash" and "killed by signal 9" in c["message"] for c in r["conflicts"])
    all(set(c) == {"kind","message","object","old_type","new_type","old_location","new_location","stack","fix"} for c in r["conflicts"])
    r["reasons"] == [c["message"] for c in r["conflicts"]]'
  ok "mcr-ctl update --json: conflicts[].kind crash, the signal in the message"
  [ -s "$work/crash.report" ] || fail "no report file $work/crash.report"
  "$ctl" report "$work/crash.report" >"$work/crash.txt" 2>"$work/report.log" ||
    fail "mcr-ctl report exited $?"
  for want in "program:       $work/v1/kvstore" "old process:   $pid" \
    "new binary:    $work/v2/kvstore" "outcome:       rolled back" "[crash]" \
    "killed by signal 9" "fix:" "phases:" "startup"; do
    grep -qF -- "$want" "$work/crash.txt" || { cat "$work/crash.txt"; fail "no '$want' in mcr-ctl report"; }
  done
  ok "mcr-ctl report: program, pids, outcome, [crash] with the signal and a fix, phases"
  "$ctl" report "$work/crash.report" --json >"$work/crash.json" || fail "mcr-ctl report --json"
  check_json "report --json" "$work/crash.json" "
    r['schema_version'] == 1 and r['old_pid'] == $pid and r['new_pid'] > 0
    r['program'] == '$work/v1/kvstore' and r['new_binary'] == '$work/v2/kvstore'
    r['committed'] is False and r['created'] > 1700000000 and r['total_us'] > 0
    any(c['kind'] == 'crash' and 'killed by signal 9' in c['message'] and c['fix'] for c in r['conflicts'])
    [p['name'] for p in r['phases']][:1] == ['startup']"
  ok "mcr-ctl report --json: the same fields"

  # the default report path
  MCR_UPDATE_FAULT=startup:crash rolled_back default "$work/v2/kvstore"
  def=$(sed -n 's/^report: \([^ ]*\) .*/\1/p' "$work/default.out")
  case "$def" in
  /tmp/mcr-update-"$pid"-*.report) ;;
  *) cat "$work/default.out"; fail "default report path '$def'" ;;
  esac
  [ -s "$def" ] || fail "no default report $def"
  "$ctl" report "$def" | grep -qF "[crash]" || { rm -f "$def"; fail "the default report has no crash"; }
  rm -f "$def"
  ok "default report: $def, kind crash"

  # 2. a startup that differs: listen(fd, 64) where the old made listen(fd, 128)
  rolled_back startup "$work/v6/kvstore" --report "$work/startup.report"
  grep -qF "[startup] listen: the old version made listen(" "$work/startup.out" ||
    { cat "$work/startup.out"; fail "mcr-ctl update does not print the startup conflict"; }
  "$ctl" report "$work/startup.report" >"$work/startup.txt" || fail "mcr-ctl report (startup)"
  for want in "[startup] listen: the old version made listen(" ", 128) here, the new makes listen(" \
    "object:       listen(" "stack:        main" "fix:          the new version's startup must make the same listen"; do
    grep -qF -- "$want" "$work/startup.txt" || { cat "$work/startup.txt"; fail "no '$want' in mcr-ctl report"; }
  done
  ok "mcr-ctl report: [startup] listen conflict, the call, the stack, a fix"
  "$ctl" report "$work/startup.report" --json >"$work/startup.json" || fail "mcr-ctl report --json (startup)"
  check_json "report --json (startup)" "$work/startup.json" '
    [c["kind"] for c in r["conflicts"]] == ["startup"]
    r["conflicts"][0]["object"].startswith("listen(") and r["conflicts"][0]["object"].endswith(", 64)")
    r["conflicts"][0]["stack"].startswith("main") and "(at " not in r["conflicts"][0]["message"]
    r["conflicts"][0]["fix"] != ""'
  ok "mcr-ctl report --json: conflicts[0].kind startup, object listen(.., 64), stack"
  sed 's/^/  /' "$work/startup.txt"
  ;;
prefork)
  # profiled with a standby (-S): two configured stacks go through serve()'s
  # epoll_wait call, the workers' and the standby's (see the standby's check below)
  prof_args=(-S)
  prof_version=12 build_versions 12 13
  grep -q "spawn_standby > serve > epoll_wait" "$work/kvstore.qp" &&
    grep -q "spawn_worker > serve > epoll_wait" "$work/kvstore.qp" ||
    { cat "$work/kvstore.qp"; fail "the profile lacks the workers' or the standby's point"; }
  tree() { pgrep -f "^$work/v1[23]/kvstore" | sort | tr '\n' ' '; }
  # what each process of the tree is doing, for a failure (a worker that accepts
  # nothing): kvclient.py prefork runs it when it finds fewer than 2 workers
  cat >"$work/tree-state.sh" <<EOF
for p in \$(pgrep -f "^$work/v1[23]/kvstore"); do
  echo "process \$p: \$(awk '{print \$3}' /proc/\$p/stat) wchan \$(cat /proc/\$p/wchan) syscall \$(cut -d' ' -f1-3 /proc/\$p/syscall)"
  "$ctl" status \$p 2>&1 | grep -A1 '^ *[0-9]' | head -4
done >&2
EOF
  export KV_DIAG="$work/tree-state.sh"
  # hold NAME FIELD VALUE BEFORE AFTER: in the background ($holder), one
  # connection to the worker whose WORKER answer has VALUE in FIELD
  # (kvclient.py hold); BEFORE's answers in $ready; touch $work/NAME.go and
  # AFTER's answers come in $work/NAME.out
  hold() {
    rm -f "$work/$1".*
    python3 "$client" hold "$port" "$work/$1" "$2" "$3" "$4" "$5" &
    holder=$!
    for _ in $(seq 200); do [ -s "$work/$1.ready" ] && break; sleep 0.05; done
    ready=$(cat "$work/$1.ready" 2>/dev/null)
  }
  settle3() { for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 3 ] && break; sleep 0.05; done; }
  # a limit above the usual 1024, as busy servers run with: the runtime's own
  # descriptors then sit at 7/8 of it (3584, runtime/control.c fd_floor; checked
  # after the second update), away from a worker's connection numbered 1000, which
  # its new counterpart takes
  ulimit -n 4096 || fail "cannot raise RLIMIT_NOFILE to 4096 (hard limit $(ulimit -Hn))"
  start "$work/v12/kvstore"
  settle3
  before=$(tree)
  [ "$(echo $before | wc -w)" = 3 ] || fail "v12: not a master and 2 workers: $before"
  # a connection to worker 0 moved to descriptor 1000, with a key, held across the update
  hold highfd 1 0 "MOVEFD 1000;SET highfd kept" "GET highfd;VERSION;WORKER"
  [ "$ready" = "MOVEFD 1000|OK" ] || fail "the connection to worker 0 did not move to descriptor 1000: $ready"
  python3 "$client" prefork "$port" 50 13 commit "$ctl" update "$pid" "$work/v13/kvstore" \
    --json --report "$work/prefork.report" >"$work/session.log" 2>&1 ||
    { cat "$work/session.log"; "$ctl" report "$work/prefork.report" 2>/dev/null; fail "update of the tree v12 -> v13"; }
  cat "$work/session.log"
  touch "$work/highfd.go"
  wait "$holder" || fail "the client holding descriptor 1000 failed"
  high=$(cat "$work/highfd.out")
  case "$high" in
    "VALUE kept|VERSION 13|WORKER 0 "*) ;;
    *) fail "the connection at descriptor 1000 after the update: $high" ;;
  esac
  ok "a worker's connection at descriptor 1000 kept its worker and key across the update ($high)"
  sleep 0.3
  after=$(tree)
  [ "$(echo $after | wc -w)" = 3 ] || { pgrep -a -f "^$work/v1[23]/kvstore"; fail "not 3 processes after the update: $after"; }
  for p in $before; do ! alive "$p" || fail "old process $p still runs"; done
  new=$(cat "$work/pidfile")
  [ "$new" != "$pid" ] && alive "$new" || fail "the pid file names $new"
  for p in $after; do [ "$p" = "$new" ] || [ "$(awk '{print $4}' /proc/$p/stat)" = "$new" ] ||
    fail "process $p is not a child of the new master $new"; done
  ok "the tree was replaced: $before -> $after, the workers are children of the new master"
  # each new worker's startup waited on its instance (the old worker's): it saw
  # its own probe's event, and took none of the old worker's
  for p in $after; do
    [ "$p" = "$new" ] && continue
    grep -q "^kvstore: pid $p epoll probe: rdhup$" "$work/server.log" ||
      { grep "epoll probe" "$work/server.log"; fail "new worker $p: its startup's epoll probe did not see its own event"; }
  done
  ok "each new worker's startup wait on the old worker's epoll instance saw only its own registration (EPOLLRDHUP probe)"
  # the report of a committed tree update: one note per worker
  n=$(grep -o '"process [0-9]* (new [0-9]*): [a-z-]* [0-9.]* ms' "$work/session.log" | wc -l)
  [ "$n" -ge 2 ] || fail "the update's output has no per-process notes"
  ok "the update's output reports per process ($n notes with a worker's transfer phases)"
  # and back, on top
  old=$(tree)
  python3 "$client" prefork "$port" 20 12 commit "$ctl" update "$new" "$work/v12/kvstore" >"$work/session.log" 2>&1 ||
    { cat "$work/session.log"; fail "second update of the tree v13 -> v12"; }
  ok "second update v13 -> v12 committed with every worker's state"
  # what the runtime kept of two updates: no pidfd, no other generation's pipe
  # (each process has its own libunwind pipe pair), and all of it in the runtime's
  # range, 3584 and up at this limit of 4096 (900 before)
  settle3
  for p in $(tree); do
    pidfds=$(ls -l "/proc/$p/fd" 2>/dev/null | grep -c 'anon_inode:\[pidfd\]' || true)
    pipes=$(ls -l "/proc/$p/fd" 2>/dev/null | awk '$9 >= 3584 && /pipe:/' | wc -l)
    between=$(ls -l "/proc/$p/fd" 2>/dev/null | awk '$9 >= 900 && $9 < 3584' | wc -l)
    [ "$pidfds" = 0 ] && [ "$pipes" = 2 ] && [ "$between" = 0 ] ||
      { ls -l "/proc/$p/fd" >&2; fail "process $p after two updates: $pidfds pidfds, $pipes runtime pipe ends at 3584 and up (2), $between descriptors between 900 and 3583 (0)"; }
  done
  ok "after two updates no process of the tree holds a pidfd or an earlier generation's pipe, and the runtime's descriptors are at 3584 and up"
  # a worker's new process crashes in its transfer: the whole tree rolls back
  settle3
  pid=$(cat "$work/pidfile")
  old=$(tree)
  MCR_UPDATE_FAULT=heap:crash:child python3 "$client" prefork "$port" 20 12 rollback "$ctl" update "$pid" "$work/v13/kvstore" --report "$work/rb.report" >"$work/session.log" 2>&1 ||
    { cat "$work/session.log"; fail "rollback of the tree"; }
  sleep 0.5
  [ "$(tree)" = "$old" ] || { pgrep -a -f "^$work/v1[23]/kvstore"; fail "after the rollback: $(tree), expected the old $old"; }
  "$ctl" report "$work/rb.report" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
sys.exit(0 if any(x["kind"] == "crash" and x["message"].startswith("process ") for x in c) else 1)' ||
    { "$ctl" report "$work/rb.report"; fail "the report does not name the crashed worker"; }
  ok "a worker crashing in its transfer: the tree rolled back, the old 3 serve, the report names the worker"
  # a new version that forks one worker fewer: the old worker left over would serve
  # on the old version without its parent: refused, naming it
  mkdir -p "$work/v13w1"
  "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -DKV_VERSION=13 -DKV_WORKERS=1 \
    -o "$work/v13w1/kvstore" "$top/tests/servers/kvstore.c" || fail "build of v13 with 1 worker"
  rc=0
  update "$pid" "$work/v13w1/kvstore" --report "$work/fewer.report" || rc=$?
  [ $rc = 1 ] || fail "update to a version with fewer workers: exit $rc, expected 1"
  "$ctl" report "$work/fewer.report" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
sys.exit(0 if any(x["kind"] == "startup" and "has no counterpart" in x["message"] for x in c) else 1)' ||
    { "$ctl" report "$work/fewer.report"; fail "the report does not name the worker left over"; }
  sleep 0.5
  [ "$(tree)" = "$old" ] || fail "after the refused update: $(tree), expected the old $old"
  python3 "$client" prefork "$port" 5 12 rollback false >/dev/null ||
    fail "the old tree after the refused update"
  ok "a new version with one worker fewer: refused (the report names the old worker left over), the old tree serves"
  # a worker that died and that the master forked again (kvstore's reap_children,
  # as nginx's ngx_reap_children, through the function the startup forked it
  # with): the respawn's fork is logged after the startup, and the update pairs
  # the respawned worker with the startup fork whose child died
  workers_before=$(pgrep -P "$pid" | sort | tr '\n' ' ')
  dead=$(pgrep -P "$pid" | head -1)
  kill -9 "$dead"
  respawned=
  for _ in $(seq 100); do
    respawned=
    for w in $(pgrep -P "$pid"); do case " $workers_before" in *" $w "*) ;; *) respawned=$w ;; esac; done
    [ -n "$respawned" ] && ! alive "$dead" && break
    sleep 0.05
  done
  [ -n "$respawned" ] || { cat "$work/server.log"; fail "the master did not respawn worker $dead"; }
  hold respawn 2 "$respawned" "SET respawn kept;VERSION;WORKER" "GET respawn;VERSION;WORKER"
  case "$ready" in "OK|VERSION 12|WORKER "[01]" $respawned "*) ;; *) fail "no connection to the respawned worker $respawned: $ready" ;; esac
  index=$(echo "${ready##*|}" | awk '{print $2}')
  # the master told the other worker of the respawn on its channel, whose epoll
  # registration's data is a global's address, rewritten at each commit (before,
  # the worker took the old binary's address for a connection and crashed)
  survivor=$(for w in $workers_before; do [ "$w" != "$dead" ] && echo "$w"; done)
  alive "$survivor" && ! grep "died (" "$work/server.log" | grep -qv "(pid $dead) " ||
    { cat "$work/server.log"; fail "worker $survivor died after the master's line about the respawn"; }
  ok "the other worker (updated twice) read the master's line about the respawn on its channel and runs on"
  left=$(tree)
  rc=0
  update "$pid" "$work/v13/kvstore" --report "$work/respawn.report" || rc=$?
  touch "$work/respawn.go"
  [ $rc = 0 ] || { cat "$work/update.json"; "$ctl" report "$work/respawn.report"; fail "update with a respawned worker: exit $rc, expected 0"; }
  wait "$holder" || fail "the client of the respawned worker failed"
  got=$(cat "$work/respawn.out")
  case "$got" in
    "VALUE kept|VERSION 13|WORKER $index "*) ;;
    *) fail "the respawned worker's connection after the update: $got (expected VALUE kept|VERSION 13|WORKER $index ...)" ;;
  esac
  [ "$(echo "${got##*|}" | awk '{print $3}')" != "$respawned" ] ||
    fail "the respawned worker's connection is still served by $respawned"
  grep -q "forked later at main > reap_children > spawn_worker (a respawn)" "$work/update.json" ||
    { cat "$work/update.json"; fail "the update's notes do not name the respawn it paired"; }
  settle3
  for p in $left; do ! alive "$p" || fail "old process $p still runs"; done
  new=$(cat "$work/pidfile")
  [ "$(pgrep -c -P "$new")" = 2 ] || fail "the new master $new has not 2 workers"
  ok "a worker the master respawned after the startup: paired with the startup fork whose child died, its connection keeps its key (VERSION 13, worker $index), the tree is replaced"
  # a master that does not respawn: the startup fork's child is gone and nothing
  # took its place: refused, the fix says so, the rest of the tree serves
  mkdir -p "$work/v12nr"
  "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -DKV_VERSION=12 -DKV_NO_RESPAWN \
    -o "$work/v12nr/kvstore" "$top/tests/servers/kvstore.c" || fail "build of v12 without respawns"
  kill -TERM "$new"
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 0 ] && break; sleep 0.05; done
  start "$work/v12nr/kvstore"
  for _ in $(seq 100); do [ "$(pgrep -c -P "$pid")" = 2 ] && break; sleep 0.05; done
  dead=$(pgrep -P "$pid" | head -1)
  kill -9 "$dead"
  for _ in $(seq 100); do alive "$dead" || break; sleep 0.05; done
  left=$(pgrep -f "^$work/v12nr/kvstore" | sort | tr '\n' ' ')
  rc=0
  update "$pid" "$work/v13/kvstore" --report "$work/gone.report" || rc=$?
  [ $rc = 1 ] || fail "update with a dead worker: exit $rc, expected 1"
  "$ctl" report "$work/gone.report" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
sys.exit(0 if any(x["kind"] == "startup" and "is gone" in x["message"] and "respawn" in x["fix"]
                  for x in c) else 1)' ||
    { "$ctl" report "$work/gone.report"; fail "the report does not say the worker is gone and what to do"; }
  sleep 0.3
  [ "$(pgrep -f "^$work/v12nr/kvstore" | sort | tr '\n' ' ')" = "$left" ] || fail "after the refused update: not the old $left"
  [ "$(timeout 5 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"VERSION\n")
print(s.makefile().readline().strip())' "$port")" = "VERSION 12" ] || fail "the tree with a dead worker does not answer"
  ok "a dead worker nobody respawned: refused (kind startup, 'is gone', the fix says what to do), the master and the other worker serve"
  # an old worker's connection at the number of one of its new counterpart's runtime
  # descriptors: refused before the new child takes it (taking it would close the
  # runtime's), naming the descriptor, the process and the fix. The new child holds
  # more runtime descriptors than the old worker at rest (it inherits the new
  # master's, made for the update), so the number just above the old worker's
  # highest is one of them
  kill -TERM "$pid"
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v12nr/kvstore")" = 0 ] && break; sleep 0.05; done
  start "$work/v12/kvstore"
  settle3
  victim=$(pgrep -P "$pid" | head -1)
  at=$(( $(ls "/proc/$victim/fd" | sort -n | tail -1) + 1 ))
  hold collide 2 "$victim" "MOVEFD $at;SET collide kept" "GET collide;VERSION;WORKER"
  [ "$ready" = "MOVEFD $at|OK" ] || fail "the connection to worker $victim did not move to descriptor $at: $ready"
  left=$(tree)
  rc=0
  update "$pid" "$work/v13/kvstore" --report "$work/collide.report" || rc=$?
  touch "$work/collide.go"
  [ $rc = 1 ] || fail "update with a connection at runtime descriptor $at: exit $rc, expected 1"
  "$ctl" report "$work/collide.report" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
sys.exit(0 if any(x["kind"] == "other" and "process %s " % sys.argv[1] in x["message"]
                  and "descriptor %s " % sys.argv[2] in x["message"]
                  and "higher limit" in x["message"] for x in c) else 1)' "$victim" "$at" ||
    { "$ctl" report "$work/collide.report"; fail "the report does not name descriptor $at of worker $victim and the fix"; }
  wait "$holder" || fail "the client holding descriptor $at failed"
  case "$(cat "$work/collide.out")" in
    "VALUE kept|VERSION 12|WORKER "[01]" $victim "*) ;;
    *) fail "the connection at descriptor $at after the refused update: $(cat "$work/collide.out")" ;;
  esac
  sleep 0.3
  [ "$(tree)" = "$left" ] || fail "after the refused update: $(tree), not the old $left"
  ok "a worker's connection at descriptor $at, one of its new counterpart's runtime descriptors: refused (kind other, naming it), the connection keeps its key on the old tree"
  # a child of the startup that finished its work and exited 0 (-L: a loader, as
  # nginx's cache loader): the master reaped it; the update neither refuses
  # because it is gone nor forks it again, twice in a row (the new master's log
  # keeps that it finished)
  kill -TERM "$pid"
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 0 ] && break; sleep 0.05; done
  start "$work/v12/kvstore" -L
  settle3
  for _ in $(seq 100); do
    [ "$(wc -w <"/proc/$pid/task/$pid/children")" = 2 ] && break; sleep 0.05
  done
  [ "$(wc -w <"/proc/$pid/task/$pid/children")" = 2 ] ||
    fail "the master with a loader does not have exactly its 2 workers: $(cat "/proc/$pid/task/$pid/children")"
  for step in "v13 $pid" "v12 -"; do
    set -- $step
    [ "$2" = - ] && set -- "$1" "$(cat "$work/pidfile")"
    rc=0
    update "$2" "$work/$1/kvstore" --report "$work/loader.report" || rc=$?
    [ $rc = 0 ] || { cat "$work/update.json"; "$ctl" report "$work/loader.report" 2>/dev/null; fail "update to $1 of a master whose loader finished: exit $rc, expected 0"; }
    grep -q "finished (exit status 0): not forked again" "$work/update.json" ||
      { cat "$work/update.json"; fail "update to $1: the notes do not say the finished loader was not forked again"; }
    settle3
    newpid=$(cat "$work/pidfile")
    [ "$(wc -w <"/proc/$newpid/task/$newpid/children")" = 2 ] && [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 3 ] ||
      { pgrep -a -f "^$work/v1[23]/kvstore"; fail "after the update to $1: not the new master and its 2 workers"; }
  done
  [ "$(timeout 5 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"VERSION\n")
print(s.makefile().readline().strip())' "$port")" = "VERSION 12" ] || fail "the tree after two updates does not answer VERSION 12"
  ok "a loader forked by the startup that exited 0: two updates in a row commit without forking it again (the notes say so), the tree is a master and 2 workers"
  # a standby (-S) serving through the workers' epoll_wait call at another stack:
  # each new process parks at its own point (the call is marked with one of the
  # two; before, the other kind passed it in the new version and served on the
  # old process's epoll instance), and the standby's connection keeps its key
  kill -TERM "$(cat "$work/pidfile")"
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 0 ] && break; sleep 0.05; done
  start "$work/v12/kvstore" -S
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v1[23]/kvstore")" = 4 ] && break; sleep 0.05; done
  old=$(tree)
  [ "$(echo $old | wc -w)" = 4 ] || fail "v12 -S: not a master, 2 workers and a standby: $old"
  hold standby 1 2 "SET standby kept;VERSION;WORKER" "GET standby;VERSION;WORKER"
  case "$ready" in
    "OK|VERSION 12|WORKER 2 "*) ;;
    *) fail "no connection to the standby: $ready" ;;
  esac
  rc=0
  update "$pid" "$work/v13/kvstore" --report "$work/standby.report" || rc=$?
  touch "$work/standby.go"
  [ $rc = 0 ] || { cat "$work/update.json"; "$ctl" report "$work/standby.report" 2>/dev/null; fail "update of a tree with a standby: exit $rc, expected 0"; }
  wait "$holder" || fail "the client of the standby failed"
  case "$(cat "$work/standby.out")" in
    "VALUE kept|VERSION 13|WORKER 2 "*) ;;
    *) fail "the standby's connection after the update: $(cat "$work/standby.out")" ;;
  esac
  sleep 0.3
  new=$(tree)
  [ "$(echo $new | wc -w)" = 4 ] || fail "after the update: not 4 processes: $new"
  for p in $old; do ! alive "$p" || fail "old process $p still runs"; done
  ok "a standby waiting at the workers' epoll_wait call with another stack: the tree of 4 is updated, the standby's connection keeps its key on v13"
  ;;
badinput)
  build_versions 1 2 10
  # a worker forked at startup whose loop has no quiescent point (its pause() is not
  # in v1's config): the new worker cannot park, the update is refused naming it,
  # and nothing of the new version stays (before the process-tree update its fork
  # was not made; before that, its child outlived the rollback and served)
  start "$work/v10/kvstore"
  for _ in $(seq 100); do [ "$(pgrep -c -f "^$work/v10/kvstore")" = 2 ] && break; sleep 0.05; done
  [ "$(pgrep -c -f "^$work/v10/kvstore")" = 2 ] || fail "v10: not a parent and its worker"
  worker=$(pgrep -P "$pid" -f "^$work/v10/kvstore")
  rc=0
  update "$pid" "$work/v10/kvstore" --timeout 3 --report "$work/fork.report" || rc=$?
  [ $rc = 1 ] || fail "update of a server whose worker cannot quiesce: exit $rc, expected 1 (refused)"
  "$ctl" report "$work/fork.report" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["conflicts"]
sys.exit(0 if any("process %s " % sys.argv[1] in x["message"] and "quiescent" in x["message"]
                  for x in c) else 1)' "$worker" ||
    { "$ctl" report "$work/fork.report"; fail "the report does not name the worker $worker"; }
  sleep 0.5
  n=$(pgrep -c -f "^$work/v10/kvstore" || true)
  [ "$n" = 2 ] || { pgrep -a -f "^$work/v10/kvstore"; fail "$n processes of v10 after the refused update, expected the old 2"; }
  alive "$worker" || fail "the old worker $worker is gone"
  python3 "$client" check "$port" 0 10 >/dev/null || fail "v10 after the refused update"
  ok "a startup worker that cannot quiesce: refused (the report names process $worker), no process of the new version left"
  kill "$pid"
  start "$work/v1/kvstore"
  fds=$(fdcount "$pid")
  printf 'not a program\n' >"$work/text"
  chmod +x "$work/text"
  cp "$work/v2/kvstore" "$work/noexec"
  chmod -x "$work/noexec"
  printf 'int main(void){return 0;}\n' >"$work/other.c"
  cc -o "$work/plain" "$work/other.c"
  "$mcc" -o "$work/other" "$work/other.c"
  check_refused() { # EXPECTED_RC MESSAGE_PART ARGS...
    local want=$1 part=$2 rc=0
    shift 2
    "$ctl" update "$@" >"$work/out.log" 2>&1 || rc=$?
    [ $rc = "$want" ] || { cat "$work/out.log"; fail "mcr-ctl update $*: exit $rc, expected $want"; }
    grep -q -- "$part" "$work/out.log" || { cat "$work/out.log"; fail "no '$part' in the message"; }
    alive "$pid" || fail "the process died"
    # (while another update runs, that update holds descriptors of its own)
    [ -n "${busy:-}" ] || [ "$(fdcount "$pid")" = "$fds" ] || fail "the process was touched"
    ok "refused ($rc): $(head -1 "$work/out.log")"
  }
  check_refused 2 "No such file" "$pid" "$work/missing"
  check_refused 2 "not executable" "$pid" "$work/noexec"
  check_refused 2 "not an ELF" "$pid" "$work/text"
  check_refused 2 "not built by mcr-clang" "$pid" "$work/plain"
  check_refused 2 "no quiescent points" "$pid" "$work/other"
  check_refused 2 "missing" "$pid"
  check_refused 2 "no process" 999999 "$work/v2/kvstore"
  # not an mcr process; a child an mcr process forked (not the root of its tree)
  sleep 60 &
  plainpid=$!
  check_refused 2 "process $plainpid does not run mcr" "$plainpid" "$work/v2/kvstore"
  kill "$plainpid" 2>/dev/null || true
  printf '%s\n' '#include <stdio.h>' '#include <unistd.h>' \
    'int main(int c, char **v) { pid_t k = fork(); if (k == 0) for (;;) pause();' \
    '  FILE *f = fopen(v[1], "w"); fprintf(f, "%d\n", (int)k); fclose(f); for (;;) pause(); }' \
    >"$work/forker.c"
  "$mcc" -o "$work/forker" "$work/forker.c" || fail "build of forker.c"
  "$work/forker" "$work/forker.child" &
  forkpid=$!
  for _ in $(seq 100); do [ -s "$work/forker.child" ] && break; sleep 0.05; done
  child=$(cat "$work/forker.child")
  for _ in $(seq 100); do grep -q "@mcr/$child\$" /proc/net/unix && break; sleep 0.05; done
  check_refused 2 "process $child is not the root of its mcr process tree: its parent $forkpid" \
    "$child" "$work/v2/kvstore"
  alive "$child" || fail "the forked child died"
  kill "$child" "$forkpid" 2>/dev/null || true
  # another architecture: a copy whose ELF header says aarch64 (e_machine 183)
  cp "$work/v2/kvstore" "$work/arm"
  printf '\xb7\x00' | dd of="$work/arm" bs=1 seek=18 conv=notrunc status=none
  check_refused 2 "not an x86-64" "$pid" "$work/arm"
  # another program: built by mcr-clang with quiescent points, from other sources
  cp "$top/tests/servers/kvstore.c" "$work/otherserver.c"
  "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -o "$work/otherserver" \
    "$work/otherserver.c" || fail "build of the other program"
  check_refused 2 "another program" "$pid" "$work/otherserver"
  # busy: a hanging update holds the process; a second one is refused
  MCR_UPDATE_FAULT=ready:hang "$ctl" update "$pid" "$work/v2/kvstore" --timeout 3 >/dev/null 2>&1 &
  h=$!
  sleep 1
  busy=1 check_refused 1 "in progress" "$pid" "$work/v2/kvstore"
  wait "$h" || true
  [ "$(fdcount "$pid")" = "$fds" ] || fail "$(fdcount "$pid") descriptors after the rollback, was $fds"
  ok "the hanging update rolled back, $fds descriptors as before"
  python3 "$client" check "$port" 0 1 || fail "the server after the refusals"
  ;;
pool)
  # the pipeline for poolkv: profile under load, check the config has the three
  # kinds of points, build both versions with it
  pool_src="$top/tests/servers/poolkv.c"
  pclient="$src/poolclient.py"
  mkdir -p "$work/prof" "$work/v1" "$work/v2"
  "$mcc" --mcr-profile "${cflags[@]}" -o "$work/prof/poolkv" "$pool_src" || fail "profiling build"
  port=$(free_port)
  "$prof" -o "$work/poolkv.qp" --duration 5 -- "$work/prof/poolkv" -p "$port" >"$work/profile.log" 2>&1 &
  p=$!
  python3 "$client" fill "$port" 200 || fail "load while profiling"
  # (the load may outlast the profile on a busy machine: the config check says
  # whether the profile saw enough)
  python3 "$client" load "$port" 1.5 "$work/profload.out" >/dev/null 2>&1 || true
  wait "$p" || fail "mcr-profile"
  for qp in "main > event_loop > epoll_wait" "worker_main > pthread_cond_wait" \
    "maintenance_main > pthread_cond_timedwait"; do
    grep -qxF "qp $qp" "$work/poolkv.qp" || { cat "$work/poolkv.qp"; fail "the config has no 'qp $qp'"; }
  done
  ok "poolkv.qp: the event thread's epoll_wait, the workers' cond wait, the maintenance timedwait"
  for v in 1 2 3; do
    mkdir -p "$work/v$v"
    "$mcc" --mcr-quiescence="$work/poolkv.qp" "${cflags[@]}" -DPOOL_VERSION=$v \
      -o "$work/v$v/poolkv" "$pool_src" || fail "production build of version $v"
  done
  ok "poolkv versions 1, 2 and 3 built with the same config"

  start "$work/v1/poolkv" -w 4
  old=$pid
  python3 "$pclient" state "$port" 1 >"$work/state0.log" 2>&1 || { cat "$work/state0.log"; fail "v1"; }
  # a checking load on 4 connections across the update
  python3 "$client" load "$port" 7 "$work/load.out" &
  l=$!
  pids+=("$l")
  sleep 0.5
  python3 "$pclient" session "$port" 2000 2 "$ctl" update "$old" "$work/v2/poolkv" \
    >"$work/session.log" 2>&1 || { cat "$work/session.log"; fail "update v1 -> v2"; }
  cat "$work/session.log"
  wait "$l"
  read -r _ reqs _ fails _ gap <"$work/load.out"
  [ "$fails" = 0 ] && [ "$reqs" -gt 100 ] || fail "load: $reqs requests, $fails failures"
  ok "load across the update: $reqs requests, 0 failed, longest gap $gap ms"
  for _ in $(seq 100); do alive "$old" || break; sleep 0.05; done
  ! alive "$old" || fail "the old process $old still runs"
  new=$(cat "$work/pidfile")
  [ "$new" != "$old" ] && alive "$new" || fail "the pid file names $new"
  ok "the old process exited, the new one is $new"
  grep -q "thread classes: 3 of the old version's 3 matched in the new one (main 1, worker_main 4, maintenance_main 1)" \
    "$work/session.log" || fail "no thread-class note naming main, the 4 workers and the maintenance thread"
  ok "thread classes matched: main 1, worker_main 4, maintenance_main 1"

  # a global pointing into a worker's stack (its start routine's count of jobs,
  # registered by mcr-clang as a stack object): the update v2 -> v2 moves it to
  # the new worker's same variable, which holds the old count
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'STACKREF\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "STACKREF ok" ] || fail "STACKREF answered '$line'"
  sleep 0.2
  printf 'STACKVAL\n' >&3
  read -r -t 5 line <&3 && [[ "$line" =~ ^STACKVAL\ ([0-9]+)$ ]] || fail "STACKVAL answered '$line'"
  sv=${BASH_REMATCH[1]}
  [ "$sv" -ge 1 ] || fail "STACKVAL $sv: the worker's count of jobs is at least 1"
  exec 3<&-
  update "$new" "$work/v2/poolkv" ||
    fail "v2 -> v2 with a global pointing into a worker's stack (exit $?): $(cat "$work/update.json")"
  grep -q '"stack-objects", "us": [0-9]*, "detail": "[1-9][0-9]* of' "$work/update.json" ||
    fail "v2 -> v2: no stack object copied: $(cat "$work/update.json")"
  new=$(new_pid_of)
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'STACKVAL\n' >&3
  read -r -t 5 line <&3 && [[ "$line" =~ ^STACKVAL\ ([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge "$sv" ] ||
    fail "after v2 -> v2: STACKVAL answered '$line', expected at least $sv (the old worker's count)"
  printf 'UNSTACKREF\n' >&3
  read -r -t 5 line <&3 && [ "$line" = "UNSTACKREF ok" ] || fail "UNSTACKREF answered '$line'"
  exec 3<&-
  python3 "$pclient" state "$port" 2 >"$work/stateref.log" 2>&1 || { cat "$work/stateref.log"; fail "v2 after the update"; }
  ok "a global pointing into a worker's stack: v2 -> v2 committed, it points to the new worker's count ($sv before, ${BASH_REMATCH[1]} after)"

  # v2 -> v3, whose startup makes no maintenance thread: refused (kind thread)
  update_refused "$new" "$work/v3/poolkv" threads
  python3 - "$work/threads.json" <<'PY' || fail "the report of v2 -> v3 does not name the lost thread class"
import json, sys
c = json.load(open(sys.argv[1]))["conflicts"]
t = [x for x in c if x["kind"] == "thread"]
ok = (len(t) == 1 and "(maintenance_main)" in t[0]["object"] and "made none" in t[0]["message"]
      and t[0]["fix"])
print("   conflicts: %s" % [(x["kind"], x["object"]) for x in c])
sys.exit(0 if ok else 1)
PY
  alive "$new" || fail "v2 -> v3: v2 died"
  python3 "$pclient" state "$port" 2 >"$work/state3.log" 2>&1 || { cat "$work/state3.log"; fail "v2 after v2 -> v3"; }
  ok "v2 -> v3 refused (kind thread, the maintenance thread's class), v2 serves on with TICKS counting"

  # a failed update of v2 rolls back: v2 serves on, with its state
  rc=0
  MCR_UPDATE_FAULT=stacks:crash update "$new" "$work/v1/poolkv" --timeout 5 || rc=$?
  [ $rc = 1 ] || fail "stacks:crash: mcr-ctl update exited $rc, expected 1 (rolled back)"
  alive "$new" || fail "stacks:crash: v2 died"
  python3 "$client" check "$port" 2000 2 >/dev/null || fail "stacks:crash: keys or VERSION after the rollback"
  python3 "$pclient" state "$port" 2 >"$work/state1.log" 2>&1 || { cat "$work/state1.log"; fail "after the rollback"; }
  ok "stacks:crash rolled back: v2 ($new) serves its keys, TICKS counts, WORKERS consistent"

  # and back: v2 -> v1, the per-worker state carried over once more
  python3 "$pclient" session "$port" 2000 1 "$ctl" update "$new" "$work/v1/poolkv" \
    >"$work/session2.log" 2>&1 || { cat "$work/session2.log"; fail "update v2 -> v1"; }
  sed 's/^/  v2 -> v1: /' "$work/session2.log"
  ok "second update v2 -> v1 committed"
  ;;
churn)
  # changed types (v1 -> v3: every entry converted and moved) while a client
  # replaces, adds and deletes keys, with a second between the pre-copy (which
  # converts ahead) and the pause: the pause must convert again what was written
  # meanwhile, convert what is new and drop what was deleted
  build_versions 1 3
  start "$work/v1/kvstore"
  python3 "$client" fill "$port" 20000
  # on the first tenth of the keys: most pages stay as the pre-copy saw them
  python3 "$client" churn "$port" 20000 6 "$work/churn.out" 2000 &
  l=$!
  pids+=("$l")
  sleep 1
  MCR_UPDATE_FAULT=precopied:delay update "$pid" "$work/v3/kvstore" --report "$work/churn.report" ||
    { cat "$work/update.log"; fail "update v1 -> v3 under churn (exit $?)"; }
  wait "$l"
  read -r _ reqs _ fails <"$work/churn.out"
  [ "$fails" = 0 ] && [ "$reqs" -gt 300 ] || fail "churn: $reqs requests, $fails failures"
  ok "$reqs requests (SET, DEL, GET) during the update, every reply as the model says"
  python3 "$client" verify "$port" "$work/churn.out.model" || fail "the keys after the update"
  [ "$(python3 "$client" check "$port" 0 3 | tail -1)" = "ok: VERSION -> 'VERSION 3'" ] ||
    fail "v3 does not answer"
  # the transform line: converted before the pause, and some again in it
  tl=$(python3 -c 'import json,sys; d = json.load(open(sys.argv[1]))["phases"]; print(next(x["detail"] for x in d if x["name"] == "transform"))' \
    "$work/update.json" 2>/dev/null) || fail "no transform phase in the update's report"
  echo "  $tl"
  [[ "$tl" =~ ([0-9]+)\ objects\ converted\ before\ the\ pause.*\ ([0-9]+)\ converted\ again,\ ([0-9]+)\ new ]] ||
    fail "the transform did not run before the pause"
  [ "${BASH_REMATCH[1]}" -ge 10000 ] && [ $(( BASH_REMATCH[2] + BASH_REMATCH[3] )) -gt 0 ] &&
    [ "${BASH_REMATCH[2]}" -lt "${BASH_REMATCH[1]}" ] ||
    fail "before the pause ${BASH_REMATCH[1]}, again ${BASH_REMATCH[2]}, new ${BASH_REMATCH[3]}"
  ok "converted ${BASH_REMATCH[1]} entries before the pause, ${BASH_REMATCH[2]} again and ${BASH_REMATCH[3]} new in it"
  ;;
*)
  echo "run.sh: unknown test '$test'" >&2
  exit 2
  ;;
esac
echo "PASS: $test"
