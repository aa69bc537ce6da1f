#!/usr/bin/env bash
# Builds and runs gemv_zp_check.cpp (gemv_zp.cu's int4-zp GEMVs and dequantization on the CPU emulator,
# against the int4-zp format written again in C++) for bf16, fp16 and fp32 (dequantization only).
# Not part of CI; minutes on 2 cores. KILN_GEMV_ZP_SRC=path checks another copy of gemv_zp.cu,
# KILN_GEMV_WO_MMA_SRC=path another copy of its tensor-core GEMV (gemv_wo_mma.cuh), KILN_GEMV_ZP_DTYPES
# a subset of the dtypes. The attention macros are attention_ptx_emu.h's (its mma.sync), unused here.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_GEMV_ZP_SRC:-../gemv_zp.cu}" "$out/gemv_zp.cu"
cp "${KILN_GEMV_WO_MMA_SRC:-../gemv_wo_mma.cuh}" "$out/gemv_wo_mma.cuh"  # found first: next to the .cu
sed "s|#include \"../gemv_zp.cu\"|#include \"$out/gemv_zp.cu\"|" gemv_zp_check.cpp >"$out/check.cpp"
status=0
for dt in ${KILN_GEMV_ZP_DTYPES:-BF16 F16 F32}; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt -DGEMV_ACT=1 \
    -DHEAD_DIM=128 -DBLOCK_SIZE=16 -DNUM_HEADS=1 -DNUM_KV_HEADS=1 \
    "$out/check.cpp" -o "$out/check" -lpthread
  echo "== $dt"
  "$out/check" || status=1
done
exit $status
