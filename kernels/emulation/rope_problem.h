// The inputs of the fused-RoPE decode checks (attention_rope_check.cpp, attention_mma_rope_check.cpp):
// the packed q|k|v rows of S sequences (the QKV GEMM's output), per-head q/k RMSNorm weights, a paged
// cache of their contexts, each row's position, new-key slot (−1 for a padding row of context 0) and
// frequency row, and S rows of inverse frequencies (row r: base 10000 · (1 + r/4), as dynamic NTK gives
// each sequence its own). Include after the kernel sources (kiln_t, HEAD_DIM, ROTARY_DIM, the heads).
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "paged_cache.h"

struct RopeProblem {
  std::vector<kiln_t> qkv, qn, kn;  // [S, (NUM_HEADS + 2·NUM_KV_HEADS)·HEAD_DIM]; [HEAD_DIM] each
  PagedCache cache;
  int num_slots;
  std::vector<int> positions, slots, freq_rows;  // [S]
  std::vector<float> inv_freq;                   // [S, ROTARY_DIM / 2]
};

inline RopeProblem make_rope_problem(const std::vector<int>& ctxs, unsigned seed) {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, HALF = ROTARY_DIM / 2;
  const int S = (int)ctxs.size();
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  RopeProblem p;
  p.qkv.resize((size_t)S * (H + 2 * HKV) * D);
  p.qn.resize(D);
  p.kn.resize(D);
  for (auto& x : p.qkv) x = attn::from_float(nd(gen));
  for (auto& x : p.qn) x = attn::from_float(1.f + 0.2f * nd(gen));
  for (auto& x : p.kn) x = attn::from_float(1.f + 0.2f * nd(gen));
  p.cache = make_paged_cache(ctxs, BS, HKV, D, 1, gen);
  p.num_slots = p.cache.num_blocks * BS;
  p.positions.resize(S);
  p.slots.resize(S);
  p.freq_rows.resize(S);
  for (int s = 0; s < S; s++) {
    const int ctx = ctxs[s];
    p.positions[s] = ctx > 0 ? ctx - 1 : 0;
    p.slots[s] = ctx > 0 ? p.cache.table[(size_t)s * p.cache.stride + (ctx - 1) / BS] * BS + (ctx - 1) % BS : -1;
    p.freq_rows[s] = S - 1 - s;
  }
  p.inv_freq.resize((size_t)S * (HALF > 0 ? HALF : 1));
  for (int r = 0; r < S; r++)
    for (int i = 0; i < HALF; i++)
      p.inv_freq[(size_t)r * HALF + i] = std::pow(10000.f * (1.f + r / 4.f), -2.f * i / ROTARY_DIM);
  return p;
}
