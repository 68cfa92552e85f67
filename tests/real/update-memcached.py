"""tests/real/update-memcached.sh's client for memcached's text protocol.

    fill PORT N            N keys u:NNNNN (10-599 bytes, flags = i), pipelined
    filler PORT N          N keys fill:NNNN of 20000 bytes (a slab class of their own,
                           whose pages the slab mover may take)
    check PORT N [PREFIX]  every key PREFIX (u or x) read back (multi-get), value and flags
    expand PORT FROM TO    keys x:NNNNN for FROM <= i < TO (small values)
    stats PORT [SUB]       `stats [SUB]` as NAME VALUE lines
    held PORT DIR          a connection opened before the update and used after it:
                           writes DIR/held.ready, waits for DIR/held.go, writes DIR/held.json
    workers PORT K         K new connections at once, each sets and gets a key
                           (memcached hands new connections to its workers in turn)
    metadump PORT N        `lru_crawler metadump all` (the LRU crawler thread answers):
                           how many of u:00000..N-1 it lists
    reassign PORT          `slabs reassign` of a page of fill:'s class to u:'s smallest,
                           then waits for the slab mover to report it moved
    watch PORT KIND        `watch mutations` (3 sets) or `watch connevents` (3 connections
                           opened and closed): the log lines the logger thread forwards
Exit status 0 when what was asked is right, 1 otherwise (the reason on stdout).
"""
import json
import os
import re
import socket
import sys
import time
import urllib.parse


