#!/usr/bin/env bash
# Builds and runs sample_check.cpp (sampling.cu's sample_topk_topp on the CPU emulator against a literal
# port of the reference draw) for VOCAB 7, 769, 5124 and 5125 (5124: 16-byte row passes)
# (g++ ≥ 12; fakecuda.h runs one fiber per CUDA thread). CI runs a narrowed set
# (test/backends/cuda/sampling_emulated.test.ts); the whole set for checking sampler changes where no GPU
# is at hand. Arguments go to the check ([rows] [flat]); KILN_SAMPLING_SRC=path checks another copy of
# sampling.cu, KILN_SAMPLING_VOCABS narrows the builds, KILN_SAMPLING_LAYOUTS="0 2" the slice / CTA layouts
# (indices into sample_check.cpp's list).
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp "${KILN_SAMPLING_SRC:-../sampling.cu}" "$out/sampling.cu"
sed -e "s|#include \"../sampling.cu\"|#include \"$out/sampling.cu\"|" sample_check.cpp >"$out/check.cpp"
status=0
for v in ${KILN_SAMPLING_VOCABS:-7 769 5124 5125}; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -I"$PWD/fake" -I"$PWD" -I"$PWD/.." -DVOCAB=$v \
    "$out/check.cpp" -o "$out/check_$v" -lpthread
  "$out/check_$v" "$@" || status=1
done
exit $status
