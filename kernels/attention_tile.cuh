// A prefill query tile's rows and the keys they may see, and the per-key mask, for attention_prefill.cu
// (its tensor-core and generic paths and their _split entries; the tile's rows are a template argument).
// Masking convention: attention_README.md. Needs attention_common.cuh first (BLOCK_SIZE).
#pragma once

namespace attn {

// The rows of one query tile and the keys they need.
struct Tile {
  int q_row;    // first row of the tile in q/out (packed over sequences)
  int rows;     // valid rows in the tile, ≤ kRows
  int p_first;  // position of the tile's first row
  int kv_lo;    // keys [kv_lo, kv_hi) can be attended by some row of the tile
  int kv_hi;
};

// The tile of at most kRows rows starting at row i0 of a sequence of qlen rows after ctx − qlen cached.
template <int kRows>
__device__ __forceinline__ Tile make_tile(int q0, int qlen, int ctx, int i0, int window) {
  Tile t;
  t.q_row = q0 + i0;
  t.rows = min(kRows, qlen - i0);
  t.p_first = ctx - qlen + i0;
  t.kv_lo = window > 0 ? max(0, t.p_first - window + 1) : 0;
  t.kv_hi = t.p_first + t.rows;  // = last row's position + 1
  return t;
}

// Block id of key n0 + threadIdx.x (threads < kKeys, a key tile's), −1 outside [kv_lo, kv_hi). A plain
// load: issued a tile ahead, it completes during that tile.
template <int kKeys>
__device__ __forceinline__ int fetch_block(const int* table, int n0, const Tile& t) {
  const int pos = n0 + (int)threadIdx.x;
  return threadIdx.x < kKeys && pos >= t.kv_lo && pos < t.kv_hi ? table[pos / BLOCK_SIZE] : -1;
}

// Key `key` is masked for the row at position p: causal, then the sliding window (0 = none).
__device__ __forceinline__ bool masked(int key, int p, int window) {
  return key > p || (window > 0 && key <= p - window);
}

}  // namespace attn
