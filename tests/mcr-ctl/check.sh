#!/bin/sh
# check.sh SCRATCH-DIR - 'mcr-ctl check OLD NEW': two versions of check-prog.c built by
# mcr-clang (v1; v2 with -DV2, one change of each kind), the human output and --json
# name each change, exit 1 when a transfer would be refused, 0 when none would, 2 for
# every bad input with one line on stderr. Skipped (77) until build/bin/mcr-clang exists.
. "$(dirname "$0")/cli-lib.sh"
need MCR_CTL PYTHON TEST_TYPETAB OBJCOPY STRIP CLANG
if ! [ -x "${MCR_CLANG_DRIVER:-}" ]; then
  echo "SKIP: mcr-clang not built yet (${MCR_CLANG_DRIVER:-unset})"
  exit 77
fi
SRC=$(dirname "$0")/check-prog.c

# The same source file name in both versions, as a program's two builds have.
mkdir v1 v2 v2ok v2hook
cp "$SRC" prog.c
build() { # DIR FLAGS...
  d=$1
  shift
  "$MCR_CLANG_DRIVER" -O1 "$@" prog.c -o "$d/prog" 2>"$d/build.log" ||
    { cat "$d/build.log"; fail "mcr-clang $*"; finish; }
}
build v1
build v2 -DV2
build v2ok -DV2 -DV2_SAFE
build v2hook -DV2 -DWITH_HOOKS
./v1/prog && ./v2/prog || fail "the test programs do not run"

# ---- human output: v1 -> v2 has one change that cannot be inferred ----
"$MCR_CTL" check v1/prog v2/prog >human.txt 2>err.txt
rc=$?
cat human.txt
[ "$rc" -eq 1 ] || fail "v1 -> v2: exit $rc, want 1 (a refused transfer): $(cat err.txt)"
[ -s err.txt ] && fail "v1 -> v2: stderr: $(cat err.txt)"
want() { # TEXT: a line of human.txt contains TEXT
  grep -qF -- "$1" human.txt || fail "human output lacks '$1'"
}
want_re() { # REGEX
  grep -qE -- "$1" human.txt || fail "human output lacks /$1/"
}
head -1 human.txt | grep -qF "8 globals and 2 allocation sites change type: 6 transformable (2 risky), 3 refused, 1 static table" ||
  fail "summary line: $(head -1 human.txt)"
want "1 pointer in OLD's initial data has no counterpart in NEW"
want "Refused (3): the update will be refused unless a transformation is registered"
want "global lim (prog.c:"
want "at v: the array shrinks and the elements it drops are not zero"
want "fix: keep the array's size in NEW, or give 'lim' another name there"
want "(a global: one that still holds its initial value keeps NEW's instead)"
want "Static tables (1): arrays initialized at build time; if the program never wrote one, NEW's value is kept"
want "global names (static) (prog.c:"
want "if the program wrote it: refused"
want "Pointers without a counterpart (1)"
want "global handlers+8 points to function on_stop (prog.c)+0: not in the new executable"
want "global bank (prog.c:"
want "heap objects of account_new() calloc (prog.c:"
want_re "at balance: .*int.*struct money"
want_re "struct account is declared at prog.c:[0-9]+"
want "fix: keep field 'balance' as int and add a field with another name for struct money, or add MCR_TRANSFORM_GLOBAL(bank) to NEW (mcr/transform.h)"
want "fix: keep field 'balance' as int and add a field with another name for struct money, or add MCR_TRANSFORM_TYPE(account) to NEW (mcr/transform.h)"
want "Transformable (6)"
want_re "moved +tag +char +offset 8 -> 0"
want_re "moved +x +int +offset 0 -> 8"
want_re "retyped +hits +int -> long +at offset 0$"
want_re "retyped +small +long -> int +at offset 8 +\[risky: the update refuses if a value does not fit\]"
want_re "retyped +\(whole object\) +enum state +values 0->1 1->2 2->0 +\[risky"
want_re "resized +\(whole object\) +int \[8\] -> int \[16\]"
want_re "added +flags +unsigned int +at offset 20"
want_re "added +owner +struct session \* +at offset 32 +\(starts NULL in the objects carried over: if NEW sets it only where it creates the object, it needs a transformation \(MCR_TRANSFORM_TYPE\)\)"
want "Review: 1 added pointer field of heap objects starts NULL in the objects carried over"
want_re "added +flags +unsigned int +at offset 20 +\(starts 0 in the objects carried over: if NEW sets it only where it creates the object \(a start time, a size, a flag\), it needs a transformation \(MCR_TRANSFORM_TYPE\)\)"
want "Review: 1 other added field of heap objects starts 0 in the objects carried over"
want "heap objects of session_new() malloc (prog.c:"
want_re "new global +v2_only: int \(prog.c:[0-9]+\): starts from its initial value"
want_re "removed global +v1_only: int \(prog.c:[0-9]+\): its value is lost"
want_re "removed site +counters_new\(\) malloc: struct counters \(prog.c:[0-9]+\): its live objects are kept, untyped"
want "1 allocation site without a type in either version"
want "The update would be refused (3 refused transfers, 1 pointer without a counterpart)"
grep -qE "items|total|calls" human.txt && fail "identical globals (typedef rename, statics) are listed"

