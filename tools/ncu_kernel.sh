#!/usr/bin/env bash
# Nsight Compute's full report (--set full: speed of light, memory workload, occupancy, warp stall
# reasons, source counters) of one launch of one kernel during `kiln bench` on the executor engine
# that device_trust.sh's throughput parts build (/tmp/engine-llama-3.1-8b-throughput). Clocks and
# caches are left as they are (--clock-control none, --cache-control none). Graph nodes are profiled
# one by one (--graph-profiling node), so a decode step's kernels are reached inside its graph.
# Usage (device run): source .device/prelude.sh && bash tools/ncu_kernel.sh KERNEL_REGEX BATCH INPUT [SKIP]
#   e.g. attention_decode_batch 256 128: a decode step's attention at batch 256, 128-token prompts;
#   SKIP launches of the kernel are passed over first (default 40: past the warm-up and prefill).
#   ENGINE=dir profiles another engine (e.g. /tmp/engine-llama-3.1-8b-fp8 of `device_trust.sh quant fp8`).
#   OUTPUT_LEN=n: new tokens (default 4). A decode step of all BATCH rows needs more: the executor admits
#   prompts in prefill chunks of its token budget, so with 4 tokens the first-admitted finish before the
#   last start (batch 256 × 128 tokens: OUTPUT_LEN=48 and SKIP past 20 steps' launches).
#   BENCH_ARGS="...": more `kiln bench` flags (e.g. --kv-cache-dtype fp8 for the FP8 pools' kernels).
set -uo pipefail
kernel=${1:?kernel regex}
batch=${2:?batch}
input=${3:?input tokens}
skip=${4:-40}
out=${OUT:-/tmp/out}
mkdir -p "$out"
e=${ENGINE:-/tmp/engine-llama-3.1-8b-throughput}
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
log="$out/ncu-$kernel-$batch-$input.txt"
rep="$out/ncu-$(echo "$kernel" | tr -cd '[:alnum:]_')-$batch-$input"
timeout 300 "$ncu" --graph-profiling node --clock-control none --cache-control none --set full \
  --kernel-name "regex:$kernel" --launch-skip "$skip" --launch-count 1 --export "$rep" --force-overwrite \
  ./bin/kiln bench --model "$e" --backend cuda --batch-size "$batch" --input-len "$input" --output-len "${OUTPUT_LEN:-4}" \
  --runs 1 ${BENCH_ARGS:-} >"$log" 2>"$out/ncu-$kernel.err"
echo "ncu $kernel batch $batch input $input: exit $?"
"$ncu" --import "$rep.ncu-rep" --page details >>"$log" 2>&1  # the report (an export prints none)
grep -E "^  [a-zA-Z_].*\(|Duration|Memory Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Compute \(SM\) Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Dynamic Shared|Block Limit|Warp Cycles Per Issued|Issue Slots Busy|Executed Ipc Active|Eligible Warps|No Eligible|Stall|One or More Eligible|Grid Size|Waves Per SM" "$log" | head -60
# The warp stall reasons (PC sampling), largest first: the details page does not list them.
"$ncu" --import "$rep.ncu-rep" --page raw 2>/dev/null | grep -E "smsp__pcsamp_warps_issue_stalled_[a-z_]+ " |
  grep -v "not_issued" | sort -k3 -g -r | head -12
rm -f "$rep.ncu-rep"
