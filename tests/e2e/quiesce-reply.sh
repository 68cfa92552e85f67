#!/usr/bin/env bash
# quiesce-reply.sh BUILD_DIR
#
# A quiesce's reply means the process is ready for the next quiesce: a client
# that asks again as soon as it has the reply (mcr-ctl quiesce in a loop) must
# not be refused as "another quiesce is in progress".
#
# The quiesce worker used to clear its "in progress" flag only after sending the
# reply and cleaning up; on a loaded machine the next mcr-ctl could connect in
# between (3 of 100 quiesces of memcached under load were refused). Here the
# window is held open for certain: under gdb (non-stop mode), the worker of the
# first quiesce stops at a breakpoint in mcr_qresult_free, which it calls after
# sending its reply; the second quiesce must then still succeed.
#
# Exit 77 (skipped) when gdb is not installed or cannot run the program.
set -euo pipefail
build=$1
mcc=$build/bin/mcr-clang
ctl=$build/bin/mcr-ctl
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-e2e-quiesce-reply.XXXXXX")
trap 'rm -rf "$work"' EXIT

if ! command -v gdb >/dev/null; then
  echo "SKIP: gdb is not installed (scripts/setup.sh installs it)"
  exit 77
fi

# One thread waiting in poll on a pipe nobody writes to: one quiescent point.
cat >"$work/idle.c" <<'EOF'
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

static void serve(int fd)
{
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    char b[64];
    if (poll(&p, 1, -1) > 0 && read(fd, b, sizeof(b)) <= 0)
      return;
  }
}

int main(int argc, char **argv)
{
  int p[2];
  FILE *f;

  if (argc != 2 || pipe(p) != 0 || !(f = fopen(argv[1], "w")))
    return 1;
  fprintf(f, "%d\n", (int)getpid());
  fclose(f);
  serve(p[0]);
  return 0;
}
EOF
printf 'mcr-quiescence 1\nprogram idle\n\nclass main\nqp main > serve > poll\n' >"$work/idle.qp"
"$mcc" -O2 --mcr-quiescence="$work/idle.qp" -o "$work/idle" "$work/idle.c"

# gdb reads its commands from this pipe and handles the program's events while
# it waits for the next one; the quiesces run between the commands. The
# runtime's signal must pass through gdb unseen (handle all).
{
  echo 'set non-stop on'
  echo 'set pagination off'
  echo 'set confirm off'
  echo 'handle all nostop noprint pass'
  echo 'break mcr_qresult_free'
  echo "run $work/ready &"
  for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
  if [ -s "$work/ready" ]; then
    pid=$(cat "$work/ready")
    rc=0; timeout 20 "$ctl" quiesce "$pid" --json >"$work/q1.json" 2>"$work/q1.err" || rc=$?
    echo "$rc" >"$work/q1.rc"
    # the first worker has sent its reply; give it the time to reach the breakpoint
    sleep 0.5
    rc=0; timeout 20 "$ctl" quiesce "$pid" --json >"$work/q2.json" 2>"$work/q2.err" || rc=$?
    echo "$rc" >"$work/q2.rc"
  fi
  echo 'info threads'
  echo 'kill'
  echo 'quit'
} | timeout -k 5 90 gdb -q -nx "$work/idle" >"$work/gdb.log" 2>&1 || true

if [ ! -s "$work/ready" ]; then
  echo "SKIP: the program did not start under gdb (ptrace not permitted here?); gdb said:"
  tail -n 20 "$work/gdb.log"
  exit 77
fi
fail() {
  echo "FAIL: $*"
  echo "--- gdb:"; tail -n 30 "$work/gdb.log"
  for f in q1 q2; do echo "--- $f: exit $(cat "$work/$f.rc" 2>/dev/null)"; cat "$work/$f.err" "$work/$f.json" 2>/dev/null; done
  exit 1
}
quiesced() {
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["quiesced"] else 1)' "$1" 2>/dev/null
}
[ "$(cat "$work/q1.rc")" = 0 ] && quiesced "$work/q1.json" || fail "the first quiesce did not succeed"
# the test holds the window open only if the first worker did stop after its reply
grep -q '"mcr-quiesce" mcr_qresult_free' "$work/gdb.log" ||
  fail "the first quiesce's worker did not stop in mcr_qresult_free (nothing was tested)"
[ "$(cat "$work/q2.rc")" = 0 ] && quiesced "$work/q2.json" ||
  fail "a quiesce asked for right after the reply to the previous one was refused: $(cat "$work/q2.err")"
echo "ok: a second quiesce right after the first one's reply (its worker still cleaning up) succeeds"
