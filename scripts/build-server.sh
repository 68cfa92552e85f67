#!/usr/bin/env bash
# build-server.sh NAME VERSION --cc CC --out DIR [--debian-patches] [--jobs N] [--reuse]
#                 [--libevent VERSION] [-- EXTRA...]
#
# Builds a real server from its Debian source package (fetched and cached by
# fetch-source.sh) with compiler CC into DIR: the source is copied to DIR/src so
# that a plain and an instrumented build never share objects.
#
#   redis      make MALLOC=libc BUILD_TLS=no CC=CC         -> DIR/src/src/redis-server
#   lighttpd   meson setup -Dbuildtype=debugoptimized DIR/build (CC=CC) + ninja
#                                                             -> DIR/build/src/lighttpd
#   memcached  ./configure CC=CC + make (needs libevent-dev)  -> DIR/src/memcached
#   libevent   ./configure CC=CC --prefix=DIR/inst --disable-shared
#              --disable-malloc-replacement --disable-openssl --disable-samples
#              --disable-libevent-regress --with-pic + make install
#              (mm_malloc is malloc, so mcr-clang types each allocation at its
#              call)                                     -> DIR/inst/lib/libevent.a
#
# --libevent VERSION (memcached): first builds libevent VERSION from Debian's
# source as above into DIR/libevent, with the same CC and environment but
# MCR_WRAPPERS=configs/libevent.wrappers (so a
# profiling build's libevent has call records, a production build's the
# quiescent points inside it), and configures memcached --with-libevent on it:
# the server's event library is then compiled like the server (its allocations
# typed, its pointers into the server's objects precise).
#   nginx      ./configure --with-cc=CC --without-pcre
#              --without-http_rewrite_module --without-http_gzip_module
#              --with-cc-opt=-Wno-error + make                -> DIR/src/objs/nginx
#   vsftpd     make CC=CC CFLAGS="-O2 -g" LINK= LIBS="-lwrap -lpam -lssl -lcrypto
#              -lcap" (Debian's LIBS, debian/rules; LINK= keeps the symbol table:
#              vsftpd's Makefile links with -s; needs libwrap0-dev, libpam0g-dev,
#              libssl-dev, libcap-dev; always Debian's patches: fetch-source.sh)
#                                                             -> DIR/src/vsftpd
#
# Only flags a plain clang-16 build needs too are added: an instrumented build is
# the same command with only CC changed (mcr-clang must need nothing else).
# EXTRA arguments (anything not recognised, or everything after --) go to the
# configure step (meson setup, ./configure) or, for redis, to make.
#
# --reuse: skip the build if DIR holds one made by the same script from the same
# source with the same compiler binary (by checksum), arguments and MCR_WRAPPERS
# file. Only safe for compilers that are one self-contained binary (clang-16);
# not for mcr-clang, whose plugin and runtime are separate files.
#
# Prints the binary's path on stdout; a summary with the build time on stderr.
# Also writes DIR/build-info (name, version, cc, binary, seconds) and keeps the
# full log in DIR/build.log.
set -euo pipefail

PROG=build-server
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "$PROG: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 NAME VERSION --cc CC --out DIR [--debian-patches] [--jobs N] [--reuse]" >&2
  echo "       [--libevent VERSION] [-- EXTRA...]" >&2
  echo "  NAME: redis | lighttpd | memcached | nginx | vsftpd | libevent" >&2
  exit 1
}

NAME="" VERSION="" CC_ARG="" OUT="" JOBS=${MCR_JOBS:-2} REUSE=0 LIBEVENT=""
FETCH_OPTS=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cc) [ $# -ge 2 ] || usage; CC_ARG=$2; shift 2 ;;
    --cc=*) CC_ARG=${1#--cc=}; shift ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    --jobs) [ $# -ge 2 ] || usage; JOBS=$2; shift 2 ;;
    --debian-patches) FETCH_OPTS+=(--debian-patches); shift ;;
    --reuse) REUSE=1; shift ;;
    --libevent) [ $# -ge 2 ] || usage; LIBEVENT=$2; shift 2 ;;
    -h|--help) usage ;;
    --) shift; EXTRA+=("$@"); break ;;
    *)
      if [ -z "$NAME" ]; then NAME=$1
      elif [ -z "$VERSION" ]; then VERSION=$1
      else EXTRA+=("$1")
      fi
      shift ;;
  esac
done
[ -n "$NAME" ] && [ -n "$VERSION" ] && [ -n "$CC_ARG" ] && [ -n "$OUT" ] || usage

case "$NAME" in
  redis|lighttpd|memcached|nginx|vsftpd|libevent) ;;
  *) die "unknown server '$NAME' (known: redis lighttpd memcached nginx vsftpd; library: libevent)" ;;
esac

