// Paged prefill attention, FlashAttention-2 style, over packed variable-length sequences.
// Reference: src/backends/cpu/kernels/attention.ts (pagedAttention); layout: paged_kv.ts.
// Arguments, launch configuration and tolerances: kernels/attention_README.md.
//
// Sequence s owns query rows [query_start[s], query_start[s+1]) of q/out; row i has position
//   p = context_len[s] - query_len + i   and attends to keys j with  j <= p  and, if the window
//   w > 0, j > p - w  (the last w positions, itself included; HF sliding_window_causal).
// Its keys are read from the pools through its block table:
//   slot(j) = block_tables[s * stride + j / BLOCK_SIZE] * BLOCK_SIZE + j % BLOCK_SIZE
//   K[j] = k_cache[(slot(j) * NUM_KV_HEADS + h / ATTN_GROUP) * HEAD_DIM + 0..HEAD_DIM)
//
// One CTA computes a tile of BLOCK_M query rows of one head of one sequence; it loops over key tiles
// of BLOCK_N keys with an online softmax in fp32. Two paths, chosen at compile time:
//   tensor cores: 16-bit types and HEAD_DIM ∈ {64, 128}. BLOCK_M = 128, BLOCK_N = 64; 4 warps × 32
//                 rows (two m16 tiles share every K/V fragment). S = Q·Kᵀ and O += P·V by mma.sync m16n8k16 (fp32 accumulation); P rounded to the
//                 element type for the second product; K/V tiles by cp.async, double-buffered: the
//                 next tile's copies in flight during the whole current tile.
//   generic:      fp32 (exact fp32 FMA, no TF32), or any other HEAD_DIM ≤ 256. BLOCK_M = 16, BLOCK_N
//                 = 32 (HEAD_DIM ≤ 128) or 8 and 16 (HEAD_DIM > 128); tiles converted to fp32 in
//                 shared memory, one lane per key for scores and one lane per dimension for P·V.
// Both paths take 128 threads, so every build of this file exports the same names.
// Split mode (attention_prefill_split and its _kv8 twin): for launches of
// few CTAs over long contexts, each sequence's keys cut over num_splits CTAs, which write fp32 partials
// (O unnormalised, m, l); attention_prefill_merge combines them into out. The unsplit entries are the
// same template with kSplit = false, unchanged.
// attention_prefill_kv8 and attention_prefill_split_kv8 read FP8 pools (`--kv-cache-dtype fp8`: E4M3 bytes
// and a scale per row, kv_fp8.cuh; k_scale, v_scale [numBlocks, BLOCK_SIZE, NUM_KV_HEADS] fp32 after the
// other arguments), each key and value as fp32(e4m3 · scale), the CPU's value. The generic path keeps it in fp32 (exact);
// the tensor-core path rounds it to kiln_t in shared memory (below).
#include "attention_common.cuh"
#include "attention_tile.cuh"

#if !defined(KILN_DTYPE_F32) && (HEAD_DIM == 64 || HEAD_DIM == 128)
#define ATTN_PREFILL_TENSOR_CORES 1
#else
#define ATTN_PREFILL_TENSOR_CORES 0
#endif

