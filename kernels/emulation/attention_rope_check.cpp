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
// FP8 pools (`_kv8` kernels, kv_fp8_ref.h) in every run too: rope_qkv_fused_kv8 (and, in the first runs,
// rope_qkv_kv8 over the same rows split) must leave the cache the CPU's quantization of what
// rope_qkv_fused writes, bytes and scales bit for bit; attention_decode_rope*_kv8 (new-key slots
// poisoned: bytes NaN, scale NaN) must give the output and cache of rope_qkv_fused_kv8 +
// attention_decode*_kv8, bit for bit.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "kv_fp8_ref.h"
#include "paged_cache.h"
#ifndef KILN_DECODE_SRC
#define KILN_DECODE_SRC "../attention_decode.cu"
#endif
#include KILN_DECODE_SRC
#include "../rope_kv.cu"
#include "rope_problem.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE;
  constexpr int W = (H + 2 * HKV) * D;  // one packed q|k|v row
  const std::vector<int> ctxs = {1, 17, 0, 300, 130, 64};
  const int S = (int)ctxs.size();
  const kiln_t nan = attn::from_float(std::numeric_limits<float>::quiet_NaN());
  const RopeProblem rp = make_rope_problem(ctxs, 9000 + 1000 * D + 100 * BS + 10 * H + HKV);
  const auto &qkv = rp.qkv, &qn = rp.qn, &kn = rp.kn;
  const PagedCache& cache = rp.cache;
  const int stride = cache.stride, num_slots = rp.num_slots;
  const auto &positions = rp.positions, &slots = rp.slots, &freq_rows = rp.freq_rows;
  const auto& inv_freq = rp.inv_freq;
  const float scale = 1.0f / std::sqrt((float)D);
  // The FP8 pools of a kiln_t pool (kv_fp8_ref.h), and equality of two, bytes and scales.
  auto quantize = [&](const std::vector<kiln_t>& x) {
    std::vector<float> f(x.size());
    for (size_t i = 0; i < x.size(); i++) f[i] = attn::to_float(x[i]);
    return kv8_ref::quantize(f, D);
  };
  auto same_pool = [](const kv8_ref::Pool& a, const kv8_ref::Pool& b) {
    return a.data == b.data && std::memcmp(a.scale.data(), b.scale.data(), a.scale.size() * 4) == 0;
  };
  const kv8_ref::Pool k8_0 = quantize(cache.k), v8_0 = quantize(cache.v);
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
      const TableLayout layout = table_layout(cache.table, S, stride, run.transposed);
      const std::vector<int>& tw = layout.table;
      const int tstride = layout.stride, tstep = layout.step;
      std::vector<float> pacc((size_t)S * H * ns * D), pm((size_t)S * H * ns), pl(pm.size());
      std::vector<int> counter((size_t)S * gx, 0);
      const bool global = ns > 1 && !run.cluster;
      auto* unfused = run.batch ? attention_decode_batch : !run.cluster ? attention_decode : ns == 2 ? attention_decode_c2 : ns == 4 ? attention_decode_c4 : attention_decode_c8;
      auto* fused = run.batch ? attention_decode_batch_rope : !run.cluster ? attention_decode_rope : ns == 2 ? attention_decode_rope_c2 : ns == 4 ? attention_decode_rope_c4 : attention_decode_rope_c8;
      const size_t smem = run.batch ? sizeof(attn::BatchSmem) : sizeof(attn::DecodeSmem<attn::kSplitWarps>);
      const dim3 grid{gx, (unsigned)S, (unsigned)ns};
      const dim3 block{(unsigned)(run.batch ? attn::kDecodeThreads : attn::kSplitThreads), 1, 1};
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
      // FP8 pools: the pair (rope_qkv_fused_kv8, attention_decode*_kv8) and the fused kernel.
      auto* unfused8 = run.batch ? attention_decode_batch_kv8 : !run.cluster ? attention_decode_kv8 : ns == 2 ? attention_decode_c2_kv8 : ns == 4 ? attention_decode_c4_kv8 : attention_decode_c8_kv8;
      auto* fused8 = run.batch ? attention_decode_batch_rope_kv8 : !run.cluster ? attention_decode_rope_kv8 : ns == 2 ? attention_decode_rope_c2_kv8 : ns == 4 ? attention_decode_rope_c4_kv8 : attention_decode_rope_c8_kv8;
      kv8_ref::Pool ka8 = k8_0, va8 = v8_0;
      std::vector<kiln_t> qa8((size_t)S * H * D, nan), oa8((size_t)S * H * D, nan);
      launch({(unsigned)S, (unsigned)((H + 2 * HKV + 3) / 4), 1}, {128, 1, 1}, [&] {
        rope_qkv_fused_kv8(qkv.data(), positions.data(), slots.data(), inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f,
                           qa8.data(), ka8.data.data(), va8.data.data(), S, num_slots, 0, ka8.scale.data(),
                           va8.scale.data());
      });
      // The write: the CPU's quantization of what rope_qkv_fused stored (every other row untouched).
      const bool write_k8 = same_pool(ka8, quantize(ka)), write_v8 = same_pool(va8, quantize(va));
      const bool same_q8 = std::memcmp(qa8.data(), qa.data(), qa.size() * sizeof(kiln_t)) == 0;
      bool split_ok = true;
      if (run.splits == 1 && !run.batch) {  // rope_qkv_kv8 over the rows split into q, k, v
        std::vector<kiln_t> qs((size_t)S * H * D), ks((size_t)S * HKV * D), vs((size_t)S * HKV * D);
        for (int s = 0; s < S; s++) {
          std::copy_n(&qkv[(size_t)s * W], H * D, &qs[(size_t)s * H * D]);
          std::copy_n(&qkv[(size_t)s * W + H * D], HKV * D, &ks[(size_t)s * HKV * D]);
          std::copy_n(&qkv[(size_t)s * W + (H + HKV) * D], HKV * D, &vs[(size_t)s * HKV * D]);
        }
        kv8_ref::Pool kc8 = k8_0, vc8 = v8_0;
        std::vector<kiln_t> qc8((size_t)S * H * D, nan);
        launch({(unsigned)S, (unsigned)((H + 2 * HKV + 3) / 4), 1}, {128, 1, 1}, [&] {
          rope_qkv_kv8(qs.data(), ks.data(), vs.data(), positions.data(), slots.data(), inv_freq.data(), fidx, 1.f, qnw,
                       knw, 1e-6f, qc8.data(), kc8.data.data(), vc8.data.data(), S, num_slots, 0, kc8.scale.data(),
                       vc8.scale.data());
        });
        split_ok = same_pool(kc8, ka8) && same_pool(vc8, va8) &&
                   std::memcmp(qc8.data(), qa.data(), qa.size() * sizeof(kiln_t)) == 0;
      }
      launch(grid, block, [&] {
        unfused8(oa8.data(), global ? pacc.data() : nullptr, global ? pm.data() : nullptr, global ? pl.data() : nullptr,
                 global ? counter.data() : nullptr, qa8.data(), ka8.data.data(), va8.data.data(), ctxs.data(), tw.data(),
                 tstride, tstep, ns, scale, w, 1, 0, ka8.scale.data(), va8.scale.data());
      }, smem, 17u, cz);
      kv8_ref::Pool kb8 = k8_0, vb8 = v8_0;
      std::vector<kiln_t> ob8((size_t)S * H * D, nan);
      for (int s = 0; s < S; s++)
        if (slots[s] >= 0)
          for (int x = 0; x < HKV; x++) {
            const size_t row = (size_t)slots[s] * HKV + x;
            kb8.scale[row] = vb8.scale[row] = std::numeric_limits<float>::quiet_NaN();
            for (int d = 0; d < D; d++) kb8.data[row * D + d] = vb8.data[row * D + d] = 0x7f;  // E4M3 NaN
          }
      launch(grid, block, [&] {
        fused8(ob8.data(), global ? pacc.data() : nullptr, global ? pm.data() : nullptr, global ? pl.data() : nullptr,
               global ? counter.data() : nullptr, qkv.data(), kb8.data.data(), vb8.data.data(), ctxs.data(), tw.data(),
               tstride, tstep, ns, scale, w, 1, 0, qkv.data() + H * D, qkv.data() + (H + HKV) * D, W, W,
               positions.data(), slots.data(), inv_freq.data(), fidx, 1.f, qnw, knw, 1e-6f, num_slots,
               kb8.scale.data(), vb8.scale.data());
      }, smem, 29u, cz);
      const bool same_out8 = std::memcmp(oa8.data(), ob8.data(), oa8.size() * sizeof(kiln_t)) == 0;
      const bool same_cache8 = same_pool(ka8, kb8) && same_pool(va8, vb8);
      for (int s = 0; s < S; s++)
        for (int x = 0; x < H * D; x++)
          if (ctxs[s] > 0 && !std::isfinite(attn::to_float(ob8[(size_t)s * H * D + x]))) { nan_rows++; break; }
      const bool kv8_ok = write_k8 && write_v8 && same_q8 && split_ok && same_out8 && same_cache8;

      const bool pass = same_out && same_k && same_v && nan_rows == 0 && counters_bad == 0 && kv8_ok;
      ok &= pass;
      printf("  %s%s=%d w=%d%s", qk_norm ? "norm " : "", run.batch ? "batch" : run.cluster ? "cluster" : "splits", ns, w,
             run.transposed ? " [stride,S]" : "");
      if (!same_out) printf(" output differs");
      if (!same_k || !same_v) printf(" cache differs (k %d v %d)", !same_k, !same_v);
      if (nan_rows) printf(" NaN rows=%d", nan_rows);
      if (!write_k8 || !write_v8) printf(" kv8 write is not the CPU's (k %d v %d)", !write_k8, !write_v8);
      if (!same_q8 || !split_ok) printf(" kv8 q or rope_qkv_kv8 differs");
      if (!same_out8) printf(" kv8 output differs");
      if (!same_cache8) printf(" kv8 cache differs");
      if (counters_bad) printf(" split_counter not zero=%d", counters_bad);
      if (!pass) printf(" (FAIL)");
    }
  }
  printf("  %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
