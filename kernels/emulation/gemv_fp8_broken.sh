#!/usr/bin/env bash
# Runs gemv_fp8_run.sh (bf16 and fp32) on deliberately broken copies of gemv_fp8.cu or of the headers it
# includes (gemv_warp.cuh, gemv_fp8_mma.cuh, gemv_mma_tile.cuh, fp8_act.cuh); each must FAIL, or the check
# could not see that kind of mistake. Prints one line per copy; exits 1 if any copy passed.
set -uo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
breaks=(  # FILE:SED
  'fp8_act.cuh:s|kE4m3Max = 448.f|kE4m3Max = 447.f|'                                    # wrong dynamic scale
  'fp8_act.cuh:s|scale == 0.f ? (unsigned char)0|false ? (unsigned char)0|'             # zero rows divide by zero
  'fp8_act.cuh:s|__fdiv_rn(x, scale)|__fmul_rn(x, __frcp_rn(scale))|'  # x·(1/s): fp32 ties
  'fp8_act.cuh:s|float fixed = static_scale ? \*static_scale : 0.f;|float fixed = static_scale ? 1.f : 0.f;|'    # static ignored
  'gemv_warp.cuh:s|for (; v < vecs; v += 32) {|for (; v < vecs - 1; v += 32) {|'        # drops the last vector
  'gemv_fp8.cu:s|const float sx = s\[j\];|const float sx = s[0];|'                      # one row's scale for all
  'gemv_fp8.cu:s|const int t = (int)(i / n), r = (int)(i % n);|const int t = (int)(i % m), r = (int)(i / m);|'  # epilogue transposed
  'gemv_fp8_mma.cuh:s|{w\[i\]\[0\]\[u\].x, w\[i\]\[1\]\[u\].x, w\[i\]\[0\]\[u\].y|{w[i][0][u].x, w[i][0][u].y, w[i][1][u].x|'  # A fragment: a[1], a[2] swapped
  'gemv_fp8_mma.cuh:s|mma_e4m3_16832(acc\[i\], hi, x.z, x.w)|mma_e4m3_16832(acc[i], hi, x.w, x.z)|'  # B fragment: b0, b1 swapped
  'gemv_fp8_mma.cuh:s|chunks = (k + kChunk - 1) / kChunk|chunks = k / kChunk|'  # drops a partial last chunk
  'gemv_mma_tile.cuh:s|for (int q = 1; q < kMmaWarps; q++)|for (int q = 1; q < kMmaWarps - 1; q++)|'  # drops the last warp
  'gemv_fp8_mma.cuh:s|__ldcs(sw + inter + row)) + bu|__ldcs(sw + row)) + bu|'  # gated: up scaled by gate scale
  'fp8_act.cuh:s|kE4m3Mask = 0x87F00000u|kE4m3Mask = 0x8FF00000u|'  # bits: a sign copy left in the exponent
  'gemv_fp8.cu:s|scale_sum(__fmul_rn(kiln::warp_sum(acc), kUnscale), s, j, w.sw)|scale_sum(kiln::warp_sum(acc), s, j, w.sw)|'  # bits: no 2^120
  'gemv_fp8.cu:s|scale_sum(__fmul_rn(kiln::warp_sum(acc), kUnscale), s, j, w.sw)|__fmul_rn(scale_sum(kiln::warp_sum(acc), s, j, w.sw), kUnscale)|'  # bits: 2^120 after the scales
  'gemv_fp8.cu:s|words\[i\] << (24 - 8 \* j)|words[i] << (8 * j)|'  # bits: bytes of a word reversed
  'fp8_act.cuh:s|return (size_t)p \* vecs + v;|return (size_t)v * 4 + p;|'  # x̂ in feature order, not xhat_quad's
  'fp8_act.cuh:s|for (int c = rest; c < k; c += stride) emit|for (int c = rest; c < 0; c += stride) emit|'  # codes past the held vectors
  'fp8_act.cuh:s|for (int c = rest; c < k; c += stride)  // rows|for (int c = rest; c < 0; c += stride)  // rows|'  # max misses them
)
for entry in "${breaks[@]}"; do
  file=${entry%%:*} b=${entry#*:}
  cp ../gemv_fp8.cu ../gemv_warp.cuh ../gemv_fp8_mma.cuh ../gemv_mma_tile.cuh ../fp8_act.cuh "$tmp/"
  sed "$b" "../$file" >"$tmp/$file"
  if cmp -s "../$file" "$tmp/$file"; then echo "NOT APPLIED: $file: $b"; status=1; continue; fi
  if KILN_GEMV_FP8_SRC="$tmp/gemv_fp8.cu" KILN_GEMV_WARP_SRC="$tmp/gemv_warp.cuh" \
    KILN_GEMV_FP8_MMA_SRC="$tmp/gemv_fp8_mma.cuh" KILN_GEMV_MMA_TILE_SRC="$tmp/gemv_mma_tile.cuh" \
    KILN_FP8_ACT_SRC="$tmp/fp8_act.cuh" KILN_GEMV_FP8_DTYPES='BF16 F32' \
    ./gemv_fp8_run.sh >"$tmp/log" 2>&1; then
    echo "PASSED (should fail): $file: $b"; status=1
  else
    echo "fails as it should ($(grep -c FAIL "$tmp/log") FAIL lines): $file: $b"
  fi
done
exit $status