namespace attn {

#if ATTN_PREFILL_TENSOR_CORES
constexpr int kBlockM = 128;
constexpr int kBlockN = 64;
#else
constexpr int kBlockM = HEAD_DIM <= 128 ? 16 : 8;
constexpr int kBlockN = HEAD_DIM <= 128 ? 32 : 16;
#endif

// Threads per CTA, on either path: 4 warps.
constexpr int kPrefillThreads = 4 * kWarp;

// Slot of key position `pos` (paged_kv.ts), as an element offset of its kv head's row in a pool.
__device__ __forceinline__ size_t kv_offset(const int* table, int pos, int kvh) {
  const int slot = table[pos / BLOCK_SIZE] * BLOCK_SIZE + pos % BLOCK_SIZE;
  return ((size_t)slot * NUM_KV_HEADS + kvh) * HEAD_DIM;
}

// Its row index (slot · NUM_KV_HEADS + kvh): where an FP8 pool keeps the row's scale.
__device__ __forceinline__ size_t kv_index(const int* table, int pos, int kvh) {
  const int slot = table[pos / BLOCK_SIZE] * BLOCK_SIZE + pos % BLOCK_SIZE;
  return (size_t)slot * NUM_KV_HEADS + kvh;
}

// Split mode (the `_split` entries, attention_README.md): split z of num_splits takes keys [lo, hi) of
// its sequence, whole key tiles of kBlockN from the first key any row of the sequence may see, so a
// split never cuts a key tile and the causal and window masks act on a tile as in the unsplit kernel.
// It writes, per (row, head), the unnormalised fp32 O, the running max m (the kernel's score units: ×
// log2 e in 16-bit builds) and the sum l into the partials, indexed by the row's place in the launch:
//   acc [rows, NUM_HEADS, num_splits, HEAD_DIM], m and l [rows, NUM_HEADS, num_splits]
// (rows = query_start[S] − query_start[0]); attention_prefill_merge combines them into out.
struct SplitOut {
  float* acc;
  float* m;
  float* l;
  int num_splits;  // 1: the CTA writes out itself, as the unsplit kernel does
  int z;           // this CTA's split
  int row_base;    // query_start[0]: partial row = q row − row_base
};

// The partial index (row, head, split) of row `row` of tile t.
__device__ __forceinline__ size_t partial_index(const SplitOut& sp, const Tile& t, int row, int h) {
  return ((size_t)(t.q_row + row - sp.row_base) * NUM_HEADS + h) * sp.num_splits + sp.z;
}

// Keys [lo, hi) of split z of a sequence with qlen rows at the end of ctx keys (window w, 0 = none):
// whole key tiles from the first tile any of its rows may see; splits past the end are empty (lo ≥ hi).
__device__ __forceinline__ int2 split_keys(int ctx, int qlen, int window, int z, int num_splits) {
  const int first = window > 0 ? max(0, ctx - qlen - window + 1) / kBlockN * kBlockN : 0;
  const int tiles = (ctx - first + kBlockN - 1) / kBlockN;
  const int per = (tiles + num_splits - 1) / num_splits * kBlockN;
  int2 r;
  r.x = first + z * per;
  r.y = min(ctx, r.x + per);
  return r;
}

#if ATTN_PREFILL_TENSOR_CORES

constexpr int kLds = HEAD_DIM + 8;        // smem row stride (elements): rows 16 B apart mod 128 B, so
                                          // the 8 row addresses of an ldmatrix hit distinct banks
constexpr int kChunks = HEAD_DIM / 8;     // 16-byte chunks per row

// Each warp owns kWarpRows rows of the tile, as kMTiles m16 tiles that share every K/V fragment.
constexpr int kWarpRows = kBlockM / (kPrefillThreads / kWarp);  // 32
constexpr int kMTiles = kWarpRows / 16;                         // 2
constexpr int kRowsPerPass = kPrefillThreads / kChunks;         // rows one pass of 16-byte copies covers
constexpr int kKvLoads = kBlockN / kRowsPerPass;                // K (and V) copies per thread per tile
static_assert(kWarpRows % 16 == 0, "whole m16 tiles per warp");
static_assert(kPrefillThreads % kChunks == 0 && kBlockN % kRowsPerPass == 0, "tile copy shape");

// Dynamic shared memory (bytes; attention_README.md): Q [kBlockM][kLds], then K and V, two buffers each,
// [2][kBlockN][kLds]: the copies of the next key tile run during the whole current tile.
constexpr int kSmemElems = (kBlockM + 4 * kBlockN) * kLds;
static_assert(kSmemElems * sizeof(kiln_t) <= 227 * 1024, "shared memory of one CTA");

// 8 E4M3 bytes of a row with scale s as 8 kiln_t values (one 16-byte vector): kiln_t(fp32(e4m3 · s)).
__device__ __forceinline__ uint4 dequant8(const uint2& bytes, float s) {
  unsigned char b[8];
  memcpy(b, &bytes, 8);
  float f[8];
  kiln::kv8::decode(b, s, f);
  kiln_t e[8];
#pragma unroll
  for (int i = 0; i < 8; i++) e[i] = from_float(f[i]);
  uint4 w;
  memcpy(&w, e, 16);
  return w;
}

// K and V rows of keys [n0, n0 + kBlockN) → sk, sv [kBlockN][kLds] by cp.async, blocks from blk
// [kBlockN] (shared); keys with block -1 are zeros.
// FP8 pools (KvFp8): 8 bytes and the row's scale per copy, dequantized in registers and stored to shared
// memory as kiln_t: kiln_t(fp32(e4m3 · scale)), the CPU's fp32 value rounded once more, to the 16-bit
// type the mma reads (plain st.shared; the loop's barriers order them as they do the cp.async copies).
// So this path sees K and V with one rounding to kiln_t more than the CPU's fp32 (2⁻⁸ relative for
// bf16, 2⁻¹¹ for fp16): the scores move by up to that relative amount of Σ|q·k|, the output by that of
// Σ w|v| (attention_README.md's bounds for 16-bit engines, whose K/V were already kiln_t, then cover
// it: the kernel equals the plain one over a cache holding those kiln_t values, bit for bit).
template <class KV>
__device__ __forceinline__ void load_kv_tile(kiln_t* sk, kiln_t* sv, const typename KV::elem_t* k_pool,
                                             const typename KV::elem_t* v_pool, const float* k_scale,
                                             const float* v_scale, const int* blk, int n0, int kvh) {
  const int col = (threadIdx.x % kChunks) * 8;
#pragma unroll
  for (int j = 0; j < kKvLoads; j++) {
    const int r = threadIdx.x / kChunks + j * kRowsPerPass;
    const int b = blk[r];
    const size_t off = b >= 0 ? ((size_t)(b * BLOCK_SIZE + (n0 + r) % BLOCK_SIZE) * NUM_KV_HEADS + kvh) * HEAD_DIM + col : 0;
    if constexpr (KV::kFp8) {
      uint4 kw = {0u, 0u, 0u, 0u}, vw = {0u, 0u, 0u, 0u};
      if (b >= 0) {
        const size_t row = (size_t)(b * BLOCK_SIZE + (n0 + r) % BLOCK_SIZE) * NUM_KV_HEADS + kvh;
        kw = dequant8(__ldg(reinterpret_cast<const uint2*>(k_pool + off)), __ldg(k_scale + row));
        vw = dequant8(__ldg(reinterpret_cast<const uint2*>(v_pool + off)), __ldg(v_scale + row));
      }
      *reinterpret_cast<uint4*>(&sk[r * kLds + col]) = kw;
      *reinterpret_cast<uint4*>(&sv[r * kLds + col]) = vw;
    } else {
      cp_async_16(&sk[r * kLds + col], k_pool + off, b >= 0 ? 16 : 0);
      cp_async_16(&sv[r * kLds + col], v_pool + off, b >= 0 ? 16 : 0);
    }
  }
}

template <class KV, bool kSplit>
__device__ __forceinline__ void prefill_tile(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                             const typename KV::elem_t* __restrict__ k_cache,
                                             const typename KV::elem_t* __restrict__ v_cache,
                                             const float* __restrict__ k_scale, const float* __restrict__ v_scale,
                                             const int* __restrict__ table, const Tile& t, int h, float scale,
                                             int window, const SplitOut& sp) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  kiln_t* sQ = reinterpret_cast<kiln_t*>(smem_raw);  // [kBlockM][kLds]
  kiln_t* sK = sQ + kBlockM * kLds;                   // [2][kBlockN][kLds]
  kiln_t* sV = sK + 2 * kBlockN * kLds;               // [2][kBlockN][kLds]
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int g = lane / 4;    // fragment row group
  const int tig = lane % 4;  // thread in group
  const int kvh = h / ATTN_GROUP;
  const int wrow = warp * kWarpRows;  // the warp's first row in the tile

