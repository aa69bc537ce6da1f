#!/usr/bin/env bash
# A session's device call, in one command (about 7 minutes): the GPU tests, then the decode and prefill
# figures of docs/PERFORMANCE.md with the open questions' switches, on random-weight engines of the 8B
# and 1B shapes. Prints one line per measurement; full logs under $OUT.
#   8B: TPOT with the defaults, then each A/B setting (SETTINGS_8B), without decode attention (its
#       in-graph cost), prefill of 2,048 tokens, and sampled decoding (temperature 1, top-p 0.95)
#   1B: TPOT with the defaults and each A/B setting (SETTINGS_1B), and sampled decoding
# A setting is one or more VAR=value words joined by + (KILN_PDL=0+KILN_ATTN_CLUSTER=0).
# Usage (device run): source .device/prelude.sh && [MICROBENCH=1] [HF=1] [TESTS="test/gpu/a.test.ts …"] \
#   [SETTINGS_8B="…"] [SETTINGS_1B="…"] bash tools/device_session.sh [skip-tests]
#   TESTS: run these GPU test files instead of the whole `npm run test:gpu` suite.
#   CONFIGS: the shapes to measure (default "llama-3.1-8b llama-3.2-1b").
#   ATTN_STAGES=1: also TPOT with decode attention stopped after each stage (KILN_ATTN_STOP) and left out.
#   SAMPLER_AB=1: also the sampler's time on one row (sampler_ab.ts).
#   PROFILE=1: also the defaults with `kiln bench --profile` (the graph replay time of one decode step).
#   LEAN=1: without the sampled and no-attention lines.
#   DEADLINE (epoch seconds): HF=1's run gets the time left until then (skipped under a minute).
#   CLOSE=1: the 8B engine comes from `kiln run` on its checkpoint (a cache miss that builds it, then a
#     cache hit), and its load + first token is timed (about 20 s more).
set -uo pipefail
source tools/device_engine.sh
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
if [[ ${1:-} != skip-tests ]]; then
  if [[ -n ${TESTS:-} ]]; then
    # shellcheck disable=SC2086 # a list of files
    timeout 420 node --import tsx --test --test-reporter=spec --test-concurrency=1 $TESTS >"$out/test_gpu.log" 2>&1
  else
    timeout 420 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
  fi
  echo "test:gpu exit $?"
  grep -E "^ℹ (tests|pass|fail)" "$out/test_gpu.log" | tr '\n' ' '
  echo
  grep -E "^✖|not ok|AssertionError" "$out/test_gpu.log" | head -20
