#!/usr/bin/env bash
# Conflict reports of rolled-back updates (label "update", test update-report): the
# example server tests/servers/kvstore.c built through the pipeline (profile ->
# config -> production builds), then:
#   crash      MCR_UPDATE_FAULT=heap:crash: exit 1; the report file (--report) is
#              read by mcr-ctl report: kind crash, the signal in the message, a fix,
#              program and new binary, outcome; --json the same; mcr-ctl update --json
#              has conflicts[].kind; the default report path /tmp/mcr-update-PID-*.report
#   startup    version 6, whose startup calls listen() with another backlog: kind
#              startup, the call as the object, the stack, a fix
#   narrowing  version 4, whose stats.commands is one byte, after 300 commands: kind
#              narrowing, naming the field and the global
# and the old process serves its keys after each.
#
#   report.sh BUILD_DIR
# On failure the work directory is kept and its path printed.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
prof="$build/bin/mcr-profile"
ctl="$build/bin/mcr-ctl"
client="$src/kvclient.py"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-update-report.XXXXXX")
cflags=(-O2 -g -Wall -Wextra -Werror)
pids=()
keep=0
cleanup() {
  local rc=$?
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # an update that committed when it should not have: its new process
  [ -s "$work/pidfile" ] && kill -9 "$(cat "$work/pidfile")" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ $keep = 1 ]; then echo "files kept in $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -s "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  keep=1
  exit 1
}
ok() { echo "ok: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }

# the pipeline, as run.sh: profile, then the versions with its config
mkdir -p "$work/prof" "$work/v1" "$work/v2" "$work/v4" "$work/v6"
"$mcc" --mcr-profile "${cflags[@]}" -o "$work/prof/kvstore" "$top/tests/servers/kvstore.c" ||
  fail "profiling build"
port=$(free_port)
"$prof" -o "$work/kvstore.qp" --duration 3 -- "$work/prof/kvstore" -p "$port" >"$work/profile.log" 2>&1 &
p=$!
python3 "$client" fill "$port" 200 || fail "load while profiling"
wait "$p" || fail "mcr-profile"
for v in 1 2 4 6; do
  "$mcc" --mcr-quiescence="$work/kvstore.qp" "${cflags[@]}" -DKV_VERSION=$v -o "$work/v$v/kvstore" \
    "$top/tests/servers/kvstore.c" || fail "production build of version $v"
done
ok "kvstore versions 1, 2, 4 (a narrowed counter) and 6 (another listen backlog) built"

port=$(free_port)
"$work/v1/kvstore" -p "$port" -f "$work/pidfile" >>"$work/server.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do [ -s "$work/pidfile" ] && break; sleep 0.05; done
[ -s "$work/pidfile" ] || fail "the server did not start"
python3 "$client" fill "$port" 300 || fail "fill"

# rolled_back NAME NEW [ARGS]: mcr-ctl update exits 1, the old process serves
rolled_back() {
  local name=$1 new=$2 rc=0
  shift 2
  "$ctl" update "$pid" "$new" "$@" >"$work/$name.out" 2>"$work/$name.log" || rc=$?
  [ $rc = 1 ] || { cat "$work/$name.out"; fail "$name: mcr-ctl update exited $rc, expected 1"; }
  alive "$pid" || fail "$name: the old process died"
  python3 "$client" check "$port" 300 1 >/dev/null || fail "$name: keys after the rollback"
}

# check_json NAME FILE PYTHON-CONDITIONS: each line of conditions must hold for r,
# the JSON in FILE (j: its conflicts of the kind asked)
check_json() {
  local name=$1 file=$2 cond=$3
  python3 - "$file" "$cond" <<'EOF' || { cat "$file"; fail "$name: JSON check"; }
import json, sys
r = json.load(open(sys.argv[1]))
for c in sys.argv[2].strip().splitlines():
    if not eval(c.strip()):
        print("not true:", c.strip())
        sys.exit(1)
EOF
}

# 1. the new version crashes in the transfer
MCR_UPDATE_FAULT=heap:crash rolled_back crash "$work/v2/kvstore" --report "$work/crash.report" --json
check_json "update --json" "$work/crash.out" '
  r["committed"] is False and r["report"].endswith("crash.report")
  any(c["kind"] == "crash" and "killed by signal 9" in c["message"] for c in r["conflicts"])
  all(set(c) == {"kind","message","object","old_type","new_type","old_location","new_location","stack","fix"} for c in r["conflicts"])
  r["reasons"] == [c["message"] for c in r["conflicts"]]'
ok "mcr-ctl update --json: conflicts[].kind crash, the signal in the message"
[ -s "$work/crash.report" ] || fail "no report file $work/crash.report"
"$ctl" report "$work/crash.report" >"$work/crash.txt" 2>"$work/report.log" ||
  fail "mcr-ctl report exited $?"
for want in "program:       $work/v1/kvstore" "old process:   $pid" \
  "new binary:    $work/v2/kvstore" "outcome:       rolled back" "[crash]" \
  "killed by signal 9" "fix:" "phases:" "startup"; do
  grep -qF -- "$want" "$work/crash.txt" || { cat "$work/crash.txt"; fail "no '$want' in mcr-ctl report"; }
done
ok "mcr-ctl report: program, pids, outcome, [crash] with the signal and a fix, phases"
"$ctl" report "$work/crash.report" --json >"$work/crash.json" || fail "mcr-ctl report --json"
check_json "report --json" "$work/crash.json" "
  r['schema_version'] == 1 and r['old_pid'] == $pid and r['new_pid'] > 0
  r['program'] == '$work/v1/kvstore' and r['new_binary'] == '$work/v2/kvstore'
  r['committed'] is False and r['created'] > 1700000000 and r['total_us'] > 0
  any(c['kind'] == 'crash' and 'killed by signal 9' in c['message'] and c['fix'] for c in r['conflicts'])
  [p['name'] for p in r['phases']][:1] == ['startup']"
ok "mcr-ctl report --json: the same fields"

# the default report path
MCR_UPDATE_FAULT=startup:crash rolled_back default "$work/v2/kvstore"
def=$(sed -n 's/^report: \([^ ]*\) .*/\1/p' "$work/default.out")
case "$def" in
/tmp/mcr-update-"$pid"-*.report) ;;
*) cat "$work/default.out"; fail "default report path '$def'" ;;
esac
[ -s "$def" ] || fail "no default report $def"
"$ctl" report "$def" | grep -qF "[crash]" || { rm -f "$def"; fail "the default report has no crash"; }
rm -f "$def"
ok "default report: $def, kind crash"

