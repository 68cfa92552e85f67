#!/usr/bin/env python3
"""Helpers of tests/real/quiesce-<server>.sh.

  quiesce-tool.py load redis|memcached --port P --out FILE [--conns N]
                  [--duration SEC] [--prefix P] [--keys K] [--timeout SEC]
      A checking load generator: N connections (one outstanding request each,
      multiplexed in one thread), each setting values on keys of its own and
      getting them back, checking every reply and every value. Runs for
      --duration seconds, or until SIGTERM/SIGINT. Writes a JSON summary to FILE:
      ops, errors (connection errors, unexpected replies, wrong values, replies
      later than --timeout), ops_per_s, the first errors.

  quiesce-tool.py summary DIR
      Reads DIR/*.json written by `mcr-ctl quiesce PID --json` (named
      ITER-PID.json, with ITER-PID.rc holding mcr-ctl's exit status) and prints
      per process and overall: quiesces, failures, time to quiescence
      median/p99/max, and each thread class with its arrival points. Exit 1 if any
      quiesce failed (exit status, quiesced=false, a thread that did not arrive).

  quiesce-tool.py redis-benchmark --port P --out FILE [--duration SEC]
      Runs redis-benchmark (SET and GET, 8 connections, 20 000 requests a test,
      keys from 10 000) again and again, for --duration seconds or until SIGTERM;
      redis-benchmark exits 1 at the first error reply or connection error, which
      counts as an error here. A run cut short by the stop counts for nothing.
      Writes a JSON summary like `load`.

  quiesce-tool.py http-check --port P --path PATH --sha256 HEX --out FILE
                  [--duration SEC] [--conns N]
      A checking HTTP client: N keep-alive connections (default 2), each getting
      PATH again and again and comparing status 200 and the body's sha256; any
      failure, a connection closed by the server included, is an error (the
      servers are configured with keep-alive limits the test does not reach).
      Writes a JSON summary like `load`.

  quiesce-tool.py memcached-data set|check --port P [--count N]
      Sets N keys qcheck:I to values of growing size, or gets them all back and
      compares; exit 1 on any difference.

  quiesce-tool.py merge FILE...
      Adds up summaries (ops, errors, first errors); ops_per_s is the first one's.

  quiesce-tool.py wrk FILE...
      Adds up wrk outputs: requests, seconds, non-2xx/3xx responses, socket
      errors; prints one JSON object like `load` writes.
"""
import errno
import json
import os
import random
import re
import selectors
import signal
import socket
import statistics
import sys
import time


# --- checking load generator ----------------------------------------------------


class Conn:
    def __init__(self, proto, host, port, idx, prefix, keys):
        self.proto, self.idx, self.prefix, self.keys = proto, idx, prefix, keys
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.out = b""
        self.n = 0
        self.expect = None  # (kind, key, value)
        self.sent_at = 0.0

    def key(self):
        return "%s:%d:%d" % (self.prefix, self.idx, self.n % self.keys)

    def next_request(self):
        """Alternates set and get of the same key; values vary in size."""
        key = self.key()
        if self.expect is None or self.expect[0] == "get":
            self.n += 1
            key = self.key()
            size = random.choice((8, 100, 1000, 4000))
            tag = ("%s=%d;" % (key, self.n)).encode()
            value = (tag * (size // len(tag) + 1))[:size]
            if self.proto == "redis":
                self.out = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(key), key.encode(), len(value), value)
            else:
                self.out = b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value)
            self.expect = ("set", key, value)
        else:
            _, key, value = self.expect
            if self.proto == "redis":
                self.out = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key.encode())
            else:
                self.out = b"get %s\r\n" % key.encode()
            self.expect = ("get", key, value)
        self.sent_at = time.monotonic()

    def parse(self):
        """None: reply incomplete; True: the expected reply; else an error text."""
        kind, key, value = self.expect
        b = self.buf
        if self.proto == "redis":
            if kind == "set":
                if b"\r\n" not in b:
                    return None
                line, self.buf = b.split(b"\r\n", 1)
                return True if line == b"+OK" else "SET %s: %r" % (key, line[:80])
            if b"\r\n" not in b:
                return None
            line, rest = b.split(b"\r\n", 1)
            if not line.startswith(b"$"):
                self.buf = rest
                return "GET %s: %r" % (key, line[:80])
            n = int(line[1:])
            if n < 0:
                self.buf = rest
                return "GET %s: nil" % key
            if len(rest) < n + 2:
                return None
            got, self.buf = rest[:n], rest[n + 2:]
            return True if got == value else "GET %s: wrong value (%d bytes)" % (key, len(got))
        # memcached text protocol
        if kind == "set":
            if b"\r\n" not in b:
                return None
            line, self.buf = b.split(b"\r\n", 1)
            return True if line == b"STORED" else "set %s: %r" % (key, line[:80])
        if b"\r\n" not in b:
            return None
        line, rest = b.split(b"\r\n", 1)
        if line == b"END":
            self.buf = rest
            return "get %s: miss" % key
        m = re.match(rb"VALUE (\S+) (\d+) (\d+)$", line)
        if not m:
            self.buf = rest
            return "get %s: %r" % (key, line[:80])
        n = int(m.group(3))
        if len(rest) < n + 7:  # value, \r\n, END\r\n
            return None
        got, tail = rest[:n], rest[n:n + 7]
        self.buf = rest[n + 7:]
        if tail != b"\r\nEND\r\n":
            return "get %s: bad framing %r" % (key, tail)
        return True if got == value else "get %s: wrong value (%d bytes)" % (key, len(got))


