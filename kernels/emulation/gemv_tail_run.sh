#!/usr/bin/env bash
# Builds and runs gemv_tail_check.cpp (gemv.cu's tail norm, gemv_*_addnorm, against gemv → add_rms_norm
# on the CPU emulator) for bf16 and fp16 and two widths: 16-byte vectors (1032) and single elements (777, not a
# multiple of 8). Not part of CI; a few minutes on 2 cores.
# KILN_GEMV_SRC=path checks another copy of gemv.cu (e.g. a deliberately broken one).
set -euo pipefail
cd "$(dirname "$0")"
source ./dyn_shared.sh
gemv_workdir
status=0
for dt in BF16 F16; do
  for width in ${WIDTHS:-1032 777}; do
    g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. -DKILN_DTYPE_$dt -DWIDTH=$width -DGEMV_ACT=1 -DKILN_GEMV_SRC="\"$out/gemv.cu\"" gemv_tail_check.cpp \
      -o "$out/check" -lpthread
    echo "== $dt WIDTH $width"
    "$out/check" || status=1
  done
done
exit $status
