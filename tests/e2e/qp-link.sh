#!/usr/bin/env bash
# mcr-clang --mcr-quiescence's link-time check: linking the executable a config
# names fails, with the config's file:line and no output left behind, when a
# quiescent point of the config was marked nowhere (a config profiled from
# another program, or from an older version); a matching config links.
# Prints one line per check and "N passed, N failed" at the end.
#   qp-link.sh BUILD_DIR
set -uo pipefail
build=$1
mcc="$build/bin/mcr-clang"
w=$(mktemp -d "${TMPDIR:-/tmp}/mcr-qp-link.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$w"' EXIT
cd "$w"
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
# ids in the mcr_qps section of a file (magic, version, blockfn, id, line, ...)
qp_ids() {
  python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
shoff, = struct.unpack_from("<Q", d, 0x28)
ent, num, stri = struct.unpack_from("<HHH", d, 0x3A)
sh = lambda i: struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * ent)
names = sh(stri)[4]
for i in range(num):
    s = sh(i)
    if d[names + s[0]:d.index(b"\0", names + s[0])] == b"mcr_qps":
        sec = d[s[4]:s[4] + s[5]]
        for off in range(0, len(sec), 56):
            magic, ver, fn, qid, line = struct.unpack_from("<IHHII", sec, off)
            print("%#x %d %d %d %d" % (magic, ver, fn, qid, line))
PY
}

# A server: the main thread waits in epoll_wait (serve), a worker in a
# condition wait. It exits at once: the test is about building it.
cat > server.c <<'C'
#include <pthread.h>
#include <sys/epoll.h>
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stop;
static void *worker(void *arg) {
  pthread_mutex_lock(&mu);
  while (!stop)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return arg;
}
void serve(int ep) {
  struct epoll_event ev[8];
  for (int i = 0; i < 3; i++)
    epoll_wait(ep, ev, 8, 0);
}
int main(void) {
  pthread_t t;
  pthread_create(&t, 0, worker, 0);
  serve(epoll_create1(0));
  pthread_mutex_lock(&mu);
  stop = 1;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(t, 0);
  return 0;
}
C
# The markers' entry points, weak: the runtime's own win once it has them.
cat > qp-weak.c <<'C'
#include <stddef.h>
struct mcr_qp;
__attribute__((weak)) const struct mcr_qp *__mcr_qp_enter(const struct mcr_qp *qp) { return qp; }
__attribute__((weak)) void __mcr_qp_exit(const struct mcr_qp *prev) { (void)prev; }
C
cat > server.qp <<'Q'
# profiled from ./server
mcr-quiescence 1
program server
class main
qp main > serve > epoll_wait
class main > pthread_create
qp worker > pthread_cond_wait
Q
# Another program's config for an executable of the same name.
cat > other.qp <<'Q'
mcr-quiescence 1
program server
class main
qp main > event_loop > poll
class main > start_workers
qp worker_main > sem_wait
Q
# The same program before serve was renamed serve_clients.
sed 's/serve >/serve_clients >/' server.qp > old.qp

"$mcc" -O2 -o server server.c qp-weak.c --mcr-quiescence=server.qp 2> match.err; rc=$?
check "matching config: links" test "$rc" = 0 -a -x server -a ! -s match.err
qp_ids server > ids.txt
check "matching config: a record per quiescent point (epoll_wait, pthread_cond_wait)" \
  bash -c "[ \$(wc -l < ids.txt) = 2 ] && grep -q '^0x5051434d 1 1 ' ids.txt && grep -q '^0x5051434d 1 13 ' ids.txt"
check "matching config: the program runs" ./server

# From another program: every quiescent point reported, output deleted.
"$mcc" -O2 -o server server.c qp-weak.c --mcr-quiescence=other.qp 2> other.err; rc=$?
cat other.err
check "other program's config: exit 1" test "$rc" = 1
check "other program's config: no output file (the previous one deleted too)" test ! -e server
check "other program's config: 2 lines, one per quiescent point" test "$(wc -l < other.err)" = 2
check "other program's config: message with file:line (poll)" grep -qxF \
  "mcr-clang: error: other.qp:4: quiescent point 'main > event_loop > poll' was not instrumented: no call to poll in a function event_loop was compiled with this config (profiled from another program or an older version? run mcr-profile again)" other.err
