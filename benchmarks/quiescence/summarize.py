"""Summarizes benchmarks/quiescence/run.sh: raw.tsv (one row per quiesce) and
points.tsv (one row per server run) -> Markdown tables on stdout.

    summarize.py RAW.tsv [POINTS.tsv] [--compact]
    summarize.py DIR [DIR...] [--compact]

DIRs are output directories of run.sh (raw.tsv, points.tsv): their runs are
pooled, run r of the k-th directory counted as run "k.r".
--compact: one row per server and thread setting, the modes side by side.
--breakdown MODES: where the time goes, for the modes given (e.g. load,light).

Per (server, thread setting, mode) and per run: median, p90, p99 and max of the
time to quiescence, of the grace period and of the slowest thread's arrival
(nearest-rank percentiles: p99 of 200 quiesces is the 198th smallest). Then the
median of each statistic over the runs, and the range of the per-run p99."""
import csv
import os
import statistics
import sys
from collections import Counter, defaultdict


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = -(-p * len(sorted_vals) // 100)  # ceil(p * n / 100), nearest rank
    return sorted_vals[max(0, min(len(sorted_vals), k) - 1)]


def stats(vals):
    s = sorted(vals)
    return {"med": statistics.median(s), "p90": pct(s, 90), "p99": pct(s, 99), "max": s[-1]}


def ms(us):
    return "%.3f" % (us / 1000.0)


def main():
    argv = sys.argv[1:]
    breakdown = None
    if "--breakdown" in argv:
        i = argv.index("--breakdown")
        breakdown = argv[i + 1].split(",")
        del argv[i:i + 2]
    args = [a for a in argv if a != "--compact"]
    compact = "--compact" in argv
    if all(os.path.isdir(a) for a in args):
        raw, points = [], []
        for k, d in enumerate(args, 1):
            for name, into in (("raw.tsv", raw), ("points.tsv", points)):
                for r in csv.DictReader(open(os.path.join(d, name)), delimiter="\t"):
                    if len(args) > 1:
                        r["repeat"] = "%d.%s" % (k, r["repeat"])
                    into.append(r)
    else:
        raw = list(csv.DictReader(open(args[0]), delimiter="\t"))
        points = list(csv.DictReader(open(args[1]), delimiter="\t")) if len(args) > 1 else []

    runs = defaultdict(lambda: defaultdict(list))  # key -> repeat -> rows
    for r in raw:
        runs[(r["server"], r["threads_opt"], r["mode"])][r["repeat"]].append(r)
    pts = defaultdict(list)
    for p in points:
        pts[(p["server"], p["threads_opt"], p["mode"])].append(p)

    def order(k):
        server, n, mode = k
        return (server != "memcached", ["load", "light", "idle"].index(mode) if mode in ("load", "light", "idle") else 9,
                int(n) if n.isdigit() else 0)

    if compact:
        return print_compact(runs, order)
    if breakdown:
        print("| server | -t | mode | threads | load ops/s | median | p99 | grace median / p99 "
              "| slowest arrival median / p99 | server CPUs | threads waiting for a CPU (runs: min–max) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print_header()
    for key in sorted(runs, key=order):
        if breakdown and key[2] not in breakdown:
            continue
        row(key, runs, pts, breakdown)
    if points and not breakdown:
        la = [float(p["loadavg_start"]) for p in points] + [float(p["loadavg_end"]) for p in points]
        dead = [p for p in points if p["load_alive"] == "0"]
        print("\nLoad average during the runs: %.2f–%.2f (median %.2f).%s" % (
            min(la), max(la), statistics.median(la),
            " The load generator exited early in %d runs." % len(dead) if dead else ""))


def print_header():
    print("Time to quiescence in ms: per run, the median, p90, p99 and max over its quiesces; "
          "in the table the median of those over the runs (p99 range: lowest and highest "
          "per-run p99). Server CPUs: the CPU time the server used during the quiesces over their "
          "duration; threads waiting: how many of its threads were runnable but waiting for a CPU, "
          "on average (/proc/PID/task/*/schedstat), per run: with the same server, threads and "
          "load, a run with more waiting had its CPU taken by other work.\n")
    print("| server | -t | mode | threads | tasks | load ops/s | quiesces (failed) | median | p90 "
          "| p99 | p99 range | max | grace median | grace p99 | slowest arrival median "
          "| slowest arrival p99 | slowest thread in the top 10% | server CPUs | threads waiting for a CPU (per run) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(key, runs, pts, breakdown):
    server, n, mode = key
    per = []
    total = failed = 0
    tail = Counter()
    for rep, rows in sorted(runs[key].items()):
        ok = [r for r in rows if r["ok"] == "1"]
        total += len(rows)
        failed += len(rows) - len(ok)
        if not ok:
            continue
        t = stats([float(r["ttq_us"]) for r in ok])
        g = stats([float(r["grace_us"]) for r in ok])
        a = stats([float(r["slowest_us"] or 0) for r in ok])
        per.append((t, g, a))
        for r in ok:
            if float(r["ttq_us"]) >= t["p90"]:
                tail["%s (%s)" % (r["slowest_name"], r["slowest_state"])] += 1
    if not per:
        print("| %s | %s | %s | | | | %d (%d) | | | | | | | | | | | | |" % (server, n, mode, total, failed))
        return

    def med(i, stat):
        return statistics.median(x[i][stat] for x in per)

    nthreads = Counter(r["nthreads"] for rows in runs[key].values() for r in rows if r["ok"] == "1")
    ps = pts.get(key, [])
    ntasks = Counter(p["ntasks"] for p in ps).most_common(1)[0][0] if ps else ""
    ops = [float(p["load_ops_per_s"]) for p in ps if p["load_ops_per_s"]]
    p99s = [x[0]["p99"] for x in per]
    cpus = [float(p["server_cpus"]) for p in ps if p.get("server_cpus")]
    waiting = [p["server_waiting"] for p in sorted(ps, key=lambda p: p["repeat"]) if p.get("server_waiting")]
    tsum = sum(tail.values())
    tails = ", ".join("%s %d%%" % (name, round(100.0 * c / tsum)) for name, c in tail.most_common(2))
    if breakdown:
        w = [float(x) for x in waiting]
        print("| %s | %s | %s | %s | %s | %s | **%s** | %s / %s | %s / %s | %s | %s |" % (
            server, n if n.isdigit() else "–", mode, nthreads.most_common(1)[0][0],
            "%.0f" % statistics.median(ops) if ops and mode != "idle" else "–",
            ms(med(0, "med")), ms(med(0, "p99")), ms(med(1, "med")), ms(med(1, "p99")),
            ms(med(2, "med")), ms(med(2, "p99")),
            "%.2f" % statistics.median(cpus) if cpus else "",
            "%.2f–%.2f" % (min(w), max(w)) if w else ""))
        return
    print("| %s | %s | %s | %s | %s | %s | %d (%d) | %s | %s | **%s** | %s–%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        server, n if n.isdigit() else "–", mode, nthreads.most_common(1)[0][0], ntasks,
        "%.0f" % statistics.median(ops) if ops and mode != "idle" else "–", total, failed,
        ms(med(0, "med")), ms(med(0, "p90")), ms(med(0, "p99")), ms(min(p99s)), ms(max(p99s)),
        ms(med(0, "max")), ms(med(1, "med")), ms(med(1, "p99")), ms(med(2, "med")),
        ms(med(2, "p99")), tails, "%.2f" % statistics.median(cpus) if cpus else "",
        " / ".join(waiting)))


def print_compact(runs, order):
    """One row per server and thread setting, one column group per mode: the
    medians over the runs of the per-run median and p99 (and the p99 range)."""
    modes = [m for m in ("load", "light", "idle") if any(k[2] == m for k in runs)]
    rows = sorted({(k[0], k[1]) for k in runs}, key=lambda sn: order((sn[0], sn[1], "load")))
    print("Time to quiescence, ms: median / **p99** (lowest–highest per-run p99); medians over "
          "the runs.\n")
    print("| server | -t | threads | " + " | ".join(modes) + " |")
    print("|---|---|---|" + "---|" * len(modes))
    for server, n in rows:
        cells, nthreads = [], ""
        for m in modes:
            per = []
            for rep, rr in sorted(runs.get((server, n, m), {}).items()):
                ok = [r for r in rr if r["ok"] == "1"]
                if ok:
                    per.append(stats([float(r["ttq_us"]) for r in ok]))
                    nthreads = ok[0]["nthreads"]
            if not per:
                cells.append("–")
                continue
            p99s = [x["p99"] for x in per]
            cells.append("%s / **%s** (%s–%s)" % (ms(statistics.median(x["med"] for x in per)),
                                                  ms(statistics.median(p99s)), ms(min(p99s)), ms(max(p99s))))
        print("| %s | %s | %s | %s |" % (server, n if n.isdigit() else "–", nthreads, " | ".join(cells)))


if __name__ == "__main__":
    main()
