#!/usr/bin/env bash
# redis 7.0.15 updated live to 7.0.15 + Debian's CVE-2025-21605 patch
# (0001-Limiting-output-buffer-for-unauthenticated-client-CV.patch, see
# tests/real/update-patches.md) while redis-benchmark runs (label real-update).
# With --debian-all, v2 is 7.0.15 with every patch of Debian's series instead
# (the tree `dpkg-source -x` gives; see "--debian-all" below).
#
#   1. Builds (tests/real/update-lib.sh): scripts/profile-server.sh gives the
#      quiescence config and the production build = v1; v2 = the same upstream
#      tree with the patch (`patch -p1`), built by scripts/build-server.sh with
#      the same mcr-clang (so the same runtime), wrappers, config and flags.
#      Reused while none of their inputs changed.
#   2. v1 runs with --save "" --appendonly no and a pid file. Before the update:
#      which version answers is probed (below: v1 expected); 20 000 string keys
#      of known values (integers, small and 100 KB values, one with a TTL) and a
#      hash, a list, a set and a sorted set of 1000 elements each are stored; a
#      client connection is opened and sets a key.
#   3. Update v1 -> v2 (`mcr-ctl update PID v2 --json`) while redis-benchmark
#      (-t set,get -n 200000 -c 8 -r 10000) and a checking client (SET/GET
#      pairs on 2 connections, every reply compared: quiesce-tool.py load) run.
#      Checked: mcr-ctl exits 0; redis-benchmark was running when the update
#      started, exits 0 and reports both tests (it exits at the first error
#      reply or connection error); the checking client had no error; the
#      connection opened before the update still has its client (same CLIENT
#      ID), its key, and SET/GET work on it; all 20 000 keys and the four
#      collections are intact; INFO server shows process_id = the new pid and
#      the same run_id (the globals came over); the pid file names the new pid;
#      the old process is gone; `mcr-ctl status NEW` answers.
#   4. Which version answers (probe): with requirepass set (CONFIG SET, for the
#      probe only), a new unauthenticated connection pipelines 100 000 `SET x 5`
#      without reading: v1 queues and sends every -NOAUTH reply; v2 (the patch)
#      drops the client once more than 1 KiB of replies are queued. v1 expected
#      before the update, v2 after.
#   5. If the update is rolled back instead (exit 1), the reasons are logged and
#      the old process is checked to serve on as if nothing happened: it is
#      alive, the probe says v1, the 20 000 keys and the collections are intact,
#      the held connection keeps its client and INFO process_id is the old pid,
#      the pid file names it, no process of v2 is left, `mcr-ctl status` answers
#      and the load saw no error. The test still fails (the update was asked to
#      commit); the log says whether the old version survived it.
# The phases of the update and the clients' pause (mcr-ctl --json) go to the log.
#
# --debian-all: v2 = the upstream tree with every patch of Debian's
# debian/patches/series (redis 5:7.0.15-1~deb12u10, the newest revision of
# 7.0.15 in the source indices: the package fetch-source.sh --debian-patches
# extracts to $MCR_CACHE/src/redis-7.0.15-debian) applied in the series' order
# with `patch -p1`; nothing is excluded: every patch builds with mcr-clang
# (MALLOC=libc BUILD_TLS=no) and the result is checked to be file for file the
# tree dpkg-source -x gives (debian/ aside). The packaging patches only touch
# redis.conf/sentinel.conf (not read: redis runs without a config file),
# Makefiles (CPPFLAGS, empty here; USE_SYSTEM_JEMALLOC, off with MALLOC=libc)
# and code under #if USE_JEMALLOC. Unlike the single CVE patch, the series
# changes types: CVE-2025-46818 adds `int lua_enable_deprecated_api` in the
# middle of struct redisServer (the global `server`) and a config in the middle
# of `static_configs[]` (see tests/real/update-patches.md). The same probe tells
# the versions apart. Builds and run files go to $MCR_REAL_OUT/redis-7.0.15-update-debian.
#
# Options:
#   --mcr-clang PATH   mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl and
#                      mcr-profile are taken from the same directory
#   --rebuild          build v1 and v2 even if an identical build is there
#   --no-build         reuse v1, v2 and the config of an earlier run as they are
#   --debian-all       v2 = 7.0.15 with all of Debian's patches (above)
# Environment: MCR_CACHE (default ~/.cache/mcr), MCR_REAL_OUT (default
# $MCR_CACHE/real; builds and run files go to $MCR_REAL_OUT/redis-7.0.15-update),
# MCR_BUILD_DIR (default /work/main/build), MCR_UPDATE_BENCH_N (redis-benchmark
# -n, default 200000).
#
# Exit status: 0 every check passed; 1 otherwise.
SERVER=redis
VERSION=${MCR_REDIS_VERSION:-7.0.15}
PORT_BASE=24620
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/update-lib.sh"