# 2. a startup that differs: listen(fd, 64) where the old made listen(fd, 128)
rolled_back startup "$work/v6/kvstore" --report "$work/startup.report"
grep -qF "[startup] listen: the old version made listen(" "$work/startup.out" ||
  { cat "$work/startup.out"; fail "mcr-ctl update does not print the startup conflict"; }
"$ctl" report "$work/startup.report" >"$work/startup.txt" || fail "mcr-ctl report (startup)"
for want in "[startup] listen: the old version made listen(" ", 128) here, the new makes listen(" \
  "object:       listen(" "stack:        main" "fix:          the new version's startup must make the same listen"; do
  grep -qF -- "$want" "$work/startup.txt" || { cat "$work/startup.txt"; fail "no '$want' in mcr-ctl report"; }
done
ok "mcr-ctl report: [startup] listen conflict, the call, the stack, a fix"
"$ctl" report "$work/startup.report" --json >"$work/startup.json" || fail "mcr-ctl report --json (startup)"
check_json "report --json (startup)" "$work/startup.json" '
  [c["kind"] for c in r["conflicts"]] == ["startup"]
  r["conflicts"][0]["object"].startswith("listen(") and r["conflicts"][0]["object"].endswith(", 64)")
  r["conflicts"][0]["stack"].startswith("main") and "(at " not in r["conflicts"][0]["message"]
  r["conflicts"][0]["fix"] != ""'
ok "mcr-ctl report --json: conflicts[0].kind startup, object listen(.., 64), stack"
sed 's/^/  /' "$work/startup.txt"

# 3. a value that does not fit its new type: stats.commands (> 255) as one byte
rolled_back narrowing "$work/v4/kvstore" --report "$work/narrowing.report"
"$ctl" report "$work/narrowing.report" --json >"$work/narrowing.json" || fail "mcr-ctl report --json (narrowing)"
check_json "report --json (narrowing)" "$work/narrowing.json" '
  any(c["kind"] == "narrowing" and "commands" in c["message"] and "stats" in c["object"] for c in r["conflicts"])'
"$ctl" report "$work/narrowing.report" | grep -qF "[narrowing] " || fail "mcr-ctl report (narrowing)"
ok "mcr-ctl report: [narrowing] commands, global stats"
echo "PASS: report"
