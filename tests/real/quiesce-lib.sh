# Shared by tests/real/quiesce-<server>.sh; sourced, not run.
#
# Each test: scripts/profile-server.sh (profiling build, mcr-profile under a
# workload, the quiescence config, the production build) -> start the production
# build on 127.0.0.1 -> a first load phase (throughput) -> a load generator runs
# for the whole quiesce loop -> N x `mcr-ctl quiesce PID --hold 0.01 --json` for
# every process of the server, in turn -> a second load phase -> checks:
#   - every quiesce exited 0 with quiesced=true and every thread arrived;
#   - the load generators saw no error (connection errors, timeouts, wrong or
#     failed replies, non-2xx HTTP answers);
#   - the server still answers correctly (data set before the loop, files);
#   - the second phase's throughput is at least 30% of the first's (loose: the
#     machine is shared; a server left stuck or slowed down fails it).
# Time to quiescence (median, p99, max) per process and overall goes to the log.
#
# A test script sets SERVER, VERSION, PORT_BASE and defines:
#   start_server PROD_BIN RUN PORT   starts the production build in the background
#                                    with start_group (lib.sh); sets SERVER_PID
#   ping_server                      0 when the server answers (one bounded try)
#   server_pids                      the processes to quiesce, one pid a line
#   prepare_data                     stores what check_data reads back
#   check_data                       0 when the server answers it correctly
#   load_run SECS OUT                a load phase of SECS seconds; writes a JSON
#                                    summary (quiesce-tool.py's format) to OUT
#   load_start OUT / load_stop       the load during the loop: start in the
#                                    background, stop and write the summary to OUT
# then calls quiesce_main "$@".
#
# Options of every test script:
#   --mcr-clang PATH    mcr-clang (default $MCR_BUILD_DIR/bin/mcr-clang); mcr-ctl
#                       and mcr-profile are taken from the same directory
#   --iterations N      quiesces per process (default 100)
#   --hold SEC          how long each quiesce holds (default 0.01)
#   --no-build          reuse the production build and config of an earlier run
#                       in the output directory (for iterating on the test itself)
# Environment:
#   MCR_CACHE           cache root (default ~/.cache/mcr)
#   MCR_REAL_OUT        where the builds go (default $MCR_CACHE/real): here in
#                       $MCR_REAL_OUT/<server>-<version>-quiesce
#   MCR_BUILD_DIR       mcr's build directory (default /work/main/build)
#   MCR_QUIESCE_PHASE   seconds of each throughput phase (default 4)
#
# Exit status: 0 every check passed; 1 otherwise.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QTOOL=$REAL_DIR/quiesce-tool.py
PROFILE_SERVER=$REPO/scripts/profile-server.sh
CURL=(curl -s --max-time 20 --noproxy '*')

# free_port BASE: the first port from BASE on that nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# wait_up SECS: until ping_server succeeds; 1 if the server died or time ran out.
wait_up() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    ping_server && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# json_field FILE FIELD: a top-level field of a JSON object.
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# load_ok NAME FILE: logs the summary; 0 when it holds operations and no errors.
load_ok() {
  local name=$1 f=$2
  if [ ! -s "$f" ]; then
    log "$name: no load summary ($f)"
    return 1
  fi
  local ops errs rate
  ops=$(json_field "$f" ops); errs=$(json_field "$f" errors); rate=$(json_field "$f" ops_per_s)
  log "$name: $ops requests, $errs errors, $rate requests/s ($f)"
  if [ "$errs" != 0 ]; then
    python3 -c 'import json,sys; [print("    " + e) for e in json.load(open(sys.argv[1]))["first_errors"]]' "$f" >&2
    return 1
  fi
  [ "$ops" -gt 0 ]
}

# wrk helpers for the HTTP servers: a phase, and a run stopped by SIGINT (wrk then
# prints its summary as at the end of -d). 1 thread, 8 connections.
wrk_run() {
  local secs=$1 out=$2 url=$3
  timeout -k 5 $((secs + 30)) wrk -t 1 -c 8 -d "${secs}s" "$url" >"$out.wrk" 2>&1 || true
  python3 "$QTOOL" wrk "$out.wrk" >"$out"
}
wrk_start() {
  local out=$1 url=$2
  start_group "$out.wrk" timeout -k 5 -s INT 900 wrk -t 1 -c 8 -d 900s "$url"
  LOAD_PIDS+=("$GROUP_PID")
}

# The HTTP servers' docroot: index.html, a 4 KiB file for wrk, a 1 MiB file for
# the checking client (the same bytes every run).
make_docroot() {
  local d=$1
  rm -rf "$d"; mkdir -p "$d"
  printf '<html><body>mcr quiescence test</body></html>\n' >"$d/index.html"
  head -c 4096 /dev/zero | tr '\0' 'q' >"$d/file-4k.txt"
  python3 -c '
import hashlib, sys
with open(sys.argv[1], "wb") as f:
    h = b""
    for i in range(256):
        h = hashlib.sha256(h + i.to_bytes(4, "little")).digest() * 128
        f.write(h)' "$d/bin-1m.bin"
}
sha() { sha256sum "$1" | cut -c1-64; }

