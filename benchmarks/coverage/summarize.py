"""Sums `mcr-ctl types --json` documents (concatenated on stdin) for one server:
sites, typed sites, coverage, and the untyped sites with their reasons."""
import json
import sys

name, nfiles = sys.argv[1], sys.argv[2]
dec = json.JSONDecoder()
text = sys.stdin.read()
pos, sites, typed, globs, untyped = 0, 0, 0, 0, []
while True:
    rest = text[pos:].lstrip()
    if not rest:
        break
    doc, n = dec.raw_decode(rest)
    pos = len(text) - len(rest) + n
    sites += doc["summary"]["sites"]
    typed += doc["summary"]["typed"]
    globs += doc["summary"]["globals"]
    untyped += [s for s in doc["sites"] if s["type"] is None]
print("%s: %d allocation sites in %s instrumented file(s), %d typed (%.1f%%), %d globals"
      % (name, sites, nfiles, typed, 100.0 * typed / sites if sites else 0, globs))
for s in untyped:
    print("    untyped %s:%s %s (%s): %s" % (s["file"], s["line"], s["function"], s["callee"],
                                           s["reason"]))