PATCH_NAME=0001-Limiting-output-buffer-for-unauthenticated-client-CV.patch
DEBIAN_ALL=0
# --debian-all: patches of the series left out of v2 (none: all build and run).
DEBIAN_EXCLUDE=()
BENCH_N=${MCR_UPDATE_BENCH_N:-200000}
NKEYS=20000
STATUS=0
NFAILED=0
failed() { log "FAILED: $*"; STATUS=1; NFAILED=$((NFAILED + 1)); }

update_args redis-benchmark redis-cli python3 patch -- "$@"
for a in "${UPDATE_ARGS[@]}"; do
  case "$a" in
    --debian-all) DEBIAN_ALL=1 ;;
    *) echo "$0: unknown argument $a" >&2; exit 1 ;;
  esac
done

CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
OUT=${MCR_REAL_OUT:-$CACHE/real}/$SERVER-$VERSION-update
[ "$DEBIAN_ALL" = 0 ] || OUT=$OUT-debian
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
log "output in $OUT"

# --- 1. builds ----------------------------------------------------------------------
DEBSRC=$("$UPDATE_FETCH" "$SERVER" "$VERSION" --debian-patches) ||
  { log "FAILED: fetch-source.sh $SERVER $VERSION --debian-patches"; exit 1; }
PATCH=$DEBSRC/debian/patches/$PATCH_NAME
[ -f "$PATCH" ] || { log "FAILED: no $PATCH"; exit 1; }
if [ "$DEBIAN_ALL" = 0 ]; then
  V2_DESC="+ $PATCH_NAME"
  update_builds "$OUT" "$mcr_clang" "$PATCH"
else
  PATCHES=()
  while read -r p _; do
    case "$p" in ''|'#'*) continue ;; esac
    for x in "${DEBIAN_EXCLUDE[@]+"${DEBIAN_EXCLUDE[@]}"}"; do [ "$x" = "$p" ] && continue 2; done
    [ -f "$DEBSRC/debian/patches/$p" ] || { log "FAILED: the series names $p, not in $DEBSRC/debian/patches"; exit 1; }
    PATCHES+=("$DEBSRC/debian/patches/$p")
  done <"$DEBSRC/debian/patches/series"
  V2_DESC="+ Debian's $(sed -n 's/^debian_version=//p' "$DEBSRC/.mcr-source") patches ($((${#PATCHES[@]})) of the series${DEBIAN_EXCLUDE[*]:+, without ${DEBIAN_EXCLUDE[*]}})"
  update_builds "$OUT" "$mcr_clang" "${PATCHES[@]}"