def cmd_load(args):
    import argparse
    ap = argparse.ArgumentParser(prog="quiesce-tool.py load")
    ap.add_argument("proto", choices=("redis", "memcached"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--prefix", default="qload")
    ap.add_argument("--keys", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(args)

    stop = [False]

    def on_signal(sig, frame):
        stop[0] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ops = errors = 0
    first = []

    def error(text):
        nonlocal errors
        errors += 1
        if len(first) < 20:
            first.append("%.3f %s" % (time.monotonic() - t0, text))

    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(a.conns):
        try:
            c = Conn(a.proto, a.host, a.port, i, a.prefix, a.keys)
        except OSError as e:
            error("connect %d: %s" % (i, e))
            continue
        c.next_request()
        sel.register(c.sock, selectors.EVENT_WRITE, c)
        conns.append(c)

    def drop(c, why):
        error("conn %d: %s" % (c.idx, why))
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        conns.remove(c)

    while conns and not stop[0]:
        now = time.monotonic()
        if a.duration and now - t0 >= a.duration:
            break
        for c in list(conns):
            if now - c.sent_at > a.timeout:
                drop(c, "no reply within %.1f s to %s %s" % (a.timeout, c.expect[0], c.expect[1]))
        try:
            events = sel.select(timeout=0.2)
        except InterruptedError:
            continue
        for key, ev in events:
            c = key.data
            if c not in conns:
                continue
            try:
                if c.out:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                    if not c.out:
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                drop(c, "socket error %s" % e)
                continue
            if not data:
                drop(c, "closed by the server")
                continue
            c.buf += data
            while c.buf:
                r = c.parse()
                if r is None:
                    break
                if r is True:
                    ops += 1
                else:
                    error("conn %d: %s" % (c.idx, r))
                if c.buf:
                    error("conn %d: %d bytes more than expected" % (c.idx, len(c.buf)))
                    c.buf = b""
                c.next_request()
                sel.modify(c.sock, selectors.EVENT_WRITE, c)
                break
    elapsed = time.monotonic() - t0
    # Requests still in flight are neither counted nor errors (we stopped them).
    if not stop[0] and not (a.duration and elapsed >= a.duration) and not conns:
        error("every connection was lost")
    res = {"tool": "quiesce-tool load " + a.proto, "ops": ops, "errors": errors,
           "seconds": round(elapsed, 3), "ops_per_s": round(ops / elapsed, 1) if elapsed else 0,
           "connections_left": len(conns), "first_errors": first}
    with open(a.out + ".tmp", "w") as f:
        json.dump(res, f)
        f.write("\n")
    os.rename(a.out + ".tmp", a.out)
    return 0


# --- redis-benchmark, again and again -------------------------------------------------


def cmd_redis_benchmark(args):
    import argparse
    import subprocess
    ap = argparse.ArgumentParser(prog="quiesce-tool.py redis-benchmark")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(args)
    stop = [False]
    child = [None]

    def on_signal(sig, frame):
        stop[0] = True
        if child[0] is not None and child[0].poll() is None:
            child[0].terminate()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    ops = errors = runs = 0
    secs = 0.0
    first = []
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(a.port), "-c", "8",
           "-n", str(a.requests), "-r", "10000", "-t", "set,get", "--csv"]
    while not stop[0] and not (a.duration and time.monotonic() - t0 >= a.duration):
        s = time.monotonic()
        child[0] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = child[0].communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child[0].kill()
            out, _ = child[0].communicate()
            out += b"\n(no result within 60 s: killed)"
        rc = child[0].returncode
        e = time.monotonic() - s
        if stop[0] and rc != 0:
            break  # cut short by the stop
        text = out.decode(errors="replace")
        tests = re.findall(r'^"(SET|GET)","([\d.]+)"', text, re.M)
        if rc != 0 or len(tests) != 2:
            errors += 1
            if len(first) < 20:
                first.append("%.3f redis-benchmark exit %d: %s" % (
                    time.monotonic() - t0, rc, text.strip()[-300:]))
            continue
        runs += 1
        ops += 2 * a.requests
        secs += e
    res = {"tool": "redis-benchmark", "ops": ops, "errors": errors, "runs": runs,
           "seconds": round(secs, 3), "ops_per_s": round(ops / secs, 1) if secs else 0,
           "first_errors": first}
    with open(a.out + ".tmp", "w") as f:
        json.dump(res, f)
        f.write("\n")
    os.rename(a.out + ".tmp", a.out)
    return 0


def cmd_http_check(args):
    import argparse
    import hashlib
    import http.client
    import threading
    ap = argparse.ArgumentParser(prog="quiesce-tool.py http-check")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--sha256", required=True)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--conns", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    signal.signal(signal.SIGINT, lambda s, f: stop.set())
    lock = threading.Lock()
    st = {"ops": 0, "errors": 0, "first": []}
    t0 = time.monotonic()

    def error(text):
        with lock:
            st["errors"] += 1
            if len(st["first"]) < 20:
                st["first"].append("%.3f %s" % (time.monotonic() - t0, text))

    def worker(i):
        conn = None
        while not stop.is_set() and not (a.duration and time.monotonic() - t0 >= a.duration):
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
            try:
                conn.request("GET", a.path)
                r = conn.getresponse()
                body = r.read()
            except Exception as e:
                error("conn %d: %s: %s" % (i, type(e).__name__, e))
                conn.close()
                conn = None
                continue
            if r.status != 200:
                error("conn %d: status %d" % (i, r.status))
            elif hashlib.sha256(body).hexdigest() != a.sha256:
                error("conn %d: wrong body (%d bytes)" % (i, len(body)))
            else:
                with lock:
                    st["ops"] += 1
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.conns)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    elapsed = time.monotonic() - t0
    res = {"tool": "http-check", "ops": st["ops"], "errors": st["errors"],
           "seconds": round(elapsed, 3),
           "ops_per_s": round(st["ops"] / elapsed, 1) if elapsed else 0,
           "first_errors": st["first"]}
    with open(a.out + ".tmp", "w") as f:
        json.dump(res, f)
        f.write("\n")
    os.rename(a.out + ".tmp", a.out)
    return 0


def mc_value(i):
    return ("value-%d-" % i + "x" * (i * 7)).encode()


def cmd_memcached_data(args):
    import argparse
    ap = argparse.ArgumentParser(prog="quiesce-tool.py memcached-data")
    ap.add_argument("mode", choices=("set", "check"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=200)
    a = ap.parse_args(args)
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    f = s.makefile("rb")
    bad = 0
    for i in range(a.count):
        key, v = b"qcheck:%d" % i, mc_value(i)
        if a.mode == "set":
            s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(v), v))
            line = f.readline()
            if line != b"STORED\r\n":
                print("set %s: %r" % (key.decode(), line), file=sys.stderr)
                bad += 1
            continue
        s.sendall(b"get %s\r\n" % key)
        line = f.readline()
        if line != b"VALUE %s 0 %d\r\n" % (key, len(v)):
            print("get %s: %r" % (key.decode(), line[:80]), file=sys.stderr)
            bad += 1
            continue
        got = f.read(len(v) + 2)
        end = f.readline()
        if got != v + b"\r\n" or end != b"END\r\n":
            print("get %s: wrong value" % key.decode(), file=sys.stderr)
            bad += 1
    s.close()
    return 1 if bad else 0


