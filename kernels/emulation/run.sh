#!/usr/bin/env bash
# Builds and runs sample_check.cpp for VOCAB 7, 769, 5124 and 5125 (5124: 16-byte row passes)
# (g++ ≥ 12; fakecuda.h runs one fiber per CUDA thread). Not part of CI; for checking sampler changes where no GPU is at hand.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for v in 7 769 5124 5125; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. -DVOCAB=$v sample_check.cpp -o "$out/check_$v" -lpthread
  "$out/check_$v" "$@"
done