fi
log "v1 $V1"
log "v2 $V2 ($V2_DESC); builds $BUILD_SECS s"
if [ "$DEBIAN_ALL" = 1 ] && [ ${#DEBIAN_EXCLUDE[@]} -eq 0 ]; then
  # v2's source is Debian's (dpkg-source -x) file for file
  if d=$(diff -rq -x debian -x .pc -x .mcr-source "$V2SRC" "$DEBSRC" 2>&1); then
    log "v2's source tree is the one dpkg-source -x gives ($DEBSRC), debian/ aside"
  else
    log "FAILED: v2's source differs from $DEBSRC:"; echo "$d" | head -n 20 >&2; exit 1
  fi
fi
log "quiescent points ($QP):"
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$QP" | sed 's/^/    /' >&2
# v2's source has the patch's check, v1's not (the probe below tells them apart
# at run time).
MARK='For unauthenticated clients the output buffer is limited'
grep -q "$MARK" "$(dirname "$V2")/networking.c" && ! grep -q "$MARK" "$(dirname "$V1")/networking.c" ||
  { log "FAILED: v2's networking.c does not carry the patch (or v1's does)"; exit 1; }
if [ "$DEBIAN_ALL" = 1 ]; then
  grep -q 'int lua_enable_deprecated_api;' "$(dirname "$V2")/server.h" &&
    ! grep -q lua_enable_deprecated_api "$(dirname "$V1")/server.h" ||
    { log "FAILED: v2's server.h does not have CVE-2025-46818's field (or v1's does)"; exit 1; }
fi

# --- the test's client (RESP by hand) ----------------------------------------------------
RUN=$OUT/urun
rm -rf "$RUN"; mkdir -p "$RUN"
RTOOL=$RUN/rtool.py
cat >"$RTOOL" <<'PY'
"""update-redis.sh's client: fill|check PORT N, held PORT DIR, probe PORT."""
import json, os, socket, sys, threading, time


class Conn:
    def __init__(self, port, timeout=20):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0  # parsed up to here (no copy of the rest per reply)

    def _more(self):
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        d = self.s.recv(1 << 16)
        if not d:
            raise EOFError("closed by the server")
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                l = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return l
            self._more()

    def reply(self):
        l = self.line()
        t, rest = l[:1], l[1:]
        if t in (b"+", b":"):
            return rest if t == b"+" else int(rest)
        if t == b"-":
            return ("ERR", rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._more()
            v = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n + 2
            return v
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError("bad reply line %r" % l[:80])

    def call(self, *args):
        self.s.sendall(enc(*args))
        return self.reply()


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def value(i):
    """The value of key u:I: integers (int encoding), small strings, every
    1000th one 100 KB (large allocations)."""
    if i % 7 == 0:
        return str(i * 1000003).encode()
    size = 100000 + i if i % 1000 == 999 else (i * 37) % 600 + 1
    tag = b"v%d;" % i
    return (tag * (size // len(tag) + 1))[:size]


def commands(n):
    """(command, expected reply) for the data set."""
    for i in range(n):
        yield enc("SET", "u:%05d" % i, value(i)), b"OK"
    for i in range(1000):
        yield enc("HSET", "u:hash", "f%d" % i, value(i)), 1
        yield enc("RPUSH", "u:list", value(i * 3)), i + 1
        yield enc("SADD", "u:set", "m%d" % (i * 11)), 1
        yield enc("ZADD", "u:zset", "%d.5" % i, "z%d" % i), 1
    yield enc("SET", "u:ttl", "lives", "EX", "100000"), b"OK"


def sender(sock, data, err):
    try:
        sock.sendall(data)
    except OSError as e:
        err.append(str(e))


def fill(port, n):
    c = Conn(port, timeout=60)
    cmds = list(commands(n))
    err = []
    t = threading.Thread(target=sender, args=(c.s, b"".join(x for x, _ in cmds), err))
    t.start()
    bad = 0
    for i, (_, want) in enumerate(cmds):
        r = c.reply()
        if r != want:
            bad += 1
            if bad < 5:
                print("fill: command %d: %r, expected %r" % (i, r, want))
    t.join()
    print("fill: %d commands, %d unexpected replies%s" % (len(cmds), bad, "; " + err[0] if err else ""))
    return 1 if bad or err else 0


def check(port, n):
    c = Conn(port, timeout=60)
    bad = []
    for lo in range(0, n, 1000):
        hi = min(n, lo + 1000)
        c.s.sendall(b"".join(enc("GET", "u:%05d" % i) for i in range(lo, hi)))
        for i in range(lo, hi):
            r = c.reply()
            if r != value(i):
                bad.append("u:%05d: %s" % (i, "missing" if r is None else "%d bytes, not the %d expected"
                                           % (len(r), len(value(i))) if isinstance(r, bytes) else repr(r)))
    h = c.call("HGETALL", "u:hash")
    if not isinstance(h, list) or dict(zip(h[0::2], h[1::2])) != {b"f%d" % i: value(i) for i in range(1000)}:
        bad.append("u:hash differs")
    if c.call("LRANGE", "u:list", 0, -1) != [value(i * 3) for i in range(1000)]:
        bad.append("u:list differs")
    s = c.call("SMEMBERS", "u:set")
    if not isinstance(s, list) or sorted(s) != sorted(b"m%d" % (i * 11) for i in range(1000)):
        bad.append("u:set differs")
    if c.call("ZRANGE", "u:zset", 0, -1, "WITHSCORES") != \
            [x for i in range(1000) for x in (b"z%d" % i, b"%d.5" % i)]:
        bad.append("u:zset differs")
    ttl = c.call("TTL", "u:ttl")
    if c.call("GET", "u:ttl") != b"lives" or not isinstance(ttl, int) or not 0 < ttl <= 100000:
        bad.append("u:ttl: value or TTL (%r) wrong" % (ttl,))
    for b in bad[:10]:
        print("check: " + b)
    print("check: %d keys and 5 more: %d wrong" % (n, len(bad)))
    return 1 if bad else 0


def held(port, d):
    """A connection opened before the update and used after it."""
    c = Conn(port)
    cid = c.call("CLIENT", "ID")
    ok = c.call("SET", "held:before", "set-before-the-update") == b"OK"
    with open(os.path.join(d, "held.ready"), "w") as f:
        f.write("%d\n" % cid)
    go = os.path.join(d, "held.go")
    t0 = time.monotonic()
    while not os.path.exists(go):
        if time.monotonic() - t0 > 600:
            return 1
        time.sleep(0.05)
    res = {"client_id_before": cid, "set_before": ok, "errors": []}
    try:
        res["client_id_after"] = c.call("CLIENT", "ID")
        res["get_before"] = (c.call("GET", "held:before") or b"").decode()
        res["set_after"] = c.call("SET", "held:after", "set-after-the-update") == b"OK"
        res["get_after"] = (c.call("GET", "held:after") or b"").decode()
        res["process_id"] = int([l for l in c.call("INFO", "server").decode().split("\r\n")
                                 if l.startswith("process_id:")][0].split(":")[1])
    except (OSError, EOFError, ValueError) as e:
        res["errors"].append("%s: %s" % (type(e).__name__, e))
    with open(os.path.join(d, "held.json"), "w") as f:
        json.dump(res, f)
    return 0


def probe(port, n=100000):
    """v1 or v2: see the script's header."""
    admin = Conn(port)
    if admin.call("CONFIG", "SET", "requirepass", "mcr-probe") != b"OK":
        print("error: CONFIG SET requirepass failed")
        return 1
    got, how = 0, "all replies"
    try:
        c = Conn(port, timeout=15)
        # one command first: the connection is served and needs AUTH
        r = c.call("SET", "x", "5")
        if not (isinstance(r, tuple) and r[1].startswith(b"NOAUTH")):
            print("error: SET without AUTH answered %r" % (r,))
            return 1
        err = []
        t = threading.Thread(target=sender, args=(c.s, enc("SET", "x", "5") * n, err), daemon=True)
        t.start()
        try:
            while got < n:
                r = c.reply()
                if not (isinstance(r, tuple) and r[1].startswith(b"NOAUTH")):
                    how = "unexpected reply %r" % (r,)
                    break
                got += 1
        except (OSError, EOFError) as e:
            how = "connection lost (%s)" % e
        c.s.close()
        t.join(15)
    finally:
        admin.call("CONFIG", "SET", "requirepass", "")
    ver = "v1" if got == n else "v2" if how.startswith("connection lost") else "unknown"
    print("%s %d of %d pipelined -NOAUTH replies (after one answered), %s" % (ver, got, n, how))
    return 0


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "fill":
        sys.exit(fill(port, int(sys.argv[3])))
    if cmd == "check":
        sys.exit(check(port, int(sys.argv[3])))
    if cmd == "held":
        sys.exit(held(port, sys.argv[3]))
    if cmd == "probe":
        sys.exit(probe(port))
    sys.exit("unknown command " + cmd)
PY

# --- 2. start v1 --------------------------------------------------------------------
PORT=$(free_port "$PORT_BASE")
PIDFILE=$RUN/redis.pid
# A crash of either version leaves a core in $RUN (core_pattern "core", the cwd
# is --dir; the new version is spawned with the old one's rlimits).
ulimit -c unlimited 2>/dev/null || true
start_group "$RUN/server.log" "$V1" --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize no --dir "$RUN" --pidfile "$PIDFILE"
SERVER_PID=$GROUP_PID
RCLI() { timeout 10 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
ping_server() { [ "$(RCLI ping 2>/dev/null)" = PONG ]; }
if ! wait_up 30; then
  log "FAILED: v1 did not answer on 127.0.0.1:$PORT; $RUN/server.log:"
  tail -n 20 "$RUN/server.log" >&2 || true
  exit 1
fi
V1PID=$SERVER_PID
for ((i = 0; i < 50; i++)); do [ -s "$PIDFILE" ] && break; sleep 0.1; done
[ "$(cat "$PIDFILE" 2>/dev/null)" = "$V1PID" ] ||
  failed "the pid file holds '$(cat "$PIDFILE" 2>/dev/null)', not v1's pid $V1PID"
info() { RCLI info server | tr -d '\r' | sed -n "s/^$1://p"; }
RUNID=$(info run_id)
log "v1 (pid $V1PID, run_id $RUNID) on 127.0.0.1:$PORT"

probe_version() {
  local out
  out=$(timeout 90 python3 "$RTOOL" probe "$PORT" 2>&1) || true
  log "probe: $out"
  set -- $out
  echo "${1:-none}" >"$RUN/probe.version"
}
probe_version
[ "$(cat "$RUN/probe.version")" = v1 ] || failed "before the update the probe says $(cat "$RUN/probe.version"), not v1"

timeout 120 python3 "$RTOOL" fill "$PORT" "$NKEYS" >"$RUN/fill.log" 2>&1 ||
  { cat "$RUN/fill.log" >&2; log "FAILED: storing the data set"; exit 1; }
log "$(cat "$RUN/fill.log")"
timeout 120 python3 "$RTOOL" check "$PORT" "$NKEYS" >"$RUN/check-before.log" 2>&1 ||
  { cat "$RUN/check-before.log" >&2; log "FAILED: the data set is wrong before the update"; exit 1; }
log "before the update, $(tail -n1 "$RUN/check-before.log")"
start_group "$RUN/held.log" timeout -k 5 900 python3 "$RTOOL" held "$PORT" "$RUN"
HELD_PID=$GROUP_PID
for ((i = 0; i < 100; i++)); do [ -s "$RUN/held.ready" ] && break; sleep 0.1; done
[ -s "$RUN/held.ready" ] || { cat "$RUN/held.log" >&2; log "FAILED: the held connection did not start"; exit 1; }
log "held connection open (CLIENT ID $(cat "$RUN/held.ready")), held:before set"
"$MCR_CTL" status "$V1PID" >"$RUN/status-v1.txt" 2>&1 || true

# --- 3. the update under load --------------------------------------------------------
LOAD_PIDS=()
qload_start "$RUN/check" redis --port "$PORT" --conns 2 --prefix ucheck --timeout 10
CHECK_PID=$GROUP_PID
start_group "$RUN/bench.log" timeout -k 5 300 redis-benchmark -h 127.0.0.1 -p "$PORT" -c 8 \
  -n "$BENCH_N" -r 10000 -t set,get --csv
BENCH_PID=$GROUP_PID
sleep 1.5
alive "$BENCH_PID" && BENCH_AT_START=1 || BENCH_AT_START=0
log "update v1 -> v2: mcr-ctl update $V1PID $V2 --json (redis-benchmark -t set,get -n $BENCH_N -c 8 -r 10000 and the checking client running)"
rc=0
timeout -k 5 120 "$MCR_CTL" update "$V1PID" "$V2" --json --report "$RUN/update.report" >"$RUN/update.json" 2>"$RUN/update.err" || rc=$?
alive "$BENCH_PID" && BENCH_AT_END=1 || BENCH_AT_END=0
log "mcr-ctl update: exit $rc"
[ ! -s "$RUN/update.err" ] || sed 's/^/    /' "$RUN/update.err" >&2
[ -s "$RUN/update.json" ] && update_log_json "$RUN/update.json"
[ "$rc" -eq 0 ] || failed "mcr-ctl update exited $rc (0 = committed)"
NFAILED_BEFORE=$NFAILED   # what failed from here on: the service during and after the update
[ "$BENCH_AT_START" = 1 ] || failed "redis-benchmark had ended before the update started (raise MCR_UPDATE_BENCH_N)"
[ "$BENCH_AT_END" = 1 ] || log "note: redis-benchmark ended before mcr-ctl update returned"

# redis-benchmark ends by itself; its exit status and its two results
brc=0
for ((i = 0; i < 3000; i++)); do alive "$BENCH_PID" || break; sleep 0.1; done
wait "$BENCH_PID" || brc=$?
if [ "$brc" -eq 0 ] && [ "$(grep -cE '^"(SET|GET)","[0-9.]+"' "$RUN/bench.log")" = 2 ]; then
  log "redis-benchmark: exit 0, $(grep -E '^"(SET|GET)"' "$RUN/bench.log" | cut -d, -f1,2 | tr -d '"' |
      sed 's/,/ /' | awk '{printf "%s %s requests/s; ", $1, $2}')"
else
  failed "redis-benchmark exited $brc (it exits at the first error); $RUN/bench.log:"
  tr '\r' '\n' <"$RUN/bench.log" | grep -v '^ *$' | tail -n 5 | sed 's/^/    /' >&2
fi
kill -TERM "$CHECK_PID" 2>/dev/null || true
wait_pids 30 "$CHECK_PID"
load_ok "checking client (2 connections, SET/GET pairs)" "$RUN/check" ||
  failed "the checking client saw errors (or did nothing)"
CLEFT=$(json_field "$RUN/check" connections_left 2>/dev/null || echo 0)
[ "$CLEFT" = 2 ] || failed "the checking client kept $CLEFT of its 2 connections"

NEWPID=$(json_field "$RUN/update.json" new_pid 2>/dev/null || echo 0)
PAUSE_MS=$(pause_ms "$RUN/update.json")
# Committed: v2 must answer as the new process. Rolled back (exit 1): v1 must
# serve on unchanged, as the old process. The same checks either way.
if [ "$rc" -eq 0 ]; then
  SERVING=v2; SPID=$NEWPID
  for ((i = 0; i < 50; i++)); do alive "$V1PID" || break; sleep 0.1; done
  if alive "$V1PID"; then failed "the old process $V1PID still runs"
  else log "the old process $V1PID is gone"; fi
  wait "$V1PID" 2>/dev/null || true
  [ "$NEWPID" -gt 0 ] && alive "$NEWPID" || failed "the new process $NEWPID does not run"
else
  SERVING=v1; SPID=$V1PID
  ROLLED_BACK=0
  [ "$rc" -eq 1 ] && python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])).get("committed") is not False)' \
    "$RUN/update.json" 2>/dev/null && ROLLED_BACK=1
  if [ "$ROLLED_BACK" = 1 ]; then
    log "the update was rolled back; $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("reasons", [])))' \
        "$RUN/update.json" 2>/dev/null) reason(s) above (report $RUN/update.report); checking that v1 serves on"
  else
    log "mcr-ctl update exited $rc without a rollback report; checking that v1 serves on"
  fi
  if alive "$V1PID"; then log "the old process $V1PID still runs"
  else failed "the old process $V1PID is gone after the rollback"; fi
  # no process of v2 left behind (mcr-ctl update kills and reaps it)
  left=""
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/exe" 2>/dev/null)" = "$V2" ] && left="$left ${d#/proc/}"
  done
  [ -z "$left" ] && log "no process of v2 is left" || failed "processes of v2 left after the rollback:$left"
