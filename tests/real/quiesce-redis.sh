#!/usr/bin/env bash
# redis 7.0.15: the event loop and the three bio threads quiesced 100 times under
# load (tests/real/quiesce-lib.sh says what is checked).
#
# Load: redis-benchmark (SET and GET, 8 connections; it exits at the first error
# reply or connection error, and each run is checked), and beside it a checking
# client (2 connections setting values and getting them back, every value
# compared). Data checked after the loop: 200 keys set before it.
# Options and environment: see tests/real/quiesce-lib.sh.
SERVER=redis
VERSION=${MCR_REDIS_VERSION:-7.0.15}
PORT_BASE=24500
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"

RCLI() { timeout 10 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

start_server() {
  local bin=$1 run=$2 port=$3
  start_group "$run/server.log" "$bin" --port "$port" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no --dir "$run"
  SERVER_PID=$GROUP_PID
}
ping_server() { [ "$(RCLI ping 2>/dev/null)" = PONG ]; }
server_pids() { echo "$SERVER_PID"; }

prepare_data() {
  local i
  for ((i = 0; i < 200; i++)); do printf 'SET qcheck:%d value-%d-%s\n' "$i" "$i" "$(printf '%*s' $((i * 7)) '' | tr ' ' x)"; done |
    RCLI >"$RUN/prepare.out" 2>&1 || return 1
  [ "$(grep -c '^OK$' "$RUN/prepare.out")" = 200 ]
}
check_data() {
  local i bad=0
  for ((i = 0; i < 200; i++)); do printf 'GET qcheck:%d\n' "$i"; done | RCLI >"$RUN/check.out" 2>&1 || return 1
  for ((i = 0; i < 200; i++)); do
    printf 'value-%d-%s\n' "$i" "$(printf '%*s' $((i * 7)) '' | tr ' ' x)"
  done >"$RUN/check.expected"
  cmp -s "$RUN/check.out" "$RUN/check.expected" || { log "GET of the 200 keys set before the loop: wrong answers (diff $RUN/check.out $RUN/check.expected)"; bad=1; }
  [ "$(RCLI dbsize)" -ge 200 ] || bad=1
  return "$bad"
}

load_run() {
  local secs=$1 out=$2
  LOAD_PIDS=()
  qload_start "$out.check" redis --port "$PORT" --conns 2 --prefix "qc$(basename "$out" .json)" --duration "$secs"
  timeout -k 5 $((secs + 90)) python3 "$QTOOL" redis-benchmark --port "$PORT" --duration "$secs" --out "$out.bench" || true
  wait_pids $((secs + 30)) "${LOAD_PIDS[@]}"
  python3 "$QTOOL" merge "$out.bench" "$out.check" >"$out"
}
load_start() {
  LOAD_OUT=$1
  LOAD_PIDS=()
  qload_start "$LOAD_OUT.check" redis --port "$PORT" --conns 2 --prefix qcloop
  start_group "$LOAD_OUT.bench.log" timeout -k 5 900 python3 "$QTOOL" redis-benchmark --port "$PORT" --out "$LOAD_OUT.bench"
  LOAD_PIDS+=("$GROUP_PID")
}
load_stop() {
  local p
  for p in "${LOAD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait_pids 30 "${LOAD_PIDS[@]}"
  python3 "$QTOOL" merge "$LOAD_OUT.bench" "$LOAD_OUT.check" >"$LOAD_OUT"
}

quiesce_main "$@"
