#!/usr/bin/env bash
# profile-server.sh NAME VERSION --cc MCR_CLANG --out DIR [--duration SEC]
#                   [--port PORT] [--debian-patches] [--no-prod] [--libevent VERSION]
#
# The whole quiescence pipeline for one real server (docs/quiescence.md):
#
#   1. builds the profiling variant (MCR_PROFILE=1, configs/NAME.wrappers) into
#      DIR/prof (scripts/build-server.sh);
#   2. runs it under mcr-profile (from MCR_CLANG's directory) on 127.0.0.1 while a
#      standard workload for that server runs against it, bounded in time and
#      requests, then stops it:
#        redis      redis-benchmark (set, get, incr, lists, sets, hashes, zsets)
#        memcached  memcaslap (memaslap), -t 4 workers; LRU maintainer and crawler,
#                   slab rebalancer, logger, hash-table and idle-connection threads
#        lighttpd   wrk on a static file (minimal config, single process)
#        nginx      wrk on a static file; master + 2 workers (daemon off)
#        vsftpd     python ftplib: 4 clients, each a loop of anonymous sessions
#                   (login, PWD, LIST, RETR of two files, NOOP, a pause of 0.3 s,
#                   QUIT); listen=YES, background=NO: the listener plus the
#                   processes of each session (forked after the startup)
#   3. writes DIR/NAME.qp and checks that every thread class has at least one
#      quiescent point (a `qp` line), and that each kind of thread the server
#      is known to run (per server below) is among them;
#   4. builds the production variant (MCR_QUIESCENCE=DIR/NAME.qp) into DIR/prod
#      and prints the production binary's path on stdout (the only thing printed
#      there; progress goes to stderr).
#
# --duration SEC   how long the workload runs (default 12); the profile run ends
#                  1.5 s after the workload (threads still blocked then count).
# --port PORT      the port to listen on (default: the first free one from a
#                  per-server base, 24400 redis, 24410 memcached, 24420 lighttpd,
#                  24430 nginx, 24440 vsftpd; vsftpd's passive data ports
#                  are the 20 from PORT + 10)
# --no-prod        stop after writing and checking DIR/NAME.qp
# --libevent VERSION  memcached: both builds compile libevent VERSION from
#                  Debian's source with the server (scripts/build-server.sh)
#
# Also in DIR: profile.log (mcr-profile's summary and the server's output),
# workload.log, run/ (the server's config, docroot, logs), prof/build.log,
# prod/build.log. Exit status: 0 ok; 1 a build, the run or the check failed;
# 2 bad usage.
set -euo pipefail

PROG=profile-server
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/nginx-conf.sh"
REPO=$(cd "$HERE/.." && pwd)
say() { echo "$PROG: $*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}/usage: /;2,$s/^usage: /       /' >&2
  exit 2
}

NAME="" VERSION="" CC_ARG="" OUT="" DURATION=12 PORT="" PROD=1
BUILD_OPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cc) [ $# -ge 2 ] || usage; CC_ARG=$2; shift 2 ;;
    --cc=*) CC_ARG=${1#*=}; shift ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --port) [ $# -ge 2 ] || usage; PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    --debian-patches) BUILD_OPTS+=(--debian-patches); shift ;;
    --libevent) [ $# -ge 2 ] || usage; BUILD_OPTS+=(--libevent "$2"); shift 2 ;;
    --no-prod) PROD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d;s/^# \{0,1\}//' >&2; exit 0 ;;
    -*) say "unknown option $1"; usage ;;
    *)
      if [ -z "$NAME" ]; then NAME=$1
      elif [ -z "$VERSION" ]; then VERSION=$1
      else say "unexpected argument $1"; usage
      fi
      shift ;;
  esac
done
[ -n "$NAME" ] && [ -n "$VERSION" ] && [ -n "$CC_ARG" ] && [ -n "$OUT" ] || usage
case "$NAME" in
  redis|memcached|lighttpd|nginx|vsftpd) ;;
  *) say "unknown server '$NAME' (known: redis memcached lighttpd nginx vsftpd)"; exit 2 ;;
esac
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 2 ] && [ "$DURATION" -le 600 ] ||
  { say "bad --duration '$DURATION' (whole seconds, 2 to 600)"; exit 2; }
[ -z "$PORT" ] || [[ "$PORT" =~ ^[0-9]+$ ]] || { say "bad --port '$PORT'"; exit 2; }

