#!/usr/bin/env python3
"""kvclient.py - drives tests/servers/kvstore.c across live updates (run.sh).

  kvclient.py fill PORT N                 SET key0..keyN-1 (value-i) on one connection
  kvclient.py check PORT N [VERSION]      every key intact (and VERSION answers it)
  kvclient.py session PORT N VERSION CMD...
      opens a connection, fills N keys, leaves a half-sent line in the server's
      buffer ("SET partial hal"), runs CMD (the update) and records its exit status,
      then completes the line on the same connection and checks the reply, the key,
      every other key, VERSION, and that a fresh connection works. Prints one line
      per check; exit 0 only if all pass.
  kvclient.py load PORT SECONDS OUTFILE
      SET/GET pairs on 4 connections for SECONDS, each reply checked; writes
      "requests N failures M maxgap_ms G" to OUTFILE (stops early on SIGTERM).
  kvclient.py churn PORT N SECONDS OUTFILE [HOT]
      on keys key0..keyHOT-1 (of key0..keyN-1, filled before; HOT defaults to N)
      and new keys: SET (replace or add), DEL
      and GET in batches on 4 connections for SECONDS, every reply checked against
      a model of the store; writes "requests N failures M" to OUTFILE and the
      model to OUTFILE.model (JSON, key -> value, null: deleted).
  kvclient.py prefork PORT N VERSION EXPECT CMD...
      for the prefork server (kvstore version 12/13: a master and 2 workers, each
      with its own table): opens connections until both workers hold some (up
      to 6 each, at most 400 tries), fills N keys per connection (its worker's table), leaves a
      half-sent line on each, runs CMD and records its exit status; EXPECT
      "commit": every connection completes its line, finds its keys, its worker
      has the same index and a new pid, VERSION answers VERSION, the shared
      counter went on, fresh connections reach both new workers; EXPECT
      "rollback": the same but the workers' pids and VERSION are the old ones.
      If fewer than 2 workers answer and KV_DIAG names a script, it is run (bash)
      to show what the processes are doing.
  kvclient.py verify PORT MODELFILE
      every key of the model has its value (or is NOTFOUND), and COUNT matches.
  kvclient.py hold PORT BASE FIELD VALUE BEFORE AFTER
      for the prefork server: opens connections until one's "WORKER index pid
      master" answer has VALUE in FIELD (1: the index, 2: the pid; at most 400
      tries), sends the commands of BEFORE (separated by ';') and writes their
      answers, joined by '|', to BASE.ready; waits for the file BASE.go (the
      update in between), sends AFTER on the same connection and writes their
      answers to BASE.out ("error ..." if the connection broke). Exit 1 if no
      connection reached that worker.
"""
import json
import random
import os
import signal
import socket
import subprocess
import sys
import time


def connect(port, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.settimeout(10)
            return s
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


class Conn:
    def __init__(self, port):
        self.s = connect(port)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data.encode())

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk
        l, self.buf = self.buf.split(b"\n", 1)
        return l.decode()

    def cmd(self, c):
        self.send(c + "\n")
        return self.line()

    def pipeline(self, cmds):
        self.send("".join(c + "\n" for c in cmds))
        return [self.line() for _ in cmds]


def fill(c, n):
    for i in range(0, n, 500):
        cmds = ["SET key%d value-%d" % (j, j) for j in range(i, min(n, i + 500))]
        for r in c.pipeline(cmds):
            if r != "OK":
                raise RuntimeError("SET answered %r" % r)


def check_keys(c, n):
    bad = 0
    for i in range(0, n, 500):
        cmds = ["GET key%d" % j for j in range(i, min(n, i + 500))]
        for j, r in zip(range(i, i + 500), c.pipeline(cmds)):
            if r != "VALUE value-%d" % j:
                bad += 1
    return bad


def report(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what))
    return ok


def session(port, n, version, cmd):
    c = Conn(port)
    fill(c, n)
    c.send("SET partial hal")  # read into the server's buffer, not handled yet
    time.sleep(0.2)
    rc = subprocess.call(cmd)
    ok = report(rc == 0, "update command exit status %d" % rc)
    c.send("f\n")
    ok &= report(c.line() == "OK", "the half-sent line completed on the same connection")
    ok &= report(c.cmd("GET partial") == "VALUE half", "GET partial -> VALUE half")
    bad = check_keys(c, n)
    ok &= report(bad == 0, "%d keys intact (%d bad)" % (n, bad))
    r = c.cmd("VERSION")
    ok &= report(r == "VERSION %s" % version, "same connection answers %r" % r)
    d = Conn(port)
    r = d.cmd("COUNT")
    ok &= report(r == "COUNT %d" % (n + 1), "a new connection: %r" % r)
    return 0 if ok else 1


