#!/usr/bin/env bash
# Builds and runs attention_split_check.cpp: attention_prefill.cu's split mode (the `_split` entries and
# attention_prefill_merge) on the CPU emulator against the double reference, splits 1, 2, 5, 16 ×
# windows 0, 100, a mixed step's launch (metadata offset past a leading decode); the `_kv8` twins against
# the plain split kernel over their cache, bit for bit. One line per run, then
# PASS or FAIL (exit status 1). The default matrix takes about 20 minutes on 2 cores; CI runs two short
# configurations (test/backends/cuda/attention_prefill_split_emulated.test.ts). g++ ≥ 12.
#   CONFIGS="DT D BS H HKV PACK;…"  the configurations (default below). PACK 0: contexts 300, 2,176 and
#              4,100 with 1, 17, 128 and 200 rows (minutes each on 2 cores); PACK 1: contexts ≤ 300
#              (seconds). The default: the tensor-core path (D 128 and 64, GQA groups 1, 4 and 8, blocks
#              of 16 and 32) on the long pack, the generic path (fp32, and bf16 at D 80) on the short one.
#   PREFILL_SRC=path  check another copy of the kernel (attention_split_broken.sh: broken copies)
#   SPLITS="1 2 5 16"  the split counts
#   EXTRA="-D..."     extra compiler flags (e.g. -DKILN_EMU_CP_ASYNC_SYNC)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
source ./dyn_shared.sh
emu_workdir "${PREFILL_SRC:-../attention_prefill.cu}" prefill.cu
default="BF16 128 16 4 1 0;F16 128 32 2 2 0;BF16 64 16 8 1 0;BF16 128 32 8 2 1;F32 128 16 4 1 1;BF16 80 32 4 4 1"
fail=0
IFS=';' read -ra configs <<<"${CONFIGS:-$default}"
for cfg in "${configs[@]}"; do
  read -r dt d bs h hkv pack <<<"$cfg"
  exe="$out/split_${dt}_${d}_${bs}_${h}_${hkv}_p${pack}"
  if ! g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I"$here/.." -DKILN_DTYPE_"$dt" -DHEAD_DIM="$d" \
      -DBLOCK_SIZE="$bs" -DNUM_HEADS="$h" -DNUM_KV_HEADS="$hkv" -DSPLIT_PACK="$pack" \
      -DKILN_PREFILL_SRC="\"$out/prefill.cu\"" ${EXTRA:-} attention_split_check.cpp -o "$exe" -lpthread; then
    echo "$cfg: BUILD FAILED"; fail=1; continue
  fi
  "$exe" || fail=1
done
[ $fail = 0 ] && echo PASS || echo FAIL
exit $fail
