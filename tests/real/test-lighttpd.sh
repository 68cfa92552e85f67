#!/usr/bin/env bash
# Builds lighttpd 1.4.69 plain (clang-16) and instrumented (mcr-clang), runs
# lighttpd's own meson test suite on both and compares the results.
# Options and environment: see tests/real/lib.sh (--mcr-clang PATH, --plain-only).
#
# The whole suite (`meson test`: unit tests test_common/test_configfile/test_mod,
# then request.t, core-condition.t, mod-fastcgi.t, mod-scgi.t against a running
# lighttpd on an ephemeral 127.0.0.1 port); every TAP case is compared.
SERVER=lighttpd
VERSION=${MCR_LIGHTTPD_VERSION:-1.4.69}
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mcr_binaries() { echo "$1/build/src/lighttpd"; }

run_suite() {
  local kind=$1 out=$2 results=$3 rc=0
  rm -f "$out/build/meson-logs/testlog.json"
  log "meson test ($kind), log $out/meson-test.log"
  run_group 600 "$out/meson-test.log" \
    meson test -C "$out/build" --no-rebuild --num-processes 1 --timeout-multiplier 4 || rc=$?
  [ "$rc" -eq 0 ] || log "meson test ($kind) exited $rc"
  # One line per meson test and per TAP case of the .t tests.
  python3 - "$out/build/meson-logs/testlog.json" >"$results" <<'PY' || true
import json, re, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    sys.exit(0)
for line in lines:
    t = json.loads(line)
    name, res = t["name"], t["result"]
    st = {"OK": "PASS", "EXPECTEDFAIL": "PASS", "SKIP": "SKIP"}.get(res, "FAIL")
    print(f"{st}\t{name}")
    for l in t.get("stdout", "").splitlines():
        m = re.match(r"(not )?ok (\d+)", l)
        if not m:
            continue
        if re.search(r"#\s*(skip|todo)", l, re.I):
            s = "SKIP"
        else:
            s = "FAIL" if m.group(1) else "PASS"
        print(f"{s}\t{name} #{m.group(2)}")
PY
  return 0
}

real_main "$@"