def cmd_merge(files):
    res = None
    for fn in files:
        try:
            j = json.load(open(fn))
        except (OSError, ValueError):
            j = {"ops": 0, "errors": 1, "ops_per_s": 0, "first_errors": ["%s: no summary" % fn]}
        if res is None:
            res = dict(j)
            res["first_errors"] = list(j.get("first_errors", []))
            res["parts"] = [fn]
            continue
        res["ops"] += j["ops"]
        res["errors"] += j["errors"]
        res["first_errors"] += j.get("first_errors", [])
        res["parts"].append(fn)
    print(json.dumps(res))
    return 0


# --- wrk outputs --------------------------------------------------------------------


def cmd_wrk(files):
    req = non2xx = 0
    secs = 0.0
    sock = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    first = []
    for fn in files:
        text = open(fn, errors="replace").read()
        m = re.search(r"^\s*(\d+) requests in ([\d.]+)(ms|s|m)", text, re.M)
        if not m:
            first.append("%s: no wrk summary" % fn)
            continue
        req += int(m.group(1))
        secs += float(m.group(2)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(3)]
        m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
        if m:
            non2xx += int(m.group(1))
            first.append("%s: %s non-2xx/3xx responses" % (fn, m.group(1)))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        if m:
            for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
                sock[k] += int(v)
            first.append("%s: %s" % (fn, m.group(0)))
    errors = non2xx + sum(sock.values()) + sum(1 for f in first if "no wrk summary" in f)
    res = {"tool": "wrk", "ops": req, "errors": errors, "non_2xx_3xx": non2xx,
           "socket_errors": sock, "seconds": round(secs, 3),
           "ops_per_s": round(req / secs, 1) if secs else 0, "first_errors": first}
    print(json.dumps(res))
    return 0


