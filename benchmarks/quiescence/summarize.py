"""Summarizes benchmarks/quiescence/run.sh: raw.tsv (one row per quiesce) and
points.tsv (one row per server run) -> Markdown tables on stdout.

Per (server, thread setting, mode) and per run: median, p90, p99 and max of the
time to quiescence, of the grace period and of the slowest thread's arrival
(nearest-rank percentiles: p99 of 200 quiesces is the 198th smallest). Then the
median of each statistic over the runs, and the range of the per-run p99."""
import csv
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
    raw = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    points = list(csv.DictReader(open(sys.argv[2]), delimiter="\t")) if len(sys.argv) > 2 else []

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
    for key in sorted(runs, key=order):
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
            continue

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
        print("| %s | %s | %s | %s | %s | %s | %d (%d) | %s | %s | **%s** | %s–%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            server, n if n.isdigit() else "–", mode, nthreads.most_common(1)[0][0], ntasks,
            "%.0f" % statistics.median(ops) if ops and mode != "idle" else "–", total, failed,
            ms(med(0, "med")), ms(med(0, "p90")), ms(med(0, "p99")), ms(min(p99s)), ms(max(p99s)),
            ms(med(0, "max")), ms(med(1, "med")), ms(med(1, "p99")), ms(med(2, "med")),
            ms(med(2, "p99")), tails, "%.2f" % statistics.median(cpus) if cpus else "",
            " / ".join(waiting)))

    if points:
        la = [float(p["loadavg_start"]) for p in points] + [float(p["loadavg_end"]) for p in points]
        dead = [p for p in points if p["load_alive"] == "0"]
        print("\nLoad average during the runs: %.2f–%.2f (median %.2f).%s" % (
            min(la), max(la), statistics.median(la),
            " The load generator exited early in %d runs." % len(dead) if dead else ""))


if __name__ == "__main__":
    main()