def prefork(port, n, version, expect, cmd):
    conns, seen = [], {}
    # which worker accepts is up to the scheduler (both wait on the listening
    # socket): under load one may win many times in a row, so keep trying, a
    # little apart, and keep only a few connections of each worker
    for _ in range(400):
        if len(seen) == 2 and len(conns) >= 6:
            break
        c = Conn(port)
        w = c.cmd("WORKER").split()  # WORKER index pid
        if sum(1 for d in conns if d.worker[0] == w[1]) >= 6:
            c.s.close()
            time.sleep(0.005)
            continue
        c.worker = (w[1], w[2])
        seen[w[1]] = w[2]
        conns.append(c)
    ok = report(len(seen) == 2, "%d connections, on %d workers %s" % (len(conns), len(seen), seen))
    if len(seen) != 2 and os.environ.get("KV_DIAG"):
        subprocess.run(["bash", os.environ["KV_DIAG"]])
    for i, c in enumerate(conns):
        for r in c.pipeline(["SET c%d-k%d v%d-%d" % (i, j, i, j) for j in range(n)]):
            if r != "OK":
                raise RuntimeError("SET answered %r" % r)
        c.send("SET c%d-partial hal" % i)
    time.sleep(0.2)
    d = Conn(port)
    shared0 = int(d.cmd("SHARED").split()[1])
    d.s.close()
    rc = subprocess.call(cmd)
    want_rc = 0 if expect == "commit" else 1
    ok &= report(rc == want_rc, "update command exit status %d (expected %d)" % (rc, want_rc))
    bad = moved = 0
    for i, c in enumerate(conns):
        c.send("f\n")
        if c.line() != "OK" or c.cmd("GET c%d-partial" % i) != "VALUE half":
            bad += 1
        for j, r in enumerate(c.pipeline(["GET c%d-k%d" % (i, j) for j in range(n)])):
            if r != "VALUE v%d-%d" % (i, j):
                bad += 1
        w = c.cmd("WORKER").split()
        if w[1] != c.worker[0] or (w[2] == c.worker[1]) != (expect != "commit"):
            moved += 1
        if c.cmd("VERSION") != "VERSION %s" % version:
            bad += 1
    ok &= report(bad == 0, "%d connections: half-sent lines completed, %d keys each, VERSION %s "
                 "(%d bad answers)" % (len(conns), n, version, bad))
    ok &= report(moved == 0, "each connection's worker: same index, %s pid (%d not)" %
                 ("a new" if expect == "commit" else "the same", moved))
    # the worker's pid_t global naming its master names its parent now
    stale = 0
    for c in conns:
        w = c.cmd("WORKER").split()
        with open("/proc/%s/stat" % w[2]) as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
        stale += w[3] != ppid
    ok &= report(stale == 0, "each worker's master pid (a pid_t global) is its parent's (%d not)"
                 % stale)
    # the master's messages of its startup to its workers: as many as before the
    # update (the new master's replay must not send them to the old workers again)
    chans = {}
    for c in conns:
        chans[c.worker[0]] = c.cmd("CHANNEL")
    want = {"0": "CHANNEL 1", "1": "CHANNEL 0"}
    ok &= report(chans == want, "lines each worker read on its channel with the master: %s "
                 "(expected %s)" % (chans, want))
    d = Conn(port)
    shared1 = int(d.cmd("SHARED").split()[1])
    ok &= report(shared1 > shared0, "the shared counter went on: %d -> %d" % (shared0, shared1))
    fresh = {}
    for _ in range(400):
        e = Conn(port)
        w = e.cmd("WORKER").split()
        fresh[w[1]] = w[2]
        v = e.cmd("VERSION")
        e.s.close()
        if v != "VERSION %s" % version:
            ok &= report(False, "a fresh connection answers %r" % v)
            break
        if len(fresh) == 2:
            break
        time.sleep(0.005)
    ok &= report(len(fresh) == 2, "fresh connections reach %d workers %s" % (len(fresh), fresh))
    return 0 if ok else 1


def load(port, seconds, out):
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
    conns = [Conn(port) for _ in range(4)]
    reqs = fails = 0
    maxgap = 0.0
    last = time.time()
    end = time.time() + seconds
    i = 0
    while not stop[0] and time.time() < end:
        c = conns[i % 4]
        k = "load%d" % (i % 1000)
        try:
            r = c.pipeline(["SET %s v%d" % (k, i), "GET %s" % k])
            if r != ["OK", "VALUE v%d" % i]:
                fails += 1
        except Exception:
            fails += 1
            conns[i % 4] = Conn(port)
        now = time.time()
        maxgap = max(maxgap, now - last)
        last = now
        reqs += 2
        i += 1
    with open(out, "w") as f:
        f.write("requests %d failures %d maxgap_ms %.1f\n" % (reqs, fails, maxgap * 1000))