MCR_CLANG=$(command -v "$CC_ARG" 2>/dev/null) || die "compiler '$CC_ARG' not found"
MCR_CLANG=$(cd "$(dirname "$MCR_CLANG")" && pwd)/$(basename "$MCR_CLANG")
MCR_PROFILE_BIN=$(dirname "$MCR_CLANG")/mcr-profile
[ -x "$MCR_PROFILE_BIN" ] || die "mcr-profile not found next to $MCR_CLANG"
WRAPPERS=$REPO/configs/$NAME.wrappers
[ -f "$WRAPPERS" ] || die "no $WRAPPERS"

need() { command -v "$1" >/dev/null || die "$1 not found (scripts/setup.sh installs it: $2)"; }
case "$NAME" in
  redis) need redis-benchmark redis-tools; need redis-cli redis-tools ;;
  memcached)
    MEMASLAP=$(command -v memcaslap || command -v memaslap || true)
    [ -n "$MEMASLAP" ] || die "memcaslap/memaslap not found (scripts/setup.sh installs libmemcached-tools)" ;;
  lighttpd|nginx) need wrk wrk; need curl curl ;;
  vsftpd) need python3 python3 ;;
esac

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS

# --- process groups we start: killed on any exit --------------------------------
PGIDS=()
cleanup() {
  local g
  for g in "${PGIDS[@]+"${PGIDS[@]}"}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 0.2
  for g in "${PGIDS[@]+"${PGIDS[@]}"}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. profiling build -------------------------------------------------------------
say "[1/4] building the profiling variant of $NAME $VERSION into $OUT/prof"
PROF_BIN=$(MCR_WRAPPERS=$WRAPPERS MCR_PROFILE=1 MCR_QUIESCENCE= \
           "$HERE/build-server.sh" "$NAME" "$VERSION" --cc "$MCR_CLANG" --out "$OUT/prof" \
           "${BUILD_OPTS[@]+"${BUILD_OPTS[@]}"}") ||
  die "the profiling build failed (see $OUT/prof/build.log)"

# --- 2. run under mcr-profile with a workload ------------------------------------------
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
if [ -z "$PORT" ]; then
  case "$NAME" in redis) PORT=24400 ;; memcached) PORT=24410 ;; lighttpd) PORT=24420 ;; nginx) PORT=24430 ;;
                 vsftpd) PORT=24440 ;; esac
  PORT=$(free_port "$PORT")
fi
RUN=$OUT/run
rm -rf "$RUN"; mkdir -p "$RUN"

# The static files served by lighttpd and nginx.
make_docroot() {
  mkdir -p "$RUN/docroot"
  printf '<html><body>mcr quiescence profile</body></html>\n' >"$RUN/docroot/index.html"
  head -c 4096 /dev/zero | tr '\0' 'q' >"$RUN/docroot/file-4k.txt"
}

# vsftpd_config FILE RUN PORT: vsftpd's config for a run directory RUN (its
# docroot/ is the anonymous root, empty/ the unprivileged processes' chroot).
# Anonymous logins run as ftp_username; vsftpd first changes to that user's home,
# so it must exist: daemon (/usr/sbin) rather than Debian's ftp user, which this
# machine may not have. seccomp_sandbox=NO is Debian's default (0060 patch).
# isolate (default YES) forks each session with clone(CLONE_NEWIPC) (root only).
vsftpd_config() {
  local conf=$1 run=$2 port=$3
  mkdir -p "$run/empty"
  chmod 755 "$run/empty" "$run/docroot"
  cat >"$conf" <<CONF
listen=YES
listen_ipv6=NO
background=NO
listen_address=127.0.0.1
listen_port=$port
anonymous_enable=YES
no_anon_password=YES
local_enable=NO
write_enable=NO
anon_root=$run/docroot
ftp_username=daemon
nopriv_user=nobody
secure_chroot_dir=$run/empty
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$((port + 10))
pasv_max_port=$((port + 29))
seccomp_sandbox=NO
xferlog_enable=YES
vsftpd_log_file=$run/vsftpd.log
CONF
}

