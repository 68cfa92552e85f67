#!/usr/bin/env bash
# Type coverage on the real servers: builds each with mcr-clang and its wrapper
# config (configs/NAME.wrappers), then counts allocation sites with a concrete type
# in the executable and every instrumented shared object it built (lighttpd's
# modules), with the reasons for the rest.
#
#   benchmarks/coverage/run.sh [--servers redis,lighttpd,memcached,nginx] [--build DIR]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MCR_CACHE:-$HOME/.cache/mcr}
servers=redis,lighttpd,memcached,nginx
build=$top/build
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) servers=$2; shift ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "coverage: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
declare -A version=([redis]=7.0.15 [lighttpd]=1.4.69 [memcached]=1.6.18 [nginx]=1.22.1)
IFS=, read -r -a list <<< "$servers"
for s in "${list[@]}"; do
  [ -n "${version[$s]:-}" ] || { echo "coverage: unknown server '$s'" >&2; exit 2; }
  out=$cache/coverage/$s
  bin=$(MCR_WRAPPERS=$top/configs/$s.wrappers "$top/scripts/build-server.sh" "$s" "${version[$s]}" \
        --cc "$build/bin/mcr-clang" --out "$out" | tail -1)
  # the executable, then any instrumented shared objects beside it
  files=("$bin")
  while IFS= read -r so; do
    readelf -S "$so" 2>/dev/null | grep ' mcr_types ' >/dev/null && files+=("$so")
  done < <(find "$(dirname "$bin")" -maxdepth 1 -name '*.so' | sort)
  for f in "${files[@]}"; do "$build/bin/mcr-ctl" types --json "$f"; done |
    python3 "$top/benchmarks/coverage/summarize.py" "$s ${version[$s]}" "${#files[@]}"
done
