// Checks attention_decode_rope* (attention_decode.cu's fused RoPE prologue) on the CPU (fakecuda.h)
// against the pair it replaces in decode steps: rope_qkv_fused (rope_kv.cu) then attention_decode*.
// Both must give the same output and leave the same KV cache, bit for bit; the fused kernel's cache has
// the new key's slot poisoned (NaN) first, so a read of it before the kernel writes it shows.
// One build per configuration, macros as for attention_decode_check.cpp plus ROTARY_DIM (optional);
// [-DKILN_DECODE_SRC='"path"'] (the dynamic-shared rewrite of attention_decode.cu, attention_run.sh).
// Contexts 1, 17, 0 (padding row: slot −1), 300, 130, 64; runs: splits 1, 4 (window 40, [stride, S]
// table), 7 (global merge), clusters 2, 4 (window 40, [stride, S]), 8, and attention_decode_batch_rope
// (window 0; 40 with [stride, S]); each without and with the
// per-head q/k RMSNorm (Qwen3) and per-sequence frequency rows (dynamic NTK).
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "paged_cache.h"
#ifndef KILN_DECODE_SRC
#define KILN_DECODE_SRC "../attention_decode.cu"
#endif
#include KILN_DECODE_SRC
#include "../rope_kv.cu"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, HALF = ROTARY_DIM / 2;
  constexpr int W = (H + 2 * HKV) * D;  // one packed q|k|v row
  const std::vector<int> ctxs = {1, 17, 0, 300, 130, 64};
  const int S = (int)ctxs.size();
  std::mt19937 gen(9000 + 1000 * D + 100 * BS + 10 * H + HKV);
  std::normal_distribution<float> nd(0.f, 1.f);
  const kiln_t nan = attn::from_float(std::numeric_limits<float>::quiet_NaN());
  std::vector<kiln_t> qkv((size_t)S * W), qn(D), kn(D);
  for (auto& x : qkv) x = attn::from_float(nd(gen));
  for (auto& x : qn) x = attn::from_float(1.f + 0.2f * nd(gen));
  for (auto& x : kn) x = attn::from_float(1.f + 0.2f * nd(gen));
  const PagedCache cache = make_paged_cache(ctxs, BS, HKV, D, 1, gen);
  const int stride = cache.stride, num_slots = cache.num_blocks * BS;
  std::vector<int> positions(S), slots(S), freq_rows(S);
  for (int s = 0; s < S; s++) {
    const int ctx = ctxs[s];
    positions[s] = ctx > 0 ? ctx - 1 : 0;
    slots[s] = ctx > 0 ? cache.table[(size_t)s * stride + (ctx - 1) / BS] * BS + (ctx - 1) % BS : -1;
    freq_rows[s] = S - 1 - s;
  }
  std::vector<float> inv_freq((size_t)S * (HALF > 0 ? HALF : 1));  // row r: base 10000 · (1 + r/4)
  for (int r = 0; r < S; r++)
    for (int i = 0; i < HALF; i++) inv_freq[(size_t)r * HALF + i] = std::pow(10000.f * (1.f + r / 4.f), -2.f * i / ROTARY_DIM);
  const float scale = 1.0f / std::sqrt((float)D);
  const unsigned gx = (unsigned)(HKV * attn::kHeadGroups);

  // batch: attention_decode_batch_rope against rope_qkv_fused + attention_decode_batch (one split).
  struct Run { int splits, window; bool transposed, cluster, batch = false; };
  const Run runs[] = {{1, 0, false, false}, {4, 40, true, false}, {7, 0, false, false},
                      {2, 0, false, true},  {4, 40, true, true},  {8, 0, false, true},
                      {1, 0, false, false, true}, {1, 40, true, false, true}};
  bool ok = true;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16";
#elif defined(KILN_DTYPE_F16)
  const char* dt = "f16";
#else
  const char* dt = "f32";