# ---- JSON: the same content ----
"$MCR_CTL" check --json v1/prog v2/prog >out.json 2>err.txt
rc=$?
[ "$rc" -eq 1 ] || fail "--json v1 -> v2: exit $rc, want 1: $(cat err.txt)"
"$PYTHON" - out.json <<'PY' || fail "JSON checks"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
s = d["summary"]
check(d["refused"] is True, "refused: %r" % d["refused"])
check((s["changed_globals"], s["changed_sites"], s["transformable"], s["risky"], s["refused"],
       s["static_tables"], s["image_pointers"]) == (8, 2, 6, 2, 3, 1, 1), "summary: %r" % s)
check(s["globals"]["identical"] == 4 and s["globals"]["new"] == 1 and s["globals"]["removed"] == 1,
      "globals summary: %r" % s["globals"])
check(s["sites"]["paired"] == 3 and s["sites"]["untyped"] == 1 and s["sites"]["removed"] == 1,
      "sites summary: %r" % s["sites"])

def by_name(lst):
    return {(x["function"] if x["kind"] == "site" else x["name"]): x for x in lst}
conf = by_name(d["conflicts"])
check(set(conf) == {"bank", "account_new", "lim"}, "conflicts: %r" % sorted(conf))
lim = conf.get("lim", {})
check(lim.get("path") == "v" and "drops are not zero" in lim.get("reason", ""), "shrunk array: %r" % lim)
st = d["static_tables"]
check(len(st) == 1 and st[0]["name"] == "names" and st[0]["outcome"] == "static_table"
      and st[0]["if_written"] == "refused" and st[0]["old"]["type"] == "char *[4]"
      and st[0]["new"]["type"] == "char *[2]", "static table: %r" % st)
check(d["image_pointers"] == [{"holder": "handlers", "offset": 8, "target": "on_stop",
                               "target_file": "prog.c", "target_kind": "function",
                               "target_offset": 0, "reason": "not in the new executable"}],
      "image pointers: %r" % d["image_pointers"])
for n, c in conf.items():
    if n == "lim":
        continue
    check(c["outcome"] == "refused" and c["path"] == "balance" and "struct money" in c["reason"]
          and c["type"] == "struct account" and c["type_old_decl"]["file"] == "prog.c"
          and c["type_new_decl"]["line"] > 0 and "MCR_TRANSFORM" in c["fix"]
          and c["old"]["line"] > 0 and c["new"]["file"] == "prog.c", "conflict %s: %r" % (n, c))
check(conf.get("account_new", {}).get("callee") == "calloc", "site conflict callee")

x = by_name(d["transformable"])
check(set(x) == {"origin", "cur_state", "history", "stats", "current", "session_new"},
      "transformable: %r" % sorted(x))
def changes(name):
    return {(c["change"], c["path"]): c for c in x.get(name, {}).get("changes", [])}
o = changes("origin")
check(set(o) == {("moved", "tag"), ("moved", "x")} and o[("moved", "tag")]["old_offset"] == 8
      and o[("moved", "tag")]["new_offset"] == 0, "reordered struct: %r" % o)
st = changes("stats")
h, sm = st.get(("retyped", "hits")), st.get(("retyped", "small"))
check(h and h["old_type"] == "int" and h["new_type"] == "long" and not h["risky"], "widening: %r" % h)
check(sm and sm["old_type"] == "long" and sm["new_type"] == "int" and sm["risky"], "narrowing: %r" % sm)
check(x["stats"]["risky"] == 1, "stats risky count")
e = changes("cur_state")
check(len(e) == 1 and list(e.values())[0]["change"] == "retyped" and list(e.values())[0]["risky"],
      "enum: %r" % e)
