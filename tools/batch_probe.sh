#!/usr/bin/env bash
# Decode at batch > 1 on one engine: the step profile (graph replay vs TPOT) and TPOT under the
# launch settings that change with the batch (our GEMV vs cuBLASLt, graphs).
# Usage (device run): source .device/prelude.sh && bash tools/batch_probe.sh llama-3.2-1b [batch]
set -uo pipefail
cfg=${1:-llama-3.2-1b}
bs=${2:-8}
source tools/device_engine.sh
e=$(engine "$cfg")
./bin/kiln bench --model "$e" --backend cuda --batch-size "$bs" --input-len 128 --output-len 128 --profile \
  2>"$out/batch-$cfg.err" | tail -22 | tee -a "$out/summary.txt"
for setting in ${VARIANTS:-KILN_GEMV=0 KILN_CUDA_GRAPHS=0}; do
  env $setting ./bin/kiln bench --model "$e" --backend cuda --batch-size "$bs" --input-len 128 --output-len 128 --json \
    >"$out/variant.json" 2>>"$out/batch-$cfg.err"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"$cfg batch $bs $setting: TPOT {d['tpotMs']:.3f} ms, TTFT {d['ttftMs']:.2f} ms\")" \
    "$out/variant.json" | tee -a "$out/summary.txt"
done
