#!/usr/bin/env python3
"""Summarise one dnsperf output file as `key=value` pairs on one line.

usage: dnsperf_stats.py FILE

Always: sent, completed, lost, qps (dnsperf's own figures), and the response codes.
With `-v` output (one `> RCODE name type latency` line per answered query, `> T ...` for a
timeout), also p50_ms / p99_ms / max_ms over the answered queries, so dnsperf 2.10 (which
has no percentile output) still gives a latency distribution."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read()


def grab(pattern, default="0"):
    m = re.search(pattern, text)
    return m.group(1) if m else default


out = {
    "sent": grab(r"(?:Queries|Updates) sent:\s+(\d+)"),
    "completed": grab(r"(?:Queries|Updates) completed:\s+(\d+)"),
    "lost": grab(r"(?:Queries|Updates) lost:\s+(\d+)"),
    "qps": grab(r"(?:Queries|Updates) per second:\s+([\d.]+)"),
    "avg_ms": "%.3f" % (float(grab(r"Average Latency \(s\):\s+([\d.]+)")) * 1000),
    "rcodes": grab(r"Response codes:\s+(.*)", "-").replace(" ", "").replace("%", ""),
}
lat = []
for m in re.finditer(r"^> [A-Z]+ \S+ \S+ ([\d.]+)$", text, re.M):
    lat.append(float(m.group(1)))
if lat:
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, round((len(lat) - 1) * p))] * 1000

    out["p50_ms"] = "%.3f" % pct(0.50)
    out["p99_ms"] = "%.3f" % pct(0.99)
    out["max_ms"] = "%.3f" % (lat[-1] * 1000)
print(" ".join(f"{k}={v}" for k, v in out.items()))