SERVER_CMD=()
case "$NAME" in
  redis)
    SERVER_CMD=("$PROF_BIN" --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no
                --daemonize no --dir "$RUN" --logfile "$RUN/redis.log")
    ;;
  memcached)
    # -t 4 workers; the maintenance threads are on by default in 1.6 (LRU
    # maintainer and crawler, slab rebalancer, logger, hash table); idle_timeout
    # adds the idle-connection thread. Root must name a user (-u).
    SERVER_CMD=("$PROF_BIN" -l 127.0.0.1 -p "$PORT" -U 0 -t 4 -m 64 -c 1024
                -o idle_timeout=600)
    [ "$(id -u)" -ne 0 ] || SERVER_CMD+=(-u root)
    ;;
  lighttpd)
    make_docroot
    cat >"$RUN/lighttpd.conf" <<CONF
server.document-root = "$RUN/docroot"
server.bind          = "127.0.0.1"
server.port          = $PORT
server.errorlog      = "$RUN/error.log"
server.pid-file      = "$RUN/lighttpd.pid"
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".txt" => "text/plain" )
CONF
    SERVER_CMD=("$PROF_BIN" -D -f "$RUN/lighttpd.conf" -m "$(dirname "$PROF_BIN")")
    ;;
  nginx)
    make_docroot
    nginx_conf "$RUN" "$PROF_BIN" "$PORT" "$RUN/docroot"
    SERVER_CMD=("$PROF_BIN" -p "$RUN/" -c conf/nginx.conf)
    ;;
  vsftpd)
    # Standalone (listen=YES) in the foreground, anonymous read-only from the
    # docroot (vsftpd_config, also used by tests/real/update-vsftpd.sh).
    make_docroot
    vsftpd_config "$RUN/vsftpd.conf" "$RUN" "$PORT"
    SERVER_CMD=("$PROF_BIN" "$RUN/vsftpd.conf")
    ;;
esac

# Is the server up? (one bounded try)
ping_server() {
  case "$NAME" in
    redis) [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ] ;;
    memcached)
      local r
      r=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'version\r\n' >&3 && timeout 2 head -c 8 <&3) 2>/dev/null
      [ "$r" = "VERSION " ] ;;
    lighttpd|nginx)
      curl -s --noproxy '*' --max-time 2 -o /dev/null -f "http://127.0.0.1:$PORT/index.html" ;;
    vsftpd)
      local r
      r=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && timeout 2 head -c 3 <&3) 2>/dev/null)
      [ "$r" = 220 ] ;;
  esac
}

QP=$OUT/$NAME.qp
PLOG=$OUT/profile.log
WLOG=$OUT/workload.log
rm -f "$QP"
say "[2/4] profiling: mcr-profile -o $QP -- ${SERVER_CMD[*]}"
# mcr-profile's own limit is a safety net; the run is normally stopped with SIGINT
# once the workload is done.
setsid "$MCR_PROFILE_BIN" -o "$QP" --duration $((DURATION + 120)) -- "${SERVER_CMD[@]}" \
  >"$PLOG" 2>&1 </dev/null &
PROF_PID=$!
PGIDS+=("$PROF_PID")

up=0
for ((i = 0; i < 300; i++)); do
  if ping_server; then up=1; break; fi
  kill -0 "$PROF_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$up" -ne 1 ]; then
  say "$NAME did not answer on 127.0.0.1:$PORT within 30 s; $PLOG:"
  tail -n 30 "$PLOG" >&2 || true
  [ "$NAME" != nginx ] || tail -n 10 "$RUN/logs/error.log" >&2 2>/dev/null || true
  [ "$NAME" != lighttpd ] || tail -n 10 "$RUN/error.log" >&2 2>/dev/null || true
  exit 1
fi
say "$NAME (profiling build) answers on 127.0.0.1:$PORT; workload for ${DURATION} s, log $WLOG"