fi
if alive "$SPID"; then
  # the held connection
  touch "$RUN/held.go"
  wait_pids 60 "$HELD_PID"
  if python3 - "$RUN/held.json" "$SPID" >&2 <<'PY'; then log "the connection opened before the update works ($SERVING answers it)"
import json, sys
j = json.load(open(sys.argv[1]))
print("[redis] held connection: CLIENT ID %s before, %s after; GET held:before %r; "
      "SET/GET held:after %s/%r; INFO process_id %s; errors %s"
      % (j["client_id_before"], j.get("client_id_after"), j.get("get_before"), j.get("set_after"),
         j.get("get_after"), j.get("process_id"), j["errors"]))
ok = (not j["errors"] and j["client_id_after"] == j["client_id_before"]
      and j["get_before"] == "set-before-the-update" and j["set_after"]
      and j["get_after"] == "set-after-the-update" and j["process_id"] == int(sys.argv[2]))
sys.exit(0 if ok else 1)
PY
  else failed "the connection opened before the update (see above, $RUN/held.log)"; fi
  # the data set
  if timeout 120 python3 "$RTOOL" check "$PORT" "$NKEYS" >"$RUN/check-after.log" 2>&1; then
    log "after the update, $(tail -n1 "$RUN/check-after.log")"
  else
    sed 's/^/    /' "$RUN/check-after.log" >&2
    failed "the data set after the update"
  fi
  # INFO, pid file, status
  IPID=$(info process_id); IRUNID=$(info run_id)
  [ "$IPID" = "$SPID" ] && log "INFO server: process_id $IPID (the $([ "$rc" -eq 0 ] && echo new || echo old) pid)" ||
    failed "INFO server: process_id '$IPID', expected $SPID"
  [ "$IRUNID" = "$RUNID" ] && log "INFO server: run_id $IRUNID as before" ||
    failed "INFO server: run_id '$IRUNID', was '$RUNID'"
  pf=$(tr "\n" " " <"$PIDFILE" 2>/dev/null || true)
  [ "$pf" = "$SPID " ] && log "the pid file names $SPID" ||
    failed "the pid file holds '$pf', expected '$SPID'"
  if "$MCR_CTL" status "$SPID" >"$RUN/status-after.txt" 2>&1; then log "mcr-ctl status $SPID answers"
  else failed "mcr-ctl status $SPID: $(head -c 300 "$RUN/status-after.txt")"; fi
  # --- 4. which version answers now
  probe_version
  [ "$(cat "$RUN/probe.version")" = "$SERVING" ] ||
    failed "after the update the probe says $(cat "$RUN/probe.version"), not $SERVING"
  ping_server || failed "the server does not answer PING after the probe"
