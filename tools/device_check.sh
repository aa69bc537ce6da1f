#!/usr/bin/env bash
# One call on the GPU machine: GPU tests, then kiln vs Hugging Face on a shipped config's shape.
# Usage (device run, carry .device and node_modules):
#   source .device/prelude.sh && bash tools/device_check.sh [tests|bench-1b|bench-8b|all|both|cfg:NAME|variants:NAME]
# variants:NAME times decode under each launch setting (KILN_PDL, KILN_ATTN_TRIGGER, KILN_SKIP_KERNELS, …) on one
# engine; VARIANTS="A=1 B=0 ..." replaces the list.
set -uo pipefail
what=${1:-all}
out=${OUT:-/tmp/out}
mkdir -p "$out"
export KILN_CACHE_DIR=/tmp/kiln-cache
source tools/device_engine.sh
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"

if [[ $what == tests || $what == all || $what == both ]]; then
  timeout 420 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
  echo "test:gpu exit $?" | tee -a "$out/summary.txt"
  grep -E "^ℹ (tests|pass|fail|skipped)" "$out/test_gpu.log" | tee -a "$out/summary.txt"
  grep -E "^✖|not ok" "$out/test_gpu.log" | head -40 | tee -a "$out/summary.txt"
fi

bench() { # $1 = config name
  local cfg=$1 dir=/tmp/hf-$1
  python3 tools/bench_hf.py --config "configs/$cfg" --out "$dir" >"$out/hf-$cfg-make.log" 2>&1 || echo "make $cfg failed" | tee -a "$out/summary.txt"
  local t0=$(date +%s%N)
  ./bin/kiln build --model "$dir" --output "/tmp/engine-$cfg" --backend cuda --dtype bf16 --json >"$out/kiln-$cfg-build.json" 2>"$out/kiln-$cfg-build.err"
  echo "kiln build $cfg: exit $? in $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$out/summary.txt"
  # Load time: open the engine and run one token.
  t0=$(date +%s%N)
  ./bin/kiln run --model "/tmp/engine-$cfg" --backend cuda --input-ids 1,2,3 --max-new-tokens 1 --json >/dev/null 2>>"$out/kiln-$cfg-build.err"
  echo "kiln load+1 token $cfg: exit $? in $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$out/summary.txt"
  ./bin/kiln bench --model "/tmp/engine-$cfg" --backend cuda --batch-size 1 --input-len 128 --output-len 256 --profile \
    >"$out/kiln-$cfg-profile.txt" 2>>"$out/kiln-$cfg-bench.err"
  tail -30 "$out/kiln-$cfg-profile.txt" | tee -a "$out/summary.txt"
  ./bin/kiln bench --model "/tmp/engine-$cfg" --backend cuda --batch-size 1 --input-len 128 --output-len 256 --json \
    >"$out/kiln-$cfg-bench.json" 2>"$out/kiln-$cfg-bench.err"
  echo "kiln bench $cfg: exit $?" | tee -a "$out/summary.txt"
  cat "$out/kiln-$cfg-bench.json" | tee -a "$out/summary.txt"
  tail -5 "$out/kiln-$cfg-bench.err" | tee -a "$out/summary.txt"
  ./bin/kiln bench --model "/tmp/engine-$cfg" --backend cuda --batch-size 1 --input-len 2048 --output-len 2 --runs 3 --json \
    >"$out/kiln-$cfg-prefill.json" 2>>"$out/kiln-$cfg-bench.err"
  cat "$out/kiln-$cfg-prefill.json" | tee -a "$out/summary.txt"
  [[ ${SKIP_HF:-0} == 1 ]] && return
  timeout 300 python3 tools/bench_hf.py --config "configs/$cfg" --out "$dir" --bench --json "$out/hf-$cfg.json" >"$out/hf-$cfg.log" 2>&1
  echo "hf bench $cfg: exit $?" | tee -a "$out/summary.txt"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k: d.get(k) for k in ('device','modes','prefill2048Ms')}, default=str)[:1500])" "$out/hf-$cfg.json" | tee -a "$out/summary.txt"
}
# Decode TPOT of one engine under each launch setting (PDL on/off, GEMV policy), same process order.
variants() { # $1 = config name
  local cfg=$1 e
  e=$(engine "$cfg")
  ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --input-len 128 --output-len 256 --profile \
    >"$out/kiln-$cfg-profile.txt" 2>>"$out/kiln-$cfg-bench.err"
  tail -22 "$out/kiln-$cfg-profile.txt" | tee -a "$out/summary.txt"
  ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --input-len 2048 --output-len 2 --runs 3 --json \
    >"$out/kiln-$cfg-prefill.json" 2>>"$out/kiln-$cfg-bench.err"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"$cfg prefill 2048: {d['ttftMs']:.2f} ms ({d['ttftOverPrefillFloor']:.3f}x floor)\")" \
    "$out/kiln-$cfg-prefill.json" | tee -a "$out/summary.txt"
  for setting in ${VARIANTS:-KILN_PDL=1 KILN_ATTN_TRIGGER=wait KILN_ATTN_TRIGGER=exit KILN_ATTN_CLUSTER=0 KILN_SKIP_KERNELS=attention_decode,attention_decode_c2,attention_decode_c4,attention_decode_c8,attention_decode_rope,attention_decode_rope_c2,attention_decode_rope_c4,attention_decode_rope_c8 KILN_ROPE_FUSE=0 KILN_SKIP_KERNELS=add_rms_norm KILN_PDL=0}; do
    env $setting ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --input-len 128 --output-len 256 --json \
      >"$out/variant.json" 2>>"$out/kiln-$cfg-bench.err"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"$cfg $setting: TPOT {d['tpotMs']:.3f} ms ({d['tpotOverFloor']:.3f}x floor), TTFT {d['ttftMs']:.2f} ms\")" \
      "$out/variant.json" | tee -a "$out/summary.txt"
  done
}

[[ $what == bench-1b || $what == all ]] && bench llama-3.2-1b
[[ $what == bench-8b || $what == both ]] && bench llama-3.1-8b
[[ $what == both ]] && bench llama-3.2-1b
[[ $what == cfg:* ]] && bench "${what#cfg:}"
[[ $what == variants:* ]] && variants "${what#variants:}"
exit 0
