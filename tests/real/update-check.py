#!/usr/bin/env python3
"""Checking client of tests/real/update-lighttpd.sh: one keep-alive connection.

    update-check.py --port PORT --docroot DIR --out FILE [--expect SEQ]
                    [--duration SEC] [--timeout SEC]
                    [--version-header NAME --v1-value A --v2-value B]

Runs until SIGINT/SIGTERM (or --duration) over ONE http.client.HTTPConnection:
GETs, in turn, /file-4k.txt, each file of /dir/ and the listing /dir/, and
checks the status (200) and the body (the file's bytes; for the listing, every
file name). Each answer's version is its `X-Mcr-Code` header ("v2") or "v1"
without one (tests/real/patches/lighttpd-1.4.69-code.patch); with
--version-header NAME --v1-value A --v2-value B, the header NAME says it (A:
v1, B: v2, anything else an error), e.g. Server: lighttpd/1.4.69 and
lighttpd/1.4.79 (tests/real/update-lighttpd-79.sh). A comma-separated
--v1-value is a set of v1's values, and --v2-value '*' any other non-empty
value: tests/real/update-nginx.sh's X-Worker-Pid (nginx's $pid: v1's workers'
pids, any other pid v2's); the v2 values seen go to the summary (v2_values).

Errors: a failed request (exception, timeout, status, body), a reconnect (the
local address of the socket changed: http.client reopens a closed connection
by itself, so this is checked on every request), and a version sequence other
than --expect: "v1,v2" = v1 answers, then v2 answers and no v1 after the first
v2; "v2" = only v2 answers.

Writes a JSON summary to FILE: ops, errors, first_errors, per-version counts,
the request index of the first v2 answer, the local address used, the longest
gap between two answers (ms) and when it ended (seconds from the start).
"""
import argparse
import http.client
import json
import os
import signal
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--docroot", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--expect", default="v1,v2", choices=("v1,v2", "v2", "v1"))
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--version-header", default=None)
    ap.add_argument("--v1-value", default=None)
    ap.add_argument("--v2-value", default=None)
    a = ap.parse_args()
    if a.version_header and (a.v1_value is None or a.v2_value is None):
        ap.error("--version-header needs --v1-value and --v2-value")

    stop = [False]

    def on_signal(sig, frame):
        stop[0] = True
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    names = sorted(os.listdir(os.path.join(a.docroot, "dir")))
    want = {"/file-4k.txt": open(os.path.join(a.docroot, "file-4k.txt"), "rb").read()}
    for n in names:
        want["/dir/" + n] = open(os.path.join(a.docroot, "dir", n), "rb").read()
    v1_values = set(a.v1_value.split(",")) if a.v1_value is not None else set()
    paths = ["/file-4k.txt"] + ["/dir/" + n for n in names] + ["/dir/"]

    st = {"tool": "update-check", "ops": 0, "errors": 0, "first_errors": [],
          "versions": {"v1": 0, "v2": 0}, "first_v2": None, "v1_after_v2": 0,
          "v2_values": [], "local": None, "reconnects": 0, "max_gap_ms": 0.0, "max_gap_at": 0.0}
    t0 = time.monotonic()

    def error(text):
        st["errors"] += 1
        if len(st["first_errors"]) < 20:
            st["first_errors"].append("%.3f %s" % (time.monotonic() - t0, text))

    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.timeout)
    last = None
    i = 0
    while not stop[0] and not (a.duration and time.monotonic() - t0 >= a.duration):
        path = paths[i % len(paths)]
        i += 1
        try:
            conn.request("GET", path)
            local = conn.sock.getsockname()
            r = conn.getresponse()
            body = r.read()
        except Exception as e:  # noqa: BLE001 (any failure is counted)
            if stop[0]:
                break
            error("GET %s: %s: %s" % (path, type(e).__name__, e))
            conn.close()
            time.sleep(0.05)
            continue
        now = time.monotonic()
        if st["local"] is None:
            st["local"] = "%s:%d" % local
        elif st["local"] != "%s:%d" % local:
            st["reconnects"] += 1
            error("GET %s: on another connection (%s:%d, was %s): the keep-alive "
                  "connection was closed" % ((path,) + local + (st["local"],)))
            st["local"] = "%s:%d" % local
        if last is not None and (now - last) * 1000 > st["max_gap_ms"]:
            st["max_gap_ms"] = round((now - last) * 1000, 3)
            st["max_gap_at"] = round(now - t0, 3)
        last = now
        if a.version_header:
            hv = r.getheader(a.version_header)
            ver = ("v1" if hv in v1_values else
                   "v2" if hv == a.v2_value or (a.v2_value == "*" and hv) else None)
            if ver is None:
                error("GET %s: %s: %r, neither v1's %r nor v2's %r"
                      % (path, a.version_header, hv, a.v1_value, a.v2_value))
                continue
        else:
            ver = "v2" if r.getheader("X-Mcr-Code") == "v2" else "v1"
        if r.status != 200:
            error("GET %s: status %d (%s)" % (path, r.status, ver))
            continue
        if path == "/dir/":
            text = body.decode("utf-8", "replace")
            missing = [n for n in names if n not in text]
            if missing:
                error("GET /dir/: listing without %d of %d files (%s...)" %
                      (len(missing), len(names), missing[0]))
                continue
        elif body != want[path]:
            error("GET %s: wrong body (%d bytes, want %d)" % (path, len(body), len(want[path])))
            continue
        st["ops"] += 1
        st["versions"][ver] += 1
        if ver == "v2" and a.version_header and hv not in st["v2_values"] \
                and len(st["v2_values"]) < 20:
            st["v2_values"].append(hv)
        if ver == "v2" and st["first_v2"] is None:
            st["first_v2"] = st["ops"]
        if ver == "v1" and st["first_v2"] is not None:
            st["v1_after_v2"] += 1
            error("GET %s: answered by v1 after v2 had answered" % path)
    conn.close()

    v = st["versions"]
    if a.expect == "v1,v2":
        if v["v1"] == 0:
            error("no answer from v1 (before the update)")
        if v["v2"] == 0:
            error("no answer from v2 (after the update) on the connection")
    elif a.expect == "v2" and v["v1"]:
        error("%d answers from v1, expected v2 only" % v["v1"])
    elif a.expect == "v1" and v["v2"]:
        error("%d answers from v2, expected v1 only" % v["v2"])
    st["seconds"] = round(time.monotonic() - t0, 3)
    st["ops_per_s"] = round(st["ops"] / st["seconds"], 1) if st["seconds"] else 0
    with open(a.out + ".tmp", "w") as f:
        json.dump(st, f)
        f.write("\n")
    os.rename(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
