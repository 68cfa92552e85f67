#!/bin/sh
# cli-output.sh SCRATCH-DIR - 'mcr-ctl types' output, human and JSON, on a plain binary
# given a hand-built two-module mcr_types section (see test-typetab.c, write_section).
. "$(dirname "$0")/cli-lib.sh"
need MCR_CTL TEST_TYPETAB CLANG OBJCOPY PYTHON

make_fake fake

"$MCR_CTL" types fake >human.txt 2>err.txt || fail "types: exit $?: $(cat err.txt)"
[ -s err.txt ] && fail "types: printed on stderr: $(cat err.txt)"
for want in "Allocation sites (7)" "struct sdshdr8 (with flexible array member)" \
  "char []" "void (*[4])(void)" "static local in main(), symbol main.counter" \
  "static, thread-local" "- (no type: result only passed to a function)" \
  "allocation sites: 7, typed 4, untyped 3 (57.1% coverage)" \
  "2  result only passed to a function" "in module kinds.c" 'we"ird\dir/t\tab\n.c:5'; do
  grep -qF -- "$want" human.txt || fail "human output lacks '$want'"
done
tail -1 human.txt | grep -q "globals:" || fail "the summary is not at the end"
cat human.txt

"$MCR_CTL" types --json fake >out.json 2>err.txt || fail "types --json: exit $?"
"$PYTHON" - out.json <<'PY' || fail "JSON checks"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
def check(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)
s, g, m = d["sites"], d["globals"], d["summary"]
check(len(s) == 7 and m["sites"] == 7 and m["typed"] == 4 and m["untyped"] == 3, "counts")
check(abs(m["coverage"] - 4 / 7) < 1e-3, "coverage %r" % m["coverage"])
check(m["untyped_reasons"][0] == {"reason": "result only passed to a function", "count": 2}, "reasons")
by = {(x["file"], x["line"]): x for x in s}
c = by[("server.c", 42)]
check(c["type"] == "struct client" and c["shape"] == "single" and c["reason"] is None
      and c["function"] == "client_new" and c["callee"] == "malloc", "malloc'd struct %r" % c)
c = by[("server.c", 57)]
check(c["type"] == "char []" and c["element_type"] == "char" and c["shape"] == "array", "char buffer %r" % c)
c = by[("sds.c", 10)]
check(c["type"] == "struct sdshdr8" and c["shape"] == "flex", "flex %r" % c)
c = by[("util.c", 99)]
check(c["type"] is None and c["shape"] is None and c["reason"] == "result only passed to a function", "untyped %r" % c)
# escaping: quotes, backslashes, tab, newline, control characters, UTF-8
c = by[('we"ird\\dir/t\tab\n.c', 5)]
check(c["type"] == "struct odd\x01name\x7f" and c["function"] == "f\u00e9", "escaping %r" % c)
names = [x["name"] for x in g]
check(names.count("shared") == 2, "a global in two modules is listed twice")
gl = {x["name"]: x for x in g}
check(gl["counter"]["flags"] == ["static", "static_local"] and gl["counter"]["scope"] == "main"
      and gl["counter"]["symbol"] == "main.counter", "static local %r" % gl["counter"])
check("thread_local" in gl["tls_buf"]["flags"] and gl["tls_buf"]["type"] == "char [16]", "tls")
check(gl["handlers"]["type"] == "void (*[4])(void)", "handlers")
check(gl["opaque"]["type"] is None and gl["server"]["type"] == "struct client", "types")
check(len(d["modules"]) == 2 and d["modules"][0]["module"] == "kinds.c", "modules")
print("json ok")
PY

"$MCR_CTL" types --json --sites-only fake >sites.json || fail "--sites-only: exit $?"
"$MCR_CTL" types --json --globals-only fake >globals.json || fail "--globals-only: exit $?"
"$PYTHON" -c '
import json, sys
s = json.load(open("sites.json")); g = json.load(open("globals.json"))
sys.exit(0 if "sites" in s and "globals" not in s and "globals" in g and "sites" not in g else 1)
' || fail "--sites-only/--globals-only JSON"
"$MCR_CTL" types --sites-only fake >h.txt && ! grep -q "^Globals" h.txt && grep -q "^Allocation" h.txt ||
  fail "--sites-only human output"
finish