# --- quiesce results ----------------------------------------------------------------


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return 0
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def cmd_summary(d):
    runs = {}
    for fn in sorted(os.listdir(d)):
        m = re.match(r"(\d+)-(\d+)\.rc$", fn)
        if m:
            runs[(int(m.group(1)), int(m.group(2)))] = None
    per_pid = {}
    bad = []
    classes = {}
    for (it, pid) in sorted(runs):
        base = os.path.join(d, "%d-%d" % (it, pid))
        rc = int(open(base + ".rc").read().strip() or 99)
        p = per_pid.setdefault(pid, {"n": 0, "ok": 0, "ttq": [], "threads": set()})
        p["n"] += 1
        try:
            j = json.load(open(base + ".json"))
        except (OSError, ValueError):
            j = None
        why = []
        if rc != 0:
            why.append("mcr-ctl exit %d" % rc)
        if not j:
            why.append("no JSON reply")
        else:
            if not j.get("quiesced"):
                why.append("quiesced=false")
            for t in j.get("threads", []):
                p["threads"].add(t["tid"])
                cls = t.get("class") or "?"
                c = classes.setdefault(cls, {})
                if not t.get("arrived"):
                    why.append("thread %s (%s, class %s) did not arrive: %s" % (
                        t["tid"], t.get("name"), cls, t.get("where")))
                    c["(did not arrive)"] = c.get("(did not arrive)", 0) + 1
                else:
                    pt = (t.get("point") or {}).get("stack") or "(thread start)"
                    pt += "  [%s]" % t.get("state")
                    c[pt] = c.get(pt, 0) + 1
        if why:
            err = ""
            try:
                err = open(base + ".err").read().strip()
            except OSError:
                pass
            bad.append("iteration %d, pid %d: %s%s" % (it, pid, "; ".join(why),
                                                       (" (stderr: %s)" % err[:300]) if err else ""))
        else:
            p["ok"] += 1
            p["ttq"].append(j["time_to_quiescence_us"] / 1000.0)

    def line(label, vals, n, ok, nthreads=None):
        v = sorted(vals)
        thr = "" if nthreads is None else ", %d threads" % nthreads
        if v:
            return ("%s: %d/%d quiesced%s; time to quiescence median %.3f ms, p99 %.3f ms, "
                    "max %.3f ms" % (label, ok, n, thr, statistics.median(v), pct(v, 99), v[-1]))
        return "%s: %d/%d quiesced%s" % (label, ok, n, thr)

    allv = []
    for pid, p in sorted(per_pid.items()):
        print("  " + line("pid %d" % pid, p["ttq"], p["n"], p["ok"], len(p["threads"])))
        allv += p["ttq"]
    n = sum(p["n"] for p in per_pid.values())
    ok = sum(p["ok"] for p in per_pid.values())
    print("  " + line("all", allv, n, ok))
    print("  where the threads were (per thread class: arrival point [state at arrival], count):")
    for cls, pts in sorted(classes.items()):
        print("    class %s" % cls)
        for pt, cnt in sorted(pts.items(), key=lambda x: -x[1]):
            print("      %6d  %s" % (cnt, pt))
    if bad:
        print("  FAILED quiesces (%d):" % len(bad))
        for b in bad[:30]:
            print("    " + b)
    if n == 0:
        print("  no quiesce results in %s" % d)
        return 1
    return 1 if bad else 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) >= 2 else 2
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "load":
        return cmd_load(rest)
    if cmd == "summary" and len(rest) == 1:
        return cmd_summary(rest[0])
    if cmd == "redis-benchmark":
        return cmd_redis_benchmark(rest)
    if cmd == "http-check":
        return cmd_http_check(rest)
    if cmd == "memcached-data":
        return cmd_memcached_data(rest)
    if cmd == "merge" and rest:
        return cmd_merge(rest)
    if cmd == "wrk" and rest:
        return cmd_wrk(rest)
    print("quiesce-tool.py: bad usage (see --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
