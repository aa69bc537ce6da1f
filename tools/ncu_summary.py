"""Summarises an Nsight Compute CSV of a short kiln generation (gpu__time_duration per kernel, and
DRAM bytes and active warps when the run collected them: ncu_decode.sh's NCU_METRICS): the kernels of
one step, grouped by name and launch shape. `last` (default): the last decode step (from the last
`embedding` launch to the end); `prefill`: the prompt's step (up to the second `embedding` launch);
`rows=N`: the last step of exactly N rows (its `embedding` launch's grid is N wide, and another step
follows it), i.e. a decode step at batch N once the executor's staggered prefills are done."""
import csv
import sys
from collections import OrderedDict

TIME = "gpu__time_duration.sum"
READ, WRITE = "dram__bytes_read.sum", "dram__bytes_write.sum"
WARPS = "sm__warps_active.avg.pct_of_peak_sustained_active"
SCALE = {"nsecond": 1, "ns": 1, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9,
         "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9, "%": 1}

launches = OrderedDict()  # ID → {name, grid, block, metric: value (ns, bytes, %)}
with open(sys.argv[1], newline="") as f:
    lines = [l for l in f if l.startswith('"')]  # skip ncu's ==PROF== lines
for r in csv.DictReader(lines):
    k = launches.setdefault(r["ID"], {"name": r["Kernel Name"], "grid": r.get("Grid Size", ""),
                                      "block": r.get("Block Size", "")})
    v = float(r["Metric Value"].replace(",", ""))
    k[r["Metric Name"]] = v * SCALE.get(r.get("Metric Unit", ""), 1)
rows = [k for k in launches.values() if TIME in k]
starts = [i for i, r in enumerate(rows) if r["name"].startswith("embedding")]
if not starts:
    sys.exit(f"no embedding kernel among {len(rows)} kernels")
which = sys.argv[2] if len(sys.argv) > 2 else "last"
ends = starts[1:] + [len(rows)]
if which == "prefill":
    step = rows[starts[0]:ends[0]]
elif which.startswith("rows="):
    wide = [(a, b) for a, b in zip(starts, ends) if rows[a]["grid"].strip("() ").split(",")[0].strip() == which[5:]]
    if not wide:
        sys.exit(f"no step of {which[5:]} rows among {len(starts)} steps")
    whole = [w for w in wide if w[1] < len(rows)]  # a step cut off by --launch-count is not whole
    a, b = (whole or wide)[-1]
    step = rows[a:b]
else:
    step = rows[starts[-1]:]
has_bytes = all(READ in r and WRITE in r for r in step)
has_warps = all(WARPS in r for r in step)
groups = OrderedDict()
for r in step:
    key = (r["name"].split("(")[0][:60], r["grid"], r["block"])  # cuBLASLt kernels keep their long names, cut
    g = groups.setdefault(key, {"n": 0, "ns": 0.0, "bytes": 0.0, "warps": 0.0})
    g["n"] += 1
    g["ns"] += r[TIME]
    g["bytes"] += r.get(READ, 0) + r.get(WRITE, 0)
    g["warps"] += r.get(WARPS, 0)
total = sum(r[TIME] for r in step)
print(f"{which} step: {len(step)} kernels, {total / 1e3:.1f} us of kernel time (sum)")
extra = (f" {'MB each':>8} {'GB/s':>6}" if has_bytes else "") + (f" {'warps %':>7}" if has_warps else "")
print(f"{'kernel':60} {'grid':>16} {'block':>12} {'n':>4} {'us total':>9} {'us each':>8}{extra}")
for (name, grid, block), g in sorted(groups.items(), key=lambda kv: -kv[1]["ns"]):
    n, ns = g["n"], g["ns"]
    line = f"{name:60} {grid:>16} {block:>12} {n:4d} {ns / 1e3:9.1f} {ns / n / 1e3:8.2f}"
    if has_bytes:
        line += f" {g['bytes'] / n / 1e6:8.2f} {g['bytes'] / ns:6.0f}"  # bytes / ns = GB/s
    if has_warps:
        line += f" {g['warps'] / n:7.1f}"
    print(line)
