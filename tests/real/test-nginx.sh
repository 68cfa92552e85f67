#!/usr/bin/env bash
# Builds nginx 1.22.1 plain (clang-16) and instrumented (mcr-clang) and, since
# nginx ships no test suite, serves static files from each (master + 2 workers,
# 127.0.0.1 only) and checks the responses with curl: status, headers and bytes
# (sha256) of each file, ranges, conditional requests, keep-alive, a bounded
# concurrent load with ab, reload (SIGHUP) and graceful quit.
# Options and environment: see tests/real/lib.sh (--mcr-clang PATH, --plain-only).
SERVER=nginx
VERSION=${MCR_NGINX_VERSION:-1.22.1}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mcr_binaries() { echo "$1/src/objs/nginx"; }

CURL=(curl -s --max-time 20 --noproxy '*')

# free_port BASE: the first port from BASE on that nothing listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# make_docroot DIR: the files served, the same for both builds.
make_docroot() {
  local d=$1
  rm -rf "$d"; mkdir -p "$d/dir" "$d/list/sub"
  printf '<html><body>mcr nginx test index</body></html>\n' >"$d/index.html"
  : >"$d/empty.txt"
  printf 'small static file\n' >"$d/small.txt"
  printf 'a file with a space\n' >"$d/a b.txt"
  printf '<p>dir index</p>\n' >"$d/dir/index.html"
  printf 'one\n' >"$d/list/one.txt"; printf 'two\n' >"$d/list/sub/two.txt"
  # Deterministic binary files (the same bytes every run), 1 MiB and 16 MiB.
  python3 -c '
import hashlib, sys
def gen(path, n):
    with open(path, "wb") as f:
        h, left, i = b"", n, 0
        while left > 0:
            h = hashlib.sha256(h + i.to_bytes(8, "little")).digest() * 128  # 4 KiB
            f.write(h[:left]); left -= len(h[:left]); i += 1
gen(sys.argv[1], 1 << 20); gen(sys.argv[2], 16 << 20)' "$d/bin-1m.bin" "$d/big-16m.bin"
  head -c 200 "$d/bin-1m.bin" | tail -c 100 >"$d/.range-100-199"
}

write_conf() {
  local prefix=$1 port=$2 docroot=$3
  mkdir -p "$prefix/conf" "$prefix/logs"
  cp "$OUT_SRC/conf/mime.types" "$prefix/conf/"
  {
    [ "$(id -u)" -ne 0 ] || echo "user root;"
    cat <<CONF
worker_processes 2;
daemon off;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log info;
events { worker_connections 256; }
http {
    include mime.types;
    default_type application/octet-stream;
    access_log logs/access.log;
    sendfile on;
    keepalive_timeout 30;
    keepalive_requests 1000;
    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        root $docroot;
        location /list/ { autoindex on; }
    }
}
CONF
  } >"$prefix/conf/nginx.conf"
}

sha() { sha256sum "$1" | cut -c1-64; }

# check NAME CONDITION...: records PASS or FAIL for a named check.
check() {
  local name=$1; shift
  if "$@"; then printf 'PASS\t%s\n' "$name" >>"$RESULTS"
  else printf 'FAIL\t%s\n' "$name" >>"$RESULTS"; log "check failed: $name"; fi
}

# get PATH [curl args]: sets CODE, BODY (a file), HDRS (a file).
get() {
  local path=$1; shift
  BODY=$TMPD/body; HDRS=$TMPD/hdrs
  rm -f "$BODY" "$HDRS"
  CODE=$("${CURL[@]}" -o "$BODY" -D "$HDRS" -w '%{http_code}' "$@" "http://127.0.0.1:$PORT$path" || true)
  [ -f "$BODY" ] || : >"$BODY"
}
hdr() { sed -n "s/^$1: *//Ip" "$HDRS" | tr -d '\r' | tail -n1; }
same_file() { [ "$(sha "$1")" = "$(sha "$2")" ]; }