: >"$WLOG"
wrc=0
case "$NAME" in
  redis)
    # Keys from a 10 000 key space, 8 connections; loops over the tests until the
    # time is up (redis-benchmark has no duration option).
    timeout -k 5 "$DURATION" redis-benchmark -h 127.0.0.1 -p "$PORT" -c 8 -r 10000 -l -q \
      -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset \
      >>"$WLOG" 2>&1 || wrc=$?
    [ "$wrc" -eq 124 ] && wrc=0
    # A command that hands work to a background thread (lazy free).
    redis-cli -h 127.0.0.1 -p "$PORT" flushall async >>"$WLOG" 2>&1 || true
    ;;
  memcached)
    # 2 client threads, 16 concurrent connections; get/set mix (memaslap's default
    # 9:1), 1% of the values verified.
    timeout -k 5 $((DURATION + 30)) "$MEMASLAP" -s "127.0.0.1:$PORT" -T 2 -c 16 \
      -t "${DURATION}s" -v 0.01 >>"$WLOG" 2>&1 || wrc=$?
    ;;
  lighttpd|nginx)
    timeout -k 5 $((DURATION + 30)) wrk -t 1 -c 8 -d "${DURATION}s" \
      "http://127.0.0.1:$PORT/file-4k.txt" >>"$WLOG" 2>&1 || wrc=$?
    ;;
  vsftpd)
    # Sessions are processes: few clients, each a loop of whole sessions with an
    # idle pause in each (so that the session processes' waits show).
    timeout -k 5 $((DURATION + 30)) python3 - "$PORT" "$DURATION" "$RUN/docroot" >>"$WLOG" 2>&1 <<'PY' || wrc=$?
import ftplib, io, sys, threading, time
port, secs, root = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
want = {n: open("%s/%s" % (root, n), "rb").read() for n in ("index.html", "file-4k.txt")}
end = time.time() + secs
count = {"sessions": 0, "commands": 0, "errors": 0}
lock = threading.Lock()
def client():
    while time.time() < end:
        n = 0
        try:
            f = ftplib.FTP()
            f.connect("127.0.0.1", port, timeout=20)
            f.login(); n += 2
            f.pwd(); f.retrlines("LIST", lambda l: None); n += 3  # LIST: PASV + LIST
            for name, data in want.items():
                b = io.BytesIO()
                f.retrbinary("RETR " + name, b.write); n += 3    # TYPE, PASV, RETR
                if b.getvalue() != data:
                    raise Exception("RETR %s: wrong bytes" % name)
            f.voidcmd("NOOP"); n += 1
            time.sleep(0.3)
            f.quit(); n += 1
            with lock:
                count["sessions"] += 1; count["commands"] += n
        except Exception as e:
            with lock:
                count["errors"] += 1; count["commands"] += n
            print("error:", e)
ts = [threading.Thread(target=client) for _ in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
print("%(sessions)d sessions, %(commands)d commands, %(errors)d errors" % count)
sys.exit(1 if count["errors"] else 0)
PY
    ;;
esac
[ "$wrc" -eq 0 ] || say "warning: the workload exited $wrc (see $WLOG)"

# Did the workload reach the server? (an idle profile would still be written,
# but handlers show only under load)
served=0
case "$NAME" in
  redis)
    served=$(timeout 5 redis-cli -h 127.0.0.1 -p "$PORT" info stats 2>/dev/null |
             sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p') || true ;;
  memcached)
    served=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'stats\r\nquit\r\n' >&3 &&
               timeout 5 cat <&3) 2>/dev/null | tr -d '\r' |
             awk '$2 == "cmd_get" || $2 == "cmd_set" {n += $3} END {print n + 0}') || true ;;
  lighttpd|nginx)
    served=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$WLOG" | tail -n1) || true ;;
  vsftpd)
    served=$(sed -n 's/^[0-9]* sessions, \([0-9]*\) commands.*/\1/p' "$WLOG" | tail -n1) || true ;;
esac
served=${served:-0}
say "workload done: $served requests served"
[ "$served" -ge 1000 ] || die "the workload did not reach the server (served $served; see $WLOG)"

# Let every thread's current wait show, then stop: the .prof files are rewritten
# every second, and calls still blocked count with the time waited so far.
sleep 1.5
kill -INT "$PROF_PID" 2>/dev/null || true
prc=0
for ((i = 0; i < 300; i++)); do kill -0 "$PROF_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PROF_PID" 2>/dev/null; then
  say "mcr-profile did not exit within 30 s of SIGINT: killing it"
  kill -KILL -- "-$PROF_PID" 2>/dev/null || true
fi
wait "$PROF_PID" || prc=$?
say "mcr-profile exited $prc; its summary ($PLOG):"
# mcr-profile's summary is the part from its first "mcr-profile:" line on.
sed -n '/^mcr-profile: /,$p' "$PLOG" | sed 's/^/    /' >&2
[ "$prc" -eq 0 ] && [ -s "$QP" ] || die "mcr-profile failed (exit $prc; see $PLOG)"

