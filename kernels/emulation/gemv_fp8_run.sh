#!/usr/bin/env bash
# Builds and runs gemv_fp8_check.cpp (gemv_fp8.cu's activation quantization and fp8 GEMVs on the CPU
# emulator, against the fp8 format written again in C++) for bf16, fp16 and fp32 activations.
# Not part of CI; a few minutes on 2 cores. KILN_GEMV_FP8_SRC=path checks another copy of gemv_fp8.cu,
# KILN_GEMV_WARP_SRC=path another copy of the skeleton it includes, gemv_warp.cuh, KILN_GEMV_FP8_MMA_SRC
# another copy of its tensor-core GEMV, gemv_fp8_mma.cuh, KILN_GEMV_MMA_TILE_SRC of the block reduction it
# shares, gemv_mma_tile.cuh, KILN_FP8_ACT_SRC of the activation quantization and E4M3 decoding it shares
# with rmsnorm.cu, fp8_act.cuh (gemv_fp8_broken.sh runs deliberately broken copies, each of which must
# fail).
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_GEMV_FP8_SRC:-../gemv_fp8.cu}" "$out/gemv_fp8.cu"
cp "${KILN_GEMV_WARP_SRC:-../gemv_warp.cuh}" "$out/gemv_warp.cuh"  # found first: next to the .cu
cp "${KILN_GEMV_FP8_MMA_SRC:-../gemv_fp8_mma.cuh}" "$out/gemv_fp8_mma.cuh"
cp "${KILN_FP8_ACT_SRC:-../fp8_act.cuh}" "$out/fp8_act.cuh"
cp "${KILN_GEMV_MMA_TILE_SRC:-../gemv_mma_tile.cuh}" "$out/gemv_mma_tile.cuh"
sed "s|#include \"../gemv_fp8.cu\"|#include \"$out/gemv_fp8.cu\"|" gemv_fp8_check.cpp >"$out/check.cpp"
status=0
for dt in ${KILN_GEMV_FP8_DTYPES:-BF16 F16 F32}; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt -DGEMV_ACT=1 \
    "$out/check.cpp" -o "$out/check" -lpthread
  echo "== $dt"
  "$out/check" || status=1
done
exit $status
