#!/usr/bin/env bash
# Builds and runs gemv_wo_check.cpp (gemv_wo.cu's quantized GEMVs and dequantization on the CPU emulator,
# against the weight-only format written again in C++) for bf16, fp16 and fp32 (dequantization only).
# Not part of CI; a few minutes on 2 cores. KILN_GEMV_WO_SRC=path checks another copy of gemv_wo.cu,
# KILN_GEMV_WO_MMA_SRC=path another copy of its tensor-core GEMV (gemv_wo_mma.cuh). The attention macros
# are attention_ptx_emu.h's (its mma.sync), unused here.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_GEMV_WO_SRC:-../gemv_wo.cu}" "$out/gemv_wo.cu"
cp "${KILN_GEMV_WO_MMA_SRC:-../gemv_wo_mma.cuh}" "$out/gemv_wo_mma.cuh"  # found first: next to the .cu
sed "s|#include \"../gemv_wo.cu\"|#include \"$out/gemv_wo.cu\"|" gemv_wo_check.cpp >"$out/check.cpp"
status=0
for dt in ${KILN_GEMV_WO_DTYPES:-BF16 F16 F32}; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt -DGEMV_ACT=1 \
    -DHEAD_DIM=128 -DBLOCK_SIZE=16 -DNUM_HEADS=1 -DNUM_KV_HEADS=1 \
    "$out/check.cpp" -o "$out/check" -lpthread
  echo "== $dt"
  "$out/check" || status=1
done
exit $status
