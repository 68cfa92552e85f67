"""Prints `mcr-ctl types --json` (read from stdin) one line per record, in a
fixed format for FileCheck, whatever the human output looks like:
    site LINE FUNCTION CALLEE SHAPE ELEMENT-TYPE | reason: REASON
    global NAME SYMBOL FLAGS TYPE
"""
import json
import sys

doc = json.load(sys.stdin)
for s in doc.get("sites", []):
    t = s.get("element_type")
    line = "site %s %s %s %s %s" % (s.get("line"), s.get("function"), s.get("callee"),
                                    s.get("shape") or "-", t if t is not None else "null")
    if t is None:
        line += " | reason: %s" % s.get("reason")
    print(line)
for g in doc.get("globals", []):
    flags = g.get("flags")
    if isinstance(flags, list):
        flags = ",".join(flags) or "-"
    print("global %s %s %s %s" % (g.get("name"), g.get("symbol"), flags or "-", g.get("type")))
summary = doc.get("summary", {})
print("summary sites=%s typed=%s" % (summary.get("sites"), summary.get("typed")))