#endif
  printf("decode+rope %s D=%d ROTARY_DIM=%d BLOCK_SIZE=%d H=%d/%d:", dt, D, ROTARY_DIM, BS, H, HKV);
  for (int qk_norm = 0; qk_norm < 2; qk_norm++) {
    const kiln_t* qnw = qk_norm ? qn.data() : nullptr;
    const kiln_t* knw = qk_norm ? kn.data() : nullptr;
    const int* fidx = qk_norm ? freq_rows.data() : nullptr;
    for (const Run& run : runs) {
      const int w = run.window, ns = run.splits;
      std::vector<int> tw = cache.table;
      int tstride = stride, tstep = 1;
      if (run.transposed) {
        std::vector<int> t2((size_t)stride * S);
        for (int s = 0; s < S; s++) for (int j = 0; j < stride; j++) t2[(size_t)j * S + s] = tw[(size_t)s * stride + j];
        tw = t2; tstride = 1; tstep = S;
      }
      std::vector<float> pacc((size_t)S * H * ns * D), pm((size_t)S * H * ns), pl(pm.size());
      std::vector<int> counter((size_t)S * gx, 0);
      const bool global = ns > 1 && !run.cluster;
      auto* unfused = run.batch ? attention_decode_batch : !run.cluster ? attention_decode : ns == 2 ? attention_decode_c2 : ns == 4 ? attention_decode_c4 : attention_decode_c8;
      auto* fused = run.batch ? attention_decode_batch_rope : !run.cluster ? attention_decode_rope : ns == 2 ? attention_decode_rope_c2 : ns == 4 ? attention_decode_rope_c4 : attention_decode_rope_c8;
      const size_t smem = run.batch ? sizeof(attn::BatchSmem) : sizeof(attn::DecodeSmem);
      const dim3 grid{gx, (unsigned)S, (unsigned)ns};
      const dim3 block{(unsigned)attn::kDecodeThreads, 1, 1};
      const unsigned cz = run.cluster ? (unsigned)ns : 1u;

      // The pair: rope_qkv_fused, then the attention on its rotated q and the cache it wrote.
      std::vector<kiln_t> ka = cache.k, va = cache.v, qa((size_t)S * H * D, nan), oa((size_t)S * H * D, nan);
      launch({(unsigned)S, (unsigned)((H + 2 * HKV + 3) / 4), 1}, {128, 1, 1}, [&] {
        rope_qkv_fused(qkv.data(), positions.data(), slots.data(), inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f, qa.data(),
                       ka.data(), va.data(), S, num_slots, 0);
      });
      launch(grid, block, [&] {
        unfused(oa.data(), global ? pacc.data() : nullptr, global ? pm.data() : nullptr, global ? pl.data() : nullptr,
                global ? counter.data() : nullptr, qa.data(), ka.data(), va.data(), ctxs.data(), tw.data(), tstride, tstep,
                ns, scale, w, 1, 0);
      }, smem, 17u, cz);

      // The fused kernel on the raw q|k|v rows, its cache's new-key slots poisoned.
      std::vector<kiln_t> kb = cache.k, vb = cache.v, ob((size_t)S * H * D, nan);
      for (int s = 0; s < S; s++)
        if (slots[s] >= 0)
          for (int x = 0; x < HKV * D; x++) kb[(size_t)slots[s] * HKV * D + x] = vb[(size_t)slots[s] * HKV * D + x] = nan;
      launch(grid, block, [&] {
        fused(ob.data(), global ? pacc.data() : nullptr, global ? pm.data() : nullptr, global ? pl.data() : nullptr,
              global ? counter.data() : nullptr, qkv.data(), kb.data(), vb.data(), ctxs.data(), tw.data(), tstride, tstep, ns,
              scale, w, 1, 0, qkv.data() + H * D, qkv.data() + (H + HKV) * D, W, W, positions.data(), slots.data(),
              inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f, num_slots);
      }, smem, 29u, cz);

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
      printf("  %s%s=%d w=%d%s", qk_norm ? "norm " : "", run.batch ? "batch" : run.cluster ? "cluster" : "splits", ns, w,
             run.transposed ? " [stride,S]" : "");
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