fi
# $1 label, $2 engine, $3 setting (VAR=value[+VAR=value…]; X=1 for none), then bench flags
measure() {
  local label=$1 e=$2 setting=$3
  shift 3
  # shellcheck disable=SC2046 # one word per variable
  env $(tr '+' ' ' <<<"$setting") ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --json "$@" \
    >"$out/m.json" 2>>"$out/bench.err" || { echo "$label: bench failed (see bench.err)"; return; }
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); p=d.get('profile'); print('%-48s TPOT %.3f ms (%.3fx floor %.3f)  TTFT %.2f ms (%.3fx)%s%s' % (sys.argv[2], d['tpotMs'], d['tpotOverFloor'], d['floorMs'], d['ttftMs'], d['ttftOverPrefillFloor'], '  GPU wait %.3f ms/step' % d['collectWaitMs'] if 'collectWaitMs' in d else '', ('  graph replay %.3f ms' % p['graphMs'] + ('  with sampler %.3f  +upload %.3f' % (p['sampledGraphMs'], p['uploadGraphMs']) if p.get('sampledGraphMs') else '')) if p else ''))" \
    "$out/m.json" "$label"
}
decode=(--input-len 128 --output-len 256)
# Decode attention's kernels, for leaving it out (with the RoPE fused into it, that goes too).
SKIP_ATTN=attention_decode,attention_decode_c2,attention_decode_c4,attention_decode_c8,attention_decode_rope
SKIP_ATTN+=,attention_decode_rope_c2,attention_decode_rope_c4,attention_decode_rope_c8,rope_qkv_fused
# CLOSE=1: the 8B engine is built by `kiln run` on the checkpoint (a cache miss: the content cache builds
# it; its --json "engine" has the build's seconds), then `kiln run` again must be a cache hit (its wall
# time: the checkpoint's identity check, the load and one token). Prints the cached engine's directory.
close_engine() {
  local cfg=$1 dir=/tmp/hf-$1
  [[ -d $dir ]] || python3 tools/bench_hf.py --config "configs/$cfg" --out "$dir" >"$out/hf-$cfg-make.log" 2>&1
  for pass in 1 2; do
    local t0=$(date +%s%N)
    ./bin/kiln run --model "$dir" --backend cuda --dtype bf16 --input-ids 1,2,3 --max-new-tokens 1 --json \
      >"$out/run-checkpoint-$pass.json" 2>>"$out/bench.err"
    echo "$cfg kiln run on the checkpoint, pass $pass: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms," \
      "engine $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engine'])" "$out/run-checkpoint-$pass.json" 2>&1)" \
      >>"$out/close.txt"
  done
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engine']['dir'])" "$out/run-checkpoint-2.json"
}
for cfg in ${CONFIGS:-llama-3.1-8b llama-3.2-1b}; do
  t0=$(date +%s)
  if [[ ${CLOSE:-0} == 1 && $cfg == llama-3.1-8b ]]; then e=$(close_engine "$cfg"); else e=$(engine "$cfg"); fi
  echo "$cfg engine ready in $(($(date +%s) - t0)) s ($(tail -n 1 "$out/build-times.txt" 2>/dev/null))"
  if [[ $cfg == llama-3.1-8b ]]; then
    settings=${SETTINGS_8B-KILN_GEMV_SHAPES=4096x14336:r1u4w8s2 KILN_GEMV_SHAPES=4096x14336:r1u4w8s4}
  else
    settings=${SETTINGS_1B-KILN_GEMV_SHAPES=2048x8192:r1u4w8s2 KILN_GEMV_SHAPES=2048x8192:r1u4w8s4 KILN_GEMV_SHAPES=2048x2048:r1u4w8s2}
  fi
  for setting in X=1 $settings; do
    measure "$cfg ${setting/X=1/defaults}" "$e" "$setting" "${decode[@]}"
  done
  # Decode attention's stages inside the graph (profiling only): stopped after its wait, its keys, its
  # partials, and left out (ATTN_STAGES=1; on the 1B shape too).
  if [[ ${ATTN_STAGES:-0} == 1 ]]; then
    for stop in wait keys partials; do measure "$cfg attention stops at $stop" "$e" "KILN_ATTN_STOP=$stop" "${decode[@]}"; done
  fi
  # PROFILE=1: the defaults once more with --profile (one decode step's graph replay time: TPOT minus it
  # is what each step costs outside its graph).
  [[ ${PROFILE:-0} == 1 ]] && measure "$cfg defaults, profiled" "$e" X=1 "${decode[@]}" --profile
  [[ ${LEAN:-0} == 1 ]] || measure "$cfg sampled t=1 top-p 0.95" "$e" X=1 "${decode[@]}" --temperature 1 --top-p 0.95
  if [[ $cfg == llama-3.2-1b ]]; then
    [[ ${ATTN_STAGES:-0} == 1 ]] && measure "$cfg without decode attention" "$e" \
      KILN_SKIP_KERNELS=$SKIP_ATTN "${decode[@]}"
    continue
  fi
  [[ ${LEAN:-0} == 1 ]] || measure "$cfg without decode attention" "$e" KILN_SKIP_KERNELS=$SKIP_ATTN "${decode[@]}"
  measure "$cfg prefill 2048" "$e" X=1 --input-len 2048 --output-len 2 --runs 5
  # CLOSE=1 (8B): the engine's load + first token, after the cache's build and hit (close_engine).
  if [[ ${CLOSE:-0} == 1 && $cfg == llama-3.1-8b ]]; then
    cat "$out/close.txt"
    t0=$(date +%s%N)
    ./bin/kiln run --model "$e" --backend cuda --input-ids 1,2,3 --max-new-tokens 1 --json >/dev/null 2>>"$out/bench.err"
    echo "$cfg engine dir: load + first token: exit $? in $((($(date +%s%N) - t0) / 1000000)) ms"
  fi
done
# HF=1: also the Hugging Face baseline on the 8B checkpoint, static cache + compile (its best mode; about
# 2-3 minutes), for the "faster than Hugging Face in the same run" figure.
hf_timeout=${HF_TIMEOUT:-300}
[[ -n ${DEADLINE:-} ]] && hf_timeout=$((DEADLINE - $(date +%s)))
if [[ ${HF:-0} == 1 && $hf_timeout -lt 60 ]]; then echo "hf bench 8B: skipped, ${hf_timeout} s left before DEADLINE"
elif [[ ${HF:-0} == 1 ]]; then
  timeout "$hf_timeout" python3 tools/bench_hf.py --config configs/llama-3.1-8b --out /tmp/hf-llama-3.1-8b --bench \
    --modes static+compile --prefill-len 0 --budget-s "${HF_BUDGET:-$((hf_timeout * 9 / 10))}" --json "$out/hf-8b.json" \
    >"$out/hf-8b.log" 2>&1
  echo "hf bench 8B: exit $? (timeout ${hf_timeout} s)"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d.get(k) for k in ('device','modes')}, default=str)[:1500])" \
    "$out/hf-8b.json"
fi
# SAMPLER_AB=1: also sample_topk_topp's time on one row (tools/microbench/sampler_ab.ts).
if [[ ${SAMPLER_AB:-0} == 1 ]]; then
  timeout 120 node --import tsx tools/microbench/sampler_ab.ts 2>&1 | tee "$out/sampler_ab.txt"
fi
# MICROBENCH=1: also the tensor-core GEMV microbenchmark (tools/microbench/gemv_mma.cu, about a minute).
if [[ ${MICROBENCH:-0} == 1 ]]; then
  nvcc -O3 -arch=sm_90 -DKILN_DTYPE_BF16 -DGEMV_ACT=0 -Ikernels -o /tmp/gemv_mma tools/microbench/gemv_mma.cu &&
    /tmp/gemv_mma | tee "$out/gemv_mma.txt"
fi
