#!/usr/bin/env bash
# Runs mcr's tests on a fresh machine: installs what is missing from Debian's
# packages, builds, and runs ctest.
#
#   scripts/test.sh              all tests: pass, unit, cli, e2e, quiesce, then real servers
#   scripts/test.sh --fast       all but the real-server label (a few minutes)
#   scripts/test.sh -L LABEL     only that ctest label (pass, unit, cli, e2e, quiesce, real)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${MCR_BUILD:-$top/build}

labels=()
fast=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1 ;;
    -L) labels+=("$2"); shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

"$top/scripts/setup.sh"
start=$(date +%s)
cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" >/dev/null
echo "test.sh: built in $(( $(date +%s) - start )) s"

cd "$build"
if [ ${#labels[@]} -gt 0 ]; then
  for l in "${labels[@]}"; do ctest --output-on-failure -L "^$l\$"; done
elif [ $fast -eq 1 ]; then
  ctest --output-on-failure -LE '^real$'
else
  # Fast labels first, so a failure there shows before the long real-server runs.
  ctest --output-on-failure -LE '^real$'
  ctest --output-on-failure -L '^real$'
fi
