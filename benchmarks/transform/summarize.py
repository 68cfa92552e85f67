#!/usr/bin/env python3
"""summarize.py RAW.jsonl [--json OUT] [--meta META.txt] - the summary of
benchmarks/transform/run.sh: medians over the repeats of each kind of update
(v1 -> v2, unchanged types; v1 -> v3, changed types), and the ratios issue 5's
goal is judged by ("transfer rate for a changed type stays within 2x of the
unchanged-type rate").

  pause                 mcr-ctl's pause_us: from the old process stopping to serve
                        until the new one resumed
  transfer rate         the old heap's size (mcr-ctl's note "the heap's X MB": the
                        used address ranges) / the pause, MB/s
  transform ns/object   the transform phase / the objects it converted

Ratios are changed / unchanged: "of medians" compares the two medians, "paired"
is the median of the per-repeat ratios (both updates of a repeat start from
servers filled at the same time). The goal is met when the changed-type rate is
at least half the unchanged one (rate ratio >= 0.5).

Only updates that committed and whose key sample checked out are counted.
"""
import json
import statistics
import sys

PHASES = ["quiesce", "describe", "heap-copy", "heap-adopt", "heap-pointers", "globals",
          "stacks", "transform", "fds", "commit"]


def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def rng(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return (min(vals), max(vals)) if vals else (None, None)


def f(v, prec=1):
    return "-" if v is None else "%.*f" % (prec, v)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def rate(r):
    """MB/s of heap state per second of pause."""
    if not r.get("heap_mb") or not r.get("pause_us"):
        return None
    return r["heap_mb"] / (r["pause_us"] / 1e6)


def summarize(recs):
    good = [r for r in recs if r.get("ok")]
    bad = [r for r in recs if not r.get("ok")]
    by = {k: [r for r in good if r["kind"] == k] for k in ("unchanged", "changed")}
    s = {"keys": sorted({r["keys"] for r in recs}), "updates": len(recs), "failed": len(bad),
         "failures": [(r.get("repeat"), r.get("kind"), r.get("check")) for r in bad]}
    for k, rs in by.items():
        d = {"n": len(rs)}
        d["pause_ms"] = med([r["pause_us"] / 1e3 for r in rs])
        d["pause_ms_range"] = rng([r["pause_us"] / 1e3 for r in rs])
        d["pause_ms_all"] = [round(r["pause_us"] / 1e3, 2) for r in rs]
        d["total_ms"] = med([r["total_us"] / 1e3 for r in rs])
        d["heap_mb"] = med([r.get("heap_mb") for r in rs])
        d["pause_copy_mb"] = med([r.get("pause_copy_mb") for r in rs])
        d["rate_mb_s"] = med([rate(r) for r in rs])
        d["phases_ms"] = {p: med([r["phases"].get(p, 0) / 1e3 for r in rs]) for p in PHASES}
        d["other_ms"] = med([(r["pause_us"] - sum(r["phases"].get(p, 0) for p in PHASES)) / 1e3
                             for r in rs])
        d["startup_ms"] = med([r["phases"].get("startup") and r["phases"]["startup"] / 1e3 for r in rs])
        d["precopy_ms"] = med([r["phases"].get("precopy") and r["phases"]["precopy"] / 1e3 for r in rs])
        if k == "changed":
            d["objects"] = med([r.get("objects") for r in rs])
            d["pointers"] = med([r.get("pointers") for r in rs])
            d["again"] = med([r.get("again") for r in rs])
            d["new"] = med([r.get("new") for r in rs])
            d["pre_transform_ms"] = med([r.get("pre_transform_ms") for r in rs])
            d["transform_ns_per_object"] = med([r["phases"]["transform"] * 1e3 / r["objects"]
                                                for r in rs if r.get("objects")])
            d["extra_pause_ns_per_object"] = None
        d["loadavg_1min_range"] = rng([r["loadavg"][0] for r in rs])
        s[k] = d
    u, c = s["unchanged"], s["changed"]
    s["ratio_of_medians"] = {
        "pause": ratio(c["pause_ms"], u["pause_ms"]),
        "rate": ratio(c["rate_mb_s"], u["rate_mb_s"]),
    }
    pairs = {}
    for r in good:
        pairs.setdefault(r["repeat"], {})[r["kind"]] = r
    pr = [(p["changed"], p["unchanged"]) for p in pairs.values() if len(p) == 2]
    s["paired"] = {
        "n": len(pr),
        "pause": med([a["pause_us"] / b["pause_us"] for a, b in pr]),
        "rate": med([ratio(rate(a), rate(b)) for a, b in pr]),
    }
    if c.get("objects") and pr:
        c["extra_pause_ns_per_object"] = med([(a["pause_us"] - b["pause_us"]) * 1e3 / a["objects"]
                                              for a, b in pr if a.get("objects")])
    rr = s["ratio_of_medians"]["rate"]
    s["goal"] = {"rate_ratio_min": 0.5, "met": None if rr is None else rr >= 0.5,
                 "slowdown": None if not rr else 1 / rr}
    return s


def table(s):
    u, c = s["unchanged"], s["changed"]
    out = []
    out.append("keys: %s; updates: %d (%d failed); medians of %d (unchanged) and %d (changed)"
               % (", ".join(map(str, s["keys"])), s["updates"], s["failed"], u["n"], c["n"]))
    out.append("")
    out.append("| | v1 -> v2 (unchanged types) | v1 -> v3 (changed types) | changed / unchanged |")
    out.append("|---|---|---|---|")
    out.append("| **pause** (ms) | **%s** (%s-%s) | **%s** (%s-%s) | **%s** (paired %s) |" % (
        f(u["pause_ms"], 2), f(u["pause_ms_range"][0], 2), f(u["pause_ms_range"][1], 2),
        f(c["pause_ms"], 2), f(c["pause_ms_range"][0], 2), f(c["pause_ms_range"][1], 2),
        f(s["ratio_of_medians"]["pause"], 2), f(s["paired"]["pause"], 2)))
    out.append("| heap state (MB) | %s | %s | |" % (f(u["heap_mb"]), f(c["heap_mb"])))
    out.append("| **transfer rate** (MB of heap / s of pause) | **%s** | **%s** | **%s** (paired %s) |" % (
        f(u["rate_mb_s"], 0), f(c["rate_mb_s"], 0), f(s["ratio_of_medians"]["rate"], 3),
        f(s["paired"]["rate"], 3)))
    out.append("| transform in the pause, ns/object | - | %s (%s objects, %s pointers) | |" % (
        f(c.get("transform_ns_per_object"), 0), f(c.get("objects"), 0), f(c.get("pointers"), 0)))
    out.append("| extra pause per converted object (ns, paired) | | %s | |" % f(c.get("extra_pause_ns_per_object"), 0))
    for p in PHASES:
        a, b = u["phases_ms"][p], c["phases_ms"][p]
        line = "| %s (ms) | %s | %s | %s |" % (p, f(a, 2), f(b, 2), f(ratio(b, a), 2) if a else "")
        out.append(line)
    out.append("|   converted before the pause (ms) / in the pause again / new | | %s / %s / %s | |" % (
        f(c.get("pre_transform_ms"), 1), f(c.get("again"), 0), f(c.get("new"), 0)))
    out.append("| pause - the phases above (ms; < 0: quiesce starts before serving stops) | %s | %s | |" % (
        f(u["other_ms"], 2), f(c["other_ms"], 2)))
    out.append("| whole update, total_us (ms) | %s | %s | |" % (f(u["total_ms"], 1), f(c["total_ms"], 1)))
    out.append("|   of which startup / pre-copy (ms, before the pause) | %s / %s | %s / %s | |" % (
        f(u["startup_ms"], 1), f(u["precopy_ms"], 1), f(c["startup_ms"], 1), f(c["precopy_ms"], 1)))
    out.append("| copied in the pause (MB) | %s | %s | |" % (f(u["pause_copy_mb"]), f(c["pause_copy_mb"])))
    out.append("| 1-min load average before the updates | %s-%s | %s-%s | |" % (
        f(u["loadavg_1min_range"][0], 2), f(u["loadavg_1min_range"][1], 2),
        f(c["loadavg_1min_range"][0], 2), f(c["loadavg_1min_range"][1], 2)))
    out.append("")
    g = s["goal"]
    if g["met"] is None:
        out.append("goal (changed-type rate >= 0.5 x unchanged): not measured")
    else:
        r = s["ratio_of_medians"]["rate"]
        out.append("goal (changed-type rate >= 0.5 x unchanged): %s: rate ratio %.3f (the "
                   "changed-type update moves the heap %.2fx %s)" % (
                       "MET" if g["met"] else "NOT MET", r, r if r >= 1 else 1 / r,
                       "faster" if r >= 1 else "slower"))
    out.append("pauses (ms): unchanged %s; changed %s" % (u["pause_ms_all"], c["pause_ms_all"]))
    for fl in s["failures"]:
        out.append("FAILED: repeat %s, %s: %s" % fl)
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    jout = None
    if "--json" in args:
        i = args.index("--json")
        jout = args[i + 1]
        del args[i:i + 2]
    recs = []
    for path in args:
        with open(path) as fh:
            recs += [json.loads(l) for l in fh if l.strip()]
    if not recs:
        print("no measurements")
        return 1
    s = summarize(recs)
    print(table(s))
    if jout:
        with open(jout, "w") as fh:
            json.dump(s, fh, indent=2)
            fh.write("\n")
    return 0 if not s["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
