#!/usr/bin/env bash
# Quiescence end to end (label "quiesce"): small servers of our own, each through
# the whole pipeline:
#   mcr-clang --mcr-profile -> mcr-profile under load -> the config's quiescent
#   points checked -> mcr-clang --mcr-quiescence -> the server started -> load
#   (every reply checked) -> 100 x mcr-ctl quiesce --hold 0.01 while it runs
# and then: every quiesce quiesced with every thread arrived, zero failed
# requests, a request sent during a hold is answered after the resume, the
# server still answers, and the load after the quiesces completes at least 30%
# of the requests of the load before them (a loose check: the machine is shared).
#
#   run.sh BUILD_DIR LOAD TEST     TEST: epoll-et pool accept-restart signals
#                                        stuck concurrent
# Servers listen on a free port of 127.0.0.1 (bind to port 0), so tests run in
# parallel; everything a test starts is killed when it ends. On failure the work
# directory is kept and its path printed.
set -euo pipefail
build=$1
load=$2
test=$3
src=$(cd "$(dirname "$0")" && pwd)
mcc="$build/bin/mcr-clang"
prof="$build/bin/mcr-profile"
ctl="$build/bin/mcr-ctl"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-quiesce-$test.XXXXXX")
cflags=(-O2 -g -std=c11 -Wall -Wextra -Werror -pthread)
pids=() # processes this test started: killed on the way out, however it ends
keep=0
cleanup() {
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $keep = 1 ]; then echo "files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log "$work"/*.err; do
    [ -s "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
  done
  keep=1
  exit 1
}
ok() { echo "ok: $*"; }

wait_file() {
  for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done
  fail "$1 did not appear in 10 s"
}
# has FILE LINE: FILE has exactly this line
has() { grep -qxF -- "$2" "$1" || fail "$(basename "$1") has no line '$2'"; ok "$(basename "$1"): $2"; }
hasnt() { ! grep -qF -- "$2" "$1" || fail "$(basename "$1") has '$2'"; ok "$(basename "$1") has no '$2'"; }
qp_count() { [ "$(grep -c '^qp ' "$1")" = "$2" ] || fail "$(basename "$1"): expected $2 qp lines"; ok "$(basename "$1"): $2 quiescent points"; }

# profile NAME [ARGS...]: profiling build of NAME.c, run under mcr-profile with
# the load generator (profile_load: its options), then idle at its quiescent
# points; the config is $work/NAME.qp
profile_load=(-c 2 -P 2 -s)
profile() {
  local name=$1 p rc=0
  shift
  mkdir -p "$work/prof"
  "$mcc" --mcr-profile "${cflags[@]}" -o "$work/prof/$name" "$src/$name.c" ||
    fail "the profiling build of $name"
  "$prof" -o "$work/$name.qp" -- "$work/prof/$name" "$work/prof/ready" "$@" >"$work/profile.log" 2>&1 &
  p=$!
  pids+=("$p")
  wait_file "$work/prof/ready"
  "$load" -p "$(cat "$work/prof/ready")" "${profile_load[@]}" -d 0.5 >"$work/profile-load.log" 2>&1 ||
    fail "the load while profiling"
  sleep 0.5 # idle: the most blocked time is then at the quiescent points
  kill -TERM "$p"
  wait "$p" || rc=$?
  [ $rc = 0 ] || fail "mcr-profile exited $rc"
  ok "mcr-profile wrote $name.qp"
}

# production NAME: built with the config (mcr-clang checks every point is marked)
production() {
  "$mcc" --mcr-quiescence="$work/$1.qp" "${cflags[@]}" -o "$work/$1" "$src/$1.c" ||
    fail "mcr-clang --mcr-quiescence=$1.qp"
  ok "built $1 with mcr-clang --mcr-quiescence=$1.qp"
}

# start NAME [ARGS...]: starts the production build; sets spid and port
start() {
  local name=$1
  shift
  rm -f "$work/ready"
  "$work/$name" "$work/ready" "$@" >"$work/server.log" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_file "$work/ready"
  port=$(cat "$work/ready")
}

