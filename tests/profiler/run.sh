#!/usr/bin/env bash
# mcr-profile tests: small programs built with mcr-clang --mcr-profile, profiled,
# and the quiescence config and summary checked.
#   run.sh BUILD_DIR TEST
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
mcc="$build/bin/mcr-clang"
prof="$build/bin/mcr-profile"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-profiler-$test.XXXXXX")
pids=() # processes a test started: killed on the way out, however it ends
cleanup() {
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; for f in "$work"/out "$work"/err "$work"/*.qp; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
ok() { echo "ok: $*"; }
# build NAME: the profiling build of NAME.c
build() { "$mcc" --mcr-profile -O2 -Wall -o "$work/$1" "$src/$1.c"; }
# has FILE LINE: FILE has exactly this line
has() { grep -qxF -- "$2" "$1" || fail "$1 has no line '$2'"; ok "$(basename "$1"): $2"; }
hasnt() { ! grep -qF -- "$2" "$1" || fail "$1 has '$2'"; ok "$(basename "$1") has no '$2'"; }
# matches FILE REGEX: some line matches
matches() { grep -qE -- "$2" "$1" || fail "$1: no line matches '$2'"; ok "$(basename "$1") ~ $2"; }
# count FILE PREFIX: the number of lines starting with PREFIX
count() { grep -c -- "^$2" "$1" || true; }
# the production build accepts the config (mcr-clang checks every point is marked)
production() {
  "$mcc" --mcr-quiescence="$work/$1.qp" -O2 -o "$work/$1-prod" "$src/$1.c" ||
    fail "mcr-clang --mcr-quiescence rejected the config"
  ok "mcr-clang --mcr-quiescence=$1.qp builds $1"
}
# drive: 3 clients, 30 requests each, to the echo server whose port is in $work/ready
drive() {
  for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.05; done
  [ -s "$work/ready" ] || fail "the server did not start"
  python3 - "$(cat "$work/ready")" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
for i in range(30):
    for c in conns:
        c.sendall(b"ping %d\n" % i)
        assert c.recv(100) == b"ping %d\n" % i
    time.sleep(0.02)
for c in conns:
    c.close()
time.sleep(0.2)
PY
}
# expect_refusal WHAT PATTERN CMD...: exit 2, one line on stderr matching PATTERN
expect_refusal() {
  local what=$1 pat=$2 rc=0; shift 2
  timeout 60 "$@" >"$work/o" 2>"$work/e" || rc=$?
  if [ "$rc" = 2 ] && [ "$(wc -l <"$work/e")" = 1 ] && grep -qE -- "$pat" "$work/e"; then
    ok "$what: $(cat "$work/e")"
  else
    echo "FAIL: $what: exit $rc, stderr:"; cat "$work/e"; echo "stdout:"; cat "$work/o"; exit 1
  fi
}

case "$test" in
  epoll)
    # An epoll echo server: the loop's epoll_wait is the quiescent point; the
    # handlers' accept and read are rejected. Stopped by SIGINT to mcr-profile.
    build epoll-server
    "$prof" -o "$work/epoll-server.qp" -- "$work/epoll-server" "$work/ready" >"$work/out" 2>"$work/err" &
    ppid=$!; pids+=($ppid)
    drive
    ok "the server echoed 90 requests"
    kill -INT "$ppid"
    rc=0; wait "$ppid" || rc=$?
    [ "$rc" = 0 ] || fail "mcr-profile exited $rc"
    ok "mcr-profile stopped the server on SIGINT and exited 0"
    q="$work/epoll-server.qp"
    has "$q" "mcr-quiescence 1"
    has "$q" "program epoll-server"
    has "$q" "class main"
    has "$q" "qp main > serve > epoll_wait"
    [ "$(count "$q" qp)" = 1 ] || fail "expected one qp line"
    has "$q" "reject main > serve > handle > read : blocks while handling an event: inside handle, called from the loop in serve"
    has "$q" "reject main > serve > accept_client > accept : blocks while handling an event: inside accept_client, called from the loop in serve"
    matches "$q" "^#   serve > epoll_wait at .*epoll-server.c:[0-9]+, in a loop$"
    matches "$q" "^# [0-9]+ hits, .* blocked \((9[0-9]|100)\.[0-9]% of the class's blocked time"
    has "$work/out" "class main (1 thread)"
    has "$work/out" "  qp      main > serve > epoll_wait"
    matches "$work/out" "^          .*epoll-server.c:[0-9]+, [0-9]+ hits, .* blocked \([0-9.]+%\)$"
    matches "$work/out" "^          blocks while handling an event: inside handle, called from the loop in serve \(9[0-9] hits"
    has "$work/out" "wrote $q"
    [ ! -s "$work/err" ] || fail "mcr-profile wrote on stderr"
    production epoll-server
    ;;
  idle)
    # No client at all: the one epoll_wait never returns, and still counts
    # (the wrapper announced it) with the time it waited.
    build epoll-server
    "$prof" -o "$work/epoll-server.qp" --duration 1 -- "$work/epoll-server" "$work/ready" >"$work/out" 2>"$work/err" ||
      fail "mcr-profile exited $?"
    has "$work/epoll-server.qp" "qp main > serve > epoll_wait"
    matches "$work/out" "^          .*epoll-server.c:[0-9]+, 1 hit, [0-9.]+ m?s blocked \(100\.0%\)$"
    ;;
  pool)
    # A condition-variable pool, a sleeping maintenance thread and a producer:
    # one class per kind of thread, each with its own quiescent point. The
    # program exits by itself; --keep leaves the .prof files to check.
    build pool
    "$prof" -o "$work/pool.qp" --keep -- "$work/pool" >"$work/out" 2>"$work/err" ||
      fail "mcr-profile exited $?"
    q="$work/pool.qp"
    has "$q" "program pool"
    has "$q" "class main"
    has "$q" "qp main > produce > usleep"
    has "$q" "class main > start_pool"
    has "$q" "qp worker > pthread_cond_wait"
    has "$q" "reject worker > run_job > nanosleep : blocks while handling an event: inside run_job, called from the loop in worker"
    has "$q" "class main > start_maintenance"
    has "$q" "qp maintenance > usleep"
    [ "$(count "$q" qp)" = 3 ] || fail "expected 3 qp lines"
    matches "$q" "^# class main > start_pool: 3 threads in 1 process"
    has "$work/out" "class main > start_pool (3 threads)"
    has "$work/out" "class main > start_maintenance (1 thread)"
    has "$work/out" "60 jobs done"
    # the .prof file of the run, kept by --keep
    d=$(sed -n 's/^mcr-profile: profiles kept in //p' "$work/err")
    [ -d "$d" ] || fail "no kept profile directory"
    p=$(ls "$d"/*.prof)
    has "$p" "mcr-prof 1"
    matches "$p" "^pid [0-9]+$"
    matches "$p" "^exe /.*/pool$"
    has "$p" "dropped 0"
    has "$p" "failures 0"
    matches "$p" "^class 3 [0-9]+ main > start_pool$"
    matches "$p" "^stack 6[0-9] [0-9]+ [0-9]+ worker > run_job > nanosleep$"
    has "$p" "end"
    rm -rf "$d"
    # --json says the same
    "$prof" -o "$work/pool2.qp" --json -- "$work/pool" >"$work/json" 2>"$work/err2" || fail "--json run"
    python3 - "$work/json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
cls = {c["class"]: c for c in s["classes"]}
qp = {k: [q["stack"] for q in c["quiescent_points"]] for k, c in cls.items()}
want = {"main": ["main > produce > usleep"], "main > start_pool": ["worker > pthread_cond_wait"],
        "main > start_maintenance": ["maintenance > usleep"]}
assert qp == want, qp
assert cls["main > start_pool"]["threads"] == 3
r = cls["main > start_pool"]["rejected"][0]
assert r["stack"] == "worker > run_job > nanosleep" and r["reason"].startswith("blocks while handling"), r
assert s["mcr_calls"] is True and s["processes"] == 1
print("ok: --json: classes, quiescent points, threads and the rejected stack")
PY
    production pool
    ;;
  fork)
    # A parent and its daemon child (setsid): both profiled, merged into one
    # config; the child, still running when --duration ends, is stopped.
    build forker
    "$prof" -o "$work/forker.qp" --duration 2.5 -- "$work/forker" "$work/child.pid" >"$work/out" 2>"$work/err" ||
      fail "mcr-profile exited $?"
    child=$(cat "$work/child.pid"); pids+=("$child")
    ! kill -0 "$child" 2>/dev/null || fail "the daemon child $child still runs"
    ok "the daemon child was stopped"
    q="$work/forker.qp"
    matches "$q" "^# Profiled [0-9.]+ s: 2 processes of "
    has "$q" "class main"
    has "$q" "qp main > parent_loop > poll"
    has "$q" "qp main > spawn_child > child_loop > nanosleep"
    matches "$work/out" "^mcr-profile: forker: 2 processes, 1 thread class"
    has "$work/out" "class main (2 threads)"
    production forker
    ;;
  libevent)
    # A worker in libevent's loop: the loop is assumed inside event_base_loop;
    # the callback's read is inside the handling of an event.
    "$mcc" --mcr-profile -O2 -Wall -o "$work/libevent-worker" "$src/libevent-worker.c" -levent
    "$prof" -o "$work/libevent-worker.qp" -- "$work/libevent-worker" >"$work/out" 2>"$work/err" ||
      fail "mcr-profile exited $?"
    q="$work/libevent-worker.qp"
    has "$q" "class main > start_worker"
    matches "$q" "^qp worker_libevent > event_base_loop@libevent-[0-9.]+\.so\.[0-9]+ > .*epoll_wait$"
    matches "$q" "^reject worker_libevent > event_base_loop@libevent.* > on_read > read : blocks while handling an event: inside on_read, reached from the loop in event_base_loop@libevent"
    matches "$q" "^#   \(blocks inside event_base_loop@libevent.*: a loop there is assumed\)$"
    has "$q" "qp main > feed > usleep"
    "$mcc" --mcr-quiescence="$q" -O2 -o "$work/libevent-worker-prod" "$src/libevent-worker.c" -levent ||
      fail "mcr-clang --mcr-quiescence rejected the config"
    ok "mcr-clang --mcr-quiescence builds libevent-worker"
    ;;
  pending)
    # The recording entry points called directly: exact counts and times from
    # mcr_profile_record, and a call announced by mcr_profile_begin that never
    # returns is counted with the time it has been blocked.
    "$mcc" --mcr-profile -O2 -I"$src/../../runtime" -I"$src/../../runtime/include" \
      -o "$work/pending" "$src/pending.c"
    rc=0
    "$prof" -o "$work/pending.qp" --keep --duration 1.5 -- "$work/pending" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = 2 ] || fail "mcr-profile exited $rc (expected 2: the stand-in wrappers are in no loop)"
    d=$(sed -n 's/^mcr-profile: profiles kept in //p' "$work/err")
    p=$(ls "$d"/*.prof)
    matches "$p" "^class 1 [0-9]+ main$"
    matches "$p" "^class 1 [0-9]+ main > start_waiter$"
    has "$p" "stack 100 100000000 1000000 main > loop > read"
    has "$p" "stack 100 900000000 9000000 main > loop > poll"
    matches "$p" "^stack 1 [12][0-9]{9} [12][0-9]{9} waiter > pthread_cond_wait$"
    rm -rf "$d"
    has "$work/out" "class main > start_waiter (1 thread)"
    matches "$work/out" "^          .* \(1 hit, [12]\.[0-9]+ s, 100\.0%\)$"
    ;;
  cli)
    # Bad usage and programs mcr-profile cannot profile: one line, exit 2.
    build noloop
    expect_refusal "no -o" "missing -o FILE" "$prof" -- /bin/true
    expect_refusal "no command" "no command to profile" "$prof" -o "$work/x.qp"
    expect_refusal "no command after --" "no command to profile" "$prof" -o "$work/x.qp" --
    expect_refusal "unknown option" "unknown option '--bogus'" "$prof" --bogus -o "$work/x.qp" -- /bin/true
    expect_refusal "bad duration" "bad --duration 'soon'" "$prof" -o "$work/x.qp" --duration soon -- /bin/true
    expect_refusal "zero duration" "bad --duration '0'" "$prof" -o "$work/x.qp" --duration 0 -- /bin/true
    expect_refusal "command not found" "no-such-command-xyz: command not found" "$prof" -o "$work/x.qp" -- no-such-command-xyz
    expect_refusal "unwritable output" "cannot write $work/none/x.qp.tmp: No such file or directory" "$prof" -o "$work/none/x.qp" -- /bin/true
    expect_refusal "not a profiling build" "true wrote no profile: it is not a profiling build .*mcr-clang --mcr-profile" "$prof" -o "$work/x.qp" -- true
    [ ! -e "$work/x.qp" ] || fail "a config was written"
    ok "no config written for a program without profile"
    expect_refusal "no quiescent point" "no thread class of noloop got a quiescent point \($work/noloop.qp lists what was seen\)" "$prof" -o "$work/noloop.qp" -- "$work/noloop"
    has "$work/noloop.qp" "reject main > wait_once > usleep : not in a loop: no call on its stack is inside a loop of its caller"
    has "$work/o" "  no quiescent point: these threads cannot be parked"
    "$prof" --help >"$work/o" 2>"$work/e" || fail "--help exited $?"
    matches "$work/o" "^Usage: mcr-profile -o FILE \[--duration SEC\]"
    [ ! -s "$work/e" ] || fail "--help wrote on stderr"
    # a duration stops a program that would run forever; a plain mcr-clang
    # build (no call table) is profiled by time alone, with a warning
    "$mcc" -O2 -o "$work/epoll-plain" "$src/epoll-server.c"
    rm -f "$work/ready"
    "$prof" -o "$work/plain.qp" --duration 3 -- "$work/epoll-plain" "$work/ready" >"$work/o" 2>"$work/e" &
    ppid=$!; pids+=($ppid)
    drive
    rc=0; wait "$ppid" || rc=$?
    [ "$rc" = 0 ] || fail "plain build: exit $rc"
    matches "$work/e" "warning: .*epoll-plain has no mcr_calls section .* chosen by time alone"
    matches "$work/plain.qp" "^qp main( > serve)? > epoll_wait$" # -O2 without --mcr-profile inlines
    ;;
  *)
    echo "run.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
