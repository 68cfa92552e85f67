#!/usr/bin/env bash
# Runs mcr's tests on a fresh machine: installs what is missing from Debian's
# packages, builds, and runs ctest.
#
#   scripts/test.sh              all tests: pass, unit, cli, e2e, quiesce, startup, image,
#                                update, then real servers (real, real-quiesce, real-update)
#   scripts/test.sh --fast       all but the real-server labels (a few minutes)
#   scripts/test.sh -L LABEL     only that ctest label (pass, unit, cli, e2e, quiesce,
#                                startup, image, update, real, real-quiesce, real-update)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${MCR_BUILD:-$top/build}

labels=()
fast=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1 ;;
    -L) labels+=("$2"); shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  ctest --output-on-failure -LE '^real(-quiesce|-update|-pending)?$'
else
  # Fast labels first, so a failure there shows before the long real-server runs;
  # then the real servers' suites, their quiescence, their live update (each runs
  # even if an earlier one fails; ctest prints each test's time).
  ctest --output-on-failure -LE '^real(-quiesce|-update|-pending)?$'
  rc=0
  for l in real real-quiesce real-update; do
    s=$(date +%s)
    ctest --output-on-failure -L "^$l\$" || rc=1
    echo "test.sh: label $l took $(( $(date +%s) - s )) s"
  done
  exit "$rc"
fi
