#!/bin/sh
# cli-report.sh SCRATCH-DIR - 'mcr-ctl report' on report files written by mcr-ctl's
# own writer (test-report): every field in the human rendering, the JSON parses and
# gives back every value, and every bad file (missing, empty, not a report,
# truncated, corrupt, newer schema) exits 2 with one line naming the file and what
# is wrong; the writer says which file and step failed.
. "$(dirname "$0")/cli-lib.sh"
need MCR_CTL TEST_REPORT PYTHON

"$TEST_REPORT" full full.report || fail "test-report full"
"$TEST_REPORT" minimal minimal.report || fail "test-report minimal"

# --- the human rendering
TZ=UTC "$MCR_CTL" report full.report >full.txt 2>err.txt
rc=$?
[ "$rc" -eq 0 ] || fail "report full.report: exit $rc: $(cat err.txt)"
[ -s err.txt ] && fail "report full.report: stderr: $(cat err.txt)"
while IFS= read -r want; do
  [ -n "$want" ] || continue
  grep -qF -- "$want" full.txt || fail "human rendering lacks '$want'"
done <<'EOF'
mcr update report (schema 1, written by mcr 9.8.7)
program:       /srv/kv/kvstore-v1
old process:   4242
new binary:    /srv/kv/kvstore-v2
new process:   4343 (killed)
when:          2023-11-14 22:13:20 +0000
outcome:       rolled back: the old version serves on, untouched
pause:         12.345 ms (the whole update: 0.679 s)
conflicts (3):
  1. [type] struct conn changed: field 'fd' is now a pointer (été)
     object:       heap object 0x7f0012345678 (48 bytes)
     old type:     struct conn (48 bytes)
     new type:     struct conn (56 bytes)
     old location: kvstore.c:41
     new location: kvstore.c:44:3
     stack:        main > accept_conn > new_conn
     fix:          keep 'fd' an int, or write a transformer for struct conn
  2. [crash] the new version was killed by signal 9 (Killed)
  3. [startup] bind: the old version made bind(5, 127.0.0.1:80) here
     object:       bind(5, 127.0.0.2:80)
     stack:        main > init_server
     fix:          bind the same address
notes (2):
  - startup replay: 6 calls replayed
  - a "quoted" note \ with a backslash
phases:
  startup            20.021 ms  new version started, startup replayed, threads parked
  quiesce             0.322 ms
EOF
[ "$fails" -eq 0 ] && echo "ok - human rendering: header, 3 conflicts with every field, notes, phases"

# --- JSON: valid, and every value back
"$MCR_CTL" report full.report --json >full.json 2>err.txt || fail "report --json: $(cat err.txt)"
"$PYTHON" -m json.tool full.json >/dev/null || fail "report --json is not valid JSON: $(cat full.json)"
"$PYTHON" - full.json <<'EOF' || fail "report --json: values"
import json, sys
r = json.load(open(sys.argv[1], encoding="utf-8"))
want = {
    "schema_version": 1, "created": 1700000000, "old_pid": 4242, "new_pid": 4343,
    "program": "/srv/kv/kvstore-v1", "new_binary": "/srv/kv/kvstore-v2", "committed": False,
    "pause_us": 12345, "total_us": 678901, "mcr_version": "9.8.7",
    "notes": ["startup replay: 6 calls replayed", 'a "quoted" note \\ with a backslash'],
    "phases": [
        {"name": "startup", "us": 20021, "detail": "new version started, startup replayed, threads parked"},
        {"name": "quiesce", "us": 322, "detail": ""}],
    "conflicts": [
        {"kind": "type", "message": "struct conn changed: field 'fd' is now a pointer (\u00e9t\u00e9)",
         "object": "heap object 0x7f0012345678 (48 bytes)", "old_type": "struct conn (48 bytes)",
         "new_type": "struct conn (56 bytes)", "old_location": "kvstore.c:41",
         "new_location": "kvstore.c:44:3", "stack": "main > accept_conn > new_conn",
         "fix": "keep 'fd' an int, or write a transformer for struct conn"},
        {"kind": "crash", "message": "the new version was killed by signal 9 (Killed)",
         "object": "", "old_type": "", "new_type": "", "old_location": "", "new_location": "",
         "stack": "", "fix": ""},
        {"kind": "startup", "message": "bind: the old version made bind(5, 127.0.0.1:80) here",
         "object": "bind(5, 127.0.0.2:80)", "old_type": "", "new_type": "", "old_location": "",
         "new_location": "", "stack": "main > init_server", "fix": "bind the same address"}],
}
bad = [k for k in want if r.get(k) != want[k]] + [k for k in r if k not in want]
for k in bad:
    print("%s: got %r, want %r" % (k, r.get(k), want.get(k)))
sys.exit(1 if bad else 0)
EOF
[ "$fails" -eq 0 ] && echo "ok - --json: valid JSON, every field of the report back"

# --- a report with nothing but its schema
"$MCR_CTL" report minimal.report >minimal.txt 2>err.txt || fail "report minimal.report: $(cat err.txt)"
grep -qF "conflicts (0):" minimal.txt && grep -qF "new process:   none (not started)" minimal.txt ||
  fail "minimal report: $(cat minimal.txt)"
"$MCR_CTL" report minimal.report --json | "$PYTHON" -m json.tool >/dev/null ||
  fail "minimal report: --json is not valid JSON"
echo "ok - a report with every optional field absent renders"