def churn(port, n, seconds, out, hot):
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
    conns = [Conn(port) for _ in range(4)]
    model = {"key%d" % j: "value-%d" % j for j in range(n)}
    rnd = random.Random(7)
    reqs = fails = 0
    end = time.time() + seconds
    i = 0
    while not stop[0] and time.time() < end:
        c = conns[i % 4]
        cmds, want = [], []
        for _ in range(20):
            i += 1
            op = rnd.random()
            k = "key%d" % rnd.randrange(hot) if op < 0.8 else "new%d" % rnd.randrange(hot)
            if op < 0.3 or op >= 0.8:
                v = "c%d" % i
                cmds.append("SET %s %s" % (k, v))
                want.append("OK")
                model[k] = v
            elif op < 0.5:
                cmds.append("DEL %s" % k)
                want.append("DELETED" if model.get(k) is not None else "NOTFOUND")
                model[k] = None
            else:
                cmds.append("GET %s" % k)
                v = model.get(k)
                want.append("VALUE " + v if v is not None else "NOTFOUND")
        try:
            got = c.pipeline(cmds)
        except Exception:
            # the connection broke: the model no longer knows what happened
            fails += len(cmds)
            break
        fails += sum(1 for a, b in zip(got, want) if a != b)
        reqs += len(cmds)
    with open(out, "w") as f:
        f.write("requests %d failures %d\n" % (reqs, fails))
    with open(out + ".model", "w") as f:
        json.dump(model, f)


def verify(port, modelfile):
    with open(modelfile) as f:
        model = json.load(f)
    c = Conn(port)
    keys = sorted(model)
    bad = 0
    for i in range(0, len(keys), 500):
        part = keys[i:i + 500]
        for k, r in zip(part, c.pipeline(["GET " + k for k in part])):
            v = model[k]
            if r != ("VALUE " + v if v is not None else "NOTFOUND"):
                bad += 1
    live = sum(1 for v in model.values() if v is not None)
    ok = report(bad == 0, "%d keys as the model says (%d bad)" % (len(keys), bad))
    r = c.cmd("COUNT")
    ok &= report(r == "COUNT %d" % live, "COUNT %d -> %r" % (live, r))
    return 0 if ok else 1


def hold(port, base, field, value, before, after):
    for _ in range(400):
        c = Conn(port)
        if c.cmd("WORKER").split()[field] == value:
            break
        c.s.close()
    else:
        print("kvclient.py hold: no connection reached a worker with %s in field %d"
              % (value, field), file=sys.stderr)
        return 1
    out = [c.cmd(x) for x in before.split(";")]
    with open(base + ".ready", "w") as f:
        f.write("|".join(out) + "\n")
    while not os.path.exists(base + ".go"):
        time.sleep(0.05)
    try:
        out = [c.cmd(x) for x in after.split(";")]
    except (OSError, EOFError) as e:
        out = ["error %s" % e]
    with open(base + ".out", "w") as f:
        f.write("|".join(out) + "\n")
    return 0


def main():
    a = sys.argv[1:]
    if not a or a[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if a[0] == "fill":
        fill(Conn(int(a[1])), int(a[2]))
        return 0
    if a[0] == "check":
        c = Conn(int(a[1]))
        bad = check_keys(c, int(a[2]))
        ok = report(bad == 0, "%s keys intact (%d bad)" % (a[2], bad))
        if len(a) > 3:
            r = c.cmd("VERSION")
            ok &= report(r == "VERSION " + a[3], "VERSION -> %r" % r)
        return 0 if ok else 1
    if a[0] == "session":
        return session(int(a[1]), int(a[2]), a[3], a[4:])
    if a[0] == "load":
        load(int(a[1]), float(a[2]), a[3])
        return 0
    if a[0] == "churn":
        churn(int(a[1]), int(a[2]), float(a[3]), a[4], int(a[5]) if len(a) > 5 else int(a[2]))
        return 0
    if a[0] == "verify":
        return verify(int(a[1]), a[2])
    if a[0] == "hold":
        return hold(int(a[1]), a[2], int(a[3]), a[4], a[5], a[6])
    if a[0] == "prefork":
        return prefork(int(a[1]), int(a[2]), a[3], a[4], a[5:])
    print("kvclient.py: unknown command %r" % a[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
