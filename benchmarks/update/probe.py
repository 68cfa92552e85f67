#!/usr/bin/env python3
"""probe.py - the pause a redis client sees: PING every INTERVAL ms, record the
longest gap between two successful replies (+PONG).

  probe.py --port P [--mode persistent|connect] [--interval-ms 1] --out FILE
           [--ready FILE]

persistent  one connection kept open; on EOF, reset or a reply timeout it
            reconnects (every INTERVAL ms until it can) and carries on. A server
            that is frozen and brought back with its TCP connections (CRIU
            --tcp-established) answers on the same connection.
connect     a new connection for every PING (what a client that connects after
            the pause sees; refused connections are retried every INTERVAL ms).

Anything but +PONG (e.g. -LOADING while redis reads its RDB) is not a success.
Runs until SIGTERM or SIGINT, then writes one JSON object to FILE: replies,
failures, reconnects, max_gap_ms with its start and end (time.monotonic(),
i.e. CLOCK_MONOTONIC, the clock the driver uses), first/last reply, and
open_gap_ms (time since the last success when stopped: non-zero means the
server never came back). --ready FILE is created after the first success.

Also a minimal RESP client (Redis) that bench.py uses.
"""
import argparse
import json
import os
import signal
import socket
import sys
import time


class RespError(Exception):
    pass


class Redis:
    """Blocking RESP2 client: enough for PING, DBSIZE, GET, SAVE, INFO."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError("bad RESP reply %r" % line[:40])

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def cmd(self, *args):
        self.sock.sendall(self.encode(*args))
        r = self._reply()
        if isinstance(r, RespError):
            raise r
        return r

    def pipeline(self, cmds):
        """Sends all commands at once and returns their replies (errors as
        RespError values, not raised)."""
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))
        return [self._reply() for _ in cmds]


PING = b"*1\r\n$4\r\nPING\r\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("persistent", "connect"), default="persistent")
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--reply-timeout", type=float, default=30.0,
                    help="seconds without a reply before reconnecting (persistent)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()

    st = {"mode": a.mode, "port": a.port, "interval_ms": a.interval_ms,
          "replies": 0, "failures": 0, "reconnects": 0, "errors": {},
          "max_gap_ms": 0.0, "max_gap_from": None, "max_gap_to": None,
          "first_reply": None, "last_reply": None, "started": time.monotonic()}
    stop = [False]

    def on_signal(sig, frame):
        stop[0] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    interval = a.interval_ms / 1000.0
    sock = None

    def fail(what):
        st["failures"] += 1
        st["errors"][what] = st["errors"].get(what, 0) + 1

    def ping_once(s):
        s.sendall(PING)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionError("eof")
            buf += chunk
        return buf.startswith(b"+PONG")

    try:
        while not stop[0]:
            t = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", a.port), timeout=a.reply_timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if a.mode == "persistent" and st["replies"]:
                        st["reconnects"] += 1
                ok = ping_once(sock)
            except (OSError, ConnectionError) as e:
                fail(type(e).__name__)
                if sock is not None:
                    sock.close()
                    sock = None
                ok = None
            if a.mode == "connect" and sock is not None:
                sock.close()
                sock = None
            now = time.monotonic()
            if ok:
                last = st["last_reply"]
                if last is not None and now - last > st["max_gap_ms"] / 1000.0:
                    st["max_gap_ms"] = (now - last) * 1000.0
                    st["max_gap_from"], st["max_gap_to"] = last, now
                if st["first_reply"] is None:
                    st["first_reply"] = now
                    if a.ready:
                        open(a.ready, "w").close()
                st["last_reply"] = now
                st["replies"] += 1
            elif ok is False:
                fail("not_pong")
            delay = t + interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except KeyboardInterrupt:
        pass
    end = time.monotonic()
    st["stopped"] = end
    st["open_gap_ms"] = (end - st["last_reply"]) * 1000.0 if st["last_reply"] else None
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.rename(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