# HTTP load: wrk on the 4 KiB file, and beside it the checking client on the
# 1 MiB one (status and sha256 of every answer).
http_load_run() {
  local secs=$1 out=$2
  LOAD_PIDS=()
  qload_start "$out.check" --port "$PORT" --path /bin-1m.bin --sha256 "$(sha "$DOCROOT/bin-1m.bin")" \
    --duration "$secs"
  wrk_run "$secs" "$out.wrk" "http://127.0.0.1:$PORT/file-4k.txt"
  wait_pids $((secs + 30)) "${LOAD_PIDS[@]}"
  python3 "$QTOOL" merge "$out.wrk" "$out.check" >"$out"
}
http_load_start() {
  HTTP_OUT=$1
  LOAD_PIDS=()
  qload_start "$HTTP_OUT.check" --port "$PORT" --path /bin-1m.bin --sha256 "$(sha "$DOCROOT/bin-1m.bin")"
  wrk_start "$HTTP_OUT.wrk" "http://127.0.0.1:$PORT/file-4k.txt"
}
http_load_stop() {
  local p
  for p in "${LOAD_PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait_pids 30 "${LOAD_PIDS[@]}"
  python3 "$QTOOL" wrk "$HTTP_OUT.wrk.wrk" >"$HTTP_OUT.wrk"
  python3 "$QTOOL" merge "$HTTP_OUT.wrk" "$HTTP_OUT.check" >"$HTTP_OUT"
}
# the files, by curl, after the loop
http_check_data() {
  local f bad=0
  for f in index.html file-4k.txt bin-1m.bin; do
    "${CURL[@]}" -o "$RUN/got-$f" "http://127.0.0.1:$PORT/$f" || { log "GET /$f failed"; bad=1; continue; }
    [ "$(sha "$RUN/got-$f")" = "$(sha "$DOCROOT/$f")" ] || { log "GET /$f: wrong bytes"; bad=1; }
  done
  return "$bad"
}

