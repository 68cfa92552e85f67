# shellcheck shell=bash
# nginx's test helpers, shared by tests/real/quiesce-nginx.sh and
# update-nginx.sh; sourced after quiesce-lib.sh, not run.
#
#   nginx_conf RUN BIN PORT DOCROOT [HTTP_LINES [SERVER_LINES]]
#       scripts/nginx-conf.sh (the profiling run writes its config with it too)
#   ping_server
#       a GET of index.html on $PORT answers and $SERVER_PID has its 2 workers.

. "$REPO/scripts/nginx-conf.sh"

ping_server() {
  "${CURL[@]}" --max-time 2 -f -o /dev/null "http://127.0.0.1:$PORT/index.html" || return 1
  [ "$(pgrep -P "$SERVER_PID" -f 'worker process' | wc -l)" = 2 ] # both workers started
}
