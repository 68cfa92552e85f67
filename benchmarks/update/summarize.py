#!/usr/bin/env python3
"""summarize.py DIR... - summary (markdown) of benchmarks/update/run.sh output.

Reads DIR/raw.jsonl of each DIR (pooled), keeps the successful measurements, and
prints per method the medians over repeats, then the ratios issue 4 is judged
by: each method's client pause against the memcpy time of the live heap, and
CRIU's and the restart's pauses against mcr's (when mcr update was measured).

The client pause of one measurement is the longest gap between two good
replies of the probe on a persistent connection (probe_persistent_gap_ms);
the probe that opens a new connection per PING is shown next to it. For mcr,
mcr-ctl's own reported pause is shown as well.
"""
import json
import os
import statistics
import sys


def load(dirs):
    recs = []
    for d in dirs:
        path = os.path.join(d, "raw.jsonl") if os.path.isdir(d) else d
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    recs.append(json.loads(line))
    return recs


def med(recs, key):
    vals = [r[key] for r in recs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, unit="", prec=1):
    if v is None:
        return "-"
    return ("%.*f" % (prec, v)) + unit


def mib(v):
    return None if v is None else v / 2**20


COLUMNS = {
    "memcpy": [("heap MiB", "heap_bytes", mib), ("memcpy ms", "memcpy_ms", None),
               ("memcpy into fresh pages ms", "memcpy_cold_ms", None),
               ("goal: 2x memcpy + 5 ms", "goal_pause_ms", None),
               ("VmRSS MiB", "vmrss_bytes", mib), ("RssAnon MiB", "rss_anon_bytes", mib),
               ("redis used_memory MiB", "redis_used_memory", mib)],
    "criu": [("client pause ms", "probe_persistent_gap_ms", None),
             ("new-connection gap ms", "probe_connect_gap_ms", None),
             ("dump ms", "dump_ms", None), ("restore ms", "restore_ms", None),
             ("until ready ms", "ready_ms", None), ("image MiB", "image_bytes", mib)],
    "restart": [("client pause ms", "probe_persistent_gap_ms", None),
                ("new-connection gap ms", "probe_connect_gap_ms", None),
                ("stop ms", "stop_ms", None), ("until ready ms", "ready_ms", None),
                ("SAVE ms (not counted)", "save_ms", None), ("RDB MiB", "rdb_bytes", mib)],
    "mcr": [("client pause ms", "probe_persistent_gap_ms", None),
            ("new-connection gap ms", "probe_connect_gap_ms", None),
            ("reported pause ms", "reported_pause_ms", None),
            ("mcr-ctl wall ms", "ctl_wall_ms", None), ("until ready ms", "ready_ms", None)],
    "mcr-writes": [("client pause ms", "probe_persistent_gap_ms", None),
                   ("reported pause ms", "reported_pause_ms", None),
                   ("writes/s during it", "writes_per_s", None),
                   ("write errors", "write_errors", None),
                   ("MB copied in the pause", "pause_copy_mb", None)],
}
PAUSE = "probe_persistent_gap_ms"


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    recs = load(argv[1:])
    ok = [r for r in recs if r.get("ok")]
    failed = [r for r in recs if not r.get("ok")]
    keys = sorted({r["keys"] for r in recs})
    out = ["# Live update of redis 7.0.15: pause against baselines", ""]
    out.append("keys: %s; measurements: %d ok, %d failed; medians over the repeats."
               % (", ".join(map(str, keys)), len(ok), len(failed)))
    srcs = sorted({r["heap_source"] for r in ok if r.get("heap_source")})
    if srcs:
        out.append("live heap size from: " + "; ".join(srcs))
    out.append("")
    by = {m: [r for r in ok if r["method"] == m] for m in COLUMNS}
    for m, cols in COLUMNS.items():
        rs = by[m]
        if not rs:
            out.append("**%s**: no successful measurement%s" %
                       (m, " (mcr update not available yet)" if m == "mcr" else ""))
            out.append("")
            continue
        out.append("**%s** (%d runs)" % (m, len(rs)))
        out.append("")
        out.append("| " + " | ".join(c[0] for c in cols) + " |")
        out.append("|" + "---|" * len(cols))
        out.append("| " + " | ".join(fmt((c[2] or (lambda x: x))(med(rs, c[1])))
                                      for c in cols) + " |")
        if m in ("criu", "restart", "mcr", "mcr-writes"):
            out.append("")
            out.append("per run, client pause ms: " + ", ".join(
                fmt(r.get(PAUSE)) for r in sorted(rs, key=lambda r: r["repeat"])))
        out.append("")

    cp = med(by["memcpy"], "memcpy_ms")
    goal = med(by["memcpy"], "goal_pause_ms")
    out.append("**ratios** (medians)")
    out.append("")
    out.append("| method | client pause ms | / memcpy | / mcr pause |")
    out.append("|---|---|---|---|")
    mp = med(by["mcr"], PAUSE)
    for m in ("mcr", "criu", "restart"):
        p = med(by[m], PAUSE)
        out.append("| %s | %s | %s | %s |" % (
            m, fmt(p), fmt(p / cp if p is not None and cp else None, "x"),
            fmt(p / mp if p is not None and mp else None, "x")))
    out.append("")
    if mp is not None and goal is not None:
        c, s = med(by["criu"], PAUSE), med(by["restart"], PAUSE)
        out.append("goal: mcr pause %.1f ms <= %.1f ms (2x memcpy + 5 ms): %s; "
                   "CRIU >= 10x: %s; restart >= 10x: %s" % (
                       mp, goal, "met" if mp <= goal else "MISSED",
                       "-" if c is None else ("met" if c >= 10 * mp else "MISSED"),
                       "-" if s is None else ("met" if s >= 10 * mp else "MISSED")))
    elif goal is not None:
        out.append("goal for mcr update: client pause <= %.1f ms (2x memcpy + 5 ms), and "
                   "<= %s ms (CRIU / 10), <= %s ms (restart / 10)" % (
                       goal, fmt(med(by["criu"], PAUSE) and med(by["criu"], PAUSE) / 10),
                       fmt(med(by["restart"], PAUSE) and med(by["restart"], PAUSE) / 10)))
    if failed:
        out.append("")
        out.append("failed measurements:")
        for r in failed:
            out.append("- %s repeat %s: %s" % (r["method"], r["repeat"],
                                               r.get("error", "keys not intact: %s/%s" % (
                                                   r.get("dbsize"), r.get("keys")))))
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
