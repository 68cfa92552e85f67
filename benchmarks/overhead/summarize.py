"""Summarizes the raw figures of benchmarks/overhead/run.sh as a Markdown table:
per server and workload, the median of each build, the ratio of the medians, and
the median of the per-repeat ratios.

With the builds plain and mcr only: mcr / plain (the issue-2 table). With mcr-qp
(the production build with the quiescence config) too: each build's median, and
the ratios mcr / plain, mcr-qp / plain and mcr-qp / mcr (the cost of the
quiescent-point hooks alone)."""
import csv
import statistics
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
vals = defaultdict(lambda: defaultdict(dict))  # (server, workload, metric) -> build -> repeat -> v
builds = set()
for r in rows:
    builds.add(r["build"])
    for metric in ("throughput", "cpu_us_per_req", "peak_rss_kb"):
        if r.get(metric):
            vals[(r["server"], r["workload"], metric)][r["build"]][r["repeat"]] = float(r[metric])


NAMES = {"throughput": "req/s", "cpu_us_per_req": "server CPU us/req", "peak_rss_kb": "peak RSS"}


def fmt(x, metric):
    if metric == "throughput":
        return "%.0f" % x
    if metric == "cpu_us_per_req":
        return "%.2f" % x
    return "%.1f MiB" % (x / 1024)


def ratios(num, den):
    """ratio of medians, median of paired ratios, number of pairs"""
    paired = [num[k] / den[k] for k in den if k in num and den[k] > 0]
    if not paired:
        return None
    return (statistics.median(num.values()) / statistics.median(den.values()),
            statistics.median(paired), len(paired))


def key(kv):
    return (kv[0][0], kv[0][1], list(NAMES).index(kv[0][2]))


if "mcr-qp" not in builds:
    print("| server | workload | metric | plain (median) | mcr (median) | ratio of medians "
          "| median of paired ratios | repeats |")
    print("|---|---|---|---|---|---|---|---|")
    for (server, workload, metric), b in sorted(vals.items(), key=key):
        plain, mcr = b.get("plain", {}), b.get("mcr", {})
        r = ratios(mcr, plain) if plain and mcr else None
        if not r:
            continue
        print("| %s | %s | %s | %s | %s | %.3f | %.3f | %d |" % (
            server, workload, NAMES[metric], fmt(statistics.median(plain.values()), metric),
            fmt(statistics.median(mcr.values()), metric), r[0], r[1], r[2]))
    sys.exit(0)

PAIRS = [("mcr", "plain"), ("mcr-qp", "plain"), ("mcr-qp", "mcr")]
order = [b for b in ("plain", "mcr", "mcr-qp") if b in builds]
print("Ratios: ratio of medians / median of the per-repeat ratios.\n")
print("| server | workload | metric | " + " | ".join("%s (median)" % b for b in order) + " | " +
      " | ".join("%s / %s" % p for p in PAIRS if p[0] in builds and p[1] in builds) + " | repeats |")
print("|---|---|---|" + "---|" * len(order) +
      "---|" * sum(1 for p in PAIRS if p[0] in builds and p[1] in builds) + "---|")
for (server, workload, metric), b in sorted(vals.items(), key=key):
    cells, n = [], 0
    for p in PAIRS:
        if p[0] not in builds or p[1] not in builds:
            continue
        r = ratios(b.get(p[0], {}), b.get(p[1], {}))
        cells.append("%.3f / %.3f" % (r[0], r[1]) if r else "–")
        n = max(n, r[2] if r else 0)
    meds = [fmt(statistics.median(b[x].values()), metric) if b.get(x) else "–" for x in order]
    print("| %s | %s | %s | %s | %s | %d |" % (server, workload, NAMES[metric], " | ".join(meds),
                                              " | ".join(cells), n))
