#!/usr/bin/env bash
# Builds and runs penalty_check.cpp (apply_penalties, fed rows included) for VOCAB 7, 769 and 5125
# (g++ ≥ 12; fakecuda.h runs one fiber per CUDA thread). Not part of CI; for checking penalty changes
# where no GPU is at hand.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for v in 7 769 5125; do
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. -DVOCAB=$v penalty_check.cpp -o "$out/check_$v" -lpthread
  "$out/check_$v" "$@"
done
