"""Summarizes benchmarks/quiescence/hook-profile.sh (hooks.tsv) as Markdown: per
server, the share of the server's CPU samples in the hook symbols for the mcr
build and the production build (medians over the repeats), the difference
(median of the per-repeat differences), and the symbols that make it up."""
import csv
import statistics
import sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
tot = defaultdict(lambda: defaultdict(float))   # (server, variant) -> repeat -> sum %
sym = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))  # (server, variant) -> sym -> repeat -> %
reps = defaultdict(set)
for r in rows:
    key = (r["server"], r["variant"])
    reps[key].add(r["repeat"])
    if r["symbol"] == "(all)":
        continue
    dso = r["dso"]
    where = dso.split(".so")[0] if dso.startswith("lib") else "vdso" if dso == "[vdso]" else "exe"
    name = "%s (%s)" % (r["symbol"], where)
    tot[key][r["repeat"]] += float(r["pct"])
    sym[key][name][r["repeat"]] += float(r["pct"])


def med(d, key):
    return statistics.median(d.get(r, 0.0) for r in reps[key])


print("| server | hook symbols, mcr build | production build | difference (paired median) "
      "| range of differences | repeats | production build, by symbol |")
print("|---|---|---|---|---|---|---|")
for server in sorted({k[0] for k in reps}):
    a, b = (server, "mcr"), (server, "mcr-qp")
    if a not in reps or b not in reps:
        continue
    common = sorted(reps[a] & reps[b])
    diffs = [tot[b].get(r, 0.0) - tot[a].get(r, 0.0) for r in common]
    parts = sorted(((statistics.median(v.get(r, 0.0) for r in reps[b]), s) for s, v in sym[b].items()),
                   reverse=True)
    print("| %s | %.2f%% | %.2f%% | **%.2f%%** | %.2f–%.2f%% | %d | %s |" % (
        server, med(tot[a], a), med(tot[b], b), statistics.median(diffs), min(diffs), max(diffs),
        len(common), ", ".join("%s %.2f%%" % (s, p) for p, s in parts if p >= 0.005)))
