#!/usr/bin/env bash
# Startup log and replay (label "startup"): programs built with mcr-clang.
#   run.sh BUILD_DIR TEST    TEST: replay bind-change extra-ctl extra-ctl-ptr loop-insert
#                                  moved moved-addr moved-blocking sock-nb ids corrupt
set -euo pipefail
build=$1
test=$2
src=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$src/../.." && pwd)
mcc="$build/bin/mcr-clang"
work=$(mktemp -d "${TMPDIR:-/tmp}/mcr-startup-$test.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
inc=(-I"$top/runtime" -I"$top/runtime/include")
fails=0

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# val FILE KEY: the value of "KEY value" in FILE
val() { awk -v k="$2" '$1 == k { sub(/^[^ ]+ /, ""); print; exit }' "$1"; }
# same WHAT A B
same() { if [ "$2" = "$3" ]; then ok "$1 ($2)"; else bad "$1: '$2' vs '$3'"; fi; }
# entry_id FILE KIND DETAIL-PREFIX: the ID/ordinal of that entry
entry_id() { awk -v k="$2" -v d="$3" '$1 == "entry" && $2 == k && index($0, "| " d) { print $3; exit }' "$1"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# old (version 1 + V1FLAGS) spawns new (version 2 + FLAGS) with its fds; both report.
v1flags=()
run_pair() {
  "$mcc" -O2 -Wall "${inc[@]}" -DVERSION=1 ${v1flags[@]+"${v1flags[@]}"} -o "$work/v1" "$src/server.c"
  "$mcc" -O2 -Wall "${inc[@]}" -DVERSION=2 "$@" -o "$work/v2" "$src/server.c"
  mkdir -p "$work/run"
  port=$(free_port)
  timeout 30 "$work/v1" old "$work/run" "$port" "$work/v2" 2>"$work/err" || {
    bad "the old server failed: $(cat "$work/err")"; exit 1; }
  if [ -s "$work/err" ]; then bad "stderr: $(cat "$work/err")"; fi
  old="$work/run/old.txt" new="$work/run/new.txt"
  same "the new version ran" "$(val "$old" new_status)" 0
  same "the old version listened on the port" "$(val "$old" bind_rc)" 0
}

case "$test" in
  replay)
    run_pair
    same "socket: the inherited fd" "$(val "$new" fd_listen)" "$(val "$old" fd_listen)"
    same "bind: no EADDRINUSE (rc)" "$(val "$new" bind_rc)" 0
    same "bind: errno" "$(val "$new" bind_errno)" 0
    same "listen rc" "$(val "$new" listen_rc)" 0
    same "epoll_create: the inherited fd" "$(val "$new" fd_epoll)" "$(val "$old" fd_epoll)"
    same "epoll_ctl rc" "$(val "$new" ctl_rc)" 0
    same "open of the log: the inherited fd" "$(val "$new" fd_log)" "$(val "$old" fd_log)"
    for k in socket setsockopt bind listen epoll_create epoll_ctl; do
      f=$(awk -v k=$k '$1 == "entry" && $2 == k { print $5; exit }' "$new")
      same "$k replayed (flag 0x4)" "$(( f & 4 ))" 4
    done
    f=$(awk '$1 == "entry" && $2 == "open" && /server.log/ { print $5; exit }' "$new")
    same "open of the log replayed" "$(( f & 4 ))" 4
    same "the pid file written for real by the new process" "$(tr -d '\n' <"$work/run/server.pid")" \
      "$(val "$new" pid)"
    f=$(awk '$1 == "entry" && $2 == "open" && /server.pid/ { print $5; exit }' "$new")
    same "open of the pid file ran (not replayed)" "$(( f & 4 ))" 0
    same "no conflicts" "$(grep -c '^conflict' "$new" || true)" 0
    same "the old epoll set is untouched" "$(val "$old" old_epoll_targets)" 1
    # IDs: the same paths in two builds, different paths differ
    for k in "socket socket(" "bind bind(" "epoll_create epoll_create1(" "open open(\"$work/run/server.log" \
             "open open(\"$work/run/server.pid"; do
      set -- $k
      same "ID of $2 equal across builds" "$(entry_id "$new" "$1" "$2")" "$(entry_id "$old" "$1" "$2")"
    done
    a=$(entry_id "$old" open "open(\"$work/run/server.log")
    b=$(entry_id "$old" open "open(\"$work/run/server.pid")
    if [ -n "$a" ] && [ "${a%/*}" != "${b%/*}" ]; then ok "open of the log and of the pid file: different IDs ($a, $b)"
    else bad "open of the log and of the pid file: IDs '$a' '$b'"; fi
    # allocation records
    for o in cfg table; do
      same "allocation $o: (ID, ordinal) across builds" "$(val "$new" alloc_$o | cut -d' ' -f1)" \
        "$(val "$old" alloc_$o | cut -d' ' -f1)"
      same "allocation $o: the old log's record is the old object" "$(val "$new" oldaddr_$o)" \
        "$(val "$old" alloc_$o | awk '{ print $5 }')"
    done
    same "freed in the window: no record (old)" "$(val "$old" allocs_from_init_server)" 2
    same "freed in the window: no record (new)" "$(val "$new" allocs_from_init_server)" 2
    n=$(grep -c '^entry' "$old")
    if [ "$n" -ge 9 ]; then ok "the old log has $n entries"; else bad "the old log has $n entries"; fi
    ;;
  bind-change)
    run_pair -DCHANGE_BIND
    c=$(grep '^conflict bind:' "$new" || true)
    if [[ "$c" == *"bind(5, 127.0.0.1:$port)"*"bind(5, 127.0.0.2:$port)"*"listen_to_port"* ]] ||
       [[ "$c" == *"127.0.0.1:$port)"*"127.0.0.2:$port)"*"main > init_server > listen_to_port"* ]]; then
      ok "a changed bind address is a conflict: $c"
    else bad "no bind conflict naming both addresses and the stack: '$c'"; cat "$new"; fi
    same "one conflict" "$(grep -c '^conflict' "$new" || true)" 1
    same "the conflicting bind was not run (rc is the old one)" "$(val "$new" bind_rc)" 0
    ;;
  extra-ctl)
    # version 2 registers an eventfd of its own on the epoll instance it inherits:
    # told it worked, made only when the update applies it (in the pause)
    run_pair -DEXTRA_CTL
    same "no conflicts" "$(grep -c '^conflict' "$new" || true)" 0
    grep '^conflict' "$new" || true
    n=$(grep -c '^note epoll_ctl: epoll_ctl(.*ADD.*): a registration the old startup did not make, of this process.s own descriptor on an instance shared with the old process: made in the pause, after the state transfer' "$new" || true)
    same "a note says it is deferred" "$n" 1
    same "the program was told it worked" "$(val "$new" extra_ctl_rc)" 0
    same "not made in the startup (the shared instance has the old target only)" \
      "$(val "$new" extra_targets)" 1
    same "applied when asked" "$(val "$new" apply_deferred)" 0
    same "then the instance has it" "$(val "$new" extra_targets_applied)" 2
    same "and the program can remove it" "$(val "$new" extra_del)" removed
    same "the old process's epoll set has one target again (the new one exited)" \
      "$(val "$old" old_epoll_targets)" 1
    ;;
  extra-ctl-ptr)
    # the same registration with data pointing into the new startup's heap: it
    # would mean nothing after the state transfer, so it is a conflict
    run_pair -DEXTRA_CTL -DEXTRA_CTL_PTR
    c=$(grep '^conflict epoll_ctl:' "$new" || true)
    if [[ "$c" == *"shared with the old process"*"watch_more"* ]]; then
      ok "an unmatched epoll_ctl on the inherited epoll fd is a conflict: $c"
    else bad "no epoll_ctl conflict: '$c'"; cat "$new"; fi
    same "nothing deferred" "$(grep -c 'made in the pause' "$new" || true)" 0
    same "not made" "$(val "$new" extra_targets)" 1
    same "nothing applied" "$(val "$new" extra_targets_applied)" 1
    same "so nothing to remove" "$(val "$new" extra_del)" ENOENT
    same "the old process's epoll set still has one target" "$(val "$old" old_epoll_targets)" 1
    ;;
  loop-insert)
    # version 2's worker loop makes a second eventfd per worker at the same call
    # stack (memcached 1.6.38): each worker's first eventfd is still the old
    # one's, the second is the new process's own, and its registration on the
    # worker's inherited instance is deferred
    v1flags=(-DLOOP)
    run_pair -DLOOP -DLOOP_EXTRA
    same "no conflicts" "$(grep -c '^conflict' "$new" || true)" 0
    grep '^conflict' "$new" || true
    for i in 0 1 2; do
      read -r oefd oep <<<"$(awk -v k="loop_$i" '$1 == k { print $3, $7 }' "$old")"
      read -r nefd nefd2 nep ntargets <<<"$(awk -v k="loop_$i" '$1 == k { print $3, $5, $7, $9 }' "$new")"
      same "worker $i: its eventfd is the old one's" "$nefd" "$oefd"
      same "worker $i: its epoll instance is the old one's" "$nep" "$oep"
      if [ "$nefd2" -gt "$(val "$old" fd_log)" ] && [ "$nefd2" != "$oefd" ]; then
        ok "worker $i: its second eventfd is its own ($nefd2)"
      else bad "worker $i: second eventfd $nefd2"; fi
      same "worker $i: the instance has the old target only in the startup" "$ntargets" 1
      same "worker $i: both after the apply" "$(val "$new" loop_${i}_applied | awk '{print $2}')" 2
    done
    same "three registrations deferred" "$(grep -c 'made in the pause' "$new" || true)" 3
    ;;
  moved)
    # version 2 creates its listening socket in a helper with SOCK_NONBLOCK (a call
    # stack and arguments version 1 does not have), listens with backlog 64 (16),
    # opens /dev/null first where version 1 opened its pid file, and the pid file
    # and the log from helpers
    v1flags=(-DFILES2 -DNB_AFTER_LISTEN)
    run_pair -DFILES2 -DNB_AFTER_LISTEN -DMOVED
    same "bind: no EADDRINUSE (rc)" "$(val "$new" bind_rc)" 0
    same "bind: errno" "$(val "$new" bind_errno)" 0
    same "listen rc" "$(val "$new" listen_rc)" 0
    same "no conflicts" "$(grep -c '^conflict' "$new" || true)" 0
    grep '^conflict' "$new" || true
    same "one socket taken over" "$(val "$new" adopted)" 1
    same "the new listening fd is the old socket" "$(val "$new" listen_ino)" "$(val "$old" listen_ino)"
    same "it accepts a connection in the new process" "$(val "$new" accept_ok)" 1
    same "it is non-blocking (as both asked)" "$(val "$new" listen_nonblock)" 1
    same "FD_CLOEXEC as the new socket() asked" "$(val "$new" listen_cloexec)" 1
    f=$(awk '$1 == "entry" && $2 == "bind" { print $5; exit }' "$new")
    same "bind replayed (flag 0x4)" "$(( f & 4 ))" 4
    f=$(awk '$1 == "entry" && $2 == "socket" { print $5; exit }' "$new")
    same "socket ran (not replayed)" "$(( f & 4 ))" 0
    n=$(grep -c "^note bind: bind(.*127.0.0.1:$port): a socket the old log has no counterpart of (another call stack or other flags): fd [0-9]* took over the old process's socket bound to this address (fd $(val "$old" fd_listen))" "$new" || true)
    same "a note names the takeover" "$n" 1
    n=$(grep -c "^note listen: listen(.*, 64): the socket is the old process's (fd $(val "$old" fd_listen)), listening with backlog 16: kept, not 64" "$new" || true)
    same "a note names the kept backlog" "$n" 1
    f=$(awk '$1 == "entry" && $2 == "listen" { print $5; exit }' "$new")
    same "listen not run (flag 0x4)" "$(( f & 4 ))" 4
    same "epoll_ctl of the socket on the inherited epoll: rc" "$(val "$new" ctl_rc)" 0
    f=$(awk '$1 == "entry" && $2 == "epoll_ctl" { print $5; exit }' "$new")
    same "epoll_ctl replayed (the fd compared as the old's)" "$(( f & 4 ))" 4
    same "the old epoll set is untouched" "$(val "$old" old_epoll_targets)" 1
    same "the old socket still listens, non-blocking" "$(val "$old" old_listen_after)"       "accepting 1 nonblock 1"
    same "pid file: the inherited fd" "$(val "$new" fd_pid)" "$(val "$old" fd_pid)"
    same "/dev/null: the inherited fd" "$(val "$new" fd_null)" "$(val "$old" fd_null)"
    same "log: the inherited fd" "$(val "$new" fd_log)" "$(val "$old" fd_log)"
    for w in server.pid /dev/null server.log; do
      f=$(awk -v w="$w" '$1 == "entry" && $2 == "open" && index($0, w) { print $5; exit }' "$new")
      same "open of $w replayed (flag 0x4)" "$(( f & 4 ))" 4
    done
    b=$(val "$new" by_args)
    if [ "${b:-0}" -ge 2 ]; then ok "$b calls paired by their arguments at another stack"
    else bad "calls paired by arguments: '$b'"; fi
    ;;
  moved-addr)
    # the same, but version 2 binds another address: no old socket to take over,
    # its bind runs (and succeeds: nobody holds 127.0.0.2); watching its own
    # socket on the shared epoll instance is a conflict, as before
    v1flags=(-DFILES2 -DNB_AFTER_LISTEN)
    run_pair -DFILES2 -DNB_AFTER_LISTEN -DMOVED -DCHANGE_BIND
    same "nothing taken over" "$(val "$new" adopted)" 0
    same "bind ran for real (rc)" "$(val "$new" bind_rc)" 0
    f=$(awk '$1 == "entry" && $2 == "bind" { print $5; exit }' "$new")
    same "bind not replayed" "$(( f & 4 ))" 0
    if [ "$(val "$new" listen_ino)" != "$(val "$old" listen_ino)" ]; then ok "a socket of its own"
    else bad "the new process holds the old socket"; fi
    c=$(grep '^conflict epoll_ctl:' "$new" || true)
    if [[ "$c" == *"the old version made epoll_ctl("*"the new makes epoll_ctl("* ]]; then
      ok "its own socket on the shared epoll instance is a conflict: $c"
    else bad "no epoll_ctl conflict: '$c'"; cat "$new"; fi
    same "no takeover note" "$(grep -c '^note bind' "$new" || true)" 0
    same "the old socket still listens" "$(val "$old" old_listen_after)" "accepting 1 nonblock 1"
    ;;
  moved-blocking)
    # version 1's socket is blocking, version 2's non-blocking: taking it over
    # would change the old process's socket (O_NONBLOCK is shared): a conflict
    v1flags=(-DFILES2)
    run_pair -DFILES2 -DMOVED
    c=$(grep '^conflict bind:' "$new" || true)
    if [[ "$c" == *"is blocking and the new version's is non-blocking (O_NONBLOCK)"* ]]; then
      ok "a conflict names O_NONBLOCK: $c"
    else bad "no O_NONBLOCK conflict: '$c'"; cat "$new"; fi
    same "one conflict" "$(grep -c '^conflict' "$new" || true)" 1
    same "bind: no EADDRINUSE (rc)" "$(val "$new" bind_rc)" 0
    same "the old socket's flag unchanged" "$(val "$old" old_listen_after)" "accepting 1 nonblock 0"
    ;;
  sock-nb)
    # the socket at the same call stack, with SOCK_NONBLOCK added: not a conflict,
    # a socket of its own, which takes over the old one at bind
    v1flags=(-DNB_AFTER_LISTEN)
    run_pair -DNB_AFTER_LISTEN -DSOCK_NB
    same "no conflicts" "$(grep -c '^conflict' "$new" || true)" 0
    grep '^conflict' "$new" || true
    same "one socket taken over" "$(val "$new" adopted)" 1
    same "bind rc" "$(val "$new" bind_rc)" 0
    same "the new listening fd is the old socket" "$(val "$new" listen_ino)" "$(val "$old" listen_ino)"
    same "it accepts a connection in the new process" "$(val "$new" accept_ok)" 1
    same "no backlog note (16 both)" "$(grep -c '^note listen' "$new" || true)" 0
    same "log: the inherited fd" "$(val "$new" fd_log)" "$(val "$old" fd_log)"
    ;;
  ids)
    "$mcc" -O2 -Wall "${inc[@]}" -DVERSION=1 -o "$work/ids1" "$src/ids.c" -lpthread
    "$mcc" -O2 -Wall "${inc[@]}" -DVERSION=2 -o "$work/ids2" "$src/ids.c" -lpthread
    "$work/ids1" >"$work/o1" || { cat "$work/o1"; bad "ids (version 1)"; }
    "$work/ids2" >"$work/o2" || { cat "$work/o2"; bad "ids (version 2)"; }
    cat "$work/o1"
    if cmp -s "$work/ids1" "$work/ids2"; then bad "the two builds are the same file"; fi
    same "path_a: the same ID in both builds" "$(val "$work/o2" path_a)" "$(val "$work/o1" path_a)"
    same "path_b: the same ID in both builds" "$(val "$work/o2" path_b)" "$(val "$work/o1" path_b)"
    ;;
  corrupt)
    "$mcc" -O2 -Wall "${inc[@]}" -o "$work/corrupt" "$src/corrupt.c"
    "$work/corrupt" || bad "corrupt"
    ;;
  *) echo "unknown test $test"; exit 2 ;;
esac
if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all checks passed"