  __syncthreads();  // this CTA's previous tile is done with the shared buffers
  // Q [kBlockM, HEAD_DIM] → sQ (group 1), then the first K/V tile → buffer 0 (group 2).
  for (int c = threadIdx.x; c < kBlockM * kChunks; c += kPrefillThreads) {
    const int r = c / kChunks;
    const int col = (c % kChunks) * 8;
    const bool ok = r < t.rows;
    const kiln_t* src = ok ? q + ((size_t)(t.q_row + r) * NUM_HEADS + h) * HEAD_DIM + col : q;
    cp_async_16(&sQ[r * kLds + col], src, ok ? 16 : 0);
  }
  const int n_begin = t.kv_lo / kBlockN * kBlockN;
  __shared__ int s_blk[2][kBlockN];  // block ids of the keys of the tile being copied, two tiles apart
  if (threadIdx.x < kBlockN) s_blk[0][threadIdx.x] = fetch_block<kBlockN>(table, n_begin, t);
  int next_blk = fetch_block<kBlockN>(table, n_begin + kBlockN, t);
  __syncthreads();
  load_kv_tile<KV>(sK, sV, k_cache, v_cache, k_scale, v_scale, s_blk[0], n_begin, kvh);
  cp_async_commit();  // Q and the first K/V tile: one group

  float o[kMTiles][HEAD_DIM / 8][4];  // O rows (g, g+8) of m-tile mt, dims dt*8 + tig*2 + {0,1}
  float m[kMTiles][2], l[kMTiles][2];  // running max (log2 domain) and this thread's columns' sum per row
#pragma unroll
  for (int mt = 0; mt < kMTiles; mt++) {
#pragma unroll
    for (int dt = 0; dt < HEAD_DIM / 8; dt++) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
    m[mt][0] = m[mt][1] = neg_inf();
    l[mt][0] = l[mt][1] = 0.f;
  }
  const float sl2 = scale * kExpScale;
  const int w_first = t.p_first + wrow;  // positions of the warp's first and last rows
  const int w_last = w_first + kWarpRows - 1;

