#!/bin/sh
# e2e-types.sh SCRATCH-DIR - builds a small program with mcr-clang and checks the types
# 'mcr-ctl types --json' reports for it. Skipped (77) until build/bin/mcr-clang exists.
. "$(dirname "$0")/cli-lib.sh"
need MCR_CTL PYTHON
if ! [ -x "${MCR_CLANG_DRIVER:-}" ]; then
  echo "SKIP: mcr-clang not built yet (${MCR_CLANG_DRIVER:-unset})"
  exit 77
fi

cat >prog.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct client {
  int fd;
  char *name;
  struct client *next;
};

struct config {
  int port;
  char dir[64];
};

struct config config = {6379, "/var/lib/prog"};
static _Thread_local unsigned long tls_requests;

static int next_id(void)
{
  static int last_id;
  return ++last_id;
}

static struct client *client_new(int fd)
{
  struct client *c = malloc(sizeof(*c));
  if (!c)
    return NULL;
  c->fd = fd;
  c->next = NULL;
  return c;
}

int main(int argc, char **argv)
{
  char *buf = malloc(128);
  struct client *c = client_new(argc + next_id());

  tls_requests++;
  if (!buf || !c)
    return 1;
  snprintf(buf, 128, "%s:%d:%lu", config.dir, c->fd, tls_requests);
  if (argc > 5)
    puts(buf);
  free(buf);
  free(c);
  (void)argv;
  return 0;
}
C
"$MCR_CLANG_DRIVER" -O1 prog.c -o prog 2>build.log || { cat build.log; fail "mcr-clang failed"; finish; }
./prog || fail "the instrumented program failed"
"$MCR_CTL" types prog >human.txt 2>err.txt || fail "types: exit $?: $(cat err.txt)"
cat human.txt
"$MCR_CTL" types --json prog >out.json 2>err.txt || fail "types --json: exit $?: $(cat err.txt)"
"$PYTHON" - out.json <<'PY' || fail "JSON checks"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
sites = [s for s in d["sites"] if s["file"].endswith("prog.c")]
def site(fn):
    return [s for s in sites if s["function"] == fn and s["callee"] == "malloc"]
c = site("client_new")
check(len(c) == 1 and c[0]["type"] == "struct client" and c[0]["shape"] == "single",
      "malloc'd struct in client_new: %r" % c)
b = site("main")
check(len(b) == 1 and b[0]["type"] == "char []" and b[0]["shape"] == "array",
      "char buffer in main: %r" % b)
g = {x["name"]: x for x in d["globals"]}
check("config" in g and g["config"]["type"] == "struct config" and g["config"]["symbol"] == "config"
      and "static" not in g["config"]["flags"], "global struct: %r" % g.get("config"))
t = g.get("tls_requests")
check(t is not None and t["type"] == "unsigned long" and "thread_local" in t["flags"],
      "thread-local: %r" % t)
l = g.get("last_id")
check(l is not None and l["type"] == "int" and "static_local" in l["flags"] and l["scope"] == "next_id",
      "static local: %r" % l)
m = d["summary"]
check(m["sites"] >= 2 and m["typed"] >= 2 and 0 < m["coverage"] <= 1, "summary: %r" % m)
for what in bad:
    print("FAIL:", what, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
finish