# --- bad files
expect_error "missing file" "report: missing.report: No such file or directory" report missing.report
: >empty.report
expect_error "empty file" "report: empty.report: empty file, not an mcr report" report empty.report
echo '{"pid": 1, "committed": false}' >old.json
expect_error "not a report (JSON)" \
  "report: old.json: not an mcr report (it does not start with \"MCRREPT1\")" report old.json
printf 'MCRREPT2%012d' 0 >othermagic.report
expect_error "another magic" "othermagic.report: not an mcr report" report othermagic.report
mkdir adir
expect_error "directory" "report: adir: Is a directory" report adir
head -c 4 full.report >magic4.report
expect_error "truncated in the magic" "magic4.report: truncated: 4 bytes, shorter than the 20-byte header" \
  report magic4.report
head -c 12 full.report >header12.report
expect_error "truncated header" "header12.report: truncated: 12 bytes, shorter than the 20-byte header" \
  report header12.report
size=$(wc -c <full.report)
head -c $((size - 5)) full.report >short.report
expect_error "truncated payload" "short.report: truncated: the header announces a payload of $((size - 20)) bytes, the file has $((size - 25)) after the header" \
  report short.report
{ cat full.report; printf 'xyz'; } >long.report
expect_error "trailing bytes" "long.report: corrupt: 3 bytes after the $((size - 20))-byte payload" \
  report long.report
"$PYTHON" -c '
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[40] ^= 0x55
open(sys.argv[2], "wb").write(b)' full.report flipped.report
expect_error "changed byte (CRC)" "flipped.report: corrupt: the payload's CRC-32 is" report flipped.report
"$TEST_REPORT" garbage garbage.report || fail "test-report garbage"
expect_error "payload not a Report" "garbage.report: corrupt: the payload (7 bytes) does not decode as a report" \
  report garbage.report
"$TEST_REPORT" mismatch mismatch.report || fail "test-report mismatch"
expect_error "schema of header and payload differ" \
  "mismatch.report: corrupt: the header says schema 1, the report 7" report mismatch.report
"$TEST_REPORT" newer newer.report || fail "test-report newer"
expect_error "newer schema" "newer.report: written by a newer mcr (schema 2; this mcr reads 1)" \
  report newer.report --json
printf 'MCRREPT1\000\000\000\000\000\000\000\000\000\000\000\000' >schema0.report
expect_error "schema 0" "schema0.report: corrupt: schema version 0" report schema0.report
printf 'MCRREPT1\001\000\000\000\377\377\377\377\000\000\000\000' >huge.report
expect_error "absurd length" "huge.report: corrupt: the header announces a payload of 4294967295 bytes" \
  report huge.report

# --- every truncation, and every payload byte changed with the CRC made right again
# (so that the protobuf decoder sees it): exit 0 or 2, never a crash
"$PYTHON" - full.report "$MCR_CTL" <<'EOF' || fail "fuzz: see above"
import subprocess, sys, zlib
data = open(sys.argv[1], "rb").read()
cases = [data[:n] for n in range(len(data))]
for i in range(20, len(data)):
    b = bytearray(data)
    b[i] ^= 0xa5
    b[16:20] = zlib.crc32(bytes(b[20:])).to_bytes(4, "little")
    cases.append(bytes(b))
bad = 0
for k, c in enumerate(cases):
    open("fuzz.report", "wb").write(c)
    p = subprocess.run([sys.argv[2], "report", "fuzz.report", "--json"], capture_output=True)
    if p.returncode not in (0, 2) or (p.returncode == 2 and p.stderr.count(b"\n") != 1):
        print("case %d: exit %d, stderr %r" % (k, p.returncode, p.stderr[:200]))
        bad += 1
print("ok - fuzz: %d truncated or changed reports, each exit 0 or 2 with one line" % len(cases))
sys.exit(1 if bad else 0)
EOF

# --- usage
expect_error "no FILE" "report: missing FILE" report
expect_error "unknown option" "report: unknown option '--frobnicate'" report full.report --frobnicate
expect_error "two files" "report: too many arguments" report full.report minimal.report
"$MCR_CTL" report --help >help.txt 2>&1 && grep -qF "Usage: mcr-ctl report FILE [--json]" help.txt ||
  fail "report --help: $(cat help.txt)"
"$MCR_CTL" --help | grep -qF "report FILE [--json]" || fail "mcr-ctl --help does not list report"
echo "ok - report --help; listed in mcr-ctl --help"

# --- the writer: atomic (a temporary file renamed), failures name the file and errno
mkdir out
"$TEST_REPORT" write-to out/r.report >w.txt || fail "write-to out/r.report: $(cat w.txt)"
"$TEST_REPORT" write-to out/r.report >w.txt || fail "write-to over an existing report: $(cat w.txt)"
[ "$(ls out)" = "r.report" ] || fail "after two writes out/ holds: $(ls out)"
cmp -s out/r.report full.report || fail "the rewritten report differs from full.report"
"$TEST_REPORT" write-to nodir/r.report >w.txt && fail "write-to nodir/r.report succeeded"
grep -qE "^cannot write the report nodir/r.report: open nodir/r.report.tmp.[0-9]+: No such file or directory$" w.txt ||
  fail "write-to nodir/: $(cat w.txt)"
mkdir adir2 adir2/r.report
"$TEST_REPORT" write-to adir2/r.report >w.txt && fail "write-to over a directory succeeded"
grep -qE "^cannot write the report adir2/r.report: rename from adir2/r.report.tmp.[0-9]+: Is a directory$" w.txt ||
  fail "write-to over a directory: $(cat w.txt)"
[ "$(ls adir2)" = "r.report" ] || fail "a failed rename left: $(ls adir2)"
echo "ok - writer: replaces atomically, names the file, step and errno on failure"

finish
