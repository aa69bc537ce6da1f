#!/usr/bin/env bash
# Per-kernel GPU time of one step of a short generation, measured by Nsight Compute on the device:
# the last decode step, or (prefill) the prompt's step. Clocks and caches are left as they are (--clock-control none,
# --cache-control none: the card's settings are never changed). Graph nodes are profiled one by one,
# so the sum of kernel times is the step's time without launch gaps; compare it with the graph replay
# time from `kiln bench --profile` to see what the gaps cost.
# Usage (device run): source .device/prelude.sh && [RUN_FLAGS="…"] bash tools/ncu_decode.sh llama-3.2-1b
#   [new tokens] [prompt tokens (128)] [last|prefill]
#   RUN_FLAGS: more `kiln run` flags, e.g. "--temperature 1 --top-p 0.95" to profile the sampled path.
#   ENGINE=dir: that engine instead of the config's bf16 one (e.g. /tmp/engine-llama-3.1-8b-fp8 of
#   `device_trust.sh quant fp8`); the CSV is named after the engine's folder then. TAG=x: appended to
#   the files' names (one call, several variants: TAG=bits KILN_FP8_GEMV=bits ...).
#   BENCH_BATCH=N: N sequences of the prompt's length through `kiln bench --batch-size N` (the executor),
#   eager (KILN_CUDA_GRAPHS=0: no graphs to capture, and ncu serialises the kernels either way); pass
#   `rows=N` as the step and enough new tokens (48) that all N decode together after the executor's
#   staggered prefill chunks (the last steps hold only the last-admitted requests).
#   NCU_FLAGS: more ncu flags, e.g. "--launch-skip 6000 --launch-count 600" to profile two steps of a
#   long run alone (every profiled kernel costs ncu tens of milliseconds). NCU_METRICS: the metrics
#   (default gpu__time_duration.sum; ncu_summary.py also reads dram__bytes_read.sum,
#   dram__bytes_write.sum and sm__warps_active.avg.pct_of_peak_sustained_active: each kernel's DRAM
#   traffic, GB/s and active warps; more metrics, more replay passes a kernel).
set -uo pipefail
cfg=${1:-llama-3.2-1b}
n=${2:-4}
prompt=${3:-128}
which=${4:-last}
source tools/device_engine.sh
e=${ENGINE:-$(engine "$cfg")}
[[ -n ${ENGINE:-} ]] && cfg=$(basename "$ENGINE")
[[ -n ${TAG:-} ]] && cfg="$cfg-$TAG"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [[ -n ${BENCH_BATCH:-} ]]; then
  cfg="$cfg-b$BENCH_BATCH"
  cmd=(env KILN_CUDA_GRAPHS=0 ./bin/kiln bench --model "$e" --backend cuda --batch-size "$BENCH_BATCH"
    --input-len "$prompt" --output-len "$n" --runs 1 --json)
else
  ids=$(python3 -c "print(','.join(str(10 + i) for i in range($prompt)))")
  # shellcheck disable=SC2206 # RUN_FLAGS is a list of flags
  cmd=(./bin/kiln run --model "$e" --backend cuda --input-ids "$ids" --max-new-tokens "$n" --json ${RUN_FLAGS:-})
fi
# shellcheck disable=SC2086 # NCU_FLAGS is a list of flags
timeout 400 "$ncu" ${NCU_FLAGS:-} --graph-profiling node --clock-control none --cache-control none \
  --metrics "${NCU_METRICS:-gpu__time_duration.sum}" --csv --log-file "$out/ncu-$cfg-${which//=/}.csv" \
  "${cmd[@]}" >"$out/ncu-$cfg-run.json" 2>"$out/ncu-$cfg-run.err"
echo "ncu exit $?" | tee -a "$out/summary.txt"
python3 tools/ncu_summary.py "$out/ncu-$cfg-${which//=/}.csv" "$which" | tee -a "$out/summary.txt"