# checking client (redis, memcached, http-check), in the background until stopped
qload_start() {
  local out=$1; shift
  local cmd=(load)
  [ "$1" != --port ] || cmd=(http-check)
  start_group "$out.log" timeout -k 5 900 python3 "$QTOOL" "${cmd[@]}" "$@" --out "$out"
  LOAD_PIDS+=("$GROUP_PID")
}
# wait_pids SECS PID...: until each has exited (they are our children), or kill.
wait_pids() {
  local secs=$1 p i; shift
  for p in "$@"; do
    for ((i = 0; i < secs * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      log "pid $p did not stop within $secs s: killing it"
      kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
}

quiesce_main() {
  local mcr_clang=${MCR_BUILD_DIR:-/work/main/build}/bin/mcr-clang
  local iterations=100 hold=0.01 nobuild=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --mcr-clang) mcr_clang=$2; shift 2 ;;
      --mcr-clang=*) mcr_clang=${1#*=}; shift ;;
      --iterations) iterations=$2; shift 2 ;;
      --hold) hold=$2; shift 2 ;;
      --no-build) nobuild=1; shift ;;
      -h|--help) sed -n '/^# Options/,/^# Exit/p' "$REAL_DIR/quiesce-lib.sh" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) echo "$0: unknown argument $1" >&2; exit 1 ;;
    esac
  done
  if [ ! -x "$mcr_clang" ]; then
    log "mcr-clang not found at $mcr_clang (build mcr first, or pass --mcr-clang PATH)"
    exit 1
  fi
  mcr_clang=$(cd "$(dirname "$mcr_clang")" && pwd)/$(basename "$mcr_clang")
  MCR_CTL=$(dirname "$mcr_clang")/mcr-ctl
  [ -x "$MCR_CTL" ] || { log "mcr-ctl not found next to $mcr_clang"; exit 1; }

  local cache=${MCR_CACHE:-$HOME/.cache/mcr}
  local out=${MCR_REAL_OUT:-$cache/real}/$SERVER-$VERSION-quiesce
  local phase=${MCR_QUIESCE_PHASE:-4}
  local t0=$SECONDS status=0 prod_bin
  mkdir -p "$out"
  log "output in $out"

  # 1. profile and build
  local s=$SECONDS
  if [ "$nobuild" -eq 1 ] && [ -f "$out/prod/build-info" ] && [ -s "$out/$SERVER.qp" ]; then
    prod_bin=$(sed -n 's/^binary=//p' "$out/prod/build-info")
    log "--no-build: reusing $prod_bin"
  else
    local opts=()
    [ "${MCR_DEBIAN_PATCHES:-0}" = 1 ] && opts+=(--debian-patches)
    prod_bin=$("$PROFILE_SERVER" "$SERVER" "$VERSION" --cc "$mcr_clang" --out "$out" \
               "${opts[@]+"${opts[@]}"}") || {
      log "FAILED: scripts/profile-server.sh $SERVER $VERSION failed (logs in $out)"
      exit 1
    }
  fi
  local build_secs=$((SECONDS - s))
  log "quiescent points ($out/$SERVER.qp):"
  grep -E '^[[:space:]]*(class|qp)[[:space:]]' "$out/$SERVER.qp" | sed 's/^/    /' >&2

  # 2. start the production build
  RUN=$out/qrun
  rm -rf "$RUN"; mkdir -p "$RUN"
  PORT=$(free_port "$PORT_BASE")
  start_server "$prod_bin" "$RUN" "$PORT"
  if ! wait_up 30; then
    log "FAILED: the production build did not answer on 127.0.0.1:$PORT; $RUN/server.log:"
    tail -n 20 "$RUN/server.log" >&2 || true
    exit 1
  fi
  local pids
  pids=$(server_pids | tr '\n' ' ') || true
  log "production $SERVER on 127.0.0.1:$PORT, processes: $pids"
  "$MCR_CTL" status "$SERVER_PID" >"$RUN/status-before.txt" 2>&1 || true
  sed 's/^/    /' "$RUN/status-before.txt" >&2

  prepare_data || { log "FAILED: could not store the data checked after the loop"; status=1; }

  # 3. first load phase
  log "load phase 1: $phase s"
  load_run "$phase" "$RUN/phase1.json"
  load_ok "phase 1" "$RUN/phase1.json" || { log "FAILED: errors in load phase 1 (before any quiesce)"; status=1; }

  # 4. the loop, under load
  local qdir=$RUN/quiesce
  mkdir -p "$qdir"
  LOAD_PIDS=()
  load_start "$RUN/loop.json"
  sleep 1
  log "quiesce loop: $iterations x mcr-ctl quiesce --hold $hold for each of: $pids"
  s=$SECONDS
  local i p rc nfail=0
  for ((i = 1; i <= iterations; i++)); do
    for p in $pids; do
      rc=0
      timeout -k 2 30 "$MCR_CTL" quiesce "$p" --hold "$hold" --json \
        >"$qdir/$i-$p.json" 2>"$qdir/$i-$p.err" || rc=$?
      echo "$rc" >"$qdir/$i-$p.rc"
      if [ "$rc" -ne 0 ]; then
        nfail=$((nfail + 1))
        [ "$nfail" -gt 3 ] || log "quiesce $i of pid $p: exit $rc: $(head -c 300 "$qdir/$i-$p.err")"
      fi
    done
  done
  local loop_secs=$((SECONDS - s))
  sleep 1
  load_stop
  log "quiesce loop done in $loop_secs s"
  load_ok "load during the loop" "$RUN/loop.json" || { log "FAILED: errors in the load during the quiesce loop"; status=1; }

  # 5. results of the quiesces
  log "quiesce results ($qdir):"
  local summary
  summary=$(python3 "$QTOOL" summary "$qdir") || { status=1; QFAILED=1; }
  printf '%s\n' "$summary" >&2
  [ "${QFAILED:-0}" -eq 0 ] || log "FAILED: not every quiesce succeeded"

  # 6. still the same processes, still answering correctly
  local now
  now=$(server_pids | tr '\n' ' ') || true
  if [ "$now" != "$pids" ]; then
    log "FAILED: the server's processes changed during the loop: before $pids, after $now"
    status=1
  fi
  if check_data; then log "after the loop: the server answers correctly"
  else log "FAILED: after the loop the server does not answer correctly"; status=1; fi

  # 7. second load phase: throughput is back (loose, and measured again up to
  # three times when low: the machine is shared)
  local r1 r2 ratio try
  r1=$(json_field "$RUN/phase1.json" ops_per_s 2>/dev/null || echo 0)
  for try in 1 2 3; do
    log "load phase 2 (try $try): $phase s"
    load_run "$phase" "$RUN/phase2.json"
    load_ok "phase 2" "$RUN/phase2.json" || { log "FAILED: errors in load phase 2 (after the loop)"; status=1; }
    r2=$(json_field "$RUN/phase2.json" ops_per_s 2>/dev/null || echo 0)
    ratio=$(awk -v a="$r1" -v b="$r2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print 0 }')
    awk -v r="$ratio" 'BEGIN { exit !(r >= 0.30) }' && break
  done
  log "throughput: phase 1 $r1/s, phase 2 $r2/s (ratio $ratio; at least 0.30 required)"
  awk -v r="$ratio" 'BEGIN { exit !(r >= 0.30) }' ||
    { log "FAILED: throughput after the loop is below 30% of before"; status=1; }

  "$MCR_CTL" status "$SERVER_PID" >"$RUN/status-after.txt" 2>&1 || true
  local total=$((SECONDS - t0))
  echo "==== $SERVER-$VERSION: quiesce under load ====" >&2
  echo "  profile + builds $build_secs s; loop $loop_secs s ($iterations x $(wc -w <<<"$pids") processes); total $total s" >&2
  printf '%s\n' "$summary" | grep -E '^  (pid|all) ' >&2 || true
  echo "  throughput phase 1 $r1/s, phase 2 $r2/s" >&2
  if [ "$status" -eq 0 ]; then
    echo "  RESULT: OK" >&2
  else
    echo "  RESULT: FAILED" >&2
  fi
  exit "$status"
}
