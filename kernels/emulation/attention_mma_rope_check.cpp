// Checks attention_decode_mma_rope (attention_decode_mma.cu with the RoPE prologue fused in) on the CPU
// (fakecuda.h, attention_ptx_emu.h) against the pair it replaces in decode steps: rope_qkv_fused
// (rope_kv.cu) then attention_decode_mma. Both must give the same output and leave the same KV cache, bit
// for bit; the fused kernel's cache has the new key's slot poisoned (NaN) first, so a read of it before
// the kernel writes it shows. One build per configuration (-DKILN_DTYPE_BF16|F16 -DHEAD_DIM -DBLOCK_SIZE
// -DNUM_HEADS -DNUM_KV_HEADS [-DROTARY_DIM] [-DKILN_DECODE_MMA_SRC='"path"']). Contexts 1, 17, 0 (padding
// row: slot −1), 300, 130, 64, 700; runs: 1 split (window 0; 40 with the [stride, S] table), 3 and 8
// splits (the last CTA merging), each without and with the per-head q/k RMSNorm (Qwen3) and
// per-sequence frequency rows (dynamic NTK). Exit 1 on a failure.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "paged_cache.h"
#ifndef KILN_DECODE_MMA_SRC
#define KILN_DECODE_MMA_SRC "../attention_decode_mma.cu"
#endif
#include KILN_DECODE_MMA_SRC
#include "../rope_kv.cu"
#include "rope_problem.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE;
  constexpr int W = (H + 2 * HKV) * D;  // one packed q|k|v row
  const std::vector<int> ctxs = {1, 17, 0, 300, 130, 64, 700};
  const int S = (int)ctxs.size();
  const kiln_t nan = attn::from_float(std::numeric_limits<float>::quiet_NaN());
  const RopeProblem rp = make_rope_problem(ctxs, 7000 + 1000 * D + 100 * BS + 10 * H + HKV);
  const auto &qkv = rp.qkv, &qn = rp.qn, &kn = rp.kn;
  const PagedCache& cache = rp.cache;
  const int stride = cache.stride, num_slots = rp.num_slots;
  const auto &positions = rp.positions, &slots = rp.slots, &freq_rows = rp.freq_rows;
  const auto& inv_freq = rp.inv_freq;
  const float scale = 1.0f / std::sqrt((float)D);
  const size_t smem = sizeof(attn::MmaSmem<attn::kMmaStages>);

  struct Run { int splits, window; bool transposed; };
  const Run runs[] = {{1, 0, false}, {1, 40, true}, {3, 0, false}, {8, 40, true}};
  bool ok = true;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16";
#else
  const char* dt = "f16";
#endif
  printf("decode_mma+rope %s D=%d ROTARY_DIM=%d BLOCK_SIZE=%d H=%d/%d:", dt, D, ROTARY_DIM, BS, H, HKV);
  for (int qk_norm = 0; qk_norm < 2; qk_norm++) {
    const kiln_t* qnw = qk_norm ? qn.data() : nullptr;
    const kiln_t* knw = qk_norm ? kn.data() : nullptr;
    const int* fidx = qk_norm ? freq_rows.data() : nullptr;
    for (const Run& run : runs) {
      const int w = run.window, ns = run.splits;
      const TableLayout layout = table_layout(cache.table, S, stride, run.transposed);
      const std::vector<int>& tw = layout.table;
      const int tstride = layout.stride, tstep = layout.step;
      const bool split = ns > 1;
      std::vector<float> pacc((size_t)S * H * ns * D), pm((size_t)S * H * ns), pl(pm.size());
      std::vector<int> counter((size_t)S * HKV, 0);
      const dim3 grid{(unsigned)HKV, (unsigned)S, (unsigned)ns};
      const dim3 block{(unsigned)attn::kMmaThreads, 1, 1};

      // The pair: rope_qkv_fused, then the attention on its rotated q and the cache it wrote.
      std::vector<kiln_t> ka = cache.k, va = cache.v, qa((size_t)S * H * D, nan), oa((size_t)S * H * D, nan);
      launch({(unsigned)S, (unsigned)((H + 2 * HKV + 3) / 4), 1}, {128, 1, 1}, [&] {
        rope_qkv_fused(qkv.data(), positions.data(), slots.data(), inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f, qa.data(),
                       ka.data(), va.data(), S, num_slots, 0);
      });
      launch(grid, block, [&] {
        attention_decode_mma(oa.data(), split ? pacc.data() : nullptr, split ? pm.data() : nullptr,
                             split ? pl.data() : nullptr, split ? counter.data() : nullptr, qa.data(), ka.data(),
                             va.data(), ctxs.data(), tw.data(), tstride, tstep, ns, scale, w, 1, 0);
      }, smem, 17u);

      // The fused kernel on the raw q|k|v rows, its cache's new-key slots poisoned.
      std::vector<kiln_t> kb = cache.k, vb = cache.v, ob((size_t)S * H * D, nan);
      for (int s = 0; s < S; s++)
        if (slots[s] >= 0)
          for (int x = 0; x < HKV * D; x++) kb[(size_t)slots[s] * HKV * D + x] = vb[(size_t)slots[s] * HKV * D + x] = nan;
      launch(grid, block, [&] {
        attention_decode_mma_rope(ob.data(), split ? pacc.data() : nullptr, split ? pm.data() : nullptr,
                                  split ? pl.data() : nullptr, split ? counter.data() : nullptr, qkv.data(), kb.data(),
                                  vb.data(), ctxs.data(), tw.data(), tstride, tstep, ns, scale, w, 1, 0,
                                  qkv.data() + H * D, qkv.data() + (H + HKV) * D, W, W, positions.data(), slots.data(),
                                  inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f, num_slots);
      }, smem, 29u);

      const bool same_out = std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(kiln_t)) == 0;
      const bool same_k = std::memcmp(ka.data(), kb.data(), ka.size() * sizeof(kiln_t)) == 0;
      const bool same_v = std::memcmp(va.data(), vb.data(), va.size() * sizeof(kiln_t)) == 0;
      int nan_rows = 0;  // rows with a context must be finite
      for (int s = 0; s < S; s++)
        for (int x = 0; x < H * D; x++)
          if (ctxs[s] > 0 && !std::isfinite(attn::to_float(ob[(size_t)s * H * D + x]))) { nan_rows++; break; }
      int counters_bad = 0;
      for (int c : counter) counters_bad += c != 0;
      const bool pass = same_out && same_k && same_v && nan_rows == 0 && counters_bad == 0;
      ok &= pass;
      printf("  %ssplits=%d w=%d%s", qk_norm ? "norm " : "", ns, w, run.transposed ? " [stride,S]" : "");
      if (!same_out) printf(" output differs");
      if (!same_k || !same_v) printf(" cache differs (k %d v %d)", !same_k, !same_v);
      if (nan_rows) printf(" NaN rows=%d", nan_rows);
      if (counters_bad) printf(" split_counter not zero=%d", counters_bad);
      if (!pass) printf(" (FAIL)");
    }
  }
  printf("  %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
