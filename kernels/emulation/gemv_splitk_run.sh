#!/usr/bin/env bash
# Builds and runs gemv_splitk_check.cpp (gemv.cu's split-K variants on the CPU emulator) for bf16, fp16 and
# fp32. Not part of CI; a minute or two on 2 cores. KILN_GEMV_SRC=path checks another copy of gemv.cu.
set -euo pipefail
cd "$(dirname "$0")"
source ./dyn_shared.sh
gemv_workdir
cp gemv_splitk_check.cpp "$out/check.cpp"
sed -i "s|#include \"../gemv.cu\"|#include \"$out/gemv.cu\"|" "$out/check.cpp"
status=0
for dt in BF16 F16 F32; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DKILN_DTYPE_$dt -DGEMV_ACT=1 \
    "$out/check.cpp" -o "$out/check" -lpthread
  echo "== $dt"
  "$out/check" || status=1
done
exit $status
