#!/usr/bin/env bash
# Runs gemm_wo_run.sh (bf16, m 17 and 100) on deliberately broken copies of gemm_wo.cu; each must FAIL, or the
# check could not see that kind of mistake. Prints one line per copy; exits 1 if any copy passed. About a
# minute a copy on 2 cores.
set -uo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
breaks=(
  's|fmaf(part\[i\]\[j\]\[e\], sc\[j\]\[e \& 1\], acc|fmaf(part[i][j][e], sc[j][0], acc|'          # one column's scale for two
  's|8388608.f + __ldg(zeros + (size_t)brow\[j\] \* groups + gr)|8388608.f|'                       # zero point not subtracted
  's|const int gr = (ti \* kGroup + 16 \* kk) / gs;|const int gr = ti * kGroup / gs;|'             # int4-zp: one group a stage
  's|cp_async_wait<S - 2>|cp_async_wait<S - 1>|'                                                  # reads a stage before it lands
  's|for (int w = 0; w < WK - 1; w++)|for (int w = 0; w < WK - 2; w++)|'                          # drops a warp's partial sums
  's|const bool ok = m0 + r < m \&\& f < k;|const bool ok = m0 + r < m;|'                           # reads x past k
  's|b0 = attn::pack2(q4(lo), q4(lo >> 4));|b0 = attn::pack2(q4(lo >> 4), q4(lo));|'              # int4 nibble order swapped
  's|return L % NW >= NW / 2 ? n + f : f;|return L % NW >= NW / 2 ? f : n + f;|'                  # gated: gate and up swapped
  's|acc\[i\]\[j + NT / 2\]\[2 \* h + e\] + bu|acc[i][j][2 * h + e] + bu|'                        # gated: gate read as up
)
for b in "${breaks[@]}"; do
  sed "$b" ../gemm_wo.cu >"$tmp/gemm_wo.cu"
  if cmp -s ../gemm_wo.cu "$tmp/gemm_wo.cu"; then echo "NOT APPLIED: $b"; status=1; continue; fi
  if KILN_GEMM_WO_SRC="$tmp/gemm_wo.cu" KILN_GEMM_WO_DTYPES=BF16 KILN_GEMM_WO_MS="17 100" ./gemm_wo_run.sh >"$tmp/log" 2>&1; then
    echo "PASSED (should fail): $b"; status=1
  else
    echo "fails as it should ($(grep -c FAIL "$tmp/log") FAIL lines): $b"
  fi
done
exit $status
