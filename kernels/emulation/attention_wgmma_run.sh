#!/usr/bin/env bash
# Builds and runs attention_wgmma_check.cpp (attention_prefill_wgmma.cu on the CPU emulator: fakecuda.h
# fibers, attention_ptx_emu.h for cp.async, attention_wgmma_emu.h for wgmma) over bf16 and fp16 ×
# HEAD_DIM 128, 64 × BLOCK_SIZE 16, 32 × heads 8/8, 8/2, 8/1 (GQA groups 1, 4, 8): 24 configurations, each
# with windows 0, 40 and 150 (attention_wgmma_check.cpp lists the packed sequences). One line per
# configuration, then PASS or FAIL (exit status 1). About 5 minutes on 2 cores.
# Not part of CI beyond one configuration (test/backends/cuda/attention_prefill_emulated.test.ts; g++ ≥ 12).
#   WGMMA_SRC=path      check another copy of the kernel (default ../attention_prefill_wgmma.cu; its
#                       includes still come from kernels/): attention_wgmma_broken.sh's copies
#   WGMMA_CFG="DT D BS H HKV"  one configuration instead of the matrix (e.g. "BF16 128 16 8 2")
#   EXTRA="-D..."       extra compiler flags (e.g. -DKILN_EMU_CP_ASYNC_SYNC)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
source ./dyn_shared.sh
emu_workdir "${WGMMA_SRC:-../attention_prefill_wgmma.cu}" wgmma.cu
fail=0
run_cfg() { emu_attention attention_wgmma_check.cpp KILN_PREFILL_SRC=wgmma.cu wgmma "$@"; }  # dtype D BS H HKV
if [ -n "${WGMMA_CFG:-}" ]; then
  run_cfg $WGMMA_CFG
else
  for dt in BF16 F16; do for d in 128 64; do for bs in 16 32; do for hh in "8 8" "8 2" "8 1"; do
    run_cfg $dt $d $bs $hh
  done; done; done; done
fi
[ $fail = 0 ] && echo PASS || echo FAIL
exit $fail
