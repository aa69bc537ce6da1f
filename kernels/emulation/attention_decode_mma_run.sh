#!/usr/bin/env bash
# Builds and runs attention_decode_mma_check.cpp (attention_decode_mma.cu on the CPU emulator: fakecuda.h
# fibers, attention_ptx_emu.h for cp.async / ldmatrix / mma.sync) against the double reference, within
# the written bound (attention_README.md, "attention_decode_mma"). Each configuration checks the entry
# attention_decode_mma and its body with one stage more (decode_mma_deeper, which must also match the
# entry bit for bit), and attention_mma_rope_check.cpp (attention_decode_mma_rope against rope_qkv_fused +
# attention_decode_mma: output and cache bit for bit, 1, 3 and 8 splits, with and without the q/k norm):
# one line each, then PASS or FAIL (exit status 1). g++ ≥ 12.
#   (no arguments)  the full matrix: bf16, fp16 × HEAD_DIM 128, 64 × BLOCK_SIZE 16, 7 × H/Hkv 32/8, 8/2,
#                   4/4, 16/1; each with windows 0, 5 and 70 × both block-table layouts (in the check)
#   --ci            a handful of those (test/backends/cuda/attention_decode_mma_emulated.test.ts)
#   ONLY="DT D BS H HKV"  that one configuration (e.g. ONLY="BF16 64 16 8 2")
#   SRC=path        check another copy of the kernel (its includes still come from kernels/)
#   ROPE=0          skip attention_mma_rope_check.cpp
#   EXTRA="-D..."   extra compiler flags (e.g. -DKILN_EMU_CP_ASYNC_SYNC: copies land at once)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
source ./dyn_shared.sh
emu_workdir "${SRC:-../attention_decode_mma.cu}" mma.cu
fail=0
run_cfg() {  # dtype D BS H HKV
  emu_attention attention_decode_mma_check.cpp KILN_DECODE_MMA_SRC=mma.cu decode_mma "$@"
  [ "${ROPE:-1}" = 1 ] && emu_attention attention_mma_rope_check.cpp KILN_DECODE_MMA_SRC=mma.cu decode_mma_rope "$@"
}
if [ -n "${ONLY:-}" ]; then
  run_cfg $ONLY
elif [ "${1:-}" = --ci ]; then
  for cfg in "BF16 128 16 32 8" "F16 64 7 8 2" "F16 128 7 16 1" "BF16 64 16 4 4"; do run_cfg $cfg; done
else
  for dt in BF16 F16; do for d in 128 64; do for bs in 16 7; do for hh in "32 8" "8 2" "4 4" "16 1"; do
    run_cfg $dt $d $bs $hh
  done; done; done; done
fi
[ $fail = 0 ] && echo PASS || echo FAIL
exit $fail