alive() { kill -0 "$spid" 2>/dev/null || fail "the server died"; }

# query LINE: one request, its reply in $reply
query() {
  reply=$("$load" -p "$port" -q "$1" 2>"$work/query.err") || fail "no reply to '$1'"
}
# stat NAME: the counter NAME of the server's STATS reply, in $val
stat() {
  query STATS
  val=$(tr ' ' '\n' <<<"$reply" | sed -n "s/^$1=//p")
  [ -n "$val" ] || fail "STATS has no $1: $reply"
}

# main_load: the load generator's options for the server under test
main_load=(-c 8 -P 4 -s)
# phase NAME SECS: load for SECS seconds, every reply correct; the number of
# correct replies in $done_reqs
phase() {
  "$load" -p "$port" "${main_load[@]}" -d "$2" >"$work/$1.log" 2>"$work/$1.err" ||
    fail "load phase '$1' failed: $(cat "$work/$1.log")"
  done_reqs=$(sed -n 's/^ok=\([0-9]*\) .*/\1/p' "$work/$1.log")
  ok "load $1: $(cat "$work/$1.log")"
}

# quiesce_loop N: N x quiesce-hold-resume, hold 10 ms; every one must quiesce
quiesce_loop() {
  local rc
  mkdir -p "$work/q"
  for i in $(seq "$1"); do
    rc=0
    "$ctl" quiesce "$spid" --hold 0.01 --json >"$work/q/$i.json" 2>"$work/q/$i.err" || rc=$?
    [ $rc = 0 ] || fail "quiesce $i of $1 exited $rc: $(cat "$work/q/$i.err" "$work/q/$i.json")"
  done
}

# check_quiesces THREADS POINT...: each reply in $work/q says quiesced, with
# every thread arrived at one of the POINTs ("(thread start)": a thread that
# parked as it started); THREADS: their number, or "any". Prints the time to
# quiescence.
check_quiesces() {
  python3 - "$work/q" "$@" <<'PY' || fail "the quiesce replies"
import glob, json, statistics, sys
qdir, nthreads, allowed = sys.argv[1], sys.argv[2], set(sys.argv[3:])
files = sorted(glob.glob(qdir + "/*.json"), key=lambda f: int(f.split("/")[-1][:-5]))
ttq, seen = [], {}
for f in files:
    d = json.load(open(f))
    assert d["quiesced"] is True, (f, d)
    if nthreads != "any":
        assert len(d["threads"]) == int(nthreads), (f, "threads", len(d["threads"]))
    for t in d["threads"]:
        assert t["arrived"] is True, (f, t)
        assert t["state"] in ("parked", "blocked"), (f, t)
        p = t["point"]["stack"] if t.get("point") else "(thread start)"
        assert p in allowed, (f, "unexpected point", p)
        seen[p] = seen.get(p, 0) + 1
    ttq.append(d["time_to_quiescence_us"])
ttq.sort()
print("ok: %d quiesces, each quiesced with every thread arrived; arrivals: %s" %
      (len(files), ", ".join("%s x%d" % kv for kv in sorted(seen.items()))))
print("ok: time to quiescence: median %d us, p90 %d us, max %d us" %
      (statistics.median(ttq), ttq[int(len(ttq) * 0.9) - 1], ttq[-1]))
PY
}

# wait_quiesced: until mcr-ctl status shows a quiesce in progress with every
# registered thread parked or blocked at its point
wait_quiesced() {
  for _ in $(seq 250); do
    if "$ctl" status "$spid" --json >"$work/status.json" 2>/dev/null &&
      grep -q '"quiescing": true' "$work/status.json" &&
      ! grep -qE '"quiesce_state": "(running|waiting)"' "$work/status.json"; then
      return 0
    fi
    sleep 0.02
  done
  fail "the server was never seen quiesced: $(cat "$work/status.json")"
}

