#!/usr/bin/env bash
# Runs attention_wgmma_run.sh (one configuration each: bf16, D 128, BLOCK_SIZE 16, H 8/2, and D 64 where
# the break is in the 64-wide code) on deliberately broken copies of attention_prefill_wgmma.cu; each must
# FAIL (a wrong result, or the emulator's abort on a broken wgmma / cp.async protocol), or the check
# could not see that kind of mistake. Prints one line per copy; exits 1 if any copy passed. About 10
# seconds a copy on 2 cores.
set -uo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
breaks=(
  's|wgmma_desc(va + kt \* 2 \* kGroupBytes, kGroupBytes, 128)|wgmma_desc(va + kt * 2 * kGroupBytes, 128, kGroupBytes)|'  # V: LBO and SBO swapped
  's|wgmma_desc(ka + ks \* 256, 128, kGroupBytes)|wgmma_desc(ka + ks * 256, kGroupBytes, 128)|'                            # K: LBO and SBO swapped
  's|wgmma_desc(qa + ks \* 256, 128, kGroupBytes)|wgmma_desc(qa + ks * 128, 128, kGroupBytes)|'                            # Q: k-step of one core matrix
  's|wgmma_ss_n128(s, da, db, ks > 0)|wgmma_ss_n128(s, da, db, 1)|'                                                       # S not zeroed per tile
  's|p\[kt\]\[1\] = pack2(s\[8 \* kt + 2\], s\[8 \* kt + 3\])|p[kt][1] = pack2(s[8 * kt + 4], s[8 * kt + 5])|'           # P fragment a1/a2 mixed
  's|cp_async_wait<1>();  // everything but this K|cp_async_wait<2>();|'                                                  # a tile announced before it lands
  's|^    fence_proxy_async();.*$||'                                                                                      # copies not fenced for wgmma
  's|for (int i = 0; i < kD; i++) o\[i\] \*= corr\[(i / 2) % 2\];||'                                                       # O not rescaled
  's|const bool need_mask = n0 + kBlockN - 1 > w_first|const bool need_mask = n0 + kBlockN - 1 > w_last|'                 # diagonal tiles of some rows unmasked
  's|(window > 0 \&\& n0 <= w_last - window)|(window > 0 \&\& n0 < w_first - window)|'                                    # window edge tiles unmasked
  's|for (int i = 0; i < kD; i++) o\[i\] \*= corr\[(i / 2) % 2\];||; s|^      wgmma_wait<0>();  // the previous tile.s P·V is in O.*$|      for (int i = 0; i < kD; i++) o[i] *= corr[(i / 2) % 2];\n&|'  # O rescaled while P·V is in flight
  '/^    wgmma_fence();$/d'                                                                                              # no fence before the last P·V
  '/^      wgmma_fence();$/{x;s/^/x/;/^x$/{x;d};x}'                                                                        # no fence before S and the deferred P·V
  's|      mma_pv(o, p, pv_v);|      mma_pv(o, p, sk + kTileElems);|'                                                   # deferred P·V on the wrong tile's V
  's|^    mbar_wait(&bar.k_full\[slot\], phase);|    mbar_wait(\&bar.k_full[slot], phase ^ 1u);|'                          # S before its K is announced
  's|^    mbar_wait(&bar.v_empty\[slot\], phase ^ 1u);||'                                                                  # V refilled while a P·V may read it
  's|__ldg(table + pos / BLOCK_SIZE)|__ldg(table + n0 / BLOCK_SIZE)|'                                                      # block ids of the wrong keys
  's|return (t.kv_hi - first_key_tile(t) + kBlockN - 1) / kBlockN;|return (t.kv_hi - first_key_tile(t)) / kBlockN;|'      # drops the last key tile
  's|mbar_wait(&bar.q_full, (unsigned)qi \& 1u);|mbar_wait(\&bar.q_full, ((unsigned)qi \& 1u) ^ 1u);|'                   # S before Q lands
)
for b in "${breaks[@]}"; do
  sed "$b" ../attention_prefill_wgmma.cu >"$tmp/attention_prefill_wgmma.cu"
  if cmp -s ../attention_prefill_wgmma.cu "$tmp/attention_prefill_wgmma.cu"; then echo "NOT APPLIED: $b"; status=1; continue; fi
  if WGMMA_SRC="$tmp/attention_prefill_wgmma.cu" WGMMA_CFG="BF16 128 16 8 2" ./attention_wgmma_run.sh >"$tmp/log" 2>&1; then
    echo "PASSED (should fail): $b"; status=1
  else
    why=$(grep -m1 -o 'without a wgmma.fence.*\|not fenced.*\|outside the launch.*\|differ from.*\|rel=[^ ]* (FAIL[^)]*)' "$tmp/log")
    echo "fails as it should (${why:-$(grep -c FAIL "$tmp/log") FAIL lines}): $b"
  fi
done
exit $status
