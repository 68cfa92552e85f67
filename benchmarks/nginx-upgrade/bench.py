#!/usr/bin/env python3
"""bench.py - the measurements of benchmarks/nginx-upgrade/run.sh (see there).

    bench.py run --plain BIN --mcr BIN --ctl MCR_CTL --work DIR [--repeats R]
                 [--modes baseline,usr2,mcr-baseline,mcr] [--port-base P]
                 [--duration S] [--at S] [--threads T] [--conns C] [--json OUT]
                 [--plain-new BIN --mcr-new BIN [--update-arg ARG]...]
    bench.py client PORT SECONDS OUT        (the keep-alive checking client)
    bench.py summarize DIR [--json OUT]     (the table from DIR/raw.jsonl)

Each run of a mode starts a fresh nginx (master + 2 workers) in DIR/MODE-N/, runs
wrk and the checking client against it, does the mode's upgrade (if any) at
--at seconds after wrk started, stops nginx, and appends one JSON record to
DIR/raw.jsonl. The modes:

  baseline      plain nginx (daemon on, as usr2 needs), no upgrade
  usr2          plain nginx: USR2, new master's pid file and its 2 workers, WINCH,
                old workers gone, QUIT, old master gone (nginx's binary upgrade)
  mcr-baseline  mcr build of nginx (daemon off, as mcr needs), no update
  mcr           mcr build: mcr-ctl update MASTER SAME-BINARY --json

With --plain-new and --mcr-new the upgrade goes to those binaries instead: usr2
runs a copy of the plain binary, replaced by --plain-new right before the USR2 (as
a package upgrade replaces it); mcr updates to --mcr-new with the --update-arg
arguments (a --rename-file).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

BODY = b"q" * 4096
MODES = ("baseline", "usr2", "mcr-baseline", "mcr")
WINDOW = 1.0   # s from the upgrade's start in which the client's worst latency is taken


# --- the keep-alive checking client --------------------------------------------------

def client_main(port, secs, out):
    """One keep-alive connection, a GET of the 4 KiB file every 10 ms; each reply's
    status and body are checked. A failure (error, close, wrong reply) counts, and
    the client reconnects (the connect is part of the next request's latency) and
    goes on. Event times are from the client's start; each request is recorded as
    [start (time.monotonic(), the same clock in every process), latency ms, ok]."""
    req = b"GET /file-4k.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"

    def connect():
        return socket.create_connection(("127.0.0.1", port), timeout=2)

    def get(s):
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("closed by the server")
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 200"):
            raise ValueError("status %r" % lines[0])
        n = None
        for l in lines[1:]:
            if l.lower().startswith(b"content-length:"):
                n = int(l.split(b":", 1)[1])
        if n is None:
            raise ValueError("no Content-Length")
        while len(body) < n:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("closed mid-body")
            body += d
        if body != BODY:
            raise ValueError("wrong body (%d bytes)" % len(body))

    t0 = time.monotonic()
    ok = fails = reconnects = 0
    worst = 0.0
    events, reqs = [], []
    s = None
    while time.monotonic() - t0 < secs:
        a = time.monotonic()
        try:
            if s is None:
                s = connect()
            get(s)
            lat = time.monotonic() - a
            worst = max(worst, lat)
            reqs.append([round(a, 4), round(lat * 1e3, 3), 1])
            ok += 1
        except Exception as e:  # noqa: BLE001 - every failure counts
            reqs.append([round(a, 4), round((time.monotonic() - a) * 1e3, 3), 0])
            fails += 1
            events.append("%.3f fail: %s" % (time.monotonic() - t0, e))
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass
            s = None
            reconnects += 1
        time.sleep(0.01)
    with open(out, "w") as f:
        json.dump({"ok": ok, "fails": fails, "reconnects": reconnects,
                   "max_ms": round(worst * 1e3, 2), "events": events, "requests": reqs}, f)


# --- processes ------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid) of pid, None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def children(pid):
    """Live children of pid (from /proc/PID/task/*/children: cheap enough to poll)."""
    out = set()
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out.update(int(x) for x in f.read().split())
    except OSError:
        if os.path.exists("/proc/%d" % pid):
            return children_scan(pid)
    return sorted(c for c in out if alive(c))


def children_scan(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st and st[1] == pid and st[0] != "Z":
                out.append(int(d))
    return sorted(out)


def procs_of(binary):
    """Live processes whose executable is binary."""
    real = os.path.realpath(binary)
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == real and alive(int(d)):
                    out.append(int(d))
            except OSError:
                pass
    return sorted(out)


def listen_inode(port):
    """Inode of the socket listening on 127.0.0.1:port (/proc/net/tcp)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == want and p[3] == "0A":
                return int(p[9])
    return None


def holds_socket(pid, inode):
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%d]" % inode:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_for(cond, timeout, step=0.005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def http_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /file-4k.txt HTTP/1.0\r\n\r\n")
            buf = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
        return buf.startswith(b"HTTP/1.1 200") and buf.endswith(BODY)
    except OSError:
        return False


def free_port(p):
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                p += 1


# --- wrk ----------------------------------------------------------------------------

def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text):
    r = {"requests": None, "req_per_s": None, "p50_ms": None, "p99_ms": None,
         "max_ms": None, "err_connect": 0, "err_read": 0, "err_write": 0,
         "err_timeout": 0, "non_2xx": 0}
    m = re.search(r"^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\s", text, re.M)
    if m:
        r["max_ms"] = ms(*m.groups())
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % pct, text, re.M)
        if m:
            r[key] = ms(*m.groups())
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        r["req_per_s"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        (r["err_connect"], r["err_read"], r["err_write"],
         r["err_timeout"]) = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r["non_2xx"] = int(m.group(1))
    r["errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    return r


# --- one run ------------------------------------------------------------------------

def write_conf(run, port, daemon):
    os.makedirs(os.path.join(run, "conf"))
    os.makedirs(os.path.join(run, "logs"))
    os.makedirs(os.path.join(run, "docroot"))
    with open(os.path.join(run, "docroot", "file-4k.txt"), "wb") as f:
        f.write(BODY)
    user = "user root;\n" if os.getuid() == 0 else ""
    with open(os.path.join(run, "conf", "nginx.conf"), "w") as f:
        f.write("""%sworker_processes 2;
daemon %s;
master_process on;
pid logs/nginx.pid;
error_log logs/error.log notice;
events { worker_connections 256; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    keepalive_timeout 60;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:%d;
        server_name localhost;
        root %s/docroot;
    }
}
""" % (user, "on" if daemon else "off", port, run))


class Run:
    def __init__(self, args, mode, rep):
        self.a, self.mode, self.rep = args, mode, rep
        self.dir = os.path.join(args.work, "%s-%d" % (mode, rep))
        self.plain = mode in ("baseline", "usr2")
        self.bin = args.plain if self.plain else args.mcr
        # the version upgraded to: the same binary, or --plain-new / --mcr-new
        self.new_bin = (args.plain_new if self.plain else args.mcr_new) or self.bin
        self.port = free_port(args.port_base)
        self.pidfile = os.path.join(self.dir, "logs", "nginx.pid")
        self.seen = set()     # every nginx process of this run, for the cleanup
        self.fg = None        # the Popen of a daemon-off master
        self.rec = {"mode": mode, "repeat": rep, "port": self.port, "binary": self.bin,
                    "ok": False}

    def log(self, msg):
        print("nginx-upgrade: [%s %d] %s" % (self.mode, self.rep, msg), file=sys.stderr)

    def start(self):
        subprocess.run(["rm", "-rf", self.dir], check=True)
        write_conf(self.dir, self.port, daemon=self.plain)
        if self.plain and self.new_bin != self.bin:
            # USR2 starts the binary at the running one's path: run a copy of
            # it, which the upgrade replaces, as a package upgrade does
            os.makedirs(os.path.join(self.dir, "sbin"))
            run_bin = os.path.join(self.dir, "sbin", "nginx")
            shutil.copy2(self.bin, run_bin)
            self.bin = run_bin
        cmd = [self.bin, "-p", self.dir + "/", "-c", "conf/nginx.conf"]
        logf = open(os.path.join(self.dir, "server.log"), "w")
        if self.plain:   # daemon on: the command returns once the master runs
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                           check=True, timeout=30)
        else:
            self.fg = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                       stderr=logf, start_new_session=True)
        logf.close()
        if not wait_for(lambda: read_pid(self.pidfile) and
                        len(children(read_pid(self.pidfile))) == 2 and http_ok(self.port),
                        30, 0.05):
            raise RuntimeError("nginx did not come up on 127.0.0.1:%d (%s)"
                               % (self.port, self.dir))
        self.master = read_pid(self.pidfile)
        self.workers = children(self.master)
        self.seen.update([self.master] + self.workers)
        self.inode = listen_inode(self.port)
        self.rec.update(master=self.master, workers=self.workers, listen_inode=self.inode)

    def stop(self):
        pids = set(self.seen)
        p = read_pid(self.pidfile)
        if p:
            pids.add(p)
        for pid in list(pids):
            pids.update(children(pid))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGQUIT)
            except OSError:
                pass
        wait_for(lambda: not any(alive(x) for x in pids), 5, 0.05)
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.fg:
            try:
                self.fg.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def usr2(self, t_wrk):
        """nginx's binary upgrade to the same binary. Times in ms from the USR2."""
        old, oldw = self.master, set(children(self.master))
        r = {}
        t = time.monotonic()
        r["at_s"] = round(t - t_wrk, 3)
        if self.new_bin != self.bin:  # the new version in place, then USR2
            shutil.copy2(self.new_bin, self.bin + ".new")
            os.rename(self.bin + ".new", self.bin)
        os.kill(old, signal.SIGUSR2)
        new = [None]

        def new_up():
            p = read_pid(self.pidfile)
            if p and p != old and len(children(p)) == 2:
                new[0] = p
                return True
            return False
        if not wait_for(new_up, 10):
            r["error"] = "no new master with 2 workers 10 s after USR2"
            return r
        r["new_up_ms"] = round((time.monotonic() - t) * 1e3, 1)
        new = new[0]
        self.seen.update([new] + children(new))
        oldw = set(children(old)) - {new}
        self.seen.update(oldw)
        tw = time.monotonic()
        os.kill(old, signal.SIGWINCH)
        if not wait_for(lambda: not (set(children(old)) - {new}), 20):
            r["error"] = "old workers still there 20 s after WINCH"
            return r
        r["old_workers_gone_ms"] = round((time.monotonic() - t) * 1e3, 1)
        r["winch_to_workers_gone_ms"] = round((time.monotonic() - tw) * 1e3, 1)
        tq = time.monotonic()
        os.kill(old, signal.SIGQUIT)
        if not wait_for(lambda: not alive(old), 10):
            r["error"] = "old master still there 10 s after QUIT"
            return r
        r["quit_to_master_gone_ms"] = round((time.monotonic() - tq) * 1e3, 1)
        r["done_ms"] = round((time.monotonic() - t) * 1e3, 1)
        r["new_master"], r["new_workers"] = new, children(new)
        r["old_workers"] = sorted(oldw)
        self.new_master = new
        return r

    def mcr(self, t_wrk):
        """mcr-ctl update MASTER SAME-BINARY --json."""
        r = {}
        t = time.monotonic()
        r["at_s"] = round(t - t_wrk, 3)
        try:
            p = subprocess.run([self.a.ctl, "update", str(self.master), self.new_bin, "--json",
                                "--report", os.path.join(self.dir, "update.report")]
                               + (self.a.update_arg or []),
                               capture_output=True, text=True, timeout=120)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, e.stdout or "", "timed out after 120 s"
        r["done_ms"] = round((time.monotonic() - t) * 1e3, 1)
        r["ctl_exit"] = rc
        with open(os.path.join(self.dir, "mcr-ctl.json"), "w") as f:
            f.write(out)
        with open(os.path.join(self.dir, "mcr-ctl.err"), "w") as f:
            f.write(err)
        try:
            d = json.loads(out)
        except ValueError:
            d = {}
            r["ctl_output"] = (out + err).strip()[-400:]
        r["committed"] = bool(d.get("committed"))
        r["pause_us"] = d.get("pause_us")
        r["total_us"] = d.get("total_us")
        r["new_pid"] = d.get("new_pid")
        r["conflicts"] = [{k: c.get(k) for k in ("kind", "message", "object")}
                          for c in d.get("conflicts", [])]
        r["reasons"] = d.get("reasons", [])
        r["outcome"] = "committed" if r["committed"] else "refused today"
        time.sleep(0.5)
        if r["committed"] and r["new_pid"]:  # the new tree is no leftover
            self.seen.update([r["new_pid"]] + children(r["new_pid"]))
        r["new_version_procs_after"] = [x for x in procs_of(self.new_bin)
                                        if x not in self.seen]
        return r

    def go(self):
        a = self.a
        self.start()
        self.log("master %d, workers %s, port %d" % (self.master, self.workers, self.port))
        ka_out = os.path.join(self.dir, "client.json")
        ka = subprocess.Popen([sys.executable, os.path.abspath(__file__), "client",
                               str(self.port), str(a.duration + 0.5), ka_out])
        time.sleep(0.2)
        t_wrk = time.monotonic()
        wrk_out = open(os.path.join(self.dir, "wrk.txt"), "w")
        wrk = subprocess.Popen(["wrk", "-t%d" % a.threads, "-c%d" % a.conns,
                                "-d%ds" % a.duration, "--timeout", "2s", "--latency",
                                "http://127.0.0.1:%d/file-4k.txt" % self.port],
                               stdout=wrk_out, stderr=subprocess.STDOUT)
        up = None
        time.sleep(max(0.0, a.at - (time.monotonic() - t_wrk)))
        t_up = time.monotonic()   # the upgrade's start (baselines: the same moment)
        if self.mode in ("usr2", "mcr"):
            up = self.usr2(t_wrk) if self.mode == "usr2" else self.mcr(t_wrk)
        wrk.wait(a.duration + 30)
        wrk_out.close()
        ka.wait(a.duration + 30)
        with open(os.path.join(self.dir, "wrk.txt")) as f:
            self.rec.update(parse_wrk(f.read()))
        with open(ka_out) as f:
            c = json.load(f)
        win = [q for q in c["requests"] if t_up <= q[0] < t_up + WINDOW]
        self.rec.update(client_ok=c["ok"], client_fails=c["fails"],
                        client_reconnects=c["reconnects"], client_max_ms=c["max_ms"],
                        client_window_max_ms=max((q[1] for q in win), default=None),
                        client_window_requests=len(win),
                        client_window_fails=sum(1 for q in win if not q[2]),
                        client_events=c["events"])
        with open(ka_out, "w") as f:     # the requests as [start from wrk's start, ms, ok]
            c["requests"] = [[round(q[0] - t_wrk, 4)] + q[1:] for q in c["requests"]]
            json.dump(c, f)
        if up is not None:
            self.rec["upgrade"] = up
        # Who serves now, and what of the old tree is left.
        now = self.master
        if self.mode == "usr2" and "new_master" in (up or {}):
            now = up["new_master"]
        elif self.mode == "mcr" and up.get("committed") and up.get("new_pid"):
            now = up["new_pid"]
        self.rec["serving_master"] = now
        self.rec["serving_workers"] = children(now)
        self.rec["serves_after"] = http_ok(self.port)
        self.rec["listen_socket_kept"] = bool(self.inode) and holds_socket(now, self.inode)
        self.rec["master_same"] = now == self.master
        self.rec["workers_same"] = self.rec["serving_workers"] == self.workers
        with open(os.path.join(self.dir, "logs", "error.log"), errors="replace") as f:
            self.rec["error_log_alerts"] = [l.strip() for l in f
                                            if re.search(r"\[(alert|crit|emerg)\]", l)][:5]
        ok = self.rec["requests"] is not None and self.rec["serves_after"]
        if up is not None and "error" in up:
            ok = False
        self.rec["ok"] = ok


def run_main(a):
    modes = [m for m in a.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            sys.exit("bench.py: unknown mode %r (known: %s)" % (m, ", ".join(MODES)))
    raw = os.path.join(a.work, "raw.jsonl")
    rc = 0
    for rep in range(1, a.repeats + 1):
        order = modes[(rep - 1) % len(modes):] + modes[:(rep - 1) % len(modes)]
        for m in order:
            r = Run(a, m, rep)
            try:
                r.go()
            except Exception as e:  # noqa: BLE001 - recorded, the next run goes on
                r.rec["error"] = "%s: %s" % (type(e).__name__, e)
                rc = 1
            finally:
                r.stop()
            rec = r.rec
            rec["loadavg"] = open("/proc/loadavg").read().split()[0]
            with open(raw, "a") as f:
                f.write(json.dumps(rec) + "\n")
            up = rec.get("upgrade", {})
            extra = ""
            if m == "usr2":
                extra = ", USR2 -> old master gone %s ms" % up.get("done_ms")
            elif m == "mcr":
                kinds = [c["kind"] for c in up.get("conflicts", [])]
                extra = ", mcr-ctl exit %s, %s (%s)" % (
                    up.get("ctl_exit"), up.get("outcome"),
                    ", ".join("%d %s" % (kinds.count(k), k) for k in sorted(set(kinds)))
                    or "no conflict")
            r.log("%s requests, errors %s, non-2xx %s, max %s ms, client fails %s%s%s"
                  % (rec.get("requests"), rec.get("errors"), rec.get("non_2xx"),
                     rec.get("max_ms"), rec.get("client_fails"), extra,
                     "" if rec.get("ok") else " FAILED: %s" % (rec.get("error")
                                                              or up.get("error") or "see record")))
            if not rec.get("ok"):
                rc = 1
    return rc


# --- summary ------------------------------------------------------------------------

def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(vals) if vals else None


def f1(v, prec=1):
    return "-" if v is None else "%.*f" % (prec, v)


def summarize(work, jout=None):
    recs = []
    with open(os.path.join(work, "raw.jsonl")) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    by = {m: [r for r in recs if r["mode"] == m and r.get("ok")] for m in MODES}
    summ = {}
    for m, rs in by.items():
        if not rs:
            continue
        s = {"runs": len(rs)}
        for k in ("requests", "req_per_s", "errors", "err_connect", "err_read", "err_write",
                  "err_timeout", "non_2xx", "p50_ms", "p99_ms", "max_ms", "client_fails",
                  "client_reconnects", "client_max_ms", "client_window_max_ms",
                  "client_window_requests"):
            s[k] = med([r.get(k) for r in rs])
        s["max_ms_each"] = [r.get("max_ms") for r in rs]
        s["client_window_max_ms_each"] = [r.get("client_window_max_ms") for r in rs]
        ups = [r.get("upgrade", {}) for r in rs]
        for k in ("new_up_ms", "old_workers_gone_ms", "winch_to_workers_gone_ms",
                  "quit_to_master_gone_ms", "done_ms", "pause_us", "total_us"):
            v = med([u.get(k) for u in ups])
            if v is not None:
                s[k] = v
        if m in ("usr2", "mcr"):
            s["done_ms_each"] = [u.get("done_ms") for u in ups]
        s["listen_socket_kept"] = all(r.get("listen_socket_kept") for r in rs)
        s["master_same"] = all(r.get("master_same") for r in rs)
        s["workers_same"] = all(r.get("workers_same") for r in rs)
        if m == "mcr":
            s["committed"] = sum(1 for u in ups if u.get("committed"))
            s["ctl_exit"] = sorted({u.get("ctl_exit") for u in ups}, key=str)
            kinds, calls = {}, {}   # per run, so that a median is a count per update
            for u in ups:
                for c in u.get("conflicts", []):
                    kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
                    call = "%s %s" % (c["kind"], (c.get("object") or "?").split("(")[0])
                    calls[call] = calls.get(call, 0) + 1
            s["conflict_kinds"] = {k: v / len(rs) for k, v in kinds.items()}
            s["conflict_calls"] = {k: v / len(rs) for k, v in calls.items()}
            s["conflict_example"] = next((c for u in ups for c in u.get("conflicts", [])),
                                         None)
            s["new_version_procs_left"] = sum(len(u.get("new_version_procs_after", []))
                                              for u in ups)
            s["outcome"] = ("committed" if s["committed"] == len(rs) else
                            "refused today" if s["committed"] == 0 else "mixed")
        summ[m] = s
    for m, base in (("usr2", "baseline"), ("mcr", "mcr-baseline")):
        if m in summ and base in summ:
            for k in ("p99_ms", "max_ms", "req_per_s", "client_window_max_ms"):
                a, b = summ[m].get(k), summ[base].get(k)
                summ[m][k + "_ratio"] = round(a / b, 2) if a is not None and b else None

    label = {"baseline": "baseline, plain nginx", "usr2": "nginx binary upgrade (USR2)",
             "mcr-baseline": "baseline, mcr build",
             "mcr": "mcr-ctl update (%s)" % summ.get("mcr", {}).get("outcome", "")}
    def x(s, k, prec):
        r = s.get(k + "_ratio")
        return f1(s.get(k), prec) + (" (%.2fx)" % r if r else "")

    out = []
    out.append("| run | outcome | req/s | wrk socket errors c/r/w/t | non-2xx | wrk p99 ms "
               "| wrk max ms | client's worst ms, 1 s from the upgrade | client fails / "
               "reconnects | upgrade: start -> done ms | after: listening socket; master, "
               "workers |")
    out.append("|" + "---|" * 11)
    for m in MODES:
        if m not in summ:
            continue
        s = summ[m]
        if m == "usr2":
            outcome = "upgraded"
            survives = "new master, new workers"
        elif m == "mcr":
            outcome = s["outcome"]
            n = sum(s["conflict_kinds"].values())
            if n:
                outcome += " (%g conflicts: %s)" % (n, ", ".join(
                    "%g %s" % (v, k) for k, v in sorted(s["conflict_kinds"].items())))
            survives = ("same master, same workers" if s["master_same"] and s["workers_same"]
                        else "new master, new workers" if s["committed"] == len(rs)
                        else "changed")
        else:
            outcome, survives = "no upgrade", "same master, same workers"
        out.append("| %s | %s | %s | %s/%s/%s/%s | %s | %s | %s | %s | %s / %s | %s | %s; %s |" % (
            label[m], outcome, f1(s["req_per_s"], 0),
            *(f1(s[k], 0) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
            f1(s["non_2xx"], 0), x(s, "p99_ms", 2), x(s, "max_ms", 1),
            x(s, "client_window_max_ms", 1), f1(s["client_fails"], 0),
            f1(s["client_reconnects"], 0), f1(s.get("done_ms")),
            "same socket" if s["listen_socket_kept"] else "NOT the same socket", survives))
    out.append("")
    out.append("Medians over %s (ratios: to the baseline of the same build). wrk's max latency "
               "of each run: %s. The client's worst latency in the 1 s from the upgrade's start "
               "(baselines: from the same moment), each run: %s." % (
                   ", ".join("%d %s" % (s["runs"], m) for m, s in summ.items()),
                   "; ".join("%s %s" % (m, ", ".join(f1(v) for v in s["max_ms_each"]))
                             for m, s in summ.items()),
                   "; ".join("%s %s" % (m, ", ".join(f1(v) for v in s["client_window_max_ms_each"]))
                             for m, s in summ.items())))
    if "usr2" in summ:
        s = summ["usr2"]
        out.append("USR2: new master and its workers up %s ms after USR2, old workers gone %s ms "
                   "after it (WINCH -> gone %s ms), old master gone %s ms after QUIT; USR2 -> old "
                   "master gone, each run: %s ms." % (
                       f1(s.get("new_up_ms")), f1(s.get("old_workers_gone_ms")),
                       f1(s.get("winch_to_workers_gone_ms")),
                       f1(s.get("quit_to_master_gone_ms")),
                       ", ".join(f1(v) for v in s["done_ms_each"])))
    if "mcr" in summ:
        s = summ["mcr"]
        ex = s.get("conflict_example")
        out.append("mcr: %d of %d updates committed; mcr-ctl exit %s; mcr-ctl took %s ms "
                   "(each: %s); processes of the new version left after it: %d.%s" % (
                       s["committed"], s["runs"], "/".join(map(str, s["ctl_exit"])),
                       f1(s.get("done_ms")), ", ".join(f1(v) for v in s["done_ms_each"]),
                       s["new_version_procs_left"],
                       (" Conflicts per update: %s. First: [%s] %s" % (
                           ", ".join("%s x%g" % kv for kv in sorted(s["conflict_calls"].items())),
                           ex["kind"], ex["message"])) if ex else ""))
    failed = [r for r in recs if not r.get("ok")]
    for r in failed:
        out.append("FAILED run %s %d: %s" % (r["mode"], r["repeat"],
                                            r.get("error") or r.get("upgrade", {}).get("error")
                                            or "see raw.jsonl"))
    text = "\n".join(out)
    if jout:
        meta = {}
        mp = os.path.join(work, "meta.txt")
        if os.path.exists(mp):
            for line in open(mp):
                k, _, v = line.rstrip("\n").partition(": ")
                meta[k] = v
        with open(jout, "w") as f:
            json.dump({"meta": meta, "summary": summ, "runs": recs}, f, indent=1)
    return text, (1 if failed else 0)


def main(argv):
    if len(argv) >= 2 and argv[1] == "client":
        client_main(int(argv[2]), float(argv[3]), argv[4])
        return 0
    if len(argv) >= 2 and argv[1] == "summarize":
        jout = argv[argv.index("--json") + 1] if "--json" in argv else None
        text, rc = summarize(argv[2], jout)
        print(text)
        return rc
    import argparse
    p = argparse.ArgumentParser(prog="bench.py run")
    p.add_argument("cmd", choices=["run"])
    p.add_argument("--plain", required=True)
    p.add_argument("--mcr", required=True)
    p.add_argument("--ctl", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--port-base", type=int, default=24620)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--at", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--plain-new", default=None)
    p.add_argument("--mcr-new", default=None)
    p.add_argument("--update-arg", action="append")
    a = p.parse_args(argv[1:])
    return run_main(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
