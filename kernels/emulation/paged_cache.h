// A paged KV cache for the attention checks (attention_check.cpp, attention_decode_check.cpp), laid out
// as paged_kv.ts lays it out: sequence s's keys [0, ctx) sit in the blocks its table row lists, taken
// from a shuffled pool; every slot nothing may read (unused blocks, slots past a context) is NaN, and
// unused table entries point at the last block, the poison block, so a stray read shows.
#pragma once
#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

struct PagedCache {
  int stride = 0;      // table entries per sequence
  int num_blocks = 0;  // pool blocks, the poison block last
  int poison = 0;
  std::vector<kiln_t> k, v;  // [num_blocks, BS, HKV, D]
  std::vector<int> table;    // [S, stride]
};

/** Random keys and values for contexts `ctxs`; `spare` unused entries at the end of each table row. */
inline PagedCache make_paged_cache(const std::vector<int>& ctxs, int BS, int HKV, int D, int spare, std::mt19937& gen) {
  PagedCache c;
  int max_blocks = 0, used_blocks = 0;
  for (int ctx : ctxs) {
    max_blocks = std::max(max_blocks, (ctx + BS - 1) / BS);
    used_blocks += (ctx + BS - 1) / BS;
  }
  c.stride = max_blocks + spare;
  c.num_blocks = used_blocks + 3;
  c.poison = c.num_blocks - 1;
  const kiln_t nan = attn::from_float(std::numeric_limits<float>::quiet_NaN());
  c.k.assign((size_t)c.num_blocks * BS * HKV * D, nan);
  c.v.assign(c.k.size(), nan);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<int> perm(c.num_blocks - 1);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), gen);
  c.table.assign(ctxs.size() * (size_t)c.stride, c.poison);
  size_t next = 0;
  for (size_t s = 0; s < ctxs.size(); s++) {
    for (int b = 0; b < (ctxs[s] + BS - 1) / BS; b++) c.table[s * c.stride + b] = perm[next++];
    for (int j = 0; j < ctxs[s]; j++) {
      const size_t slot = (size_t)c.table[s * c.stride + j / BS] * BS + j % BS;
      for (int x = 0; x < HKV * D; x++) {
        c.k[slot * HKV * D + x] = attn::from_float(nd(gen));
        c.v[slot * HKV * D + x] = attn::from_float(nd(gen));
      }
    }
  }
  return c;
}

/** A block table as a launch reads it: `table` [S, stride] as built (step 1), or transposed to [stride, S]
 * (stride 1, step S) as decode graphs lay it out. */
struct TableLayout {
  std::vector<int> table;
  int stride, step;
};
inline TableLayout table_layout(const std::vector<int>& table, int S, int stride, bool transposed) {
  if (!transposed) return {table, stride, 1};
  std::vector<int> t((size_t)stride * S);
  for (int s = 0; s < S; s++)
    for (int j = 0; j < stride; j++) t[(size_t)j * S + s] = table[(size_t)s * stride + j];
  return {t, 1, S};
}
