#!/usr/bin/env bash
# End-to-end tests: builds small programs with mcr-clang and runs them.
#   run.sh BUILD_DIR TEST
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-e2e-$test.XXXXXX")
pids=() # processes a test started: killed on the way out, however it ends
cleanup() {
  exec 2>/dev/null # no "Killed" notices
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
inc=(-I"$top/runtime" -I"$top/runtime/include" -I"$src")

# ---- helpers of the control-socket tests ----
ctl="$build/bin/mcr-ctl"
# Builds threads.c with mcr-clang, linked with an uninstrumented library.
build_threads() {
  chmod 755 "$work"
  clang-16 -O2 -fPIC -shared -o "$work/libthreadlib.so" "$src/threadlib.c"
  "$mcc" -O2 -Wall -o "$work/threads" "$src/threads.c" -L"$work" -lthreadlib -Wl,-rpath,"$work"
}
# wait_file FILE: until it exists (5 s at most)
wait_file() {
  for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.05; done
  echo "FAIL: $1 did not appear"; exit 1
}
# start_threads MODE [ARGS...]: runs the test program, sets $tpid once it is ready
start_threads() {
  local mode=$1; shift
  rm -f "$work/ready"
  "$work/threads" "$mode" "$work/ready" "$@" >"$work/out.log" 2>"$work/err.log" &
  pids+=($!)
  wait_file "$work/ready"
  tpid=$(cat "$work/ready")
  pids+=("$tpid")
}
# check_json FILE PYTHON-EXPR: the expression over s (the status object) must hold
check_json() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
th = s["threads"]
classes = sorted(t["class"] for t in th)
ok = eval(sys.argv[2])
print(("ok: " if ok else "FAIL: ") + sys.argv[2])
if not ok:
    print(json.dumps(s, indent=1))
sys.exit(0 if ok else 1)
PY
}
# no_noise: the runtime wrote nothing on the program's stdout or stderr
no_noise() {
  if [ -s "$work/out.log" ] || [ -s "$work/err.log" ]; then
    echo "FAIL: the program's output is not empty:"; cat "$work/out.log" "$work/err.log"; exit 1
  fi
  echo "ok: nothing on the program's stdout/stderr"
}
# expect_refusal WHAT PATTERN CMD...: exit 2, one line on stderr matching PATTERN
expect_refusal() {
  local what=$1 pat=$2 rc=0; shift 2
  timeout 20 "$@" >"$work/o" 2>"$work/e" || rc=$?
  if [ "$rc" = 2 ] && [ "$(wc -l <"$work/e")" = 1 ] && grep -qE "$pat" "$work/e" && [ ! -s "$work/o" ]; then
    echo "ok: $what: $(cat "$work/e")"
  else
    echo "FAIL: $what: exit $rc, stderr:"; cat "$work/e"; echo "stdout:"; cat "$work/o"; exit 1
  fi
}

