#!/usr/bin/env bash
# Builds and runs rmsnorm_q8_check.cpp (rmsnorm.cu's rms_norm_q8 / add_rms_norm_q8 on the CPU emulator,
# bit for bit the unfused norm then gemv_fp8.cu's quant_fp8_act) for bf16, fp16 and fp32 and WIDTH 4096
# (the register path), 264 (not a multiple of 16: no x̂; a partial last warp), 272 (17 vectors of 16) and
# 8192 (fp32: 2,048 vectors, past 1,024 threads: the loop path at the launch's block). Not part of CI; a
# few minutes on 2 cores. KILN_RMSNORM_SRC / KILN_GEMV_FP8_SRC / KILN_FP8_ACT_SRC=path check other copies
# of rmsnorm.cu, gemv_fp8.cu and the quantization they share, fp8_act.cuh; KILN_RMSNORM_Q8_DTYPES and
# KILN_RMSNORM_Q8_WIDTHS narrow the builds.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_RMSNORM_SRC:-../rmsnorm.cu}" "$out/rmsnorm.cu"
cp "${KILN_GEMV_FP8_SRC:-../gemv_fp8.cu}" "$out/gemv_fp8.cu"
cp "${KILN_FP8_ACT_SRC:-../fp8_act.cuh}" "$out/fp8_act.cuh"  # found first: next to the .cu files
sed -e "s|#include \"../rmsnorm.cu\"|#include \"$out/rmsnorm.cu\"|" \
  -e "s|#include \"../gemv_fp8.cu\"|#include \"$out/gemv_fp8.cu\"|" rmsnorm_q8_check.cpp >"$out/check.cpp"
status=0
for dt in ${KILN_RMSNORM_Q8_DTYPES:-BF16 F16 F32}; do
  for width in ${KILN_RMSNORM_Q8_WIDTHS:-4096 264 272 8192}; do
    g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt \
      -DWIDTH="$width" -DGEMV_ACT=1 "$out/check.cpp" -o "$out/check" -lpthread
    echo "== $dt WIDTH $width"
    "$out/check" || status=1
  done
done
exit $status