static_checks() {
  local d=$DOCROOT
  get /;                  check "GET / 200" [ "$CODE" = 200 ]
                          check "GET / bytes" same_file "$BODY" "$d/index.html"
                          check "GET / content-type" [ "$(hdr Content-Type)" = text/html ]
  get /empty.txt;         check "GET empty 200" [ "$CODE" = 200 ]
                          check "GET empty 0 bytes" [ ! -s "$BODY" ]
                          check "GET empty content-length" [ "$(hdr Content-Length)" = 0 ]
  get /small.txt;         check "GET small 200" [ "$CODE" = 200 ]
                          check "GET small bytes" same_file "$BODY" "$d/small.txt"
  get /bin-1m.bin;        check "GET 1m 200" [ "$CODE" = 200 ]
                          check "GET 1m bytes" same_file "$BODY" "$d/bin-1m.bin"
                          check "GET 1m content-length" [ "$(hdr Content-Length)" = 1048576 ]
  get /big-16m.bin;       check "GET 16m 200" [ "$CODE" = 200 ]
                          check "GET 16m bytes" same_file "$BODY" "$d/big-16m.bin"
  get /bin-1m.bin -I;     check "HEAD 1m 200" [ "$CODE" = 200 ]
                          # with -I curl writes the headers as its output: nothing more
                          check "HEAD 1m no body" [ "$(stat -c %s "$BODY")" -lt 1024 ]
                          check "HEAD 1m content-length" [ "$(hdr Content-Length)" = 1048576 ]
  get /a%20b.txt;         check "GET encoded name 200" [ "$CODE" = 200 ]
                          check "GET encoded name bytes" same_file "$BODY" "$d/a b.txt"
  get /missing.html;      check "GET missing 404" [ "$CODE" = 404 ]
  get /dir;               check "GET dir 301" [ "$CODE" = 301 ]
                          check "GET dir location" bash -c '[[ "$1" == */dir/ ]]' _ "$(hdr Location)"
  get /dir/;              check "GET dir/ index 200" [ "$CODE" = 200 ]
                          check "GET dir/ index bytes" same_file "$BODY" "$d/dir/index.html"
  get /list/;             check "autoindex 200" [ "$CODE" = 200 ]
                          check "autoindex lists" grep -q 'one.txt' "$BODY"
                          check "autoindex lists dir" grep -q 'sub/' "$BODY"
  get /bin-1m.bin -H 'Range: bytes=100-199'
                          check "range 206" [ "$CODE" = 206 ]
                          check "range bytes" same_file "$BODY" "$d/.range-100-199"
                          check "range content-range" [ "$(hdr Content-Range)" = "bytes 100-199/1048576" ]
  get /bin-1m.bin -H 'Range: bytes=0-9,20-29'
                          check "multi-range 206" [ "$CODE" = 206 ]
                          check "multi-range multipart" bash -c '[[ "$1" == multipart/byteranges* ]]' _ "$(hdr Content-Type)"
  get /bin-1m.bin -H 'Range: bytes=2000000-'
                          check "range unsatisfiable 416" [ "$CODE" = 416 ]
  get /small.txt; local lm etag; lm=$(hdr Last-Modified); etag=$(hdr ETag)
  get /small.txt -H "If-Modified-Since: $lm"
                          check "if-modified-since 304" [ "$CODE" = 304 ]
  get /small.txt -H "If-None-Match: $etag"
                          check "if-none-match 304" [ "$CODE" = 304 ]
  get /small.txt -X POST -d x=1
                          check "POST static 405" [ "$CODE" = 405 ]
  # A malformed request line on a raw socket: 400.
  local raw
  raw=$(exec 3<>"/dev/tcp/127.0.0.1/$PORT" && printf 'GARBAGE\r\n\r\n' >&3 &&
        timeout 10 head -c 12 <&3 || true)
  check "malformed request 400" [ "$raw" = "HTTP/1.1 400" ]

  # Keep-alive: 50 requests over one connection.
  local urls=() i
  for ((i = 0; i < 50; i++)); do urls+=("http://127.0.0.1:$PORT/small.txt"); done
  "${CURL[@]}" -o /dev/null -w '%{http_code} %{num_connects}\n' "${urls[@]}" >"$TMPD/ka" || true
  check "keep-alive 50 x 200" [ "$(grep -c '^200 ' "$TMPD/ka")" = 50 ]
  check "keep-alive one connection" [ "$(awk '{n += $2} END {print n + 0}' "$TMPD/ka")" = 1 ]

  # 8 parallel downloads of the 16 MiB file.
  local pids=()
  for ((i = 0; i < 8; i++)); do
    "${CURL[@]}" -o "$TMPD/par.$i" "http://127.0.0.1:$PORT/big-16m.bin" &
    pids+=($!)
  done
  wait "${pids[@]}" || true   # not a bare wait: nginx is a child too
  local okn=0
  for ((i = 0; i < 8; i++)); do same_file "$TMPD/par.$i" "$d/big-16m.bin" && okn=$((okn + 1)); done
  check "parallel 8 x 16m bytes" [ "$okn" = 8 ]
  rm -f "$TMPD"/par.*

  # Bounded load: 4000 requests, 16 concurrent, keep-alive.
  if command -v ab >/dev/null; then
    ab -k -n 4000 -c 16 -s 20 "http://127.0.0.1:$PORT/small.txt" >"$TMPD/ab" 2>&1 || true
    check "ab 4000 complete" grep -q '^Complete requests: *4000' "$TMPD/ab"
    check "ab 0 failed" grep -q '^Failed requests: *0' "$TMPD/ab"
    check "ab all 2xx" bash -c '! grep -q "^Non-2xx responses" "$1"' _ "$TMPD/ab"
  else
    printf 'SKIP\tab load (ab not installed)\n' >>"$RESULTS"
  fi
}

