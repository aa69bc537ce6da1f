#!/usr/bin/env bash
# Where sample_topk_topp's time goes on a flat row (the sampled path of a random-weight engine: 1.2 ms of
# the 1B's 2.0 ms sampled step, H200, 2026-12-03): Nsight Compute's full section set for one launch of
# tools/microbench/sampler_ab.ts (V = 128,256, temperature 1, top-p 0.95, logits of spread 0.5, the
# 16-byte row passes), with source counters per CUDA line. Clocks and caches are left as they are.
# Writes $OUT/sampler.ncu-rep (open it in Nsight Compute) and $OUT/sampler-details.txt, and prints the
# lines that say what bounds the kernel: duration, issue activity, pipe use, warp stalls, shared-memory
# atomics. About a minute of device time.
# Usage (device run): source .device/prelude.sh && bash tools/ncu_sampler.sh
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
# sampler_ab.ts launches the kernel 31 times per variant and spread, the flat spread and the default
# variant first; launch 6 is a warm one of those.
timeout 300 "$ncu" --kernel-name sample_topk_topp --launch-skip 5 --launch-count 1 --set full \
  --import-source yes --clock-control none --cache-control none -f -o "$out/sampler" \
  node --import tsx tools/microbench/sampler_ab.ts >"$out/sampler-run.txt" 2>&1
echo "ncu exit $?"
"$ncu" --import "$out/sampler.ncu-rep" --page details >"$out/sampler-details.txt" 2>&1
grep -E "Duration|Issue Slots Busy|Issued Ipc|No Eligible|Stall|FP64|Shared|Atomic|L2 Hit|Memory Throughput|Compute \(SM\) Throughput|Registers|Achieved Occupancy" \
  "$out/sampler-details.txt" | head -60