case "$test" in
  tags|layout)
    # The runtime's own API is in the archive linked by mcr-clang.
    printf 'wrapper prefixed_alloc size=0\nwrapper pool_alloc size=0\nwrapper cache_get size=0\nrelease cache_put ptr=0\n' > "$work/wrappers"
    "$mcc" --mcr-wrappers="$work/wrappers" -O2 -Wall "${inc[@]}" -o "$work/$test" "$src/$test.c"
    "$work/$test"
    ;;
  shared)
    "$mcc" -O2 -fPIC -shared -o "$work/libplug.so" "$src/plugin.c"
    "$mcc" -O2 "${inc[@]}" -o "$work/shared" "$src/shared.c" -ldl
    "$work/shared" "$work/libplug.so"
    clang-16 -O2 -o "$work/plain-host" "$src/plain-host.c" -ldl
    "$work/plain-host" "$work/libplug.so"
    ;;
  install)
    # An installed tree works on its own: mcr-clang finds lib/mcr beside bin/.
    cmake --install "$build" --prefix "$work/inst" >/dev/null
    "$work/inst/bin/mcr-clang" -O2 -o "$work/kvstore" "$top/tests/servers/kvstore.c"
    "$work/inst/bin/mcr-ctl" types --json "$work/kvstore" > "$work/types.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s); sys.exit(0 if s["sites"] == s["typed"] == 7 else 1)' "$work/types.json"
    ;;
  census)
    # kvstore's live heap, counted from the tags, matches what the client stored.
    "$mcc" -O2 -o "$work/kvstore" "$top/tests/servers/kvstore.c"
    # a port the kernel says is free (a random one in 20000-40000 could be an
    # ephemeral port in use: kvstore then cannot bind and exits)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    MCR_HEAP_CENSUS="$work/census.txt" "$work/kvstore" -p "$port" 2>"$work/log" &
    pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    exec 3<>"/dev/tcp/127.0.0.1/$port" || { echo "FAIL: kvstore does not listen on $port:"; cat "$work/log"; exit 1; }
    for i in $(seq 1 40); do printf 'SET key%d value-%d\n' "$i" "$i" >&3; done
    printf 'DEL key7\nCOUNT\n' >&3
    for _ in $(seq 42); do read -r -t 5 reply <&3; done
    echo "last reply: $reply"
    exec 3<&-
    kill "$pid"; wait "$pid" || true
    cat "$work/census.txt"
    count() { awk -F'\t' -v t="$1" -v s="$2" '$2 ~ s { split($1, a, " "); if (index($1, t)) print a[1] }' "$work/census.txt"; }
    fail=0
    expect() {
      if [ "$(count "$1" "$2")" = "$3" ]; then echo "ok: $3 live '$1' from $2"
      else echo "FAIL: '$1' from $2: $(count "$1" "$2"), expected $3"; fail=1; fi
    }
    [ "$reply" = "COUNT 39" ] || { echo "FAIL: server replied '$reply'"; fail=1; }
    # the allocation lines, found in the source (it changes)
    kv=$src/../servers/kvstore.c
    line_of() { grep -n -F "$1" "$kv" | head -1 | cut -d: -f1; }
    expect "struct entry" "kvstore.c:$(line_of 'e = calloc(1, sizeof(*e));') set" 39
    expect "char []" "kvstore.c:$(line_of 'e->key = strdup(key);') set" 39
    expect "char []" "kvstore.c:$(line_of 'e->value = malloc(e->value_len + 1);') set" 39
    expect "struct entry *[]" "kvstore.c:$(line_of 'table = calloc(NBUCKETS, sizeof(*table));') main" 1
    exit $fail
    ;;
  threads-pool)
    # 3 pool threads + 1 started inside an uninstrumented library + main: all
    # five listed, with their creators; the control thread is not.
    build_threads
    start_threads pool
    timeout 10 "$ctl" status --json "$tpid" > "$work/s.json"
    check_json "$work/s.json" 's["pid"] == '"$tpid"' and len(th) == 5'
    check_json "$work/s.json" 'classes == ["main", "main > lib_start_worker", "main > start_pool", "main > start_pool", "main > start_pool"]'
    check_json "$work/s.json" 'sorted(t["start_routine"] for t in th) == ["lib_worker", "main", "pool_worker", "pool_worker", "pool_worker"]'
    check_json "$work/s.json" 'all(t["registered"] and t["state"] in "SR" for t in th)'
    check_json "$work/s.json" 'not any(t["name"] == "mcr-control" for t in th)'
    [ "$(ls /proc/"$tpid"/task | wc -l)" = 6 ] && echo "ok: the process has 6 tasks (5 + control)" || { echo "FAIL: tasks: $(ls /proc/"$tpid"/task | wc -l)"; exit 1; }
    check_json "$work/s.json" 's["program"].endswith("/threads")'
    timeout 10 "$ctl" status "$tpid" > "$work/s.txt"
    cat "$work/s.txt"
    grep -q "pool_worker  *main > start_pool" "$work/s.txt" || { echo "FAIL: human output"; exit 1; }
    no_noise
    ;;
  threads-exit)
    # Threads that end (return, pthread_exit, cancellation) leave the list.
    build_threads
    start_threads exit "$work/go"
    timeout 10 "$ctl" status --json "$tpid" > "$work/s1.json"
    check_json "$work/s1.json" 'len(th) == 8 and sorted(t["start_routine"] for t in th)[:3] == ["ends_by_cancel", "ends_by_exit", "ends_by_return"]'
    check_json "$work/s1.json" 'classes.count("main > start_short_lived") == 3'
    touch "$work/go"
    wait_file "$work/ready.joined"
    timeout 10 "$ctl" status --json "$tpid" > "$work/s2.json"
    check_json "$work/s2.json" 'len(th) == 5 and not any(t["start_routine"].startswith("ends_by") for t in th)'
    no_noise
    ;;
  threads-fork)
    # A daemon: the parent exits, the child has its own control socket.
    build_threads
    start_threads daemon
    timeout 10 "$ctl" status --json "$tpid" > "$work/s.json"
    check_json "$work/s.json" 's["pid"] == '"$tpid"' and len(th) == 2'
    check_json "$work/s.json" 'classes == ["main", "main > start_in_child"]'
    check_json "$work/s.json" '[t["tid"] for t in th if t["class"] == "main"] == ['"$tpid"']'
    grep -q "@mcr/$tpid\$" /proc/net/unix && echo "ok: @mcr/$tpid is listening" || { echo "FAIL: no @mcr/$tpid"; exit 1; }
    no_noise
    ;;
  quiesce-waits)
    # select, poll and epoll_wait with timeouts at quiescent points, quiesced
    # with holds shorter and longer than their timeout: each still returns as
    # the real call would (no event, empty sets), never early (qwaits.c).
    "$mcc" -O2 -Wall "${inc[@]}" -o "$work/qwaits" "$src/qwaits.c"
    "$work/qwaits" 20 >"$work/qwaits.out" 2>&1 &
    qpid=$!
    pids+=("$qpid")
    for _ in $(seq 50); do [ -s "$work/qwaits.out" ] && break; sleep 0.05; done
    n=0
    for hold in 0.02 0.15 0.02 0.15 0.05 0.3 0.02 0.15; do
      sleep 0.07
      timeout 20 "$ctl" quiesce "$qpid" --hold "$hold" >"$work/q.txt" 2>&1 ||
        { echo "FAIL: quiesce with hold $hold: $(cat "$work/q.txt")"; exit 1; }
      n=$((n + 1))
    done
    echo "ok: $n quiesces of a thread waiting in select/poll/epoll_wait with a timeout"
    rc=0
    wait "$qpid" || rc=$?
    if [ "$rc" = 0 ] && grep -qx done "$work/qwaits.out"; then
      echo "ok: every wait returned as the real call would"
    else
      echo "FAIL: exit $rc: $(cat "$work/qwaits.out")"; exit 1
    fi
    ;;
  quiesce-errors)
    # mcr-ctl quiesce: bad usage and bad targets get one line and exit 2; a program
    # that cannot be quiesced (no quiescent points compiled in) exit 1, unharmed.
    expect_refusal "missing PID" "missing PID" "$ctl" quiesce
    expect_refusal "bad PID" "not a process id" "$ctl" quiesce 12x
    expect_refusal "no such process" "no process 2147483647" "$ctl" quiesce 2147483647
    sleep 100 >/dev/null 2>&1 &
    pids+=($!)
    expect_refusal "not an mcr program" "no mcr control socket.*not built with mcr-clang" "$ctl" quiesce $!
    expect_refusal "unknown option" "unknown option" "$ctl" quiesce --bogus 1
    expect_refusal "bad hold" "bad --hold" "$ctl" quiesce --hold x 1
    expect_refusal "hold too long" "bad --hold" "$ctl" quiesce --hold 601 1
    expect_refusal "negative hold" "bad --hold" "$ctl" quiesce --hold -1 1
    expect_refusal "zero timeout" "bad --timeout" "$ctl" quiesce --timeout 0 1
    build_threads
    start_threads pool
    rc=0
    timeout 20 "$ctl" quiesce "$tpid" >"$work/o" 2>"$work/e" || rc=$?
    if [ "$rc" = 1 ] && grep -q "no quiescent points compiled in.*mcr-profile.*--mcr-quiescence" "$work/e" && [ ! -s "$work/o" ]; then
      echo "ok: no quiescent points: $(cat "$work/e")"
    else
      echo "FAIL: no quiescent points: exit $rc"; cat "$work/e" "$work/o"; exit 1
    fi
    timeout 10 "$ctl" status --json "$tpid" > "$work/s.json"
    check_json "$work/s.json" 'len(th) == 5 and s["points"] == [] and not s["quiescing"]'
    check_json "$work/s.json" 'all(t["quiesce_state"] == "running" for t in th)'
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
      expect_refusal "root's process, asked by nobody" "belongs to another user \(uid 0\)" \
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$ctl" quiesce "$tpid"
    else
      echo "skip: another user's process (needs root, setpriv and user nobody)"
    fi
    no_noise
    ;;
  status-errors)
    # mcr-ctl status refuses, with one line and exit 2, what it cannot do.
    expect_refusal "missing PID" "missing PID" "$ctl" status
    expect_refusal "bad PID" "not a process id" "$ctl" status 12x
    expect_refusal "negative PID" "not a process id" "$ctl" status -5
    expect_refusal "no such process" "no process 2147483647" "$ctl" status 2147483647
    sleep 100 >/dev/null 2>&1 &
    pids+=($!)
    expect_refusal "not an mcr program" "no mcr control socket.*not built with mcr-clang" "$ctl" status $!
    expect_refusal "unknown option" "unknown option" "$ctl" status --bogus 1
    expect_refusal "bad timeout" "bad --timeout" "$ctl" status --timeout x 1
    # a stopped process: no reply in time
    build_threads
    start_threads pool
    kill -STOP "$tpid"
    expect_refusal "stopped process" "no reply from process $tpid within 0.5 s" "$ctl" status --timeout 0.5 "$tpid"
    kill -CONT "$tpid"
    timeout 10 "$ctl" status "$tpid" >/dev/null || { echo "FAIL: no answer after SIGCONT"; exit 1; }
    echo "ok: answers again after SIGCONT"
    # another user's process: refused by the peer-credential check
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
      nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
      expect_refusal "root's process, asked by nobody" "belongs to another user \(uid 0\)" "${nobody[@]}" "$ctl" status "$tpid"
      mkdir -m 777 "$work/nb"
      "${nobody[@]}" "$work/threads" pool "$work/nb/ready" >/dev/null 2>&1 &
      pids+=($!)
      wait_file "$work/nb/ready"
      npid=$(cat "$work/nb/ready"); pids+=("$npid")
      timeout 10 "${nobody[@]}" "$ctl" status --json "$npid" > "$work/n.json"
      check_json "$work/n.json" 'len(th) == 5'
      timeout 10 "$ctl" status --json "$npid" > "$work/n2.json"
      check_json "$work/n2.json" 'len(th) == 5'
      echo "ok: nobody's process answers nobody and root"
    else
      echo "skip: another user's process (needs root, setpriv and user nobody)"
    fi
    ;;
  control-fds)
    # The runtime keeps out of the program's descriptor numbers: its socket sits
    # high, and its idle thread holds no number (a thread parked in accept would).
    build_threads
    rm -f "$work/ready"
    "$work/threads" fds "$work/ready" 2>"$work/err.log" &
    pids+=($!)
    wait_file "$work/ready"
    read -r fpid verdict rest < "$work/ready"
    [ "$verdict" = ok ] || { echo "FAIL: the program got descriptors $rest"; exit 1; }
    echo "ok: the program's opens got the lowest free numbers (then 1 after closing 1)"
    # the runtime's range starts at 7/8 of RLIMIT_NOFILE, at most 65536
    lim=$(awk '/^Max open files/ {print $4}' "/proc/$fpid/limits")
    if [ "$lim" = unlimited ]; then floor=65536; else floor=$((lim - lim / 8)); fi
    [ "$floor" -le 65536 ] || floor=65536
    case "$(readlink /proc/"$fpid"/fd/$floor)" in
      socket:*) echo "ok: the control socket is descriptor $floor (RLIMIT_NOFILE $lim)" ;;
      *) echo "FAIL: descriptor $floor (RLIMIT_NOFILE $lim) is not the control socket: $(ls -l /proc/"$fpid"/fd)"; exit 1 ;;
    esac
    timeout 10 "$ctl" status "$fpid" >/dev/null
    echo "ok: status answers"
    ;;
  control-garbage)
    # Garbage, oversized lengths, stalled and half-sent requests: the client is
    # answered with an error or closed, and the server keeps serving.
    build_threads
    start_threads pool
    python3 - "$tpid" <<'PY'