# An absolute compiler path: configure scripts and sub-makes run elsewhere.
CC_PATH=$(command -v "$CC_ARG" 2>/dev/null) || die "compiler '$CC_ARG' not found"
case "$CC_PATH" in /*) ;; *) CC_PATH=$(cd "$(dirname "$CC_PATH")" && pwd)/$(basename "$CC_PATH") ;; esac
[ -x "$CC_PATH" ] || die "compiler '$CC_PATH' is not executable"

rc=0
SRC=$("$HERE/fetch-source.sh" "$NAME" "$VERSION" "${FETCH_OPTS[@]+"${FETCH_OPTS[@]}"}") || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"   # 2: version not available (message already printed)

# What a build leaves: a server's executable, or libevent's archive.
built() { if [ "$NAME" = libevent ]; then [ -f "$1" ]; else [ -x "$1" ]; fi; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/build.log

# What goes into the build, for --reuse.
KEY=$( {
  cat "${BASH_SOURCE[0]}"
  cat "$SRC/.mcr-source"
  echo "$CC_PATH"
  sha256sum <"$(readlink -f "$CC_PATH")"
  "$CC_PATH" --version 2>&1 || true
  printf '%s\n' "$JOBS" "libevent=$LIBEVENT" "${EXTRA[@]+"${EXTRA[@]}"}"
  [ -z "$LIBEVENT" ] || cat "$("$HERE/fetch-source.sh" libevent "$LIBEVENT")/.mcr-source" \
                            "$HERE/../configs/libevent.wrappers"
  [ -z "${MCR_WRAPPERS:-}" ] || cat "$MCR_WRAPPERS" 2>/dev/null || true
  echo "profile=${MCR_PROFILE:-} quiescence=${MCR_QUIESCENCE:-}"
  [ -z "${MCR_QUIESCENCE:-}" ] || cat "$MCR_QUIESCENCE" 2>/dev/null || true
} | sha256sum | cut -c1-16)
if [ "$REUSE" -eq 1 ] && [ -f "$OUT/build-info" ] && grep -qx "key=$KEY" "$OUT/build-info"; then
  BIN=$(sed -n 's/^binary=//p' "$OUT/build-info")
  if built "$BIN"; then
    echo "$PROG: $NAME $VERSION with $CC_ARG: reusing the identical build in $OUT: $BIN" >&2
    echo "$BIN"
    exit 0
  fi
fi
rm -rf "$OUT/src" "$OUT/build" "$OUT/build-info"
cp -a "$SRC" "$OUT/src"
: >"$LOG"

run() {
  echo "+ $*" >>"$LOG"
  "$@" >>"$LOG" 2>&1
}

fail() {
  echo "$PROG: $NAME $VERSION with $CC_ARG: $* failed; last lines of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
}

start=$(date +%s.%N)
case "$NAME" in
  redis)
    cd "$OUT/src"
    # CC on the command line reaches the bundled deps (lua, hiredis, ...) too.
    run make -j"$JOBS" CC="$CC_PATH" MALLOC=libc BUILD_TLS=no "${EXTRA[@]+"${EXTRA[@]}"}" || fail "make"
    BIN=$OUT/src/src/redis-server
    ;;
  lighttpd)
    cd "$OUT"
    run env CC="$CC_PATH" meson setup -Dbuildtype=debugoptimized "$OUT/build" "$OUT/src" "${EXTRA[@]+"${EXTRA[@]}"}" || fail "meson setup"
    run ninja -C "$OUT/build" -j"$JOBS" || fail "ninja"
    BIN=$OUT/build/src/lighttpd
    ;;
  memcached)
    if [ -n "$LIBEVENT" ]; then
      MCR_WRAPPERS=$HERE/../configs/libevent.wrappers \
      "$HERE/build-server.sh" libevent "$LIBEVENT" --cc "$CC_PATH" --out "$OUT/libevent" --jobs "$JOBS" >/dev/null ||
        fail "the libevent build (see $OUT/libevent/build.log)"
      EXTRA+=(--with-libevent="$OUT/libevent/inst")
    fi
    cd "$OUT/src"
    run ./configure CC="$CC_PATH" "${EXTRA[@]+"${EXTRA[@]}"}" || fail "configure"
    # all = memcached plus memcached-debug, sizes, testapp, timedrun: what its test
    # suite runs, built with the same compiler.
    run make -j"$JOBS" all || fail "make"
    BIN=$OUT/src/memcached
    ;;
  libevent)
    cd "$OUT/src"
    run ./configure CC="$CC_PATH" --prefix="$OUT/inst" --disable-shared --enable-static \
        --disable-malloc-replacement --disable-openssl --disable-samples \
        --disable-libevent-regress --with-pic "${EXTRA[@]+"${EXTRA[@]}"}" || fail "configure"
    run make -j"$JOBS" || fail "make"
    rm -rf "$OUT/inst"
    run make install || fail "make install"
    BIN=$OUT/inst/lib/libevent.a
    ;;
  nginx)
    cd "$OUT/src"
    # clang warnings (e.g. unused-but-set-variable) meet nginx's -Werror.
    run ./configure --with-cc="$CC_PATH" --with-cc-opt=-Wno-error \
        --prefix="$OUT/prefix" \
        --without-pcre --without-http_rewrite_module --without-http_gzip_module \
        "${EXTRA[@]+"${EXTRA[@]}"}" || fail "configure"
    run make -j"$JOBS" || fail "make"
    BIN=$OUT/src/objs/nginx
    ;;
  vsftpd)
    cd "$OUT/src"
    # Its own Makefile: no configure; features come from builddefs.h (Debian's:
    # tcp_wrappers, PAM, SSL). The build-time -s (LINK) would strip the symbol
    # table mcr needs; Debian's package builds with LINK= too.
    run make -j"$JOBS" CC="$CC_PATH" CFLAGS="-O2 -g" LINK= \
        LIBS="-lwrap -lpam -lssl -lcrypto -lcap" "${EXTRA[@]+"${EXTRA[@]}"}" || fail "make"
    BIN=$OUT/src/vsftpd
    ;;
esac
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')

built "$BIN" || fail "build (no $BIN)"
{
  echo "name=$NAME"
  echo "version=$VERSION"
  echo "cc=$CC_PATH"
  echo "source=$SRC"
  echo "binary=$BIN"
  echo "seconds=$secs"
  echo "key=$KEY"
} >"$OUT/build-info"
echo "$PROG: $NAME $VERSION built with $CC_ARG in ${secs} s: $BIN" >&2
echo "$BIN"
