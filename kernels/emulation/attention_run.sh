#!/usr/bin/env bash
# Builds and runs attention_check.cpp (attention_prefill.cu on the CPU emulator: fakecuda.h fibers,
# attention_ptx_emu.h for cp.async / ldmatrix / mma.sync) for bf16 and fp16 × HEAD_DIM 64, 128 ×
# BLOCK_SIZE 16, 7 × heads 8/2 (GQA), 4/4 (MHA) for attention_prefill, attention_decode_check.cpp (attention_decode.cu) and attention_rope_check.cpp;
# and fp32 × D 128, 80 and bf16 × D 80 (the generic path); every check also runs the `_kv8` kernels (FP8
# KV pools, kv_fp8_ref.h). One line per configuration, then PASS or FAIL (exit status 1). About 45 minutes
# on 2 cores (4 before the FP8 checks): run subsets while iterating.
# Not part of CI; for checking attention kernel changes where no GPU is at hand (g++ ≥ 12).
#   PREFILL_SRC=path   check another copy of the kernel (default ../attention_prefill.cu; its includes
#                      still come from kernels/)
#   DECODE_SRC=path    likewise for attention_decode_check.cpp (attention_decode.cu, its split, cluster
#                      and batch kernels: bf16, fp16, fp32 ×
#                      D/BLOCK_SIZE/H/Hkv 128/16/8/2, 64/7/4/4, 80/16/7/1, 32/16/16/1)
#   ROPE: attention_rope_check.cpp (attention_decode_rope*, the fused RoPE prologue, against rope_qkv_fused
#                      + attention_decode*, bit for bit: bf16, fp16, fp32 × D/BLOCK_SIZE/H/Hkv/ROTARY_DIM
#                      128/16/8/2/128, 64/7/4/4/32, 80/16/7/1/80, 32/16/16/1/32)
#   PREFILL_CFG="DT D BS H HKV"  one prefill configuration instead of the matrix (e.g. "BF16 128 16 8 2",
#                      the one test/backends/cuda/attention_prefill_emulated.test.ts runs)
#   DECODE_DUMP=file   the decode check appends every output's bytes to file (DECODE_SRC's and main's
#                      dumps compared with cmp: a change meant to keep the bits)
#   PREFILL=0, DECODE=0, ROPE=0  skip that check
#   EXTRA="-D..."      extra compiler flags (e.g. -DKILN_EMU_CP_ASYNC_SYNC)
# `extern __shared__ T name[];` cannot be emulated by `#define __shared__ static`, so the source is
# copied with those declarations rewritten to KILN_DYN_SHARED(T, name) (fakecuda.h) first.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
source ./dyn_shared.sh
src=$(realpath "${PREFILL_SRC:-../attention_prefill.cu}")
dyn_shared "$src" "$out/prefill.cu"
fail=0
run_cfg() {  # name check.cpp source-copy dtype D BS H HKV [ROTARY_DIM]
  local exe="$out/$1_$4_$5_$6_$7_$8"
  if ! g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I"$here/.." -DKILN_DTYPE_$4 -DHEAD_DIM=$5 \
      -DBLOCK_SIZE=$6 -DNUM_HEADS=$7 -DNUM_KV_HEADS=$8 ${9:+-DROTARY_DIM=$9} -DKILN_PREFILL_SRC="\"$3\"" \
      -DKILN_DECODE_SRC="\"$3\"" ${EXTRA:-} "$2" -o "$exe" -lpthread; then
    echo "$1 $4 D=$5 BLOCK_SIZE=$6 H=$7/$8: BUILD FAILED"; fail=1; return
  fi
  "$exe" || fail=1
}
if [ "${PREFILL:-1}" = 1 ]; then
  if [ -n "${PREFILL_CFG:-}" ]; then
    run_cfg prefill attention_check.cpp "$out/prefill.cu" $PREFILL_CFG
  else
    for dt in BF16 F16; do for d in 64 128; do for bs in 16 7; do for hh in "8 2" "4 4"; do
      run_cfg prefill attention_check.cpp "$out/prefill.cu" $dt $d $bs $hh
    done; done; done; done
    # The generic path: fp32, and a 16-bit HEAD_DIM the tensor cores do not take.
    for cfg in "F32 128 16 8 2" "F32 80 7 8 2" "BF16 80 16 4 4"; do
      run_cfg prefill attention_check.cpp "$out/prefill.cu" $cfg
    done
  fi
fi
dyn_shared "$(realpath "${DECODE_SRC:-../attention_decode.cu}")" "$out/decode.cu"
# D BLOCK_SIZE H Hkv ROTARY_DIM; the decode check leaves ROTARY_DIM out.
for cfg in "128 16 8 2 128" "64 7 4 4 32" "80 16 7 1 80" "32 16 16 1 32"; do
  for dt in BF16 F16 F32; do
    [ "${DECODE:-1}" = 1 ] && run_cfg decode attention_decode_check.cpp "$out/decode.cu" $dt ${cfg% *}
    [ "${ROPE:-1}" = 1 ] && run_cfg rope attention_rope_check.cpp "$out/decode.cu" $dt $cfg
  done
done
[ $fail = 0 ] && echo PASS || echo FAIL
exit $fail
