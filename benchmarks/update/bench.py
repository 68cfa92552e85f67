#!/usr/bin/env python3
"""bench.py - the driver of benchmarks/update/run.sh (see there for the options
and what is measured). Writes one JSON object per measurement to OUT/raw.jsonl.

Every method starts and ends with the same redis (N keys) serving on PORT; the
driver is a child subreaper, so a redis that CRIU restores detached is its
child and is reaped at once (its PID must be free for the next restore).
"""
import argparse
import ctypes
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe import Redis, RespError  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36


def log(msg):
    print("update-bench: " + msg, file=sys.stderr, flush=True)


def key_of(i):
    return "key:%012d" % i  # 16 bytes


def value_of(i):
    head = "val:%012d:" % i  # 17 bytes
    fill = ("%08x" % ((i * 2654435761) & 0xFFFFFFFF)) * 6
    return head + fill[:47]  # 64 bytes


def ms(a, b):
    return round((b - a) * 1000.0, 3)


class Server:
    """The redis under test: started by us (Popen) or adopted after a CRIU
    restore or an mcr update (a PID only)."""

    def __init__(self, a, work):
        self.a = a
        self.work = work
        self.proc = None
        self.pid = None
        self.logf = None

    def argv(self):
        return [self.a.redis, "--port", str(self.a.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.work, "--dbfilename", "dump.rdb",
                "--protected-mode", "no"]

    def start(self):
        self.logf = open(os.path.join(self.work, "redis.log"), "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        return self.pid

    def adopt(self, pid):
        """The server is now PID, not started by Popen (CRIU restore, mcr update)."""
        self.proc = None
        self.pid = pid

    def reap(self, timeout=30.0):
        """Waits until the current PID has exited and is reaped."""
        deadline = time.monotonic() + timeout
        if self.proc is not None:
            self.proc.wait(timeout=timeout)
            return
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
                if pid == self.pid:
                    return
            except ChildProcessError:
                # Not our child (no subreaper?): wait for it to disappear.
                if not os.path.exists("/proc/%d" % self.pid):
                    return
            time.sleep(0.001)
        raise RuntimeError("redis PID %d did not exit within %.0f s" % (self.pid, timeout))

    def stop(self, sig=signal.SIGTERM):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        self.reap()
        self.pid = None
        self.proc = None


def wait_ready(port, n, timeout=120.0):
    """Polls until PING answers PONG and DBSIZE == n; returns the time it did."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = Redis(port, timeout=2.0)
            try:
                if r.cmd("PING") == "PONG":
                    size = r.cmd("DBSIZE")
                    if size == n:
                        return time.monotonic()
                    last = "DBSIZE %s" % size
            finally:
                r.close()
        except (OSError, ConnectionError, RespError) as e:
            last = str(e)
        time.sleep(0.001)
    raise RuntimeError("redis on port %d not ready with %d keys after %.0f s (%s)"
                       % (port, n, timeout, last))


def verify(port, n, samples=2000):
    """DBSIZE == n and `samples` random keys hold their values. Returns a dict."""
    r = Redis(port, timeout=30.0)
    try:
        size = r.cmd("DBSIZE")
        idx = [random.randrange(n) for _ in range(samples)] + [0, n - 1]
        got = r.pipeline([("GET", key_of(i)) for i in idx])
        bad = sum(1 for i, v in zip(idx, got) if v != value_of(i).encode())
    finally:
        r.close()
    return {"dbsize": size, "sampled": len(idx), "sample_mismatches": bad,
            "keys_ok": size == n and bad == 0}


def fill(port, n):
    """SETs n keys through `redis-cli --pipe` (RESP generated here)."""
    t0 = time.monotonic()
    p = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    chunk = []
    for i in range(n):
        k, v = key_of(i), value_of(i)
        chunk.append("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
        if len(chunk) == 10000:
            p.stdin.write("".join(chunk).encode())
            chunk = []
    p.stdin.write("".join(chunk).encode())
    p.stdin.close()
    out = p.stdout.read().decode(errors="replace")
    if p.wait() != 0 or "errors: 0" not in out:
        raise RuntimeError("redis-cli --pipe failed: " + out.strip()[-300:])
    log("filled %d keys in %.1f s" % (n, time.monotonic() - t0))


def proc_status(pid):
    st = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                st[k] = int(v.split()[0]) * 1024
    return st


def redis_info_memory(port):
    r = Redis(port)
    try:
        text = r.cmd("INFO", "memory").decode()
    finally:
        r.close()
    return {k: int(v) for k, v in re.findall(r"^(used_memory|used_memory_rss):(\d+)", text, re.M)}


class Probes:
    """Two probe.py clients (persistent connection, new connection per PING)
    around one operation."""

    MODES = ("persistent", "connect")

    def __init__(self, a, work, tag):
        self.a, self.work, self.tag = a, work, tag
        self.procs = {}

    def start(self):
        for m in self.MODES:
            out = os.path.join(self.work, "probe-%s-%s.json" % (self.tag, m))
            ready = out + ".ready"
            for f in (out, ready):
                if os.path.exists(f):
                    os.unlink(f)
            self.procs[m] = (subprocess.Popen(
                [sys.executable, os.path.join(HERE, "probe.py"), "--port", str(self.a.port),
                 "--mode", m, "--interval-ms", str(self.a.probe_interval_ms),
                 "--out", out, "--ready", ready]), out, ready)
        deadline = time.monotonic() + 10
        while not all(os.path.exists(r) for _, _, r in self.procs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("probes got no first reply within 10 s")
            time.sleep(0.005)
        time.sleep(0.05)  # a few replies before the operation

    def stop(self):
        """Stops them after a short tail of good replies; returns
        {mode: probe result}."""
        time.sleep(0.05)
        res = {}
        for m, (p, out, _) in self.procs.items():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
            with open(out) as f:
                res[m] = json.load(f)
        self.procs = {}
        return res


def probe_fields(res, t_from=None):
    """Flattens probe results into record fields."""
    d = {}
    for m, r in res.items():
        d["probe_%s_gap_ms" % m] = round(r["max_gap_ms"], 3)
        d["probe_%s_open_gap_ms" % m] = round(r["open_gap_ms"] or 0, 3)
        d["probe_%s_replies" % m] = r["replies"]
        d["probe_%s_failures" % m] = r["failures"]
        if r.get("reconnects") is not None and m == "persistent":
            d["probe_persistent_reconnects"] = r["reconnects"]
        if t_from is not None and r["max_gap_from"] is not None:
            # Where the gap lies relative to the start of the operation.
            d["probe_%s_gap_at_ms" % m] = ms(t_from, r["max_gap_from"])
    return d


def mcr_status_heap(a, pid):
    """Heap bytes if `mcr-ctl status PID --json` reports them, else None."""
    try:
        out = subprocess.run([a.ctl, "status", str(pid), "--json"], capture_output=True,
                             text=True, timeout=30).stdout
        st = json.loads(out)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None, None
    found = []

    def walk(o, path):
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + [k])
        elif isinstance(o, (int, float)) and not isinstance(o, bool):
            p = ".".join(path)
            if "heap" in p and re.search(r"(live|used).*bytes|bytes.*(live|used)", p):
                found.append((p, int(o)))
    walk(st, [])
    return (found[0][1], "mcr-ctl status: " + found[0][0]) if found else (None, None)


# --- the methods --------------------------------------------------------------

def measure_memcpy(a, srv, r):
    heap, source = mcr_status_heap(a, srv.pid)
    st = proc_status(srv.pid)
    if heap is None:
        heap, source = st["VmRSS"], "/proc/PID/status VmRSS (mcr-ctl status reports no heap bytes)"
    mem = redis_info_memory(a.port)
    out = subprocess.run([a.memcpy, str(heap), "--copies", str(a.copies)], check=True,
                         capture_output=True, text=True).stdout
    m = json.loads(out)
    rec = {"heap_bytes": heap, "heap_source": source, "vmrss_bytes": st.get("VmRSS"),
           "rss_anon_bytes": st.get("RssAnon"), "redis_used_memory": mem.get("used_memory"),
           "memcpy_ms": m["warm_median_ms"], "memcpy_min_ms": m["warm_min_ms"],
           "memcpy_cold_ms": m["cold_median_ms"], "memcpy_cold_min_ms": m["cold_min_ms"],
           "copies": m["copies"]}
    rec["goal_pause_ms"] = round(2 * rec["memcpy_ms"] + 5, 3)
    return rec


def measure_criu(a, srv, r):
    img = a.images or os.path.join(a.work, "criu-img")
    shutil.rmtree(img, ignore_errors=True)
    os.makedirs(img)
    old = srv.pid
    probes = Probes(a, a.work, "criu-%d" % r)
    probes.start()
    t0 = time.monotonic()
    # --skip-in-flight: connections of the connect probe still in the accept
    # queue are dropped (that client retries) instead of failing the dump.
    d = subprocess.run([a.criu, "dump", "-t", str(old), "--shell-job", "--tcp-established",
                        "--skip-in-flight", "-D", img, "-o", "dump.log", "-v2"], capture_output=True, text=True)
    t1 = time.monotonic()
    if d.returncode != 0:
        probes.stop()
        raise RuntimeError("criu dump failed (rc %d); see %s/dump.log: %s"
                           % (d.returncode, img, tail(os.path.join(img, "dump.log"))))
    srv.reap()  # the dumped task was killed; its PID must be free for restore
    t2 = time.monotonic()
    rs = subprocess.run([a.criu, "restore", "-D", img, "--shell-job", "--tcp-established",
                         "-d", "-o", "restore.log", "-v2"], capture_output=True, text=True)
    t3 = time.monotonic()
    if rs.returncode != 0:
        probes.stop()
        raise RuntimeError("criu restore failed (rc %d); see %s/restore.log: %s"
                           % (rs.returncode, img, tail(os.path.join(img, "restore.log"))))
    srv.adopt(old)  # restored with the same PID, now our child (subreaper)
    t4 = wait_ready(a.port, a.keys)
    res = probes.stop()
    v = verify(a.port, a.keys)
    size = sum(os.path.getsize(os.path.join(img, f)) for f in os.listdir(img))
    rec = {"dump_ms": ms(t0, t1), "reap_ms": ms(t1, t2), "restore_ms": ms(t2, t3),
           "ready_ms": ms(t0, t4), "image_bytes": size}
    rec.update(probe_fields(res, t0))
    rec.update(v)
    if not a.keep_images:
        shutil.rmtree(img, ignore_errors=True)
    return rec


def measure_restart(a, srv, r):
    c = Redis(a.port, timeout=300)
    try:
        ts = time.monotonic()
        c.cmd("SAVE")  # not counted
        save_ms = ms(ts, time.monotonic())
    finally:
        c.close()
    rdb = os.path.getsize(os.path.join(a.work, "dump.rdb"))
    probes = Probes(a, a.work, "restart-%d" % r)
    probes.start()
    t0 = time.monotonic()
    srv.stop()
    t1 = time.monotonic()
    srv.start()
    t2 = wait_ready(a.port, a.keys)
    res = probes.stop()
    v = verify(a.port, a.keys)
    rec = {"save_ms": save_ms, "rdb_bytes": rdb, "stop_ms": ms(t0, t1), "ready_ms": ms(t0, t2)}
    rec.update(probe_fields(res, t0))
    rec.update(v)
    # The other methods run without persistence, as the server started: with
    # the RDB file left there, the new version of an mcr update would load the
    # whole dataset again at its startup (docs/update.md, "Limits").
    os.unlink(os.path.join(a.work, "dump.rdb"))
    return rec


def mcr_update_available(a):
    try:
        return subprocess.run([a.ctl, "update", "--help"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def listener_pid(port):
    """PID of the process listening on 127.0.0.1:port (from /proc/net/tcp)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[3] == "0A" and int(p[1].split(":")[1], 16) == port:
                inode = p[9]
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == target:
                    return int(pid)
        except OSError:
            continue
    return None


def measure_mcr_update(a, srv, r):
    """`mcr-ctl update PID NEW --json`: its reported client pause and the probes'
    gaps. NEW is --new (default: the same binary)."""
    old = srv.pid
    probes = Probes(a, a.work, "mcr-%d" % r)
    probes.start()
    t0 = time.monotonic()
    u = subprocess.run([a.ctl, "update", str(old), a.new, "--json"], capture_output=True,
                       text=True, timeout=600)
    t1 = time.monotonic()
    if u.returncode != 0:
        probes.stop()
        raise RuntimeError("mcr-ctl update failed (rc %d): %s"
                           % (u.returncode, (u.stderr or u.stdout).strip()[-500:]))
    rep = json.loads(u.stdout)
    t2 = wait_ready(a.port, a.keys)
    res = probes.stop()
    # The reported pause: the first numeric field whose name says pause.
    pause = None
    for k, val in rep.items():
        if "pause" in k and isinstance(val, (int, float)):
            pause = (k, val)
            break
    new = None
    for k in ("new_pid", "pid"):
        if isinstance(rep.get(k), int) and rep[k] != old:
            new = rep[k]
            break
    srv.reap(timeout=30)  # the old process exits after the commit
    if new is None:
        new = listener_pid(a.port)  # the old one shares the socket until it exits
    if new is None:
        raise RuntimeError("after the update nothing listens on port %d" % a.port)
    srv.adopt(new)  # spawned by the old process, so now our child (subreaper)
    v = verify(a.port, a.keys)
    rec = {"ctl_wall_ms": ms(t0, t1), "ready_ms": ms(t0, t2), "new_pid": new, "report": rep}
    if pause:
        k, val = pause
        # *_us / *_ns / *_ms by the field's name.
        scale = 1e-3 if k.endswith("_us") else 1e-6 if k.endswith("_ns") else 1.0
        rec["reported_pause_ms"] = round(val * scale, 3)
        rec["reported_pause_field"] = k
    rec.update(probe_fields(res, t0))
    rec.update(v)
    # the part of the heap copied in the pause (the runtime's note)
    for note in rep.get("notes", []):
        m = re.match(r"the pause copies ([0-9.]+) of the heap's ([0-9.]+) MB", note)
        if m:
            rec["pause_copy_mb"] = float(m.group(1))
            rec["heap_mb"] = float(m.group(2))
    return rec


class Writer:
    """SETs random existing keys to their own values (content unchanged, so the
    checks after still hold; the heap's pages are written: each SET replaces
    the value object) in pipelined batches of 100 on one connection, as fast as
    it goes, until stopped."""

    def __init__(self, port, n):
        self.port, self.n, self.stop_flag, self.count, self.errors = port, n, False, 0, 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        r = Redis(self.port, timeout=30.0)
        try:
            while not self.stop_flag:
                idx = [random.randrange(self.n) for _ in range(100)]
                try:
                    got = r.pipeline([("SET", key_of(i), value_of(i)) for i in idx])
                    self.errors += sum(1 for g in got if g != "OK")
                    self.count += len(idx)
                except (OSError, ConnectionError, RespError):
                    self.errors += 1
                    r.close()
                    r = Redis(self.port, timeout=30.0)
        finally:
            r.close()

    def start(self):
        self.t0 = time.monotonic()
        self.t.start()

    def stop(self):
        self.stop_flag = True
        self.t.join(60)
        secs = time.monotonic() - self.t0
        return {"writes": self.count, "write_errors": self.errors,
                "writes_per_s": round(self.count / secs) if secs > 0 else 0}


def measure_mcr_writes(a, srv, r):
    """As mcr, while a client writes (Writer): the pages written between the
    pre-copy and the quiesce are copied in the pause."""
    w = Writer(a.port, a.keys)
    w.start()
    time.sleep(1.0)
    try:
        rec = measure_mcr_update(a, srv, r)
    finally:
        wrec = w.stop()
    rec.update(wrec)
    return rec


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(l.strip() for l in f.readlines()[-n:])
    except OSError:
        return "(no log)"


METHODS = {"memcpy": measure_memcpy, "criu": measure_criu, "restart": measure_restart,
           "mcr": measure_mcr_update, "mcr-writes": measure_mcr_writes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True)
    ap.add_argument("--new", help="the new binary for mcr-ctl update (default --redis)")
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--criu")
    ap.add_argument("--memcpy", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=7)
    ap.add_argument("--methods", default="memcpy,criu,restart,mcr")
    ap.add_argument("--probe-interval-ms", type=float, default=1.0)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--images", help="CRIU's image directory (default WORK/criu-img)")
    ap.add_argument("--keep-images", action="store_true")
    a = ap.parse_args()
    a.new = a.new or a.redis
    methods = [m for m in a.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            sys.exit("update-bench: unknown method '%s'" % m)
    if "criu" in methods and not a.criu:
        sys.exit("update-bench: method criu needs --criu")
    if ("mcr" in methods or "mcr-writes" in methods) and not mcr_update_available(a):
        log("mcr update: not available yet (`%s update --help` fails): skipped" % a.ctl)
        methods.remove("mcr")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: PR_SET_CHILD_SUBREAPER failed (errno %d)" % ctypes.get_errno())

    raw = open(os.path.join(a.out, "raw.jsonl"), "a")
    srv = Server(a, a.work)
    srv.start()
    failures = 0
    try:
        wait_ready(a.port, 0, timeout=30)
        fill(a.port, a.keys)
        v = verify(a.port, a.keys)
        if not v["keys_ok"]:
            raise RuntimeError("after the fill: %s" % v)
        for r in range(a.repeats):
            # Alternate: each repeat starts one method later.
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for m in order:
                log("repeat %d/%d: %s" % (r + 1, a.repeats, m))
                rec = {"method": m, "repeat": r, "keys": a.keys, "pid_before": srv.pid,
                       "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                try:
                    rec.update(METHODS[m](a, srv, r))
                    rec["ok"] = rec.get("keys_ok", True)
                except Exception as e:  # one failed measurement must not end the run
                    rec["ok"] = False
                    rec["error"] = str(e)
                    failures += 1
                    log("%s failed: %s" % (m, e))
                    if srv.pid is None or not os.path.exists("/proc/%d" % srv.pid):
                        lp = listener_pid(a.port)
                        if lp:
                            srv.adopt(lp)
                        else:
                            log("redis is gone: restarting it and filling again")
                            srv.start()
                            wait_ready(a.port, 0, timeout=30)
                            fill(a.port, a.keys)
                raw.write(json.dumps(rec) + "\n")
                raw.flush()
                show = {k: rec[k] for k in rec if k.endswith("_ms") and "gap_at" not in k}
                log("  " + " ".join("%s=%s" % kv for kv in show.items()))
    finally:
        raw.close()
        try:
            srv.stop()
        except Exception as e:
            log("stopping redis: %s" % e)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
