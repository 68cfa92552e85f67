#!/usr/bin/env bash
# memcached 1.6.18 with -t 4: the main thread and the 4 libevent workers, and the
# maintenance threads (LRU maintainer in usleep, LRU crawler, slab rebalancer,
# hash-table maintenance and logger in condition waits, the idle-connection
# thread in a timed condition wait) quiesced 100 times under load
# (tests/real/quiesce-lib.sh says what is checked).
#
# Load: a checking client (8 connections, each setting values of 8 to 4000 bytes
# on keys of its own and getting them back; every reply and value compared).
# Data checked after the loop: 200 keys set before it.
# Options and environment: see tests/real/quiesce-lib.sh.
SERVER=memcached
VERSION=${MCR_MEMCACHED_VERSION:-1.6.18}
PORT_BASE=24510
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"

start_server() {
  local bin=$1 run=$2 port=$3
  local args=(-l 127.0.0.1 -p "$port" -U 0 -t 4 -m 64 -c 1024 -o idle_timeout=600)
  [ "$(id -u)" -ne 0 ] || args+=(-u root)   # memcached refuses root without -u
  start_group "$run/server.log" "$bin" "${args[@]}"
  SERVER_PID=$GROUP_PID
}
ping_server() {
  local r
  r=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'version\r\n' >&3 && timeout 2 head -c 8 <&3) 2>/dev/null) || return 1
  [ "$r" = "VERSION " ]
}
server_pids() { echo "$SERVER_PID"; }

prepare_data() { python3 "$QTOOL" memcached-data set --port "$PORT" --count 200; }
check_data() { python3 "$QTOOL" memcached-data check --port "$PORT" --count 200; }

load_run() {
  local secs=$1 out=$2
  timeout -k 5 $((secs + 30)) python3 "$QTOOL" load memcached --port "$PORT" --conns 8 \
    --prefix "q$(basename "$out" .json)" --duration "$secs" --out "$out" || true
}
load_start() {
  LOAD_OUT=$1
  LOAD_PIDS=()
  qload_start "$LOAD_OUT" memcached --port "$PORT" --conns 8 --prefix qloop
}
load_stop() {
  local p
  for p in "${LOAD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait_pids 30 "${LOAD_PIDS[@]}"
}

quiesce_main "$@"