# held_probe: during a 2 s hold a request gets no reply (the threads are
# parked); it is answered, correctly, after the resume
held_probe() {
  local q rc=0
  "$ctl" quiesce "$spid" --hold 2 --json >"$work/held.json" 2>"$work/held.err" &
  q=$!
  pids+=("$q")
  wait_quiesced
  "$load" -p "$port" -q "R 7 0" -e 500 >"$work/probe.out" 2>"$work/probe.err" ||
    fail "a request during the hold: $(cat "$work/probe.err")"
  [ "$(cat "$work/probe.out")" = "7 0 1" ] || fail "reply '$(cat "$work/probe.out")' to 'R 7 0'"
  wait "$q" || rc=$?
  [ $rc = 0 ] || fail "the 2 s hold exited $rc: $(cat "$work/held.err")"
  ok "a request sent during a 2 s hold got no reply for 500 ms or more, then the right one"
}

# standard HOOK THREADS POINT...: load before; load during 100 quiesces (HOOK,
# a function, runs as they start); the replies checked; a request during a
# hold; load after, within 30% of before
standard() {
  local hook=$1 before after lpid rc=0
  shift
  phase before 1.5
  before=$done_reqs
  "$load" -p "$port" "${main_load[@]}" -d 120 >"$work/during.log" 2>"$work/during.err" &
  lpid=$!
  pids+=("$lpid")
  sleep 0.3
  $hook
  quiesce_loop 100
  kill -TERM "$lpid"
  wait "$lpid" || rc=$?
  [ $rc = 0 ] || fail "the load during the quiesces exited $rc: $(cat "$work/during.log")"
  ok "load during 100 quiesces: $(cat "$work/during.log")"
  check_quiesces "$@"
  alive
  held_probe
  # A loose sanity check, not a timing: the machine is shared, so a slow phase
  # is measured again (up to three times) before it counts as a failure.
  for try in 1 2 3; do
    phase after 1.5
    after=$done_reqs
    [ $((after * 10)) -ge $((before * 3)) ] && break
    echo "note: after-phase $try: $after requests, $before before; measuring again"
  done
  [ $((after * 10)) -ge $((before * 3)) ] ||
    fail "throughput did not come back: $after requests after the quiesces, $before before"
  ok "throughput after the quiesces: $after requests in 1.5 s, $before before"
}

# send_signals PID COUNT SIG...: COUNT rounds of each SIG, 5 ms apart, in the
# background (sender_pid)
send_signals() {
  local pid=$1 n=$2
  shift 2
  (
    for _ in $(seq "$n"); do
      for s in "$@"; do kill -"$s" "$pid" || exit 1; done
      sleep 0.005
    done
  ) &
  sender_pid=$!
  pids+=("$sender_pid")
}

# within NAME VALUE LO HI
within() {
  [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] || fail "$1 = $2, expected $3 to $4"
  ok "$1 = $2 (expected $3 to $4)"
}

none() { :; }

case "$test" in
  epoll-et)
    # Edge-triggered: an event lost by a quiesce would hang a client (the load
    # generator fails a connection that gets no reply for 10 s). Requests are
    # pipelined and written in two parts, so data is pending when quiesces start.
    profile epoll-et
    q="$work/epoll-et.qp"
    has "$q" "class main"
    has "$q" "qp main > serve > epoll_wait"
    has "$q" "reject main > serve > on_conn > read : blocks while handling an event: inside on_conn, called from the loop in serve"
    qp_count "$q" 1
    production epoll-et
    start epoll-et
    main_load=(-c 8 -P 16 -s -t 10)
    standard none 1 "main > serve > epoll_wait"
    stat partial_reads
    [ "$val" -gt 0 ] || fail "the server never read a partial request"
    ok "the server read $val partial requests"
    ;;

  pool)
    # An event thread, 6 workers on a condition variable, a sleeping
    # maintenance thread; then jobs queued during a hold by another process.
    profile pool
    q="$work/pool.qp"
    has "$q" "qp main > serve > epoll_wait"
    has "$q" "class main > start_pool"
    has "$q" "qp worker > pthread_cond_wait"
    has "$q" "reject worker > run_conn > recv : blocks while handling an event: inside run_conn, called from the loop in worker"
    has "$q" "class main > start_maintenance"
    has "$q" "qp maintenance > usleep"
    qp_count "$q" 3
    production pool
    start pool "$work/inject.txt"
    wait_file "$work/ready.injector"
    injector=$(cat "$work/ready.injector")
    pids+=("$injector")
    standard none 8 "main > serve > epoll_wait" "worker > pthread_cond_wait" "maintenance > usleep"

    # Jobs queued during a hold: the injector queues one, waits 50 ms (a worker
    # wakes up, and must park without the mutex), queues another (its lock must
    # not wait for the resume), waits 50 ms: neither job has run. After the
    # resume both run.
    "$ctl" quiesce "$spid" --hold 3 --json >"$work/inject-hold.json" 2>"$work/inject-hold.err" &
    qpid=$!
    pids+=("$qpid")
    wait_quiesced
    kill -USR1 "$injector"
    wait_file "$work/inject.txt"
    kill -0 "$qpid" 2>/dev/null || fail "the hold ended before the injector was done (machine too slow?)"
    line=$(cat "$work/inject.txt")
    python3 - "$line" <<'PY' || fail "jobs queued during the hold: $line"