# wait_listen SECS: until nginx answers on PORT.
wait_listen() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    "${CURL[@]}" --max-time 1 -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

worker_pids() { pgrep -P "$NGINX_PID" | sort; }

run_suite() {
  local kind=$1 out=$2
  RESULTS=$3; : >"$RESULTS"
  OUT_SRC=$out/src
  local bin=$out/src/objs/nginx prefix=$out/run base
  case "$kind" in plain) base=24180 ;; *) base=24190 ;; esac
  PORT=$(free_port "$base")
  DOCROOT=$out/docroot
  TMPD=$out/tmp; rm -rf "$TMPD" "$prefix"; mkdir -p "$TMPD"
  make_docroot "$DOCROOT"
  write_conf "$prefix" "$PORT" "$DOCROOT"
  log "nginx ($kind) on 127.0.0.1:$PORT, prefix $prefix"

  check "config test (nginx -t)" "$bin" -t -p "$prefix/" -c conf/nginx.conf -q

  start_group "$prefix/logs/stderr.log" "$bin" -p "$prefix/" -c conf/nginx.conf
  NGINX_PID=$GROUP_PID
  if ! wait_listen 20; then
    printf 'FAIL\tstart and listen\n' >>"$RESULTS"
    log "nginx ($kind) did not start; stderr and error.log:"
    tail -n 20 "$prefix/logs/stderr.log" "$prefix/logs/error.log" >&2 || true
    kill -KILL -- "-$NGINX_PID" 2>/dev/null || true
    return 0
  fi
  printf 'PASS\tstart and listen\n' >>"$RESULTS"
  check "2 workers" [ "$(worker_pids | wc -l)" = 2 ]

  static_checks

  # Reload: new workers, still serving the same bytes.
  local before after i
  before=$(worker_pids | tr '\n' ' ')
  "$bin" -p "$prefix/" -c conf/nginx.conf -s reload 2>>"$prefix/logs/stderr.log" || true
  for ((i = 0; i < 100; i++)); do
    after=$(worker_pids | tr '\n' ' ')
    [ "$after" != "$before" ] && [ "$(worker_pids | wc -l)" = 2 ] && break
    sleep 0.1
  done
  check "reload replaces workers" [ "$after" != "$before" ]
  get /bin-1m.bin;  check "after reload GET 1m bytes" same_file "$BODY" "$DOCROOT/bin-1m.bin"

  check "access log written" [ -s "$prefix/logs/access.log" ]

  # Graceful quit: the master exits by itself.
  "$bin" -p "$prefix/" -c conf/nginx.conf -s quit 2>>"$prefix/logs/stderr.log" || true
  for ((i = 0; i < 100; i++)); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
  check "graceful quit" bash -c '! kill -0 "$1" 2>/dev/null' _ "$NGINX_PID"
  kill -KILL -- "-$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  check "no alert/crit/emerg in error.log" \
    bash -c '! grep -E "\[(alert|crit|emerg)\]" "$1"' _ "$prefix/logs/error.log"
  return 0
}

real_main "$@"