check "other program's config: message with file:line (sem_wait)" grep -qF \
  "other.qp:6: quiescent point 'worker_main > sem_wait' was not instrumented: no call to sem_wait in a function worker_main" other.err

# From an older version: only the quiescent point that no longer fits.
MCR_QUIESCENCE=old.qp "$mcc" -O2 -o server server.c qp-weak.c 2> old.err; rc=$?
cat old.err
check "older version's config (env MCR_QUIESCENCE): exit 1, no output" test "$rc" = 1 -a ! -e server
check "older version's config: only the renamed frame reported" bash -c \
  "[ \$(wc -l < old.err) = 1 ] && grep -qF \"old.qp:5: quiescent point 'main > serve_clients > epoll_wait' was not instrumented: no call to epoll_wait in a function serve_clients\" old.err"

# Separate compile and link steps: the link-only step checks.
"$mcc" -O2 -c server.c -o server.o --mcr-quiescence=server.qp
"$mcc" -O2 -c qp-weak.c -o qp-weak.o
"$mcc" -o server server.o qp-weak.o --mcr-quiescence=server.qp 2> sep.err; rc=$?
check "separate steps, matching config: links" test "$rc" = 0 -a -x server -a ! -s sep.err
mkdir -p out
"$mcc" -o out/server server.o qp-weak.o --mcr-quiescence=other.qp 2> sep2.err; rc=$?
check "separate steps, other config: -o DIR/server is checked too, output deleted" \
  test "$rc" = 1 -a ! -e out/server -a "$(wc -l < sep2.err)" = 2

# Executables of other names (build helpers, configure's test programs) are
# not the program the config was profiled from: not checked.
"$mcc" -O2 -o server-cli server.c qp-weak.c --mcr-quiescence=other.qp 2> cli.err; rc=$?
check "another executable name: links unchecked" test "$rc" = 0 -a -x server-cli -a ! -s cli.err
"$mcc" -O2 -fPIC -shared -o server server.c --mcr-quiescence=other.qp 2> so.err; rc=$?
check "a shared object: not checked" test "$rc" = 0 -a ! -s so.err
rm -f server

# A failing link keeps clang's exit status and message; nothing to check.
printf 'int missing_function(void);\nint main(void) { return missing_function(); }\n' > broken.c
"$mcc" -o server broken.c --mcr-quiescence=server.qp 2> broken.err; rc=$?
check "failing link: clang's exit status and message, no check" \
  bash -c "[ $rc = 1 ] && grep -q 'undefined reference to .missing_function' broken.err && ! grep -q 'quiescent point' broken.err"

# A build system's own probes link test programs with the same compiler and
# config (CMake's compiler detection and try_compile): they must pass.
mkdir -p proj
cp server.c qp-weak.c proj/
cat > proj/CMakeLists.txt <<'C'
cmake_minimum_required(VERSION 3.20)
project(server C)
include(CheckFunctionExists)
check_function_exists(epoll_wait HAVE_EPOLL_WAIT)
if(NOT HAVE_EPOLL_WAIT)
  message(FATAL_ERROR "feature check failed under mcr-clang --mcr-quiescence")
endif()
add_executable(server server.c qp-weak.c)
C
MCR_QUIESCENCE="$w/server.qp" cmake -S proj -B cm -G Ninja -DCMAKE_C_COMPILER="$mcc" > cm.log 2>&1
check "cmake with MCR_QUIESCENCE: configures (probes are not checked)" test $? = 0
check "cmake with MCR_QUIESCENCE: builds the program" \
  bash -c "MCR_QUIESCENCE='$w/server.qp' ninja -C cm && test -x cm/server"
rm -rf cm
MCR_QUIESCENCE="$w/other.qp" cmake -S proj -B cm -G Ninja -DCMAKE_C_COMPILER="$mcc" > cm.log 2>&1
check "cmake with another program's config: configures" test $? = 0
MCR_QUIESCENCE="$w/other.qp" ninja -C cm > cm-build.log 2>&1; rc=$?
check "cmake with another program's config: the program's link fails with the message" \
  bash -c "[ $rc != 0 ] && [ ! -e cm/server ] && grep -q 'other.qp:4: quiescent point' cm-build.log"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
