#!/usr/bin/env python3
"""poolclient.py - drives tests/servers/poolkv.c across live updates (run.sh, case pool).

  poolclient.py session PORT N VERSION CMD...
      opens a connection, fills N keys, reads TICKS and WORKERS, leaves a
      half-sent line in the server's buffer ("SET partial hal"), runs CMD (the
      update), then checks on the same connection: the line completes, every key
      is intact, VERSION, TICKS keeps increasing at about 10 a second from where it
      was, WORKERS lists the same worker ids with counts not reset (each at least
      what it was before) and consistent (their sum is the total: every worker
      counts in the struct the pool lists), LOGS adds up (every worker counts
      through its thread-specific data in a log the pool lists), WHO (the
      worker's own local) agrees, TLS (each worker's thread-local counter and
      note count what its struct worker counts),
      and a fresh connection works. Prints one line per check; exit 0 only if
      all pass.
  poolclient.py state PORT [VERSION]
      the checks that need no history: VERSION, TICKS increasing, WORKERS
      consistent; prints WORKERS.
  poolclient.py ticks PORT    prints TICKS

fill, check and load: kvclient.py (the protocol is the same for those).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kvclient import Conn, check_keys, fill, report  # noqa: E402


def workers(c):
    """WORKERS n total=T id:handled ... -> (total, [(id, handled)])"""
    r = c.cmd("WORKERS").split()
    if len(r) < 3 or r[0] != "WORKERS" or not r[2].startswith("total="):
        raise RuntimeError("WORKERS answered %r" % " ".join(r))
    ws = [tuple(int(x) for x in w.split(":")) for w in r[3:]]
    if len(ws) != int(r[1]):
        raise RuntimeError("WORKERS answered %r" % " ".join(r))
    return int(r[2][6:]), ws


def ticks(c):
    r = c.cmd("TICKS").split()
    if len(r) != 2 or r[0] != "TICKS":
        raise RuntimeError("TICKS answered %r" % " ".join(r))
    return int(r[1])


def check_ticks(c, since=None):
    """TICKS increases over 1 s at about the maintenance thread's 10 a second."""
    t0 = ticks(c)
    time.sleep(1.0)
    t1 = ticks(c)
    ok = report(3 <= t1 - t0 <= 30, "TICKS %d -> %d over 1 s (the maintenance thread runs "
                "every 100 ms)" % (t0, t1))
    if since is not None:
        ok &= report(t0 >= since, "TICKS %d, was %d before the update (carried over)" % (t0, since))
    return ok


def check_workers(c, before=None):
    """The per-worker counts: consistent with the total, and not reset."""
    total, ws = workers(c)
    print("   WORKERS total=%d %s" % (total, " ".join("%d:%d" % w for w in ws)))
    s = sum(h for _, h in ws)
    # WORKERS itself is counted (by the worker that answers) before it replies
    ok = report(s == total, "WORKERS: the workers' own counts add up to the total (%d of %d)"
                % (s, total))
    if before is not None:
        btotal, bws = before
        ok &= report([i for i, _ in ws] == [i for i, _ in bws],
                     "WORKERS: the same worker ids as before the update %s"
                     % [i for i, _ in ws])
        ok &= report(all(h >= bh for (_, h), (_, bh) in zip(ws, bws)) and total >= btotal,
                     "WORKERS: no count was reset (before: total=%d %s)"
                     % (btotal, " ".join("%d:%d" % w for w in bws)))
    # each worker counts in the log its thread-specific data gives: the pool lists
    # those logs only if the update rewrote the new threads' values to the old logs
    r = c.cmd("LOGS").split()
    ok &= report(len(r) == 3 and r[0] == "LOGS" and r[1].startswith("total=") and
                 r[2].startswith("sum=") and int(r[1][6:]) == int(r[2][4:]) and int(r[2][4:]) > 0,
                 "LOGS: the lines the workers counted through their thread-specific data "
                 "add up to the total: %r" % " ".join(r))
    # the worker that runs WHO reads its own struct through the local it kept
    r = c.cmd("WHO").split()
    after = dict(workers(c)[1])
    ok &= report(len(r) == 3 and int(r[1]) in after and 0 < int(r[2]) <= after[int(r[1])],
                 "WHO (a worker's own local): %r, the pool lists %s" %
                 (" ".join(r), after.get(int(r[1])) if len(r) == 3 else None))
    ok &= check_tls(c)
    return ok


def check_tls(c, tries=16):
    """Each worker's thread-local counter, the note its thread-local pointer
    holds and the mark it reaches through a pointer into its own thread-local
    variables count what its struct worker counts: an update that lost a
    worker's thread-local variables resets them (or points it at another's
    note, or at the old thread's variables)."""
    seen, bad = {}, []
    for _ in range(tries):  # each command goes to whichever worker is free
        r = c.cmd("TLS").split()
        if len(r) != 7 or r[0] != "TLS":
            return report(False, "TLS answered %r" % " ".join(r))
        wid, handled, lines, nid, nlines, mark = (int(x) for x in r[1:])
        seen[wid] = (handled, lines, nlines, mark)
        if not (handled == lines == nlines == mark and nid == wid):
            bad.append(" ".join(r[1:]))
    return report(not bad, "TLS: the thread-local counter, note and mark of %d workers count "
                  "what their struct worker does (id:handled/lines/note/mark %s)%s"
                  % (len(seen), " ".join("%d:%d/%d/%d/%d" % ((w,) + seen[w]) for w in sorted(seen)),
                     "; wrong: %s" % bad if bad else ""))


def session(port, n, version, cmd):
    c = Conn(port)
    fill(c, n)
    t_before = ticks(c)
    w_before = workers(c)
    c.send("SET partial hal")  # read into the server's buffer, not handled yet
    time.sleep(0.2)
    rc = subprocess.call(cmd)
    ok = report(rc == 0, "update command exit status %d" % rc)
    c.send("f\n")
    ok &= report(c.line() == "OK", "the half-sent line completed on the same connection")
    # right away: counters reset by the update would have counted only the few
    # milliseconds of load since, far less than the fill before it
    ok &= check_workers(c, w_before)
    ok &= report(c.cmd("GET partial") == "VALUE half", "GET partial -> VALUE half")
    bad = check_keys(c, n)
    ok &= report(bad == 0, "%d keys intact (%d bad)" % (n, bad))
    r = c.cmd("VERSION")
    ok &= report(r == "VERSION %s" % version, "same connection answers %r" % r)
    ok &= check_ticks(c, t_before)
    d = Conn(port)
    r = d.cmd("GET key%d" % (n - 1))
    ok &= report(r == "VALUE value-%d" % (n - 1), "a new connection: %r" % r)
    return 0 if ok else 1


def main():
    a = sys.argv[1:]
    if not a or a[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if a[0] == "session":
        return session(int(a[1]), int(a[2]), a[3], a[4:])
    if a[0] == "state":
        c = Conn(int(a[1]))
        ok = True
        if len(a) > 2:
            r = c.cmd("VERSION")
            ok &= report(r == "VERSION " + a[2], "VERSION -> %r" % r)
        ok &= check_ticks(c)
        ok &= check_workers(c)
        return 0 if ok else 1
    if a[0] == "ticks":
        print(ticks(Conn(int(a[1]))))
        return 0
    print("poolclient.py: unknown command %r" % a[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
