#!/usr/bin/env bash
# Builds and runs gemv_zp_check.cpp (gemv_zp.cu's int4-zp GEMVs and dequantization on the CPU emulator,
# against the int4-zp format written again in C++) for bf16, fp16 and fp32 (dequantization only).
# Not part of CI; minutes on 2 cores. KILN_GEMV_ZP_SRC=path checks another copy of gemv_zp.cu.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_GEMV_ZP_SRC:-../gemv_zp.cu}" "$out/gemv_zp.cu"
sed "s|#include \"../gemv_zp.cu\"|#include \"$out/gemv_zp.cu\"|" gemv_zp_check.cpp >"$out/check.cpp"
status=0
for dt in BF16 F16 F32; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt -DGEMV_ACT=1 \
    "$out/check.cpp" -o "$out/check" -lpthread
  echo "== $dt"
  "$out/check" || status=1
done
exit $status
