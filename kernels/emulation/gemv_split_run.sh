#!/usr/bin/env bash
# Builds and runs gemv_split_check.cpp (gemv.cu's split norm against gemv → add_rms_norm → gemv on the
# CPU emulator) for bf16 and fp16 and two widths. Not part of CI; a minute or two on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# extern __shared__ arrays become KILN_DYN_SHARED (fakecuda.h), as in attention_run.sh.
sed -E 's/extern[[:space:]]+__shared__[[:space:]]+(__align__\([0-9]+\)[[:space:]]+)?([^;[]*[^[:alnum:]_[:space:]][[:space:]]*|[^;[]*[[:space:]])([[:alnum:]_]+)[[:space:]]*\[[[:space:]]*\][[:space:]]*;/KILN_DYN_SHARED(\2, \3);/' \
  ../gemv.cu >"$out/gemv.cu"
for dt in BF16 F16; do
  for width in 1032 2056; do
    g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. -DKILN_DTYPE_$dt -DWIDTH=$width -DGEMV_ACT=1 -DKILN_GEMV_SRC="\"$out/gemv.cu\"" gemv_split_check.cpp \
      -o "$out/check" -lpthread
    "$out/check"
  done
done