import socket, struct, sys, time
pid = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect("\0mcr/" + pid)
    return s
def drain(s):
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b
def check(what, ok):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        sys.exit(1)
s = conn(); s.sendall(struct.pack("<I", 0x7fffffff)); d = drain(s)
check("oversized length: error reply then close", len(d) > 4 and struct.unpack("<I", d[:4])[0] == len(d) - 4 and b"over the limit" in d)
s = conn(); s.sendall(struct.pack("<I", 8) + b"\xff" * 8); d = drain(s)
check("garbage body: error reply then close", b"does not decode" in d)
s = conn(); s.sendall(struct.pack("<I", 2) + b"\x72\x00"); d = s.recv(4)
n = struct.unpack("<I", d)[0]; body = s.recv(n)
check("unknown request kind: error reply, connection kept", b"unknown request" in body)
s.sendall(struct.pack("<I", 2) + b"\x0a\x00"); d = s.recv(4)
check("a status request on the same connection is answered", len(d) == 4)
s.close()
s = conn(); s.sendall(b"\x10\x00"); s.close()  # half a length prefix
s = conn(); s.sendall(struct.pack("<I", 100) + b"abc"); s.close()  # half a body
s = conn(); s.sendall(b"\x00" * 4); d = s.recv(4); body = s.recv(struct.unpack("<I", d)[0])
check("empty request: unknown request", b"unknown request" in body)
PY
    timeout 10 "$ctl" status --json "$tpid" > "$work/s.json"
    check_json "$work/s.json" 'len(th) == 5'
    # a client that connects and says nothing holds the control thread at most 5 s
    python3 -c 'import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect("\0mcr/"+sys.argv[1]); time.sleep(30)' "$tpid" &
    pids+=($!)
    sleep 0.3
    start=$(date +%s)
    timeout 20 "$ctl" status --timeout 15 --json "$tpid" > "$work/s2.json"
    check_json "$work/s2.json" 'len(th) == 5'
    took=$(( $(date +%s) - start ))
    [ "$took" -le 8 ] || { echo "FAIL: the stalled client held the control thread $took s"; exit 1; }
    echo "ok: answered after a stalled client in $took s"
    kill -0 "$tpid" || { echo "FAIL: the server died"; exit 1; }
    echo "ok: the server still runs"
    no_noise
    ;;
  *)
    echo "run.sh: unknown test '$test'" >&2
    exit 2
    ;;
esac