def value(i):
    n = 10 + (i * 37) % 590
    tag = b"u%d=" % i
    return (tag * (n // len(tag) + 1))[:n]


def xvalue(i):
    return b"x%d" % i


class Conn:
    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def fill_buf(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill_buf()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill_buf()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def call(self, cmd):
        self.s.sendall(cmd)
        return self.line()

    def values(self):
        """The VALUE blocks of one get reply, up to END: {key: (flags, bytes)}."""
        out = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return out
            m = re.match(rb"VALUE (\S+) (\d+) (\d+)$", ln)
            if not m:
                raise ValueError("unexpected line %r" % ln[:100])
            data = self.exact(int(m.group(3)) + 2)
            out[m.group(1).decode()] = (int(m.group(2)), data[:-2])

    def get(self, key):
        self.s.sendall(b"get %s\r\n" % key.encode())
        return self.values().get(key)

    def stats(self, sub=""):
        self.s.sendall(b"stats%s\r\n" % ((b" " + sub.encode()) if sub else b""))
        st = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return st
            p = ln.decode().split(" ", 2)
            if p[0] != "STAT" or len(p) < 3:
                raise ValueError("unexpected stats line %r" % ln[:100])
            st[p[1]] = p[2]


def store(c, items):
    """items: (key, flags, bytes); pipelined, 200 at a time. Unexpected replies."""
    bad = []
    for lo in range(0, len(items), 200):
        chunk = items[lo:lo + 200]
        c.s.sendall(b"".join(b"set %s %d 0 %d\r\n%s\r\n" % (k.encode(), f, len(v), v)
                             for k, f, v in chunk))
        for k, _, _ in chunk:
            r = c.line()
            if r != b"STORED":
                bad.append("set %s: %r" % (k, r[:80]))
    return bad


def fill(port, n):
    bad = store(Conn(port), [("u:%05d" % i, i, value(i)) for i in range(n)])
    print("fill: %d keys, %d unexpected replies%s" % (n, len(bad), "; " + bad[0] if bad else ""))
    return 1 if bad else 0


def filler(port, n):
    v = b"F" * 20000
    bad = store(Conn(port), [("fill:%04d" % i, 0, v) for i in range(n)])
    print("filler: %d keys of 20000 bytes, %d unexpected replies" % (n, len(bad)))
    return 1 if bad else 0


def expand(port, lo, hi):
    bad = store(Conn(port), [("x:%05d" % i, 7, xvalue(i)) for i in range(lo, hi)])
    print("expand: keys x:%05d..x:%05d, %d unexpected replies" % (lo, hi - 1, len(bad)))
    return 1 if bad else 0


def check(port, n, prefix="u"):
    c = Conn(port, timeout=60)
    bad = []
    for lo in range(0, n, 100):
        keys = ["%s:%05d" % (prefix, i) for i in range(lo, min(n, lo + 100))]
        c.s.sendall(b"get %s\r\n" % " ".join(keys).encode())
        got = c.values()
        for k in keys:
            i = int(k[2:])
            want = (i, value(i)) if prefix == "u" else (7, xvalue(i))
            g = got.get(k)
            if g != want:
                bad.append("%s: %s" % (k, "missing" if g is None else "flags %d, %d bytes (want %d, %d)"
                                        % (g[0], len(g[1]), want[0], len(want[1]))))
    for b in bad[:5]:
        print("check: " + b)
    print("%d keys %s:*: %d wrong or missing" % (n, prefix, len(bad)))
    return 1 if bad else 0


def stats(port, sub=""):
    for k, v in Conn(port).stats(sub).items():
        print(k, v)
    return 0


def held(port, d):
    c = Conn(port)
    res = {"errors": []}
    res["set_before"] = c.call(b"set held:before 5 0 21\r\nset-before-the-update\r\n").decode()
    st = c.stats()
    res["before"] = {"pid": st.get("pid"), "version": st.get("version"), "mcr_code": st.get("mcr_code")}
    res["local_port"] = c.s.getsockname()[1]
    with open(os.path.join(d, "held.ready"), "w") as f:
        f.write("%d\n" % res["local_port"])
    go = os.path.join(d, "held.go")
    t0 = time.monotonic()
    while not os.path.exists(go):
        if time.monotonic() - t0 > 600:
            return 1
        time.sleep(0.05)
    try:
        g = c.get("held:before")
        res["get_before"] = None if g is None else [g[0], g[1].decode()]
        res["set_after"] = c.call(b"set held:after 6 0 20\r\nset-after-the-update\r\n").decode()
        g = c.get("held:after")
        res["get_after"] = None if g is None else [g[0], g[1].decode()]
        st = c.stats()
        res["after"] = {"pid": st.get("pid"), "version": st.get("version"), "mcr_code": st.get("mcr_code")}
    except (OSError, EOFError, ValueError) as e:
        res["errors"].append("%s: %s" % (type(e).__name__, e))
    with open(os.path.join(d, "held.json"), "w") as f:
        json.dump(res, f)
    return 0


def workers(port, k):
    cs = [Conn(port, timeout=5) for _ in range(k)]
    bad = 0
    for i, c in enumerate(cs):
        c.s.sendall(b"set w:%d 0 0 2\r\nw%d\r\n" % (i, i % 10))
    for i, c in enumerate(cs):
        try:
            if c.line() != b"STORED" or c.get("w:%d" % i) != (0, b"w%d" % (i % 10)):
                bad += 1
        except (OSError, EOFError, ValueError) as e:
            print("workers: connection %d: %s" % (i, e))
            bad += 1
    print("workers: %d new connections, %d answered right" % (k, k - bad))
    return 1 if bad else 0


def metadump(port, n):
    c = Conn(port, timeout=30)
    c.s.sendall(b"lru_crawler metadump all\r\n")
    seen = set()
    lines = 0
    # one item a line ending in \n; the last line is END\r\n
    while not c.buf.endswith(b"END\r\n"):
        c.fill_buf()
    for ln in c.buf[:-5].split(b"\n"):
        if not ln:
            continue
        if not ln.startswith(b"key="):
            print("metadump: %r" % ln[:100])
            return 1
        lines += 1
        seen.add(urllib.parse.unquote(ln.split(b" ", 1)[0][4:].decode()))
    have = sum(1 for i in range(n) if "u:%05d" % i in seen)
    print("metadump: %d items listed, %d of the %d keys u:*" % (lines, have, n))
    return 0 if have == n else 1


def reassign(port):
    c = Conn(port, timeout=10)
    sl = c.stats("slabs")
    cls = {}
    for k, v in sl.items():
        m = re.match(r"(\d+):(chunk_size|total_pages)$", k)
        if m:
            cls.setdefault(int(m.group(1)), {})[m.group(2)] = int(v)
    src = [i for i, x in sorted(cls.items()) if x.get("chunk_size", 0) > 20000 and x.get("total_pages", 0) >= 2]
    if not src:
        print("reassign: no class of chunks over 20000 bytes with 2 pages: %r" % cls)
        return 1
    src, dst = src[0], min(cls)
    before = c.stats()
    moved0 = int(before["slabs_moved"])
    r = c.call(b"slabs reassign %d %d\r\n" % (src, dst))
    if r != b"OK":
        print("reassign: slabs reassign %d %d: %r" % (src, dst, r))
        return 1
    t0 = time.monotonic()
    while time.monotonic() - t0 < 15:
        st = c.stats()
        if int(st["slabs_moved"]) > moved0 and st["slab_reassign_running"] == "0":
            pages = c.stats("slabs")
            print("reassign: a page of class %d (%d pages) moved to class %d in %.2f s (slabs_moved %d -> %s; "
                  "class %d now %s pages, class %d %s)"
                  % (src, cls[src]["total_pages"], dst, time.monotonic() - t0, moved0, st["slabs_moved"],
                     src, pages.get("%d:total_pages" % src, "0"), dst, pages.get("%d:total_pages" % dst)))
            return 0
        time.sleep(0.1)
    print("reassign: slabs_moved still %s after 15 s (slab_reassign_running %s)"
          % (st["slabs_moved"], st["slab_reassign_running"]))
    return 1


def watch(port, kind):
    """mutations: 3 sets logged (by workers, through their thread's logger
    c->thread->l); connevents: 3 connections opened and closed (conn_new is
    logged through pthread_getspecific(logger_key), conn_close through
    c->thread->l). Exit 0 all logged; 2 only conn_new missing; 1 otherwise."""
    w = Conn(port, timeout=5)
    r = w.call(b"watch %s\r\n" % kind.encode())
    if r != b"OK":
        print("watch %s: %r" % (kind, r[:100]))
        return 1
    time.sleep(0.2)
    if kind == "mutations":
        c = Conn(port)
        for i in range(3):
            c.call(b"set watched:%d 0 0 1\r\nw\r\n" % i)
        marks = {"sets": b"key=watched%3A"}      # log lines URI-encode the keys
    else:
        for i in range(3):
            c = Conn(port)
            c.call(b"version\r\n")
            c.s.close()
        marks = {"conn_new": b"type=conn_new", "conn_close": b"type=conn_close"}
    w.s.settimeout(0.2)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2 and any(w.buf.count(m) < 3 for m in marks.values()):
        try:
            w.fill_buf()
        except socket.timeout:
            pass
    got = {k: w.buf.count(m) for k, m in marks.items()}
    print("watch %s: %s logged (of 3 each)" % (kind, ", ".join("%d %s" % (n, k) for k, n in got.items())))
    if all(n == 3 for n in got.values()):
        return 0
    return 2 if kind == "connevents" and got["conn_close"] == 3 else 1


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    a = sys.argv[3:]
    try:
        if cmd == "fill":
            sys.exit(fill(port, int(a[0])))
        if cmd == "filler":
            sys.exit(filler(port, int(a[0])))
        if cmd == "check":
            sys.exit(check(port, int(a[0]), *a[1:]))
        if cmd == "expand":
            sys.exit(expand(port, int(a[0]), int(a[1])))
        if cmd == "stats":
            sys.exit(stats(port, *a))
        if cmd == "held":
            sys.exit(held(port, a[0]))
        if cmd == "workers":
            sys.exit(workers(port, int(a[0])))
        if cmd == "metadump":
            sys.exit(metadump(port, int(a[0])))
        if cmd == "reassign":
            sys.exit(reassign(port))
        if cmd == "watch":
            sys.exit(watch(port, a[0]))
    except (OSError, EOFError, ValueError) as e:
        print("%s: %s: %s" % (cmd, type(e).__name__, e))
        sys.exit(1)
    sys.exit("unknown command " + cmd)
