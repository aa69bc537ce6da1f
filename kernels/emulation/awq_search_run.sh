#!/usr/bin/env bash
# Builds and runs awq_search_check.cpp: awq_search.cu's error energies on the CPU emulator against the
# TypeScript reference's arithmetic written again in C++, same bits required (g++ ≥ 12; fakecuda.h runs
# one fiber per CUDA thread). test/backends/cuda/awq_search_emulated.test.ts runs it, and with
# `--io IN OUT` on inputs it wrote, against the TypeScript reference itself; seconds on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I. -I.. awq_search_check.cpp -o "$out/check" -lpthread
"$out/check" "$@"
