#!/usr/bin/env python3
"""Self time by function of V8 .cpuprofile files (node --cpu-prof), one table per thread that did work:
the largest entries first, idle time left out of the percentages.
Usage: python3 tools/cpuprofile_top.py [--window FROM_US,TO_US] FILE.cpuprofile [...]
--window keeps only the samples taken between two instants in µs on the profile's clock (the
process's monotonic clock: process.hrtime.bigint() / 1000n), e.g. a benchmark's measured part."""
import collections
import json
import sys


def top(path: str, n: int = 45, window: tuple[float, float] | None = None) -> None:
    p = json.load(open(path))
    nodes = {node["id"]: node for node in p["nodes"]}
    self_us: collections.Counter = collections.Counter()
    at = p.get("startTime", 0)
    for sample, dt in zip(p["samples"], p["timeDeltas"]):
        at += dt
        if window is not None and not window[0] <= at <= window[1]:
            continue
        f = nodes[sample]["callFrame"]
        self_us[(f["functionName"] or "(anonymous)", f["url"].split("/")[-1], f["lineNumber"] + 1)] += dt
    idle = sum(v for k, v in self_us.items() if k[0] == "(idle)")
    busy = sum(self_us.values()) - idle
    if busy < 0.1 * (busy + idle):
        return  # a thread that mostly waited (the main thread while a worker runs)
    print(f"{path}: {busy / 1e3:.0f} ms busy, {idle / 1e3:.0f} ms idle")
    for (name, url, line), us in self_us.most_common(n):
        if name != "(idle)":
            print(f"  {us / 1e3:9.1f} ms {100 * us / busy:5.1f}%  {name}  {url}:{line}")


if __name__ == "__main__":
    args = sys.argv[1:]
    window = None
    if args[:1] == ["--window"]:
        window = tuple(float(x) for x in args[1].split(","))
        args = args[2:]
    for f in args:
        top(f, window=window)
