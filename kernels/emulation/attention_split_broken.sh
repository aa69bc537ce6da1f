#!/usr/bin/env bash
# Runs attention_split_run.sh (the short pack: bf16 D 128 on the tensor-core path, fp32 on the generic
# path; splits 1, 2, 5) on deliberately broken copies of attention_prefill.cu's split mode; each
# must FAIL, or the check could not see that kind of mistake. Prints one line per copy; exits 1 if any
# copy passed. About half a minute a copy on 2 cores.
set -uo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
breaks=(
  's|for (int z = 0; z < num_splits; z++) {|for (int z = 0; z < num_splits - 1; z++) {|'  # the merge ignores the last split
  's|r.y = min(ctx, r.x + per);|r.y = min(ctx, r.x + per + kBlockN);|'                # ranges overlap by a key tile
  's|t.kv_lo = max(t.kv_lo, keys.x);|(void)keys.x;|'                                   # every split from the first key
  's|sp.m\[pr\] = neg_inf();|(void)pr;|'                                                # no neutral partial for an empty split
  's|sp.l\[pr\] = sum;|sp.l[pr] = l[mt][r];|'                                           # l of one lane of the quad
  's|const float w = score_exp(mz - mx);|const float w = expf(mz - mx);|'                 # m read in the wrong units
)
for b in "${breaks[@]}"; do
  sed "$b" ../attention_prefill.cu >"$tmp/attention_prefill.cu"
  if cmp -s ../attention_prefill.cu "$tmp/attention_prefill.cu"; then echo "NOT APPLIED: $b"; status=1; continue; fi
  if PREFILL_SRC="$tmp/attention_prefill.cu" CONFIGS="BF16 128 16 4 1 1;F32 128 16 4 1 1" SPLITS="1 2 5" \
      ./attention_split_run.sh >"$tmp/log" 2>&1; then
    echo "PASSED (should fail): $b"; status=1
  else
    echo "fails as it should ($(grep -c FAIL "$tmp/log") FAIL lines): $b"
  fi
done
exit $status
