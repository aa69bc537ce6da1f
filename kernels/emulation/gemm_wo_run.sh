#!/usr/bin/env bash
# Builds and runs gemm_wo_check.cpp (gemm_wo.cu's tensor-core GEMMs over int8-wo / int4-wo weights on the
# CPU emulator: fakecuda.h fibers, attention_ptx_emu.h for cp.async / ldmatrix / mma.sync) for bf16 and
# fp16, each m of the check in its own process (two at a time); then PASS or FAIL (exit status 1).
# Not part of CI; several minutes on 2 cores.
#   KILN_GEMM_WO_SRC=path   check another copy of gemm_wo.cu (its includes still come from kernels/)
#   KILN_GEMM_WO_DTYPES="BF16 F16", KILN_GEMM_WO_MS="9 16 17 64 100 256"   a part of the work (the defaults: all)
#   EXTRA="-D..."           extra compiler flags (e.g. -DKILN_EMU_CP_ASYNC_SYNC: copies land at once)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
source ./dyn_shared.sh
dyn_shared "$(realpath "${KILN_GEMM_WO_SRC:-../gemm_wo.cu}")" "$out/gemm_wo.cu"
sed "s|#include \"../gemm_wo.cu\"|#include \"$out/gemm_wo.cu\"|" gemm_wo_check.cpp >"$out/check.cpp"
fail=0
for dt in ${KILN_GEMM_WO_DTYPES:-BF16 F16}; do
  # attention_ptx_emu.h includes attention_common.cuh, which wants attention's shape macros (unused here).
  if ! g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$here/fake" -I"$here" -I"$here/.." \
      -DKILN_DTYPE_$dt -DGEMV_ACT=1 -DHEAD_DIM=128 -DBLOCK_SIZE=16 -DNUM_HEADS=1 -DNUM_KV_HEADS=1 ${EXTRA:-} \
      "$out/check.cpp" -o "$out/check_$dt" -lpthread; then
    echo "$dt: BUILD FAILED"; fail=1; continue
  fi
  ms=(${KILN_GEMM_WO_MS:-9 16 17 64 100 256})
  for ((i = 0; i < ${#ms[@]}; i += 2)); do  # two at a time
    for m in "${ms[@]:i:2}"; do "$out/check_$dt" "$m" >"$out/$dt.$m.log" 2>&1 & done
    wait
  done
  for m in "${ms[@]}"; do
    echo "== $dt m $m"
    grep -v '^PASS$' "$out/$dt.$m.log"
    grep -q '^PASS$' "$out/$dt.$m.log" || fail=1
  done
done
[ $fail = 0 ] && echo PASS || echo FAIL
exit $fail
