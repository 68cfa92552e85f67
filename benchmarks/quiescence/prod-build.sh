#!/usr/bin/env bash
# The production variant (built with its quiescence config) of a real server, for
# the benchmarks: made by scripts/profile-server.sh into
# ${MCR_CACHE:-~/.cache/mcr}/bench/qp/NAME-VERSION (DIR/NAME.qp, DIR/prod) and
# reused while it is newer than mcr's runtime and pass in BUILD.
#
#   benchmarks/quiescence/prod-build.sh NAME VERSION --build BUILD [--force]
#
# Prints the production binary's path on stdout (progress on stderr).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MCR_CACHE:-$HOME/.cache/mcr}
name="" version="" build="" force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift ;;
    --force) force=1 ;;
    -*) echo "prod-build: unknown option '$1'" >&2; exit 2 ;;
    *) if [ -z "$name" ]; then name=$1; elif [ -z "$version" ]; then version=$1; else
         echo "prod-build: unexpected argument '$1'" >&2; exit 2; fi ;;
  esac
  shift
done
[ -n "$name" ] && [ -n "$version" ] && [ -n "$build" ] ||
  { echo "usage: $0 NAME VERSION --build BUILD [--force]" >&2; exit 2; }
mcc=$build/bin/mcr-clang
[ -x "$mcc" ] || { echo "prod-build: $mcc not found: build mcr first (cmake + ninja)" >&2; exit 2; }
dir=$cache/bench/qp/$name-$version
info=$dir/prod/build-info
if [ "$force" -eq 0 ] && [ -f "$info" ] && [ -f "$dir/$name.qp" ] &&
   [ "$info" -nt "$build/lib/mcr/libmcr_rt.a" ] && [ "$info" -nt "$build/lib/mcr/MCRPass.so" ] &&
   [ "$(sed -n 's/^cc=//p' "$info")" = "$(cd "$(dirname "$mcc")" && pwd)/mcr-clang" ]; then
  bin=$(sed -n 's/^binary=//p' "$info")
  if [ -x "$bin" ]; then
    echo "prod-build: reusing $bin (config $dir/$name.qp)" >&2
    echo "$bin"
    exit 0
  fi
fi
[ -x "$top/scripts/profile-server.sh" ] ||
  { echo "prod-build: scripts/profile-server.sh not found: pass a production build with --prod NAME=BINARY" >&2; exit 2; }
echo "prod-build: profiling $name $version and building its production variant into $dir" >&2
mkdir -p "$dir"
"$top/scripts/profile-server.sh" "$name" "$version" --cc "$mcc" --out "$dir" | tail -1
