#!/usr/bin/env bash
# Which source an mcr build directory was configured from, for the benchmarks'
# records: the source directory (CMakeCache.txt) and, if it is a git checkout,
# its commit (with "+changes" when the work tree differs from it), or the
# commit named in a .commit file there (a `git archive` export).
#
#   benchmarks/quiescence/build-source.sh BUILD
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)
if [ -z "$src" ]; then echo "unknown source"; exit 0; fi
if c=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
  git -C "$src" diff --quiet HEAD -- 2>/dev/null || c="$c+changes"
  echo "$src at $c"
elif [ -f "$src/.commit" ]; then
  echo "$src (export of $(cat "$src/.commit"))"
else
  echo "$src (not a git checkout)"
fi
