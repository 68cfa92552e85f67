#!/usr/bin/env bash
# lighttpd 1.4.69 (one process, one thread: its epoll loop) quiesced 100 times
# under load (tests/real/quiesce-lib.sh says what is checked).
#
# Load: wrk on a 4 KiB static file (1 thread, 8 keep-alive connections; non-2xx
# answers and socket errors count), and beside it a checking client getting a
# 1 MiB file over 2 keep-alive connections and comparing every body's sha256.
# Checked after the loop: the files' bytes by curl.
# Options and environment: see tests/real/quiesce-lib.sh.
SERVER=lighttpd
VERSION=${MCR_LIGHTTPD_VERSION:-1.4.69}
PORT_BASE=24520
. "$(dirname "${BASH_SOURCE[0]}")/quiesce-lib.sh"

start_server() {
  local bin=$1 run=$2 port=$3
  DOCROOT=$run/docroot
  make_docroot "$DOCROOT"
  cat >"$run/lighttpd.conf" <<CONF
server.document-root = "$DOCROOT"
server.bind          = "127.0.0.1"
server.port          = $port
server.errorlog      = "$run/error.log"
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle     = 60
index-file.names     = ( "index.html" )
mimetype.assign      = ( ".html" => "text/html", ".txt" => "text/plain",
                         ".bin" => "application/octet-stream" )
CONF
  # -m: the modules (mod_indexfile, mod_staticfile, ...) of the same build
  start_group "$run/server.log" "$bin" -D -f "$run/lighttpd.conf" -m "$(dirname "$bin")"
  SERVER_PID=$GROUP_PID
}
ping_server() { "${CURL[@]}" --max-time 2 -f -o /dev/null "http://127.0.0.1:$PORT/index.html"; }
server_pids() { echo "$SERVER_PID"; }
prepare_data() { http_check_data; }
check_data() { http_check_data; }
load_run() { http_load_run "$@"; }
load_start() { http_load_start "$@"; }
load_stop() { http_load_stop; }

quiesce_main "$@"
