# shellcheck shell=bash
# nginx's run configuration, shared by scripts/profile-server.sh (the profiling
# run) and tests/real/nginx-lib.sh (quiesce-nginx.sh, update-nginx.sh); sourced,
# not run.
#
#   nginx_conf RUN BIN PORT DOCROOT [HTTP_LINES [SERVER_LINES]]
#       RUN/conf/nginx.conf and mime.types (from BIN's tree) for master + 2
#       workers in the foreground (daemon off), logs and pid file in RUN/logs,
#       keep-alive 60 s and 1 000 000 requests, serving DOCROOT on
#       127.0.0.1:PORT; HTTP_LINES and SERVER_LINES are added to the http and
#       server blocks. As root, the workers run as root too. With MCR_NGINX_CACHE=1
#       in the environment, a proxy cache path (RUN/cache) too: the master then
#       also forks a cache manager and a cache loader, which exits about 60 s
#       after the start (tests/real/update-nginx.sh --cache).

nginx_conf() {
  local run=$1 bin=$2 port=$3 docroot=$4 http_lines=${5:-} server_lines=${6:-}
  mkdir -p "$run/conf" "$run/logs"
  cp "$(dirname "$bin")/../conf/mime.types" "$run/conf/"
  {
    [ "$(id -u)" -ne 0 ] || echo "user root;"
    cat <<CONF
worker_processes 2;
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log notice;
events { worker_connections 256; }
http {
    include mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    keepalive_timeout 60;
    keepalive_requests 1000000;
$http_lines
$([ "${MCR_NGINX_CACHE:-0}" != 1 ] || echo "    proxy_cache_path $run/cache keys_zone=mcr_cache:1m;")
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        root $docroot;
$server_lines
    }
}
CONF
  } >"$run/conf/nginx.conf"
}