hi = changes("history")
check(len(hi) == 1 and list(hi.values())[0]["change"] == "resized"
      and list(hi.values())[0]["old_type"] == "int [8]" and list(hi.values())[0]["new_type"] == "int [16]"
      and not list(hi.values())[0]["risky"], "array grows: %r" % hi)
for n in ("current", "session_new"):
    a = changes(n).get(("added", "flags"))
    check(a and a["new_type"] == "unsigned int" and a["old_offset"] is None and a["new_offset"] == 20,
          "added field in %s: %r" % (n, a))
o = changes("session_new").get(("added", "owner"))
check(o and "starts NULL" in o["note"], "added pointer of a heap object: %r" % o)
o = changes("current").get(("added", "owner"))
check(o and o["note"] is None, "added pointer of a global keeps its initial value: %r" % o)
check(d["summary"]["null_pointers"] == 1, "null_pointers: %r" % d["summary"])
o = changes("session_new").get(("added", "flags"))
check(o and "starts 0" in o["note"], "added integer of a heap object: %r" % o)
o = changes("current").get(("added", "flags"))
check(o and o["note"] is None, "added integer of a global keeps its initial value: %r" % o)
check(d["summary"]["zero_fields"] == 1, "zero_fields: %r" % d["summary"])
check(x["session_new"]["kind"] == "site" and x["session_new"]["old"]["shape"] == "single",
      "site item: %r" % x["session_new"])

check([g["name"] for g in d["new_globals"]] == ["v2_only"], "new globals: %r" % d["new_globals"])
check([g["name"] for g in d["removed_globals"]] == ["v1_only"], "removed: %r" % d["removed_globals"])
check([t["function"] for t in d["removed_sites"]] == ["counters_new"], "removed sites: %r" % d["removed_sites"])
check(d["new_sites"] == [], "new sites: %r" % d["new_sites"])
u = d["untyped"]
check(len(u) == 1 and u[0]["function"] == "opaque_new" and u[0]["old"]["reason"], "untyped: %r" % u)
names = json.dumps([d["conflicts"], d["transformable"], d["new_globals"], d["removed_globals"]])
for ident in ('"items"', '"total"', '"calls"', '"limit"', '"per_thread"', '"handlers"'):
    check(ident not in names, "%s listed (identical, const or thread-local)" % ident)