import sys
kv = dict(f.split("=") for f in sys.argv[1].split()[1:])
assert float(kv["lock1_ms"]) < 1000 and float(kv["lock2_ms"]) < 1000, "the queue's mutex was held during the hold"
assert kv["done_before"] == "0" and kv["done_after"] == "0", "a job ran during the hold"
assert kv["queued"] == "2", "the queue lost a job"
print("ok: during the hold: " + sys.argv[1])
PY
    rc=0
    wait "$qpid" || rc=$?
    [ $rc = 0 ] || fail "the 3 s hold exited $rc"
    for _ in $(seq 100); do
      stat injected_done
      [ "$val" = 2 ] && break
      sleep 0.05
    done
    [ "$val" = 2 ] || fail "the jobs queued during the hold did not run after it ($reply)"
    ok "both jobs queued during the hold ran after the resume"
    phase final 1
    ;;

  accept-restart)
    # Blocking accept() under a SIGUSR1 handler with SA_RESTART; a thread per
    # connection, connections re-opened every 40 requests. The server aborts if
    # accept() ever returns EINTR. 300 SIGUSR1 are sent during the quiesces.
    profile_load=(-c 2 -P 2 -s -r 50)
    profile accept-restart
    q="$work/accept-restart.qp"
    has "$q" "class main"
    has "$q" "qp main > serve > accept"
    has "$q" "class main > serve"
    has "$q" "qp conn_main > read"
    qp_count "$q" 2
    production accept-restart
    start accept-restart
    main_load=(-c 6 -P 4 -s -r 40)
    usr1_during() { send_signals "$spid" 300 USR1; }
    standard usr1_during any "main > serve > accept" "conn_main > read" "(thread start)"
    wait "$sender_pid" || fail "sending SIGUSR1 failed"
    grep -q '"conn_main > read"' "$work"/q/*.json || fail "no connection thread was ever parked"
    stat usr1
    within "SIGUSR1 handler runs (300 sent; a signal sent while one is pending merges)" "$val" 270 300
    stat read_eintr
    [ "$val" = 0 ] || fail "read() returned EINTR $val times to the server"
    ok "read() never returned EINTR to the server"
    alive
    ! grep -q EINTR "$work/server.log" || fail "$(cat "$work/server.log")"
    ok "accept() never returned EINTR to the server (it would have aborted)"
    ;;

  signals)
    # Own handlers for SIGUSR1/SIGUSR2/SIGALRM (a 2 ms interval timer) without
    # SA_RESTART; worker threads with every signal blocked: one in a condition
    # wait, one in ppoll() with a full mask argument. The profile also covers
    # a third, in poll() with every signal blocked (argument pollw).
    profile signals pollw
    q="$work/signals.qp"
    has "$q" "qp main > serve > epoll_wait"
    has "$q" "class main > start_workers"
    has "$q" "qp condw > pthread_cond_wait"
    has "$q" "qp ppollw > ppoll"
    has "$q" "qp pollw > poll"
    qp_count "$q" 4
    production signals
    start signals
    signals_during() { send_signals "$spid" 200 USR1 USR2; }
    standard signals_during 3 "main > serve > epoll_wait" "condw > pthread_cond_wait" "ppollw > ppoll"
    wait "$sender_pid" || fail "sending signals failed"
    stat usr1
    within "SIGUSR1 handler runs (200 sent; one sent while one is pending merges)" "$val" 180 200
    stat usr2
    within "SIGUSR2 handler runs (200 sent)" "$val" 180 200
    stat unexplained_eintr
    [ "$val" = 0 ] || fail "epoll_wait returned EINTR $val times when none of the server's handlers had run"
    ok "every EINTR the server saw came with one of its own handlers: the runtime's signal never showed"
    for c in mask_changed worker_mask_changed; do
      stat $c
      [ "$val" = 0 ] || fail "$c = $val: a thread's signal mask changed"
    done
    ok "the threads' signal masks are what the server set"
    stat handlers_intact
    [ "$val" = 1 ] || fail "the server's handlers were replaced"
    stat timer_armed
    [ "$val" = 1 ] || fail "the interval timer was disarmed"
    ok "the server's handlers (no SA_RESTART) and its timer are as it set them"
    # the timer: no more handler runs than expirations, and still firing
    stat alrm
    alrm1=$val
    stat uptime_ms
    within "SIGALRM handler runs after $val ms (2 ms timer; merged when the thread is late)" "$alrm1" $((val / 20)) $((val / 2 + 2))
    sleep 0.3
    stat alrm
    [ "$val" -gt $((alrm1 + 10)) ] || fail "SIGALRM stopped: $alrm1, then $val 0.3 s later"
    ok "SIGALRM still runs after the quiesces ($alrm1, then $val 0.3 s later)"
    for c in cond_jobs ppoll_wakes; do
      stat $c
      [ "$val" -gt 0 ] || fail "$c = 0: that worker never ran"
    done

    # A thread that blocks every signal, the runtime's included, waiting in
    # poll() at its quiescent point: the runtime's signal cannot interrupt it,
    # so the quiesce times out naming it (at its point: "waiting"), exit 1, and
    # everything resumes.
    { kill -9 "$spid" && wait "$spid"; } 2>/dev/null || true
    start signals pollw
    main_load=(-c 4 -P 4 -s)
    phase pollw-before 0.5
    rc=0
    "$ctl" quiesce "$spid" --hold 0.01 --timeout 0.3 --json >"$work/pollw.json" 2>"$work/pollw.err" || rc=$?
    [ $rc = 1 ] || fail "quiesce with a thread in poll() with every signal blocked exited $rc (expected 1)"
    python3 - "$work/pollw.json" <<'PY' || fail "the reply: $(cat "$work/pollw.json")"
import json, signal, sys
d = json.load(open(sys.argv[1]))
assert d["quiesced"] is False
late = [t for t in d["threads"] if not t["arrived"]]
assert len(late) == 1 and len(d["threads"]) == 4, d["threads"]
t = late[0]
assert t["state"] == "waiting", t          # at its quiescent point, not interrupted
# 7: poll, 271: ppoll (the runtime's wrapper calls ppoll at a quiescent point)
assert ("system call 7;" in t["where"] or "system call 271;" in t["where"]) and "pollw" in t["where"], t
assert t["where"].startswith("blocks the runtime's signal %d, which cannot interrupt" % (signal.SIGRTMAX - 3)), t
for a in d["threads"]:
    if a["arrived"]:
        assert a["point"]["stack"] in ("main > serve > epoll_wait", "condw > pthread_cond_wait", "ppollw > ppoll"), a
print("ok: quiesce timed out on the thread in poll() with the runtime's signal blocked: " + t["where"])
PY
    # The runtime's signal is not re-sent while one is still pending in the
    # thread: a signal queued every millisecond until the timeout would pile up
    # against the user's RLIMIT_SIGPENDING (SigQ counts the user's queued
    # signals, other processes' included: hence the margin).
    sigq() { sed -n 's/^SigQ:[[:space:]]*\([0-9]*\)\/.*/\1/p' "/proc/$spid/status"; }
    q0=$(sigq)
    for i in 1 2 3; do
      rc=0
      "$ctl" quiesce "$spid" --hold 0.01 --timeout 0.3 --json >"$work/pollw$i.json" 2>&1 || rc=$?
      [ $rc = 1 ] || fail "quiesce $i with the poll() thread exited $rc: $(cat "$work/pollw$i.json")"
    done
    q1=$(sigq)
    [ $((q1 - q0)) -lt 50 ] || fail "3 quiesces that timed out left $((q1 - q0)) more signals queued ($q0 -> $q1)"
    ok "3 more quiesces timed out the same way; signals queued for the user: $q0, then $q1"
    phase pollw-after 1
    stat poll_wakes
    [ "$val" -gt 0 ] || fail "the poll() thread does not run"
    ok "everything resumed: the server answers and the poll() thread runs"
    ;;

  stuck)
    # A thread blocked in read() where it has no quiescent point: the quiesce
    # times out, names it and what it is doing, and everything resumes.
    profile stuck
    q="$work/stuck.qp"
    has "$q" "qp main > serve > epoll_wait"
    has "$q" "class main > start_helper"
    has "$q" "qp helper > usleep"
    hasnt "$q" "wait_for_unstick"
    qp_count "$q" 2
    production stuck
    start stuck
    quiesce_loop 5
    check_quiesces 2 "main > serve > epoll_wait" "helper > usleep"
    query STUCK
    for _ in $(seq 100); do
      stat in_read
      [ "$val" = 1 ] && break
      sleep 0.02
    done
    [ "$val" = 1 ] || fail "the helper did not block"
    rc=0
    "$ctl" quiesce "$spid" --hold 0.01 --timeout 0.3 --json >"$work/stuck.json" 2>"$work/stuck.err" || rc=$?
    [ $rc = 1 ] || fail "quiesce with a stuck thread exited $rc (expected 1)"
    python3 - "$work/stuck.json" <<'PY' || fail "the reply: $(cat "$work/stuck.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["quiesced"] is False
