#!/usr/bin/env python3
"""bench.py - the driver of benchmarks/transform/run.sh (see there for what is
measured and the options).

  bench.py fill PORT N          SET key0..keyN-1 (pipelined), every reply checked
  bench.py run --ctl CTL --v1 BIN --v2 BIN --v3 BIN --keys N --repeats R --work DIR
      R repeats; each starts two fresh version-1 servers, fills both with the same
      N keys (at the same time: one per CPU), then updates one to version 2
      (unchanged types) and the other to version 3 (changed types) with
      `mcr-ctl update PID NEW --json`, in alternating order, checks a sample of
      keys after each, and writes one JSON object per update to DIR/raw.jsonl.

The driver is a child subreaper: the new version of a server (the old process's
child) is reparented to it when the old one exits, and is reaped here.
"""
import argparse
import ctypes
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
SAMPLE = 500  # keys checked after each update


def log(msg):
    print("transform-bench: " + msg, file=sys.stderr, flush=True)


def key(i):
    return "key%d" % i


def value(i):
    return "value-%d" % i


def connect(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.settimeout(120)
            return s
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Conn:
    def __init__(self, port):
        self.s = connect(port)
        self.buf = b""
        self.pending = []

    def lines(self, n):
        """The next n reply lines (more may have arrived: they are kept)."""
        while len(self.pending) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buf += chunk
            if b"\n" in chunk:
                parts = self.buf.split(b"\n")
                self.buf = parts.pop()
                self.pending.extend(p.decode() for p in parts)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def pipeline(self, cmds):
        self.s.sendall("".join(c + "\n" for c in cmds).encode())
        return self.lines(len(cmds))

    def close(self):
        self.s.close()


def fill(port, n, batch=2000, window=4):
    """SET key0..keyN-1: batches of `batch` commands, up to `window` batches in
    flight (kvstore writes each reply at once on a non-blocking socket, so the
    replies in flight must fit the socket buffers: 8000 x 3 bytes here)."""
    c = Conn(port)
    batches = [range(i, min(n, i + batch)) for i in range(0, n, batch)]
    sent = 0
    done = 0
    while done < len(batches):
        while sent < len(batches) and sent - done < window:
            c.s.sendall("".join("SET %s %s\n" % (key(j), value(j)) for j in batches[sent]).encode())
            sent += 1
        replies = c.lines(len(batches[done]))
        bad = [r for r in replies if r != "OK"]
        if bad:
            raise RuntimeError("SET answered %r" % bad[0])
        done += 1
    c.close()


def check(port, n, version, seed):
    """COUNT == n, VERSION == version and SAMPLE sampled keys (first, last and
    random ones) hold their values. Returns (ok, message)."""
    rnd = random.Random(seed)
    idx = sorted(set([0, n - 1] + [rnd.randrange(n) for _ in range(SAMPLE - 2)]))
    c = Conn(port)
    try:
        got = c.pipeline(["COUNT", "VERSION"] + ["GET %s" % key(i) for i in idx])
    finally:
        c.close()
    if got[0] != "COUNT %d" % n:
        return False, "COUNT answered %r" % got[0]
    if got[1] != "VERSION %d" % version:
        return False, "VERSION answered %r" % got[1]
    bad = [(i, r) for i, r in zip(idx, got[2:]) if r != "VALUE " + value(i)]
    if bad:
        return False, "%d of %d keys wrong, e.g. %s -> %r" % (len(bad), len(idx), key(bad[0][0]), bad[0][1])
    return True, "COUNT %d, VERSION %d, %d sampled keys intact" % (n, version, len(idx))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reap(pid, timeout=10.0):
    """Ends PID (one of ours: a server we started or adopted as subreaper)."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while True:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        try:
            p, _ = os.waitpid(pid, os.WNOHANG)
            if p == pid:
                return
        except ChildProcessError:
            if not alive(pid):
                return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.02)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def parse(out):
    """The figures of one `mcr-ctl update --json` output."""
    d = json.loads(out)
    rec = {"committed": bool(d.get("committed")), "pid": d.get("pid"),
           "new_pid": d.get("new_pid"), "pause_us": d.get("pause_us"),
           "total_us": d.get("total_us"),
           "phases": {p["name"]: p["us"] for p in d.get("phases", [])},
           "details": {p["name"]: p.get("detail", "") for p in d.get("phases", [])},
           "notes": d.get("notes", []), "reasons": d.get("reasons", [])}
    for note in rec["notes"]:
        m = re.search(r"the pause copies ([0-9.]+) of the heap's ([0-9.]+) MB", note)
        if m:
            rec["pause_copy_mb"] = float(m.group(1))
            rec["heap_mb"] = float(m.group(2))
    m = re.search(r"([0-9]+) changed types: ([0-9]+) objects converted before the pause "
                  r"\(([0-9]+) in place, ([0-9]+) pointers\); in it ([0-9]+) checked, ([0-9]+) "
                  r"converted again, ([0-9]+) new, ([0-9]+) pointers",
                  rec["details"].get("transform", ""))
    if m:
        rec.update(changed_types=int(m.group(1)), objects=int(m.group(2)),
                   in_place=int(m.group(3)), pointers=int(m.group(4)), checked=int(m.group(5)),
                   again=int(m.group(6)), new=int(m.group(7)), pause_pointers=int(m.group(8)))
    for note in rec["notes"]:
        m = re.search(r"before the pause: [0-9]+ objects of changed types converted, [0-9]+ "
                      r"pointers to them rewritten, in ([0-9.]+) ms", note)
        if m:
            rec["pre_transform_ms"] = float(m.group(1))
    m = re.search(r"([0-9]+) globals \(([0-9.]+) kB\) copied, ([0-9]+) of changed type converted",
                  rec["details"].get("globals", ""))
    if m:
        rec.update(globals=int(m.group(1)), globals_converted=int(m.group(3)))
    return rec


def run(a):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    raw = open(os.path.join(a.work, "raw.jsonl"), "a")
    slog = open(os.path.join(a.work, "servers.log"), "ab")
    failed = 0
    for r in range(a.repeats):
        servers = []
        for _ in range(2):
            port = free_port()
            p = subprocess.Popen([a.v1, "-p", str(port)], stdin=subprocess.DEVNULL,
                                 stdout=slog, stderr=subprocess.STDOUT)
            servers.append((p, port))
        t0 = time.monotonic()
        errs = []

        def filler(port):
            try:
                fill(port, a.keys)
            except Exception as e:  # noqa: BLE001
                errs.append("fill of port %d: %s" % (port, e))

        ts = [threading.Thread(target=filler, args=(port,)) for _, port in servers]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        fill_s = time.monotonic() - t0
        if errs:
            for p, _ in servers:
                reap(p.pid)
            raise SystemExit("transform-bench: " + "; ".join(errs))
        log("repeat %d/%d: two servers filled with %d keys in %.1f s" % (r + 1, a.repeats, a.keys, fill_s))
        # alternate which update runs first (the second waits on an idle server)
        jobs = [("unchanged", 2, a.v2, servers[0]), ("changed", 3, a.v3, servers[1])]
        if r % 2:
            jobs.reverse()
        for kind, version, new, (proc, port) in jobs:
            time.sleep(a.settle)
            load_before = loadavg()
            t1 = time.monotonic()
            u = subprocess.run([a.ctl, "update", str(proc.pid), new, "--json",
                                "--timeout", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wall = time.monotonic() - t1
            rec = {"repeat": r + 1, "kind": kind, "version": version, "keys": a.keys,
                   "exit": u.returncode, "wall_ms": round(wall * 1000, 1),
                   "fill_s": round(fill_s, 2), "loadavg": load_before}
            try:
                rec.update(parse(u.stdout))
            except ValueError:
                rec["committed"] = False
                rec["error"] = "no JSON from mcr-ctl: " + (u.stderr or u.stdout).strip()[-400:]
            if u.returncode == 0 and rec.get("committed"):
                proc.wait(timeout=10)  # the old process exits after the commit
                ok, msg = check(port, a.keys, version, seed=1000 * r + version)
                rec["check_ok"], rec["check"] = ok, msg
                victim = rec["new_pid"]
            else:
                rec["check_ok"], rec["check"] = False, "update not committed (exit %d): %s" % (
                    u.returncode, "; ".join(rec.get("reasons") or [u.stderr.strip()[-300:]]))
                victim = proc.pid
            rec["ok"] = bool(rec.get("committed")) and rec["check_ok"]
            failed += not rec["ok"]
            raw.write(json.dumps(rec) + "\n")
            raw.flush()
            log("  v1 -> v%d (%s types): %s, pause %s us, transform %s us; %s" % (
                version, kind, "committed" if rec.get("committed") else "NOT committed",
                rec.get("pause_us"), rec.get("phases", {}).get("transform", "-"), rec["check"]))
            if isinstance(victim, int) and victim > 0:
                reap(victim)
        for p, _ in servers:
            if p.poll() is None:
                reap(p.pid)
    raw.close()
    return 1 if failed else 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "fill":
        fill(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run"])
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--v1", required=True)
    ap.add_argument("--v2", required=True)
    ap.add_argument("--v3", required=True)
    ap.add_argument("--keys", type=int, default=300000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds of rest before each update")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
