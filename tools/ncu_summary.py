"""Summarises an Nsight Compute CSV (gpu__time_duration per kernel) of a short kiln generation:
the kernels of one step, grouped by name and launch shape. `last` (default): the last decode step
(from the last `embedding` launch to the end); `prefill`: the prompt's step (up to the second
`embedding` launch); `rows=N`: the last step of exactly N rows (its `embedding` launch's grid is N
wide, and another step follows it), i.e. a decode step at batch N once the executor's staggered prefills are done."""
import csv
import sys
from collections import OrderedDict

rows = []
with open(sys.argv[1], newline="") as f:
    lines = [l for l in f if l.startswith('"')]  # skip ncu's ==PROF== lines
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "nsecond")
    ns = v * {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(unit, 1)
    rows.append((r["Kernel Name"], ns, r.get("Grid Size", ""), r.get("Block Size", "")))
starts = [i for i, r in enumerate(rows) if r[0].startswith("embedding")]
if not starts:
    sys.exit(f"no embedding kernel among {len(rows)} kernels")
which = sys.argv[2] if len(sys.argv) > 2 else "last"
ends = starts[1:] + [len(rows)]
if which == "prefill":
    step = rows[starts[0]:ends[0]]
elif which.startswith("rows="):
    wide = [(a, b) for a, b in zip(starts, ends) if rows[a][2].strip("() ").split(",")[0].strip() == which[5:]]
    if not wide:
        sys.exit(f"no step of {which[5:]} rows among {len(starts)} steps")
    whole = [w for w in wide if w[1] < len(rows)]  # a step cut off by --launch-count is not whole
    a, b = (whole or wide)[-1]
    step = rows[a:b]
else:
    step = rows[starts[-1]:]
groups = OrderedDict()
for name, ns, grid, block in step:
    key = (name.split("(")[0][:60], grid, block)  # cuBLASLt kernels keep their long names, cut
    c, t = groups.get(key, (0, 0.0))
    groups[key] = (c + 1, t + ns)
total = sum(ns for _, ns, _, _ in step)
print(f"{which} step: {len(step)} kernels, {total / 1e3:.1f} us of kernel time (sum)")
print(f"{'kernel':60} {'grid':>16} {'block':>12} {'n':>4} {'us total':>9} {'us each':>8}")
for (name, grid, block), (c, t) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    print(f"{name:60} {grid:>16} {block:>12} {c:4d} {t / 1e3:9.1f} {t / c / 1e3:8.2f}")