assert d["time_to_quiescence_us"] >= 300000, d["time_to_quiescence_us"]
late = [t for t in d["threads"] if not t["arrived"]]
assert len(late) == 1 and len(d["threads"]) == 2, d["threads"]
t = late[0]
assert t["state"] == "running", t  # in no wrapper at a quiescent point
assert "system call 0" in t["where"] and "wait_for_unstick" in t["where"], t  # 0: read
main = [t for t in d["threads"] if t["arrived"]][0]
assert main["point"]["stack"] == "main > serve > epoll_wait", main
print("ok: the stuck thread is named: tid %d, %s" % (t["tid"], t["where"]))
PY
    # the same, as people read it
    rc=0
    "$ctl" quiesce "$spid" --timeout 0.3 >"$work/stuck.txt" 2>&1 || rc=$?
    [ $rc = 1 ] || fail "mcr-ctl quiesce exited $rc (expected 1)"
    has "$work/stuck.txt" "process $spid did not quiesce within 0.300 s: every thread was resumed."
    grep -E "^[0-9]+ +stuck +NO +running +class .*: blocked in system call 0; .*wait_for_unstick" "$work/stuck.txt" >/dev/null ||
      fail "no line names the stuck thread: $(cat "$work/stuck.txt")"
    ok "mcr-ctl names the stuck thread and what it is doing"
    # everything resumed: the server answers under load, also while more
    # quiesces time out
    "$load" -p "$port" "${main_load[@]}" -d 60 >"$work/stuck-load.log" 2>"$work/stuck-load.err" &
    lpid=$!
    pids+=("$lpid")
    for i in 1 2 3 4 5; do
      rc=0
      "$ctl" quiesce "$spid" --hold 0.01 --timeout 0.3 --json >"$work/stuck$i.json" 2>&1 || rc=$?
      [ $rc = 1 ] || fail "quiesce $i with a stuck thread under load exited $rc: $(cat "$work/stuck$i.json")"
    done
    kill -TERM "$lpid"
    rc=0
    wait "$lpid" || rc=$?
    [ $rc = 0 ] || fail "the load during the failed quiesces exited $rc: $(cat "$work/stuck-load.log")"
    ok "load during 5 quiesces that timed out: $(cat "$work/stuck-load.log")"
    # unstuck, the helper is back at its point and quiesces work again
    query UNSTICK
    for _ in $(seq 100); do
      stat in_read
      [ "$val" = 0 ] && break
      sleep 0.02
    done
    [ "$val" = 0 ] || fail "the helper did not come back"
    rm -rf "$work/q"
    quiesce_loop 5
    check_quiesces 2 "main > serve > epoll_wait" "helper > usleep"
    phase after 1
    ;;

  concurrent)
    # Two quiesce requests at once: the second is refused (exit 1, another
    # quiesce is in progress), the first is unaffected.
    profile pool
    production pool
    start pool
    "$load" -p "$port" "${main_load[@]}" -d 60 >"$work/during.log" 2>"$work/during.err" &
    lpid=$!
    pids+=("$lpid")
    "$ctl" quiesce "$spid" --hold 1 --json >"$work/first.json" 2>"$work/first.err" &
    first=$!
    pids+=("$first")
    wait_quiesced
    rc=0
    "$ctl" quiesce "$spid" --hold 0.01 --timeout 0.3 >"$work/second.out" 2>"$work/second.err" || rc=$?
    [ $rc = 1 ] || fail "the second quiesce exited $rc (expected 1)"
    [ "$(wc -l <"$work/second.err")" = 1 ] && grep -q "another quiesce is in progress" "$work/second.err" ||
      fail "the second quiesce said: $(cat "$work/second.err" "$work/second.out")"
    ok "the second quiesce was refused: $(cat "$work/second.err")"
    "$ctl" status "$spid" >/dev/null || fail "status during the hold"
    rc=0
    wait "$first" || rc=$?
    [ $rc = 0 ] || fail "the first quiesce exited $rc: $(cat "$work/first.err")"
    python3 - "$work/first.json" <<'PY' || fail "the first quiesce: $(cat "$work/first.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["quiesced"] is True and d["held_us"] >= 1000000, d