fi
ls "$RUN"/core* >/dev/null 2>&1 && failed "core files in $RUN: $(ls "$RUN"/core* | tr '\n' ' ')"

# --- summary --------------------------------------------------------------------------
[ "$NEWPID" -gt 0 ] 2>/dev/null && kill -TERM "$NEWPID" 2>/dev/null || true
echo "==== $SERVER-$VERSION: live update to $V2_DESC under redis-benchmark ====" >&2
echo "  builds $BUILD_SECS s; total $((SECONDS - T0)) s" >&2
if [ "$rc" -eq 0 ]; then
  echo "  update v1 ($V1PID) -> v2 ($NEWPID): committed, pause $PAUSE_MS ms" >&2
else
  echo "  update v1 ($V1PID) -> v2: NOT committed (mcr-ctl exit $rc), pause $PAUSE_MS ms" >&2
fi
python3 - "$RUN/update.json" >&2 <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1]))
print("  phases: " + ", ".join("%s %.1f ms" % (p["name"], p["us"] / 1000) for p in j["phases"]))
# structured conflicts (kind, object) when mcr-ctl gives them, else the reasons
r = [("[%s] " % c["kind"] if c.get("kind") else "") + (c["object"] + ": " if c.get("object") else "")
     + c.get("message", "") for c in j.get("conflicts", [])] or j.get("reasons", [])
if r:
    print("  %d reason(s) for the rollback:" % len(r))
    for x in r[:12]:
        print("    - " + x)
    if len(r) > 12:
        print("    ... %d more in the report" % (len(r) - 12))
PY
if [ "$rc" -ne 0 ]; then
  if [ "$NFAILED" -eq "$NFAILED_BEFORE" ]; then
    echo "  after the rollback v1 (pid $V1PID) served on: load without error, keys, held connection, pid file, probe v1" >&2
  else
    echo "  after the rollback v1 did NOT serve on correctly: $((NFAILED - NFAILED_BEFORE)) check(s) failed (above)" >&2
  fi
fi
echo "  checking client: $(json_field "$RUN/check" ops 2>/dev/null) requests, $(json_field "$RUN/check" errors 2>/dev/null) errors; redis-benchmark exit ${brc:-?}" >&2
if [ "$STATUS" -eq 0 ]; then echo "  RESULT: OK" >&2; else echo "  RESULT: FAILED (files in $RUN)" >&2; fi
exit "$STATUS"
