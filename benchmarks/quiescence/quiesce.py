"""Quiesces a running mcr program K times with `mcr-ctl quiesce PID --json` and
appends one tab-separated row per quiesce to a file (see run.sh for the columns).

    quiesce.py --ctl MCR_CTL --pid PID --count K --spacing-ms MS --hold SEC
               --warmup W --label SERVER,OPT,THREADSOPT,MODE,REPEAT --out FILE

The first W quiesces of a process are not recorded: the first one also starts
the runtime's grace-period thread. Prints one progress line on stderr."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COLUMNS = ["server", "threads_opt", "mode", "repeat", "i", "ok", "ttq_us", "grace_us",
           "slowest_us", "slowest_name", "slowest_state", "nthreads", "ntasks", "held_us",
           "resume_us", "ctl_wall_us", "loadavg"]


def tasks(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return 0


def one(args):
    t0 = time.monotonic()
    p = subprocess.run([args.ctl, "quiesce", str(args.pid), "--hold", args.hold, "--timeout",
                        args.timeout, "--json"], capture_output=True, text=True, timeout=60)
    wall = (time.monotonic() - t0) * 1e6
    try:
        return json.loads(p.stdout), wall, p
    except ValueError:
        return None, wall, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--spacing-ms", type=float, default=5)
    ap.add_argument("--hold", default="0")
    ap.add_argument("--timeout", default="2")
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    server, threads_opt, mode, repeat = args.label.split(",")

    for _ in range(args.warmup):
        one(args)
    rows, ttqs, fails = [], [], 0
    start = time.monotonic()
    for i in range(args.count):
        r, wall, p = one(args)
        load1 = open("/proc/loadavg").read().split()[0]
        if r is None or not r.get("quiesced"):
            fails += 1
            why = (p.stderr or p.stdout).strip().replace("\t", " ").replace("\n", " | ")[:300]
            if r is not None:
                late = [t for t in r.get("threads", []) if not t.get("arrived")]
                why = "did not arrive: " + "; ".join(
                    "%s %s" % (t.get("name"), t.get("where", "")) for t in late)[:300]
            print("quiesce: %s %s %s run %s #%d failed (exit %d): %s" % (
                server, threads_opt, mode, repeat, i, p.returncode, why), file=sys.stderr)
            rows.append([server, threads_opt, mode, repeat, i, 0, r.get("time_to_quiescence_us", "")
                         if r else "", "", "", "", "", len(r.get("threads", [])) if r else "",
                         tasks(args.pid), "", "", "%.0f" % wall, load1])
        else:
            th = r["threads"]
            slow = max(th, key=lambda t: t.get("arrival_us", 0)) if th else {}
            ttqs.append(r["time_to_quiescence_us"])
            rows.append([server, threads_opt, mode, repeat, i, 1, r["time_to_quiescence_us"],
                         r["grace_period_us"], slow.get("arrival_us", ""), slow.get("name", ""),
                         slow.get("state", ""), len(th), tasks(args.pid), r.get("held_us", ""),
                         r.get("resume_us", ""), "%.0f" % wall, load1])
        time.sleep(args.spacing_ms / 1000.0)
    took = time.monotonic() - start
    with open(args.out, "a") as f:
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")
    if ttqs:
        s = sorted(ttqs)
        p99 = s[min(len(s) - 1, -(-99 * len(s) // 100) - 1)]
        print("quiesce: %-9s %-6s %-4s run %s: %d quiesces in %.1f s, %d threads, time to "
              "quiescence median %.3f ms, p99 %.3f ms, max %.3f ms%s" % (
                  server, threads_opt, mode, repeat, len(ttqs), took, rows[-1][11] or 0,
                  statistics.median(s) / 1000, p99 / 1000, s[-1] / 1000,
                  ", %d FAILED" % fails if fails else ""), file=sys.stderr)
    else:
        print("quiesce: %s %s %s run %s: every quiesce failed" % (server, threads_opt, mode, repeat),
              file=sys.stderr)
    return 0 if ttqs else 1


if __name__ == "__main__":
    sys.exit(main())
