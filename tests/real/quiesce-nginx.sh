#!/usr/bin/env bash
# nginx 1.22.1, master + 2 workers (daemon off, master_process on): each process
# quiesced 100 times under load, in turn (master, worker, worker, master, ...);
# tests/real/quiesce-lib.sh says what is checked. The master waits in
# sigsuspend, the workers in epoll_wait: each process is quiesced on its own.
#
# Load: wrk on a 4 KiB static file (1 thread, 8 keep-alive connections; non-2xx
# answers and socket errors count), and beside it a checking client getting a
# 1 MiB file over 2 keep-alive connections and comparing every body's sha256.
# Checked after the loop: the files' bytes by curl; the same worker processes
# (none died and was replaced); no alert, crit or emerg in error.log.
# Options and environment: see tests/real/quiesce-lib.sh.
SERVER=nginx
VERSION=${MCR_NGINX_VERSION:-1.22.1}
PORT_BASE=24530
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"
. "$REAL_DIR/nginx-lib.sh"

start_server() {
  local bin=$1 run=$2 port=$3
  DOCROOT=$run/docroot
  make_docroot "$DOCROOT"
  nginx_conf "$run" "$bin" "$port" "$DOCROOT"
  start_group "$run/server.log" "$bin" -p "$run/" -c conf/nginx.conf
  SERVER_PID=$GROUP_PID
}
server_pids() { echo "$SERVER_PID"; pgrep -P "$SERVER_PID" | sort -n; }
prepare_data() { http_check_data; }
check_data() {
  local ok=0
  http_check_data || ok=1
  if grep -E '\[(alert|crit|emerg)\]' "$RUN/logs/error.log" >&2; then
    log "alert/crit/emerg in $RUN/logs/error.log"; ok=1
  fi
  return "$ok"
}
load_run() { http_load_run "$@"; }
load_start() { http_load_start "$@"; }
load_stop() { http_load_stop; }

quiesce_main "$@"
