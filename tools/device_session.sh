#!/usr/bin/env bash
# A session's first device call, in one command (about 7 minutes): the GPU tests, then the decode
# and prefill figures of docs/PERFORMANCE.md with the open questions' switches, on random-weight
# engines of the 8B and 1B shapes. Prints one line per measurement; full logs under $OUT.
#   8B: TPOT under KILN_ATTN_TRIGGER=wait|keys|exit, with the split norm (KILN_FUSE_NORM=split), and
#       without attention (its in-graph cost),
#       prefill of 2,048 tokens, and sampled decoding (temperature 1, top-p 0.95: the sampler's jump)
#   1B: TPOT under each trigger and with the split norm
# Usage (device run): source .device/prelude.sh && [MICROBENCH=1] bash tools/device_session.sh [skip-tests]
set -uo pipefail
source tools/device_engine.sh
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
if [[ ${1:-} != skip-tests ]]; then
  timeout 420 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
  echo "test:gpu exit $?"
  grep -E "^ℹ (tests|pass|fail)" "$out/test_gpu.log" | tr '\n' ' '
  echo
  grep -E "^✖|not ok" "$out/test_gpu.log" | head -20
fi
# $1 label, $2 engine, $3 env setting (or X=1), then bench flags
measure() {
  local label=$1 e=$2 setting=$3
  shift 3
  env "$setting" ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --json "$@" >"$out/m.json" 2>>"$out/bench.err" ||
    { echo "$label: bench failed (see bench.err)"; return; }
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%-34s TPOT %.3f ms (%.3fx floor %.3f)  TTFT %.2f ms (%.3fx)' % (sys.argv[2], d['tpotMs'], d['tpotOverFloor'], d['floorMs'], d['ttftMs'], d['ttftOverPrefillFloor']))" \
    "$out/m.json" "$label"
}
for cfg in llama-3.1-8b llama-3.2-1b; do
  t0=$(date +%s)
  e=$(engine "$cfg")
  echo "$cfg engine ready in $(($(date +%s) - t0)) s"
  decode=(--input-len 128 --output-len 256)
  for setting in KILN_ATTN_TRIGGER=wait KILN_ATTN_TRIGGER=keys KILN_ATTN_TRIGGER=exit KILN_FUSE_NORM=split; do
    measure "$cfg $setting" "$e" "$setting" "${decode[@]}"
  done
  [[ $cfg == llama-3.2-1b ]] && continue
  measure "$cfg without attention_decode" "$e" KILN_SKIP_KERNELS=attention_decode "${decode[@]}"
  measure "$cfg prefill 2048" "$e" X=1 --input-len 2048 --output-len 2 --runs 5
  measure "$cfg sampled t=1 top-p 0.95" "$e" X=1 "${decode[@]}" --temperature 1 --top-p 0.95
done
# MICROBENCH=1: also the tensor-core GEMV microbenchmark (tools/microbench/gemv_mma.cu, about a minute).
if [[ ${MICROBENCH:-0} == 1 ]]; then
  nvcc -O3 -arch=sm_90 -DKILN_DTYPE_BF16 -DGEMV_ACT=0 -Ikernels -o /tmp/gemv_mma tools/microbench/gemv_mma.cu &&
    /tmp/gemv_mma | tee "$out/gemv_mma.txt"
fi