for what in bad:
    print("FAIL:", what, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# ---- user transformations in NEW make the int -> struct change acceptable ----
"$MCR_CTL" check --json v1/prog v2hook/prog >hook.json 2>err.txt
rc=$?
[ "$rc" -eq 1 ] || fail "v1 -> v2hook: exit $rc, want 1 (lim and handlers still refuse): $(cat err.txt)"
"$PYTHON" - hook.json <<'PY' || fail "JSON checks with user transformations"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
x = {(t["function"] if t["kind"] == "site" else t["name"]): t for t in d["transformable"]}
ok = True
for n, hook in (("bank", "mcr_transform_global_bank"), ("account_new", "mcr_transform_type_account")):
    t = x.get(n)
    if not t or t["transformation"] != hook or t["inferred"] or t["path"] != "balance":
        print("FAIL: %s with a user transformation: %r" % (n, t), file=sys.stderr)
        ok = False
if sorted(c["name"] for c in d["conflicts"]) != ["lim"]:
    print("FAIL: conflicts with hooks: %r" % d["conflicts"], file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
PY
"$MCR_CTL" check v1/prog v2hook/prog >hook.txt 2>&1
grep -q "user transformation mcr_transform_global_bank (in NEW) does it all" hook.txt ||
  fail "v1 -> v2hook: the hook is not named: $(cat hook.txt)"

# ---- nothing refused: exit 0; the same binary: no change ----
"$MCR_CTL" check v1/prog v2ok/prog >ok.txt 2>err.txt
rc=$?
[ "$rc" -eq 0 ] || fail "v1 -> v2ok: exit $rc, want 0: $(head -3 ok.txt) $(cat err.txt)"
grep -q "^5 globals and 1 allocation site change type: 6 transformable (2 risky), 0 refused" ok.txt ||
  fail "v1 -> v2ok summary: $(head -1 ok.txt)"
grep -q "No transfer would be refused for its types; 2 have risky conversions" ok.txt ||
  fail "v1 -> v2ok verdict: $(tail -1 ok.txt)"
"$MCR_CTL" check --json v2/prog v2/prog >same.json 2>err.txt || fail "v2 -> v2: exit $?"
"$PYTHON" -c '
import json, sys
d = json.load(open("same.json"))
s = d["summary"]
ok = (not d["refused"] and s["changed_globals"] == 0 and s["changed_sites"] == 0
      and d["conflicts"] == [] and d["transformable"] == [] and s["globals"]["identical"] == s["globals"]["paired"])
sys.exit(0 if ok else 1)' || fail "v2 -> v2 is not all identical: $(head -c 600 same.json)"
"$MCR_CTL" check v2/prog v2/prog | head -1 | grep -q "^no type changes" || fail "v2 -> v2 human summary"

# Debug info stripped: the type tables are in mcr_types, the result is the same as
# long as the file symbols stay (statics are paired by name and source file).
"$STRIP" --strip-debug --keep-file-symbols -o v2/prog-nodebug v2/prog || fail "strip --strip-debug"
"$MCR_CTL" check --json v1/prog v2/prog-nodebug >nodebug.json 2>err.txt
[ $? -eq 1 ] || fail "strip --strip-debug --keep-file-symbols: exit, want 1: $(cat err.txt)"
sed 's|v2/prog-nodebug|v2/prog|' nodebug.json | cmp -s - out.json ||
  fail "strip --strip-debug --keep-file-symbols changes the result"
# Without them (GNU strip --strip-debug drops STT_FILE) the runtime cannot pair the
# statics: said, and they are counted as not transferred.
"$STRIP" --strip-debug -o v2/prog-nofile v2/prog || fail "strip --strip-debug"
"$MCR_CTL" check v1/prog v2/prog-nofile >nofile.txt 2>err.txt
grep -q "NEW v2/prog-nofile has no file symbols in its symbol table" nofile.txt ||
  fail "strip --strip-debug: no note about the file symbols: $(cat nofile.txt err.txt)"
grep -qE "removed global +total \(static\)" nofile.txt || fail "strip --strip-debug: statics not said to be lost"

# ---- bad input: exit 2, one line on stderr naming the file ----
make_plain plain
make_fake fake-corrupt --write-corrupt
expect_error "missing OLD" "check: OLD no-such-file: No such file or directory" check no-such-file v2/prog
expect_error "missing NEW" "check: NEW no-such-file: No such file or directory" check v1/prog no-such-file
echo "just text" >text.txt
expect_error "not ELF" "check: OLD text.txt: not an ELF file" check text.txt v2/prog
printf 'int g;\nint main(void) { return g; }\n' >tiny.c
if "$CLANG" --target=aarch64-linux-gnu -c tiny.c -o arm64.o 2>/dev/null; then
  expect_error "AArch64" "check: NEW arm64.o: not an x86-64 ELF64 file (machine 183 (AArch64))" \
    check v1/prog arm64.o
fi
expect_error "not built by mcr-clang" \
  "check: NEW plain: no mcr_types section: not built by mcr-clang: build it with CC=mcr-clang" \
  check v1/prog plain
"$STRIP" -o v2/prog-stripped v2/prog || fail "strip"
expect_error "stripped" "check: NEW v2/prog-stripped: stripped (no .symtab)" check v1/prog v2/prog-stripped
expect_error "corrupt type table" "check: OLD fake-corrupt: corrupt mcr_types section: type table 2" \
  check fake-corrupt v2/prog
grep -q "element type 99 out of range" err.txt || fail "corrupt table: the message does not say what"
"$MCR_CLANG_DRIVER" tiny.c -o other 2>build-other.log || fail "mcr-clang tiny.c: $(cat build-other.log)"
expect_error "another program" \
  "check: NEW other is built from another program than OLD v1/prog (0 of OLD's 1 source files are in NEW)" \
  check v1/prog other
expect_error "one argument" "check: missing NEW" check v1/prog
expect_error "no argument" "check: missing OLD and NEW" check
expect_error "three arguments" "check: too many arguments" check v1/prog v2/prog v2/prog
expect_error "unknown option" "check: unknown option '--frob'" check --frob v1/prog v2/prog

"$MCR_CTL" check --help >out.txt 2>err.txt || fail "check --help: exit $?"
grep -q "Usage: mcr-ctl check OLD NEW \[--move-field TYPE.OLD=NEW\]... \[--json\]" out.txt || fail "check --help: $(head -2 out.txt)"
"$MCR_CTL" --help | grep -qE "^  check +OLD NEW" || fail "mcr-ctl --help does not list check"
finish