assert all(t["arrived"] for t in d["threads"]) and len(d["threads"]) == 8, d["threads"]
print("ok: the first quiesce held 1 s with every thread arrived")
PY
    # 20 pairs started together: at least one of each pair quiesces; the
    # other either quiesces too (it came after) or is refused the same way
    refused=0
    for i in $(seq 20); do
      "$ctl" quiesce "$spid" --hold 0.05 --json >"$work/a$i.json" 2>"$work/a$i.err" &
      a=$!
      "$ctl" quiesce "$spid" --hold 0.05 --json >"$work/b$i.json" 2>"$work/b$i.err" &
      b=$!
      pids+=("$a" "$b")
      ra=0 rb=0
      wait "$a" || ra=$?
      wait "$b" || rb=$?
      for x in "a:$ra" "b:$rb"; do
        n=${x%%:*} r=${x#*:}
        case $r in
          0) grep -q '"quiesced": true' "$work/$n$i.json" || fail "pair $i: $(cat "$work/$n$i.json")" ;;
          1) grep -q "another quiesce is in progress" "$work/$n$i.err" || fail "pair $i: $(cat "$work/$n$i.err")"
             refused=$((refused + 1)) ;;
          *) fail "pair $i: a quiesce exited $r: $(cat "$work/$n$i.err")" ;;
        esac
      done
      [ $ra = 0 ] || [ $rb = 0 ] || fail "pair $i: both quiesces were refused"
    done
    ok "20 pairs of simultaneous quiesces: each pair quiesced at least once; $refused refused as in progress"
    kill -TERM "$lpid"
    rc=0
    wait "$lpid" || rc=$?
    [ $rc = 0 ] || fail "the load during the quiesces exited $rc: $(cat "$work/during.log")"
    ok "load during the quiesces: $(cat "$work/during.log")"
    alive
    phase after 1
    ;;

  *)
    echo "run.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
echo "PASS: $test"