  for (int n0 = n_begin, it = 0; n0 < t.kv_hi; n0 += kBlockN, it++) {
    const int buf = it & 1;
    const bool has_next = n0 + kBlockN < t.kv_hi;
    cp_async_wait<0>();  // this tile's K/V (and Q) landed: the only group in flight
    if (threadIdx.x < kBlockN) s_blk[buf ^ 1][threadIdx.x] = next_blk;
    if (has_next) next_blk = fetch_block<kBlockN>(table, n0 + 2 * kBlockN, t);
    __syncthreads();  // the tile and s_blk visible to all; every warp done with the previous tile's buffer
    if (has_next) {   // next tile → the other buffer, in flight during this tile
      load_kv_tile<KV>(sK + (buf ^ 1) * kBlockN * kLds, sV + (buf ^ 1) * kBlockN * kLds, k_cache, v_cache, k_scale,
                       v_scale, s_blk[buf ^ 1], n0 + kBlockN, kvh);
      cp_async_commit();
    }

    // A warp whose rows see none of these keys (above the diagonal, below the window, past the tile's
    // rows) skips the tile: its state is unchanged by keys it may not attend.
    const bool active = wrow < t.rows && n0 <= w_last && (window <= 0 || n0 + kBlockN > w_first - window + 1);
    if (active) {
      const kiln_t* k_tile = sK + buf * kBlockN * kLds;
      const kiln_t* v_tile = sV + buf * kBlockN * kLds;
      float sc[kMTiles][kBlockN / 8][4];  // S: keys n0 + nt*8 + tig*2 + {0,1}, rows g (0,1) and g+8 (2,3)
#pragma unroll
      for (int mt = 0; mt < kMTiles; mt++) {
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.f;
      }
#pragma unroll
      for (int ks = 0; ks < HEAD_DIM / 16; ks++) {
        unsigned a[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt++) {
          ldmatrix_x4(a[mt], &sQ[(wrow + mt * 16 + (lane & 15)) * kLds + ks * 16 + (lane >> 4) * 8]);
        }
#pragma unroll
        for (int np = 0; np < kBlockN / 16; np++) {
          unsigned b[4];
          ldmatrix_x4(b, &k_tile[(np * 16 + (lane & 7) + (lane >> 4) * 8) * kLds + ks * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
          for (int mt = 0; mt < kMTiles; mt++) {
            mma_16816(sc[mt][2 * np], a[mt], b[0], b[1]);
            mma_16816(sc[mt][2 * np + 1], a[mt], b[2], b[3]);
          }
        }
      }

      // Only tiles crossing the warp's diagonal or its window's lower edge need a per-element mask.
      const bool need_mask = n0 + kBlockN - 1 > w_first || (window > 0 && n0 <= w_last - window);
      unsigned pf[kMTiles][kBlockN / 16][4];  // P as A fragments (C layout of key tiles 2kt, 2kt+1)
#pragma unroll
      for (int mt = 0; mt < kMTiles; mt++) {
        const int prow[2] = {w_first + mt * 16 + g, w_first + mt * 16 + g + 8};
#pragma unroll
        for (int nt = 0; nt < kBlockN / 8; nt++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            sc[mt][nt][e] *= sl2;
            if (need_mask && masked(n0 + nt * 8 + tig * 2 + (e & 1), prow[e / 2], window)) sc[mt][nt][e] = neg_inf();
          }
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
          float mx = neg_inf();
#pragma unroll
          for (int nt = 0; nt < kBlockN / 8; nt++) mx = fmaxf(mx, fmaxf(sc[mt][nt][2 * r], sc[mt][nt][2 * r + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
          const float m_new = fmaxf(m[mt][r], mx);
          const float m_use = m_new == neg_inf() ? 0.f : m_new;  // a row with no key yet: keep 0s, no NaN
          const float corr = score_exp(m[mt][r] - m_use);
          m[mt][r] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < kBlockN / 8; nt++) {
            sc[mt][nt][2 * r] = score_exp(sc[mt][nt][2 * r] - m_use);
            sc[mt][nt][2 * r + 1] = score_exp(sc[mt][nt][2 * r + 1] - m_use);
            sum += sc[mt][nt][2 * r] + sc[mt][nt][2 * r + 1];
          }
          l[mt][r] = l[mt][r] * corr + sum;
#pragma unroll
          for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
            o[mt][dt][2 * r] *= corr;
            o[mt][dt][2 * r + 1] *= corr;
          }
        }
#pragma unroll
        for (int kt = 0; kt < kBlockN / 16; kt++) {
          pf[mt][kt][0] = pack2(sc[mt][2 * kt][0], sc[mt][2 * kt][1]);
          pf[mt][kt][1] = pack2(sc[mt][2 * kt][2], sc[mt][2 * kt][3]);
          pf[mt][kt][2] = pack2(sc[mt][2 * kt + 1][0], sc[mt][2 * kt + 1][1]);
          pf[mt][kt][3] = pack2(sc[mt][2 * kt + 1][2], sc[mt][2 * kt + 1][3]);
        }
      }

#pragma unroll
      for (int kt = 0; kt < kBlockN / 16; kt++) {
#pragma unroll
        for (int dp = 0; dp < HEAD_DIM / 16; dp++) {
          unsigned b[4];
          ldmatrix_x4_trans(b, &v_tile[(kt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLds + dp * 16 + (lane >> 4) * 8]);
#pragma unroll
          for (int mt = 0; mt < kMTiles; mt++) {
            mma_16816(o[mt][2 * dp], pf[mt][kt], b[0], b[1]);
            mma_16816(o[mt][2 * dp + 1], pf[mt][kt], b[2], b[3]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < kMTiles; mt++) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float sum = l[mt][r];
      sum += __shfl_xor_sync(kFull, sum, 1);
      sum += __shfl_xor_sync(kFull, sum, 2);
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      const int row = wrow + mt * 16 + g + 8 * r;
      if constexpr (kSplit) {
        if (row < t.rows && sp.num_splits > 1) {  // the partial: O unnormalised, m and the row's whole l
          const size_t pr = partial_index(sp, t, row, h);
          float* dst = sp.acc + pr * HEAD_DIM + tig * 2;
#pragma unroll
          for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
            *reinterpret_cast<float2*>(dst + dt * 8) = float2{o[mt][dt][2 * r], o[mt][dt][2 * r + 1]};
          }
          if (tig == 0) {
            sp.m[pr] = m[mt][r];
            sp.l[pr] = sum;
          }
          continue;
        }
      }
      if (row < t.rows) {
        kiln_t* dst = out + ((size_t)(t.q_row + row) * NUM_HEADS + h) * HEAD_DIM + tig * 2;
#pragma unroll
        for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
          *reinterpret_cast<unsigned*>(dst + dt * 8) = pack2(o[mt][dt][2 * r] * inv, o[mt][dt][2 * r + 1] * inv);
        }
      }
    }
  }
}

#else  // generic path

constexpr int kRowsPerWarp = kBlockM / 4;                // 4 (HEAD_DIM ≤ 128) or 2
constexpr int kSegs = kWarp / kBlockN;                   // lane segments in the score phase: 1 or 2
constexpr int kRowsPerLane = kRowsPerWarp / kSegs;       // score rows per lane: 4 or 1
constexpr int kDimsPerLane = (HEAD_DIM + kWarp - 1) / kWarp;
constexpr int kLdk = HEAD_DIM + 1;                       // odd stride: lane-per-key reads hit distinct banks
constexpr int kVecsPerRow = HEAD_DIM / kVec;

template <class KV, bool kSplit>
__device__ __forceinline__ void prefill_tile(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                             const typename KV::elem_t* __restrict__ k_cache,
                                             const typename KV::elem_t* __restrict__ v_cache,
                                             const float* __restrict__ k_scale, const float* __restrict__ v_scale,
                                             const int* __restrict__ table, const Tile& t, int h, float scale,
                                             int window, const SplitOut& sp) {
  __shared__ float sQ[kBlockM * HEAD_DIM];  // [kBlockM][HEAD_DIM]
  __shared__ float sK[kBlockN * kLdk];      // [kBlockN][kLdk]
  __shared__ float sV[kBlockN * HEAD_DIM];  // [kBlockN][HEAD_DIM]
  __shared__ float sP[kBlockM * kBlockN];   // [kBlockM][kBlockN] softmax numerators of the tile
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int kvh = h / ATTN_GROUP;
  const int kk = lane % kBlockN;   // score phase: this lane's key in the tile
  const int seg = lane / kBlockN;  //              and its rows seg + j * kSegs of the warp's rows

  __syncthreads();  // this CTA's previous tile is done with the shared arrays
  for (int c = threadIdx.x; c < kBlockM * kVecsPerRow; c += kPrefillThreads) {
    const int r = c / kVecsPerRow;
    const int d = (c % kVecsPerRow) * kVec;
    float f[kVec];
    if (r < t.rows) {
      unpack(load_raw(q + ((size_t)(t.q_row + r) * NUM_HEADS + h) * HEAD_DIM + d), f);
    } else {
#pragma unroll
      for (int i = 0; i < kVec; i++) f[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < kVec; i++) sQ[r * HEAD_DIM + d + i] = f[i];
  }

  float acc[kRowsPerWarp][kDimsPerLane];  // O of the warp's rows, dims lane + 32c
  float m[kRowsPerWarp];                  // running max per row (same in every lane)
  float l[kRowsPerWarp];                  // running sum per row (same in every lane)
#pragma unroll
  for (int x = 0; x < kRowsPerWarp; x++) {
    m[x] = neg_inf();
    l[x] = 0.f;
#pragma unroll
    for (int c = 0; c < kDimsPerLane; c++) acc[x][c] = 0.f;
  }
  const float sl = scale * kExpScale;

  for (int n0 = t.kv_lo / kBlockN * kBlockN; n0 < t.kv_hi; n0 += kBlockN) {
    __syncthreads();  // previous key tile consumed (and sQ written, the first time)
    for (int c = threadIdx.x; c < kBlockN * kVecsPerRow; c += kPrefillThreads) {
      const int r = c / kVecsPerRow;
      const int d = (c % kVecsPerRow) * kVec;
      const int pos = n0 + r;
      float fk[kVec], fv[kVec];
      if (pos >= t.kv_lo && pos < t.kv_hi) {
        const size_t off = kv_offset(table, pos, kvh) + d;
        float ks = 0.f, vs = 0.f;  // FP8 pools: the row's scales
        if constexpr (KV::kFp8) {
          const size_t row = kv_index(table, pos, kvh);
          ks = load_kv_scale<KV>(k_scale, row);
          vs = load_kv_scale<KV>(v_scale, row);
        }
        unpack_kv<KV>(load_kv<KV>(k_cache + off), ks, fk);
        unpack_kv<KV>(load_kv<KV>(v_cache + off), vs, fv);
      } else {
#pragma unroll
        for (int i = 0; i < kVec; i++) fk[i] = fv[i] = 0.f;
      }
#pragma unroll
      for (int i = 0; i < kVec; i++) {
        sK[r * kLdk + d + i] = fk[i];
        sV[r * HEAD_DIM + d + i] = fv[i];
      }
    }
    __syncthreads();

    // Scores: lane (seg, kk) computes rows seg + j*kSegs against key n0 + kk.
    float mnew[kRowsPerLane], lsum[kRowsPerLane];
#pragma unroll
    for (int j = 0; j < kRowsPerLane; j++) {
      const int rw = seg + j * kSegs;
      const int r = warp * kRowsPerWarp + rw;
      float dot = 0.f;
#pragma unroll 8
      for (int d = 0; d < HEAD_DIM; d++) dot = fmaf(sQ[r * HEAD_DIM + d], sK[kk * kLdk + d], dot);
      float s = dot * sl;
      if (masked(n0 + kk, t.p_first + r, window)) s = neg_inf();
      float m_old = m[0];
#pragma unroll
      for (int x = 1; x < kRowsPerWarp; x++) m_old = x == rw ? m[x] : m_old;
      const float m_row = fmaxf(m_old, xor_max(s, 1, kBlockN / 2));
      const float m_use = m_row == neg_inf() ? 0.f : m_row;
      const float p = score_exp(s - m_use);
      sP[r * kBlockN + kk] = p;
      mnew[j] = m_row;
      lsum[j] = xor_sum(p, 1, kBlockN / 2);
    }
    // Every lane takes every row's new max and tile sum, then rescales its accumulators.
#pragma unroll
    for (int x = 0; x < kRowsPerWarp; x++) {
      const float m_row = __shfl_sync(kFull, mnew[x / kSegs], (x % kSegs) * kBlockN);
      const float tile_sum = __shfl_sync(kFull, lsum[x / kSegs], (x % kSegs) * kBlockN);
      const float corr = score_exp(m[x] - (m_row == neg_inf() ? 0.f : m_row));
      m[x] = m_row;
      l[x] = l[x] * corr + tile_sum;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) acc[x][c] *= corr;
    }
    __syncwarp();
    // P·V: lane owns dims lane + 32c.
#pragma unroll
    for (int x = 0; x < kRowsPerWarp; x++) {
      const float* prow = &sP[(warp * kRowsPerWarp + x) * kBlockN];
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) {
        const int d = lane + kWarp * c;
        if (d < HEAD_DIM) {
          float a = acc[x][c];
#pragma unroll 8
          for (int n = 0; n < kBlockN; n++) a = fmaf(prow[n], sV[n * HEAD_DIM + d], a);
          acc[x][c] = a;
        }
      }
    }
  }

#pragma unroll
  for (int x = 0; x < kRowsPerWarp; x++) {
    const int r = warp * kRowsPerWarp + x;
    if constexpr (kSplit) {
      if (r < t.rows && sp.num_splits > 1) {  // the partial: acc unnormalised, m and l
        const size_t pr = partial_index(sp, t, r, h);
#pragma unroll
        for (int c = 0; c < kDimsPerLane; c++) {
          const int d = lane + kWarp * c;
          if (d < HEAD_DIM) sp.acc[pr * HEAD_DIM + d] = acc[x][c];
        }
        if (lane == 0) {
          sp.m[pr] = m[x];
          sp.l[pr] = l[x];
        }
        continue;
      }
    }
    if (r < t.rows) {
      const float inv = l[x] > 0.f ? 1.f / l[x] : 0.f;
      kiln_t* dst = out + ((size_t)(t.q_row + r) * NUM_HEADS + h) * HEAD_DIM;
#pragma unroll
      for (int c = 0; c < kDimsPerLane; c++) {
        const int d = lane + kWarp * c;
        if (d < HEAD_DIM) dst[d] = from_float(acc[x][c] * inv);
      }
    }
  }
}

#endif

}  // namespace attn

// out          [T, NUM_HEADS, HEAD_DIM]      kiln_t; rows of every sequence written, others untouched
// q            [T, NUM_HEADS, HEAD_DIM]      kiln_t, already rotated
// k_cache      [numBlocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM]   this layer's K pool (new keys written)
// v_cache      same layout, V pool
// query_start  [S + 1] int32   cu_seqlens: sequence s owns rows [query_start[s], query_start[s+1])
// context_len  [S] int32       tokens in the cache for s, its new ones included (≥ its query length)
// block_tables [S, block_table_stride] int32
// scale        multiplies q·k (HF: head_dim ** -0.5)
// sliding_window  attend to the last w positions only; 0 = full causal
// Grid (x, NUM_HEADS, S), block (kPrefillThreads: 128): x = ceil(maxQueryLen / BLOCK_M) is best; any
// x ≥ 1 is correct (each CTA walks its sequence's query tiles from the last, the longest, down with
// stride x).
namespace attn {

template <class KV, bool kSplit>
__device__ __forceinline__ void prefill(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                        const typename KV::elem_t* __restrict__ k_cache,
                                        const typename KV::elem_t* __restrict__ v_cache,
                                        const int* __restrict__ query_start, const int* __restrict__ context_len,
                                        const int* __restrict__ block_tables, int block_table_stride, float scale,
                                        int sliding_window, const float* __restrict__ k_scale,
                                        const float* __restrict__ v_scale, SplitOut sp) {
  kiln::pdl_wait();  // q, the KV cache and the step metadata come from earlier kernels (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int s = blockIdx.z;
  const int h = blockIdx.y;
  const int q0 = query_start[s];
  const int qlen = query_start[s + 1] - q0;
  const int ctx = context_len[s];
  const int* table = block_tables + (size_t)s * block_table_stride;
  const int tiles = (qlen + kBlockM - 1) / kBlockM;
  int x = (int)blockIdx.x, x_stride = (int)gridDim.x;
  int2 keys = {0, 0};
  if constexpr (kSplit) {  // grid.x = (query tile walkers) × num_splits; the split varies fastest
    sp.z = x % sp.num_splits;
    x /= sp.num_splits;
    x_stride /= sp.num_splits;
    sp.row_base = query_start[0];
    keys = split_keys(ctx, qlen, sliding_window, sp.z, sp.num_splits);
  }
  for (int tile = tiles - 1 - x; tile >= 0; tile -= x_stride) {
    Tile t = make_tile<kBlockM>(q0, qlen, ctx, tile * kBlockM, sliding_window);
    if constexpr (kSplit) {
      t.kv_lo = max(t.kv_lo, keys.x);
      t.kv_hi = min(t.kv_hi, keys.y);
      if (t.kv_lo >= t.kv_hi) {  // no key of this split for the tile: neutral partials (m = −∞, l = 0)
        for (int r = threadIdx.x; r < t.rows; r += (int)blockDim.x) {
          const size_t pr = partial_index(sp, t, r, h);
          sp.m[pr] = neg_inf();
          sp.l[pr] = 0.f;
        }
        continue;
      }
    }
    prefill_tile<KV, kSplit>(out, q, k_cache, v_cache, k_scale, v_scale, table, t, h, scale, sliding_window, sp);
  }
}

// Merge kernel's vector: floats of acc per thread.
constexpr int kMergeVec = HEAD_DIM % 4 == 0 ? 4 : HEAD_DIM % 2 == 0 ? 2 : 1;

}  // namespace attn

// Two CTAs per SM (each thread may take 255 registers).
extern "C" __global__ void __launch_bounds__(attn::kPrefillThreads, 2)
    attention_prefill(kiln_t* __restrict__ out, const kiln_t* __restrict__ q, const kiln_t* __restrict__ k_cache,
                      const kiln_t* __restrict__ v_cache, const int* __restrict__ query_start,
                      const int* __restrict__ context_len, const int* __restrict__ block_tables,
                      int block_table_stride, float scale, int sliding_window) {
  attn::prefill<attn::KvPlain, false>(out, q, k_cache, v_cache, query_start, context_len, block_tables,
                                      block_table_stride, scale, sliding_window, nullptr, nullptr, attn::SplitOut{});
}

// The same over FP8 pools (unsigned char) with their row scales k_scale, v_scale
// [numBlocks, BLOCK_SIZE, NUM_KV_HEADS] fp32.
extern "C" __global__ void __launch_bounds__(attn::kPrefillThreads, 2)
    attention_prefill_kv8(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                          const unsigned char* __restrict__ k_cache, const unsigned char* __restrict__ v_cache,
                          const int* __restrict__ query_start, const int* __restrict__ context_len,
                          const int* __restrict__ block_tables, int block_table_stride, float scale,
                          int sliding_window, const float* __restrict__ k_scale, const float* __restrict__ v_scale) {
  attn::prefill<attn::KvFp8, false>(out, q, k_cache, v_cache, query_start, context_len, block_tables,
                                    block_table_stride, scale, sliding_window, k_scale, v_scale, attn::SplitOut{});
}

// Split mode: the keys of each sequence cut into num_splits ranges, split z in CTA x · num_splits + z
// (grid.x = query tile walkers × num_splits); partials as attn::SplitOut says, then
// attention_prefill_merge. num_splits = 1 writes out itself (the partials unused, may be null).
extern "C" __global__ void __launch_bounds__(attn::kPrefillThreads, 2)
    attention_prefill_split(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                            const kiln_t* __restrict__ k_cache, const kiln_t* __restrict__ v_cache,
                            const int* __restrict__ query_start, const int* __restrict__ context_len,
                            const int* __restrict__ block_tables, int block_table_stride, float scale,
                            int sliding_window, float* __restrict__ partial_acc, float* __restrict__ partial_m,
                            float* __restrict__ partial_l, int num_splits) {
  attn::prefill<attn::KvPlain, true>(out, q, k_cache, v_cache, query_start, context_len, block_tables,
                                     block_table_stride, scale, sliding_window, nullptr, nullptr,
                                     attn::SplitOut{partial_acc, partial_m, partial_l, num_splits, 0, 0});
}

extern "C" __global__ void __launch_bounds__(attn::kPrefillThreads, 2)
    attention_prefill_split_kv8(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                const unsigned char* __restrict__ k_cache, const unsigned char* __restrict__ v_cache,
                                const int* __restrict__ query_start, const int* __restrict__ context_len,
                                const int* __restrict__ block_tables, int block_table_stride, float scale,
                                int sliding_window, float* __restrict__ partial_acc, float* __restrict__ partial_m,
                                float* __restrict__ partial_l, int num_splits, const float* __restrict__ k_scale,
                                const float* __restrict__ v_scale) {
  attn::prefill<attn::KvFp8, true>(out, q, k_cache, v_cache, query_start, context_len, block_tables,
                                   block_table_stride, scale, sliding_window, k_scale, v_scale,
                                   attn::SplitOut{partial_acc, partial_m, partial_l, num_splits, 0, 0});
}

// Combines the num_splits partials of every (row, head) of a split launch over sequences
// [query_start[0], query_start[num_seqs]) into out, exactly the unsplit kernel's softmax:
//   M = max_z m_z,   out = Σ_z e^(m_z − M)·acc_z / Σ_z e^(m_z − M)·l_z    (splits with m_z = −∞ skipped)
// in fp32, z in order 0, 1, … (fmaf), so the result does not depend on the launch. Any grid (grid-stride
// over rows × NUM_HEADS × HEAD_DIM / kMergeVec items), block 128; the partials were written by the
// kernel before it on the stream (read after the PDL wait).
extern "C" __global__ void __launch_bounds__(128) attention_prefill_merge(
    kiln_t* __restrict__ out, const float* __restrict__ partial_acc, const float* __restrict__ partial_m,
    const float* __restrict__ partial_l, const int* __restrict__ query_start, int num_seqs, int num_splits) {
  using namespace attn;
  kiln::pdl_wait();
  kiln::pdl_launch_dependents();
  const int base = query_start[0];
  const long long items = (long long)(query_start[num_seqs] - base) * NUM_HEADS * (HEAD_DIM / kMergeVec);
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items; i += (long long)gridDim.x * blockDim.x) {
    const long long rh = i / (HEAD_DIM / kMergeVec);  // (row − base) · NUM_HEADS + head
    const int d0 = (int)(i % (HEAD_DIM / kMergeVec)) * kMergeVec;
    const size_t p0 = (size_t)rh * num_splits;
    float mx = neg_inf();
    for (int z = 0; z < num_splits; z++) mx = fmaxf(mx, partial_m[p0 + z]);
    float den = 0.f, num[kMergeVec];
#pragma unroll
    for (int e = 0; e < kMergeVec; e++) num[e] = 0.f;
    for (int z = 0; z < num_splits; z++) {
      const float mz = partial_m[p0 + z];
      if (mz == neg_inf()) continue;  // no key of the row in this split: its acc may be unwritten
      const float w = score_exp(mz - mx);
      den = fmaf(w, partial_l[p0 + z], den);
      const float* a = partial_acc + (p0 + z) * HEAD_DIM + d0;
#pragma unroll
      for (int e = 0; e < kMergeVec; e++) num[e] = fmaf(w, a[e], num[e]);
    }
    const float inv = den > 0.f ? 1.f / den : 0.f;
    kiln_t* dst = out + ((size_t)base * NUM_HEADS + rh) * HEAD_DIM + d0;
#pragma unroll
    for (int e = 0; e < kMergeVec; e++) dst[e] = from_float(num[e] * inv);
  }
}
