#!/usr/bin/env bash
# Runs rmsnorm_q8_run.sh (bf16 and fp32, WIDTH 272 and 4096) on deliberately broken copies of rmsnorm.cu's
# fused fp8 entries; each must FAIL, or the check could not see that kind of mistake (fp8_act.cuh's own
# breaks are gemv_fp8_broken.sh's). Prints one line per copy; exits 1 if any copy passed.
set -uo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
breaks=(  # SED on rmsnorm.cu
  's|kiln::block_max(mine ? kiln::act8::abs_max<V>(o, 0.f) : 0.f, scratch)|(mine ? kiln::act8::abs_max<V>(o, 0.f) : 0.f)|'  # each thread its own max
  's|if (q.static_scale) scale = \*q.static_scale;|if (false) scale = *q.static_scale;|'  # static scale ignored
  's|emit<V>(o, threadIdx.x \* V, scale, q.xq, q.xhat, WIDTH)|emit<V>(o, threadIdx.x * V, scale, q.xq, nullptr, WIDTH)|'  # no x̂ (registers)
  's|qr.static_scale, qr.xhat, WIDTH)|qr.static_scale, nullptr, WIDTH)|'  # no x̂ (the loop path)
  's|Q8Row{q.xq + off, q.s + r,|Q8Row{q.xq + off, q.s,|'  # every row's scale at row 0
  's|kiln::act8::quantize_row(out + off,|kiln::act8::quantize_row(x + off,|'  # the loop path quantizes the input
)
for b in "${breaks[@]}"; do
  sed "$b" ../rmsnorm.cu >"$tmp/rmsnorm.cu"
  if cmp -s ../rmsnorm.cu "$tmp/rmsnorm.cu"; then echo "NOT APPLIED: $b"; status=1; continue; fi
  if KILN_RMSNORM_SRC="$tmp/rmsnorm.cu" KILN_RMSNORM_Q8_DTYPES='BF16 F32' KILN_RMSNORM_Q8_WIDTHS='272 4096' \
    ./rmsnorm_q8_run.sh >"$tmp/log" 2>&1; then
    echo "PASSED (should fail): $b"; status=1
  else
    echo "fails as it should ($(grep -c FAIL "$tmp/log") FAIL lines): $b"
  fi
done
exit $status