# --- 3. check the config ------------------------------------------------------------------
# Every thread class must have a quiescent point, except those whose threads are
# known to be gone by the time the server serves (none so far: listed here with
# the reason if one turns up).
say "[3/4] checking $QP"
OPTIONAL_CLASSES=()
missing=$(awk -v opt="$(printf '%s\n' "${OPTIONAL_CLASSES[@]+"${OPTIONAL_CLASSES[@]}"}")" '
  BEGIN { n = split(opt, o, "\n"); for (i = 1; i <= n; i++) if (o[i] != "") skip[o[i]] = 1 }
  function done_class() { if (cls != "" && !qps && !(cls in skip)) print cls }
  /^[ \t]*class[ \t]/ { done_class(); cls = $0; sub(/^[ \t]*class[ \t]+/, "", cls); qps = 0; next }
  /^[ \t]*qp[ \t]/ { qps++ }
  END { done_class() }' "$QP")
nclass=$(grep -cE '^[[:space:]]*class[[:space:]]' "$QP" || true)
nqp=$(grep -cE '^[[:space:]]*qp[[:space:]]' "$QP" || true)
grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$QP" | sed 's/^/    /' >&2
if [ -n "$missing" ]; then
  say "thread classes with no quiescent point (their threads cannot be parked):"
  printf '    %s\n' "$missing" >&2
  die "$QP does not cover every thread class (the rejects and why are in the file)"
fi
say "$nclass thread classes, $nqp quiescent points: every class has one"

# The threads (and processes) each server is known to have, each of which must
# be parkable: a class missing from the profile would not be flagged above.
# Patterns (extended regexps) over the qp lines; written for the versions tested
# (docs/real-servers.md), by function names.
EXPECT=()
case "$NAME" in
  redis) EXPECT=('aeProcessEvents > aeApiPoll > epoll_wait$'          # event loop
                 '^bioProcessBackgroundJobs > pthread_cond_wait$') ;; # bio threads
  memcached) EXPECT=('^main > event_base_loop[@ ]'                  # listener
                     '^worker_libevent > event_base_loop[@ ]'       # -t 4 workers
                     '^lru_maintainer_thread > '
                     '^item_crawler_thread > '
                     '^slab_rebalance_thread > '
                     '^logger_thread > '
                     '^assoc_maintenance_thread > '
                     '^conn_timeout_thread > ') ;;
  lighttpd) EXPECT=('^main > server_main_loop > .*epoll_wait$') ;;
  vsftpd) EXPECT=('^main > vsf_standalone_main > vsf_sysutil_accept_timeout > accept$') ;; # listener
  nginx) EXPECT=('ngx_worker_process_cycle > .*epoll_wait$'           # workers
                 '^main > ngx_master_process_cycle > sigsuspend$') ;; # master
esac
qplines=$(sed -n 's/^[[:space:]]*qp[[:space:]]\{1,\}//p' "$QP")
absent=()
for re in "${EXPECT[@]+"${EXPECT[@]}"}"; do
  grep -qE -- "$re" <<<"$qplines" || absent+=("$re")
done
if [ ${#absent[@]} -gt 0 ]; then
  say "no quiescent point for these known threads of $NAME (patterns over the qp lines):"
  printf '    %s\n' "${absent[@]}" >&2
  die "$QP misses threads that must be parkable (did the workload reach them? see $PLOG)"
fi
[ ${#EXPECT[@]} -eq 0 ] || say "the ${#EXPECT[@]} known thread kinds of $NAME all have a quiescent point"

if [ "$PROD" -eq 0 ]; then
  say "done in $((SECONDS - T0)) s (--no-prod: no production build)"
  exit 0
fi

# --- 4. production build -----------------------------------------------------------------
say "[4/4] building the production variant with $QP into $OUT/prod"
PROD_BIN=$(MCR_WRAPPERS=$WRAPPERS MCR_PROFILE= MCR_QUIESCENCE=$QP \
           "$HERE/build-server.sh" "$NAME" "$VERSION" --cc "$MCR_CLANG" --out "$OUT/prod" \
           "${BUILD_OPTS[@]+"${BUILD_OPTS[@]}"}") ||
  die "the production build failed (see $OUT/prod/build.log)"
say "done in $((SECONDS - T0)) s: $PROD_BIN"
echo "$PROD_BIN"
