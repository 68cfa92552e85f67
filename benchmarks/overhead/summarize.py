"""Summarizes the raw figures of benchmarks/overhead/run.sh as a Markdown table:
per server and workload, the median of each build, the ratio of the medians, and
the median of the per-repeat ratios (mcr / plain)."""
import csv
import statistics
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
vals = defaultdict(lambda: defaultdict(dict))  # (server, workload, metric) -> build -> repeat -> v
for r in rows:
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


print("| server | workload | metric | plain (median) | mcr (median) | ratio of medians "
      "| median of paired ratios | repeats |")
print("|---|---|---|---|---|---|---|---|")
for (server, workload, metric), builds in sorted(vals.items(), key=lambda kv: (kv[0][0], kv[0][1], list(NAMES).index(kv[0][2]))):
    plain, mcr = builds.get("plain", {}), builds.get("mcr", {})
    paired = [mcr[k] / plain[k] for k in plain if k in mcr and plain[k] > 0]
    if not plain or not mcr or not paired:
        continue
    mp, mm = statistics.median(plain.values()), statistics.median(mcr.values())
    name = NAMES[metric]
    print("| %s | %s | %s | %s | %s | %.3f | %.3f | %d |" % (
        server, workload, name, fmt(mp, metric), fmt(mm, metric), mm / mp,
        statistics.median(paired), len(paired)))
