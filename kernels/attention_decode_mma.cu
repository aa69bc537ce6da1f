// Paged decode attention on tensor cores (attention_decode_mma): one query token per sequence, one CTA per
// (kv head, sequence, context split). Many sequences take one split; few sequences over long contexts
// split each context over CTAs ("flash-decoding"): each split writes an unnormalised partial and the
// last CTA of a (sequence, kv head) to finish merges them, in the same launch. The G = NUM_HEADS / NUM_KV_HEADS query
// heads of the kv head are the M rows of mma.sync.m16n8k16 (padded to 16: rows ≥ G are zeros and never
// written), so every K/V row is read once for the whole group (GQA) and the dots and P·V run on tensor
// cores (FlashAttention-2 style):
//
//   S[16, 16 keys] = Q[16, D] · Kᵀ            (D/16 k16 steps, two n8 key tiles; Q fragments held in registers)
//   online softmax per row in fp32 (exp2, log2 e folded into the scale)
//   O[16, D]      += P[16, 16 keys] · V        (P: S's accumulators rounded to the dtype as A fragments;
//                                               V fragments by ldmatrix.trans)
//
// The CTA walks its split's keys [ks, ke) of [lo, ctx) in tiles of kTileKeys = 64 keys, the block table
// in order (the ranges are attention_decode's: attention_splits.ts splitRanges); warp w takes keys
// [16w, 16w + 16) of each tile and keeps its own (m, l, O); the warps merge in shared memory at the end.
// A tile's K and V rows come into shared memory by 16-byte cp.async (zero fill past the context), rows
// padded by 16 bytes so the 8 rows of an ldmatrix hit distinct banks; kStages tiles in flight, the
// first kStages − 1 issued before the PDL wait (keys < ctx − 1 only: the new key, written by the
// kernel just ahead (rope_kv), is copied into its slot after the wait).
//
//   tile t:  cp.async K|V → stage t % kStages ─┐ issued kStages − 1 tiles ahead
//   wait, barrier, 4 warps × (S, softmax, P·V) on 16 keys each, barrier ◀─┘
//
// kStages (kMmaStages) is 3 at HEAD_DIM ≤ 64 and 2 at ≤ 128, so 3 CTAs fit an SM (launch bounds 128, 3):
// at D 128 75,024 B of shared memory each, 3 × (75,024 + 1,024 reserved) = 228,144 B ≤ 228 KiB per SM;
// at D 64 58,384 B. Registers then limit it: 65,536 / (3 × 128) caps a thread at 168 (ptxas spills past
// that rather than lose the third CTA). A deeper pipeline at 2 CTAs per SM is slower (docs/PERFORMANCE.md).
//
// Reference: src/backends/cpu/kernels/attention.ts (pagedAttention, queryLen 1). Arguments, launch,
// tolerance: kernels/attention_README.md, "attention_decode_mma". 16-bit dtypes only; HEAD_DIM a
// multiple of 16; G ≤ 16 (larger groups keep attention_decode_batch).
#include "attention_common.cuh"
#include "decode_rope.cuh"  // attention_decode_mma_rope: the fused RoPE prologue (RopeIn, rope.cuh)
#include "split_merge.cuh"  // load_partial, merge_batch, store_merged: attention_decode's merge

#if defined(KILN_DTYPE_F32)
#error "attention_decode_mma.cu: 16-bit dtypes only (fp32 engines keep attention_decode_batch)"
#endif
#if HEAD_DIM % 16 != 0
#error "attention_decode_mma.cu: HEAD_DIM must be a multiple of 16"
#endif
#if ATTN_GROUP > 16
#error "attention_decode_mma.cu: at most 16 query heads per kv head (one m16 tile)"
#endif

namespace attn {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * kWarp;
constexpr int kWarpKeys = 16;                       // keys per warp per tile: one k16 step of P·V
constexpr int kTileKeys = kMmaWarps * kWarpKeys;    // 64
constexpr int kLds = HEAD_DIM + 8;                  // shared row stride in elements: 16 bytes of padding, an
                                                    //   odd number of 16-byte units, so ldmatrix is conflict-free
constexpr int kChunks = HEAD_DIM / 8;               // 16-byte chunks per K/V row
constexpr int kAccLd = HEAD_DIM + 8;                // acc row stride in floats (the merge's stores, below)
constexpr int kMinSplitKeys = 64;   // attention_decode's: every non-empty split but the last takes ≥ this
constexpr int kSplitAlign = 16;     //   and split lengths are multiples of this
constexpr int kMergeBatch = 8;      // splits whose partials one thread of the merging CTA loads at once
constexpr int kMmaStages = HEAD_DIM <= 64 ? 3 : 2;  // K/V tiles in flight (HEAD_DIM > 128: unbuilt)
constexpr int kMinBlocks = HEAD_DIM <= 128 ? 3 : 1;  // CTAs per SM
constexpr int kSmemPerSm = 228 * 1024;  // sm_90's shared memory per SM; each CTA also costs 1 KiB reserved
constexpr int kSmemReserved = 1024;
static_assert(kMmaThreads % kChunks == 0, "a thread copies the same chunk of every row it copies");
constexpr int kRowsPerPass = kMmaThreads / kChunks;  // rows of a tile one pass of the CTA's copies covers

// acc rows are kAccLd = HEAD_DIM + 8 floats apart. The merge's float2 stores go by half-warp (16 lanes ×
// 8 bytes = one 128-byte wavefront): lane l writes row g = l / 4 (+ 8), floats dt·8 + 2 (l % 4) + {0, 1},
// bank (g·kAccLd + dt·8 + 2 (l % 4) + {0, 1}) mod 32. HEAD_DIM is a multiple of 32 (64, 128), so
// kAccLd ≡ 8 (mod 32) and a half-warp's 4 rows g₀ … g₀ + 3 start 8 banks apart: 8 g + 2 (l % 4) + {0, 1}
// covers banks 0–31 once. (Rows HEAD_DIM apart would start on the same bank: 4-way conflicts.)
template <int kStages>
struct alignas(16) MmaSmem {
  union {
    kiln_t tiles[kStages][2][kTileKeys * kLds];  // [stage][K, V][key][kLds]
    float acc[kMmaWarps][16][kAccLd];            // after the key loop: the warps' O rows
  } u;
  kiln_t q[16 * kLds];  // [row][kLds]: the group's queries, rows ≥ G zero
  kiln_t new_k[HEAD_DIM];  // attention_decode_mma_rope: the new key's rotated K row and its V row
  kiln_t new_v[HEAD_DIM];
  float m[kMmaWarps][16];
  float l[kMmaWarps][16];
  int last;  // split launches: this CTA counted last and merges the splits
};

static_assert(HEAD_DIM > 128 || kMinBlocks * (sizeof(MmaSmem<kMmaStages>) + kSmemReserved) <= kSmemPerSm,
              "attention_decode_mma: its CTAs per SM do not fit the SM's shared memory");
// The host's mirror (decode_mma.ts decodeMmaSharedBytes).
#if defined(DECODE_MMA_SMEM_BYTES)
static_assert(sizeof(MmaSmem<kMmaStages>) == DECODE_MMA_SMEM_BYTES,
              "DECODE_MMA_SMEM_BYTES is not sizeof(attn::MmaSmem<kMmaStages>)");
#endif

// Row index (slot · NUM_KV_HEADS + kvh) of key `pos` for kv head kvh in a pool (paged_kv.ts), its block from
// the table: an FP8 pool's scale index; times HEAD_DIM, the row's element offset (mma_kv_row).
__device__ __forceinline__ size_t mma_kv_index(const int* table, int table_step, int pos, int kvh) {
  return (size_t)(table[(pos / BLOCK_SIZE) * table_step] * BLOCK_SIZE + pos % BLOCK_SIZE) * NUM_KV_HEADS + kvh;
}

// Element offset of key `pos`'s row for kv head kvh in a pool.
__device__ __forceinline__ size_t mma_kv_row(const int* table, int table_step, int pos, int kvh) {
  return mma_kv_index(table, table_step, pos, kvh) * HEAD_DIM;
}

// Issues the copies of the tile of keys [base, base + kTileKeys) into `stage` (K rows, then V rows),
// all threads: keys ≥ end zero-filled; key `skip` not copied at all (the caller fills its slot later).
// The caller commits the group.
__device__ __forceinline__ void mma_load_tile(kiln_t* stage, const kiln_t* __restrict__ k_cache,
                                              const kiln_t* __restrict__ v_cache, const int* table, int table_step,
                                              int base, int end, int skip, int kvh) {
  const int ch = threadIdx.x % kChunks;
#pragma unroll
  for (int r = threadIdx.x / kChunks; r < kTileKeys; r += kRowsPerPass) {
    const int pos = base + r;
    if (pos == skip) continue;
    const bool in = pos < end;
    const size_t off = in ? mma_kv_row(table, table_step, pos, kvh) + (size_t)ch * 8 : 0;
    cp_async_16(stage + r * kLds + ch * 8, k_cache + off, in ? 16 : 0);
    cp_async_16(stage + kTileKeys * kLds + r * kLds + ch * 8, v_cache + off, in ? 16 : 0);
  }
}

// FP8 pools (attention_decode_mma_kv8, below): where V's scale goes. bf16 engines put it on P (fp32 P
// times the scale, then P's one rounding; V widened exactly): P·s keeps bf16's exponent range, so V costs
// no rounding of its own. fp16 engines widen V as kiln_t(fp32(e4m3·s)) (one rounding) and leave P as
// it is: P·s would fall into fp16's subnormals wherever s is small, losing P's low bits.
#if defined(KILN_DTYPE_F16)
constexpr bool kKv8ScaleP = false;
#else
constexpr bool kKv8ScaleP = true;
#endif

// One warp's 16 keys [key0, key0 + 16): their K rows at kt and V rows at vt, kLds elements apart (keys
// ≥ ctx masked): S = Q·Kᵀ, the online softmax of (m_r, l_r, o), O += P·V. kScaled (FP8 pools, whose K
// rows come unscaled): each score times its key's K scale ksc[e], and in bf16 engines (kKv8ScaleP: V
// rows unscaled too) each P value times its key's V scale vsc[e] before P is rounded to the dtype (l sums
// the unscaled P), for this lane's keys 2 (lane % 4) + (e & 1) + 8 (e >> 1). The caller skips warps with
// key0 ≥ ctx.
template <bool kScaled>
__device__ __forceinline__ void mma_warp_keys(const kiln_t* kt, const kiln_t* vt,
                                              const unsigned (&qa)[HEAD_DIM / 16][4], int key0, int ctx, float sl,
                                              const float (&ksc)[4], const float (&vsc)[4], float (&m_r)[2],
                                              float (&l_r)[2], float (&o)[HEAD_DIM / 8][4]) {
  const int lane = threadIdx.x % kWarp;
  float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};  // [key n8 tile][C fragment]
#pragma unroll
  for (int ks = 0; ks < HEAD_DIM / 16; ks++) {
    unsigned b[4];  // b[0], b[1]: keys 0–7; b[2], b[3]: keys 8–15 (dims 16 ks …)
    ldmatrix_x4(b, &kt[((lane & 7) + (lane >> 4) * 8) * kLds + ks * 16 + ((lane >> 3) & 1) * 8]);
    mma_16816(sc[0], qa[ks], b[0], b[1]);
    mma_16816(sc[1], qa[ks], b[2], b[3]);
  }
  unsigned pf[4];  // P as the A fragment of one k16 step (keys 0–15)
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float x[4];  // this lane's scores of row r: keys 2 (lane % 4) + {0, 1} and 8 + those
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int key = key0 + (e >> 1) * 8 + 2 * (lane & 3) + (e & 1);
      const float v = kScaled ? sc[e >> 1][2 * r + (e & 1)] * ksc[e] : sc[e >> 1][2 * r + (e & 1)];
      x[e] = key < ctx ? v * sl : neg_inf();
    }
    float mx = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
    mx = xor_max(mx, 1, 2);
    const float m_new = fmaxf(m_r[r], mx);
    const float m_use = m_new == neg_inf() ? 0.f : m_new;
    const float corr = score_exp(m_r[r] - m_use);
    m_r[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 4; e++) {
      x[e] = score_exp(x[e] - m_use);
      sum += x[e];
    }
    l_r[r] = l_r[r] * corr + sum;
#pragma unroll
    for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
      o[dt][2 * r] *= corr;
      o[dt][2 * r + 1] *= corr;
    }
    if constexpr (kScaled && kKv8ScaleP) {
#pragma unroll
      for (int e = 0; e < 4; e++) x[e] *= vsc[e];
    }
    pf[r] = pack2(x[0], x[1]);      // a0 (row lane/4), a1 (row lane/4 + 8): keys 0–7
    pf[2 + r] = pack2(x[2], x[3]);  // a2, a3: keys 8–15
  }
#pragma unroll
  for (int dp = 0; dp < HEAD_DIM / 16; dp++) {
    unsigned b[4];  // b[0], b[1]: dims 16 dp + 0–7; b[2], b[3]: dims 16 dp + 8–15 (keys 0–15)
    ldmatrix_x4_trans(b, &vt[((lane & 7) + ((lane >> 3) & 1) * 8) * kLds + dp * 16 + (lane >> 4) * 8]);
    mma_16816(o[2 * dp], pf, b[0], b[1]);
    mma_16816(o[2 * dp + 1], pf, b[2], b[3]);
  }
}

// Where a split's result goes (split launches): [S, NUM_HEADS, num_splits, HEAD_DIM] acc and
// [S, NUM_HEADS, num_splits] m and l, attention_decode's layout (attention_README.md).
struct MmaPartials {
  float* acc;
  float* m;
  float* l;
  int num_splits;
  int split;
};

// After the key loop: the warps' partials (rows < G) into shared memory (acc, m, l), a barrier, then each
// output element of sequence s, heads h0 … h0 + G − 1 merges the 4 warps: into out (one split), or into
// the split's partial (m: the warps' max in score units, l and acc relative to it; acc not written for
// an empty split, whose m = −∞ tells the merge to skip it). The caller's barrier must separate the acc
// stores from any earlier use of those bytes, and their reads from any later one.
__device__ __forceinline__ void mma_merge(kiln_t* __restrict__ out, const MmaPartials& p, float (*acc)[16][kAccLd],
                                          float (*sm_m)[16], float (*sm_l)[16], const float (&m_r)[2],
                                          const float (&l_r)[2], const float (&o)[HEAD_DIM / 8][4], int s, int h0) {
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int g = lane / 4 + 8 * r;
    const float l_row = xor_sum(l_r[r], 1, 2);
    if (g < ATTN_GROUP) {
#pragma unroll
      for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
        float2 v;
        v.x = o[dt][2 * r];
        v.y = o[dt][2 * r + 1];
        *reinterpret_cast<float2*>(&acc[warp][g][dt * 8 + 2 * (lane & 3)]) = v;  // conflict-free: kAccLd
      }
      if ((lane & 3) == 0) {
        sm_m[warp][g] = m_r[r];
        sm_l[warp][g] = l_row;
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < ATTN_GROUP * HEAD_DIM; i += kMmaThreads) {
    const int g = i / HEAD_DIM;
    const int d = i % HEAD_DIM;
    float mx = neg_inf();
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) mx = fmaxf(mx, sm_m[w][g]);
    float sum = 0.f, a = 0.f;
#pragma unroll
    for (int w = 0; w < kMmaWarps; w++) {
      const float mw = sm_m[w][g];
      if (mw != neg_inf()) {
        const float c = score_exp(mw - mx);
        sum = fmaf(sm_l[w][g], c, sum);
        a = fmaf(acc[w][g][d], c, a);
      }
    }
    const size_t row = (size_t)s * NUM_HEADS + h0 + g;  // [S, NUM_HEADS]
    if (p.num_splits == 1) {
      out[row * HEAD_DIM + d] = from_float(sum > 0.f ? a / sum : 0.f);
    } else {
      const size_t part = row * p.num_splits + p.split;
      if (mx != neg_inf()) p.acc[part * HEAD_DIM + d] = a;
      if (d == 0) {
        p.m[part] = mx;
        p.l[part] = sum;
      }
    }
  }
}

// The last CTA of a split launch's (sequence s, kv head) merges its heads' partials, each thread its own
// items (4 dims of a head), every split's m first, then acc, m and l of kMergeBatch splits at once (an
// empty split's acc is loaded but not used), with attention_decode's merge (split_merge.cuh: the same
// operations in the same order, through L2).
__device__ __forceinline__ void mma_merge_splits(kiln_t* __restrict__ out, const MmaPartials& p, int s, int h0) {
  constexpr int kItemsPerHead = HEAD_DIM / 4;
  const size_t row0 = (size_t)s * NUM_HEADS + h0;  // [S, NUM_HEADS] row of the group's first head
  for (int i = threadIdx.x; i < ATTN_GROUP * kItemsPerHead; i += kMmaThreads) {
    const int g = i / kItemsPerHead;
    const int d = i % kItemsPerHead * 4;
    const float* pm = p.m + (row0 + g) * p.num_splits;
    const float* pl = p.l + (row0 + g) * p.num_splits;
    const float* pa = p.acc + (row0 + g) * p.num_splits * HEAD_DIM + d;
    float mx = neg_inf();
    for (int z = 0; z < p.num_splits; z++) mx = fmaxf(mx, __ldcg(pm + z));
    float sum = 0.f, a[4] = {0.f, 0.f, 0.f, 0.f};
    for (int z0 = 0; z0 < p.num_splits; z0 += kMergeBatch) {
      float mz[kMergeBatch], lz[kMergeBatch], v[kMergeBatch][4];
#pragma unroll
      for (int b = 0; b < kMergeBatch; b++) {
        const int z = z0 + b;
        mz[b] = neg_inf();
        if (z < p.num_splits) {
          mz[b] = __ldcg(pm + z);
          lz[b] = __ldcg(pl + z);
          load_partial(pa + (size_t)z * HEAD_DIM, v[b]);
        }
      }
      merge_batch(mz, lz, v, mx, sum, a);
    }
    store_merged(out + (row0 + g) * HEAD_DIM + d, sum, a);
  }
}

// attention_decode_mma_rope's prologue, the work rope_qkv_fused does for this CTA's share of the step
// (rope.cuh: the same bits), after the PDL wait with the angles `an` computed before it, one head per warp:
// the group's G query heads, rotated (and normed), into sm.q as kiln_t rows; where the CTA's split `holds_new`
// key ctx − 1, that key's K row (normed, rotated) and its V row into sm.new_k / sm.new_v, and into the cache
// slot slot_mapping[s] (one CTA per (sequence, kv head) holds it). The caller's barrier publishes them.
template <class Smem>
__device__ __forceinline__ void mma_rope_prologue(Smem& sm, const kiln_t* __restrict__ q, const RopeIn& ri,
                                                  const kiln_t* __restrict__ k_cache,
                                                  const kiln_t* __restrict__ v_cache, int s, int kvh, int h0,
                                                  bool holds_new, const kiln::rope::Angles& an) {
  const int tasks = ATTN_GROUP + (holds_new ? 2 : 0);
  const int slot = ri.slot_mapping[s];
  const bool store = holds_new && slot >= 0 && slot < ri.num_slots;
  const size_t cache_row = ((size_t)slot * NUM_KV_HEADS + kvh) * HEAD_DIM;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  for (int t = warp; t < tasks; t += kMmaWarps) {
    if (t < ATTN_GROUP) {
      kiln::rope::Head h;
      kiln::rope::load(q + (size_t)s * ri.q_stride + (size_t)(h0 + t) * HEAD_DIM, h);
      if (ri.q_norm != nullptr) kiln::rope::norm(h, ri.q_norm, ri.norm_eps);
      if (ROTARY_DIM > 0) kiln::rope::rotate(h, an);
      kiln_t* const dst = sm.q + t * kLds;
      kiln::rope::for_each(h, [dst](int d, kiln_t x) { dst[d] = x; });
    } else if (t == ATTN_GROUP) {
      kiln::rope::Head h;
      kiln::rope::load(ri.k + (size_t)s * ri.kv_stride + (size_t)kvh * HEAD_DIM, h);
      if (ri.k_norm != nullptr) kiln::rope::norm(h, ri.k_norm, ri.norm_eps);
      if (ROTARY_DIM > 0) kiln::rope::rotate(h, an);
      kiln_t* const cache = const_cast<kiln_t*>(k_cache) + cache_row;  // the key loop reads sm.new_k instead
      kiln_t* const nk = sm.new_k;
      kiln::rope::for_each(h, [nk, cache, store](int d, kiln_t x) {
        nk[d] = x;
        if (store) cache[d] = x;
      });
    } else {
      const kiln_t* const src = ri.v + (size_t)s * ri.kv_stride + (size_t)kvh * HEAD_DIM;
      for (int d = lane; d < HEAD_DIM; d += kWarp) {
        const kiln_t x = src[d];
        sm.new_v[d] = x;
        if (store) const_cast<kiln_t*>(v_cache)[cache_row + d] = x;
      }
    }
  }
  for (int c = threadIdx.x; c < (16 - ATTN_GROUP) * kChunks; c += kMmaThreads)  // rows ≥ G: zeros
    *reinterpret_cast<uint4*>(&sm.q[(ATTN_GROUP + c / kChunks) * kLds + c % kChunks * 8]) = uint4{0u, 0u, 0u, 0u};
}

// The new key's K and V rows (from `k`, `v`: HEAD_DIM elements each) into row r of `stage`, by all threads.
__device__ __forceinline__ void mma_put_row(kiln_t* stage, int r, const kiln_t* k, const kiln_t* v) {
  for (int c = threadIdx.x; c < kChunks; c += kMmaThreads) {
    *reinterpret_cast<uint4*>(stage + r * kLds + c * 8) = *reinterpret_cast<const uint4*>(k + c * 8);
    *reinterpret_cast<uint4*>(stage + kTileKeys * kLds + r * kLds + c * 8) = *reinterpret_cast<const uint4*>(v + c * 8);
  }
}

// This CTA's keys: split `split` of num_splits over [lo, ctx), attention_decode's ranges (at least
// kMinSplitKeys, multiples of kSplitAlign; splits past the context empty; one split: [lo, ctx)), in
// `tiles` tiles of kTileKeys; the new key ctx − 1 (−1 for a padding row: ctx 0, no tiles) and its tile.
struct MmaKeys {
  int ks, ke, tiles;
  int new_pos;
  bool holds_new;  // ks ≤ new_pos < ke
  int new_tile;    // (new_pos − ks) / kTileKeys, when holds_new
};
__device__ __forceinline__ MmaKeys mma_keys(int ctx, int sliding_window, const MmaPartials& p) {
  const int lo = sliding_window > 0 ? max(0, ctx - sliding_window) : 0;
  int per = max((ctx - lo + p.num_splits - 1) / p.num_splits, kMinSplitKeys);
  per = (per + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  MmaKeys k;
  k.ks = min(ctx, lo + p.split * per);
  k.ke = min(ctx, k.ks + per);
  k.tiles = k.ke > k.ks ? (k.ke - k.ks + kTileKeys - 1) / kTileKeys : 0;
  k.new_pos = ctx - 1;
  k.holds_new = k.ks <= k.new_pos && k.new_pos < k.ke;
  k.new_tile = (k.new_pos - k.ks) / kTileKeys;
  return k;
}

// The group's queries (heads h0 … h0 + G − 1 of sequence s) as kiln_t rows of sm_q, rows ≥ G zero, 16
// bytes at a time, by all threads.
__device__ __forceinline__ void mma_load_q(kiln_t* sm_q, const kiln_t* __restrict__ q, int s, int h0) {
  for (int c = threadIdx.x; c < 16 * kChunks; c += kMmaThreads) {
    const int g = c / kChunks;
    uint4 v = {0u, 0u, 0u, 0u};
    if (g < ATTN_GROUP)
      v = *reinterpret_cast<const uint4*>(q + ((size_t)s * NUM_HEADS + h0 + g) * HEAD_DIM + c % kChunks * 8);
    *reinterpret_cast<uint4*>(&sm_q[g * kLds + c % kChunks * 8]) = v;
  }
}

// After the key loop (its copies complete, a barrier past every warp's last use of the tiles that sm.u.acc
// overlays): the PDL trigger, the profiling stops, the warps' merge into out or the split's partial, and
// in a split launch the count after which the last CTA of (s, kv head) merges the splits.
template <class Smem>
__device__ __forceinline__ void mma_finish(kiln_t* __restrict__ out, const MmaPartials& partials,
                                           int* __restrict__ split_counter, Smem& sm, const float (&m_r)[2],
                                           const float (&l_r)[2], const float (&o)[HEAD_DIM / 8][4], int s, int h0,
                                           int trigger, int stop) {
  if (trigger == 1) kiln::pdl_launch_dependents();
  if (stop >= 2) {  // profiling: keep the key loop's results alive (l is never negative), then leave
    if (l_r[0] < 0.f) out[0] = from_float(o[0][0]);
    return;
  }

  mma_merge(out, partials, sm.u.acc, sm.m, sm.l, m_r, l_r, o, s, h0);
  if (partials.num_splits == 1) return;

  // Count this split in; the CTA that counts last merges. Each thread fences its partial writes before
  // the count, and the last CTA fences after seeing it, so it reads every split's partial.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = split_counter + (size_t)s * gridDim.x + blockIdx.x;  // [S, NUM_KV_HEADS]
    const bool last = atomicAdd(counter, 1) == partials.num_splits - 1;
    if (last) *counter = 0;  // every split has counted: the next launch starts from zero
    __threadfence();
    sm.last = last;
  }
  __syncthreads();
  if (sm.last) mma_merge_splits(out, partials, s, h0);
}

// kRope (attention_decode_mma_rope): q is the unrotated q|k|v rows and `ri` says how to rotate them; the
// new key never comes from the cache (this kernel writes it there): every tile that holds it gets its
// rows from sm.new_k / new_v.
template <int kStages, bool kRope>
__device__ __forceinline__ void decode_mma(kiln_t* __restrict__ out, const MmaPartials& partials,
                                           int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                                           const kiln_t* __restrict__ k_cache, const kiln_t* __restrict__ v_cache,
                                           const int* __restrict__ context_len, const int* __restrict__ block_tables,
                                           int block_table_stride, int block_table_step, float scale,
                                           int sliding_window, int trigger, int stop, const RopeIn& ri) {
  extern __shared__ __align__(16) unsigned char decode_mma_smem[];
  using Smem = MmaSmem<kStages>;
  if (dynamic_smem_bytes() < sizeof(Smem)) __trap();  // the launch must pass sizeof(MmaSmem<kStages>)
  Smem& sm = *reinterpret_cast<Smem*>(decode_mma_smem);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int kvh = blockIdx.x;
  const int h0 = kvh * ATTN_GROUP;  // first query head of the group
  const int s = blockIdx.y;
  const int* table = block_tables + (size_t)s * block_table_stride;
  const MmaKeys k = mma_keys(context_len[s], sliding_window, partials);
  // Tile t into stage t % kStages (an empty group past the last tile); before the wait the new key is
  // left out (`pre`), and with kRope always: after the wait its rows come from shared memory, written
  // into the stage here (the stage is free: its last tile was computed before this issue's barrier).
  auto issue = [&](int t, bool pre) {
    if (t < k.tiles) {
      kiln_t* const stage = sm.u.tiles[t % kStages][0];
      mma_load_tile(stage, k_cache, v_cache, table, block_table_step, k.ks + t * kTileKeys, k.ke,
                    pre || kRope ? k.new_pos : -1, kvh);
      if (kRope && !pre && k.holds_new && t == k.new_tile)
        mma_put_row(stage, (k.new_pos - k.ks) % kTileKeys, sm.new_k, sm.new_v);
    }
    cp_async_commit();
  };
  // Before the wait (pdl.cuh): the step metadata and keys < ctx − 1, cached by earlier steps.
#pragma unroll
  for (int t = 0; t < kStages - 1; t++) issue(t, true);
  kiln::rope::Angles an{};  // attention_decode_mma_rope: the new token's angles, from the step metadata
  if constexpr (kRope) an = kiln::rope::angles(ri.rope, s);

  kiln::pdl_wait();  // q and the new key come from the kernels before (see pdl.cuh)
  if (trigger == 0) kiln::pdl_launch_dependents();
  if (stop == 1) {  // profiling: let the pre-wait copies land, then leave
    cp_async_wait<0>();
    return;
  }
  if constexpr (kRope) {
    mma_rope_prologue(sm, q, ri, k_cache, v_cache, s, kvh, h0, k.holds_new, an);
    __syncthreads();  // the rotated rows, before any thread copies the new key's
  } else {
    mma_load_q(sm.q, q, s, h0);
  }
  // The new key's rows into their slot when a pre-wait tile holds it (the tiles issued from here on
  // copy it themselves, or with kRope take it from shared memory). No copy in flight writes that slot.
  if (k.holds_new && k.new_tile < kStages - 1) {
    kiln_t* const stage = sm.u.tiles[k.new_tile % kStages][0];
    const int r = (k.new_pos - k.ks) % kTileKeys;
    if constexpr (kRope) {
      mma_put_row(stage, r, sm.new_k, sm.new_v);
    } else {
      const size_t off = mma_kv_row(table, block_table_step, k.new_pos, kvh);
      mma_put_row(stage, r, k_cache + off, v_cache + off);
    }
  }
  __syncthreads();

  // Q as A fragments, once: qa[kk] covers dims [16 kk, 16 kk + 16).
  unsigned qa[HEAD_DIM / 16][4];
#pragma unroll
  for (int kk = 0; kk < HEAD_DIM / 16; kk++) ldmatrix_x4(qa[kk], &sm.q[(lane & 15) * kLds + kk * 16 + (lane >> 4) * 8]);

  // This thread's accumulator rows: r = 0 is row lane / 4, r = 1 row lane / 4 + 8 (C fragment layout).
  const float sl = scale * kExpScale;
  const float unscaled[4] = {};  // mma_warp_keys<false> reads no K or V scales
  float m_r[2] = {neg_inf(), neg_inf()};
  float l_r[2] = {0.f, 0.f};  // this lane's keys only; summed over the row's 4 lanes at the end
  float o[HEAD_DIM / 8][4];   // O[row][8 dt + 2 (lane % 4) + {0, 1}]: [dt][{0, 1}] row r = 0, [dt][{2, 3}] r = 1
#pragma unroll
  for (int dt = 0; dt < HEAD_DIM / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  for (int t = 0; t < k.tiles; t++) {
    issue(t + kStages - 1, false);
    cp_async_wait<kStages - 1>();  // tile t has landed (this thread's copies) …
    __syncthreads();               // … and every thread's
    const int key0 = k.ks + t * kTileKeys + warp * kWarpKeys;
    // warp-uniform: a warp past the split has nothing to do in this tile
    if (key0 < k.ke) {
      const kiln_t* const kt = sm.u.tiles[t % kStages][0] + warp * kWarpKeys * kLds;
      mma_warp_keys<false>(kt, kt + kTileKeys * kLds, qa, key0, k.ke, sl, unscaled, unscaled, m_r, l_r, o);
    }
    __syncthreads();  // every warp is done with this stage before the next issue overwrites it
  }
  cp_async_wait<0>();  // (only empty groups remain) the stages are free: acc reuses them
  mma_finish(out, partials, split_counter, sm, m_r, l_r, o, s, h0, trigger, stop);
}

// ---- FP8 pools (attention_decode_mma_kv8) ----
// A row is HEAD_DIM E4M3 bytes and an fp32 scale (kv_fp8.cuh). Each warp stages its own 16 keys of a
// tile, bytes and scales by cp.async, then widens them into kiln_t rows of its own tile for
// mma_warp_keys: K's E4M3 values as they are (exact in fp16 and bf16: conversions only; the K scale
// multiplies the fp32 scores); V's as they are in bf16 engines (the scale multiplies fp32 P before its
// rounding, kKv8ScaleP) and as kiln_t(fp32(e4m3 · scale)) in fp16 engines (one rounding). A warp reads
// only what it staged, so the key loop needs no block barrier: warp barriers order a warp's copies,
// widening and mma.
//
//   tile t:  cp.async bytes|scales → warp's stage t % kStages ─┐ issued kStages − 1 tiles ahead
//   wait, warp barrier, widen into the warp's tile, warp barrier, S, softmax, P·V ◀─┘
struct alignas(16) MmaKv8Stage {
  unsigned char k[kWarpKeys * HEAD_DIM];  // [key][HEAD_DIM] E4M3
  unsigned char v[kWarpKeys * HEAD_DIM];
  float k_scale[kWarpKeys];
  float v_scale[kWarpKeys];
};

template <int kStages>
struct alignas(16) MmaSmemKv8 {
  union {
    struct {
      MmaKv8Stage stage[kMmaWarps][kStages];
      kiln_t tile[kMmaWarps][2][kWarpKeys * kLds];  // [warp][K, V][key][kLds]
    } w;
    float acc[kMmaWarps][16][kAccLd];  // after the key loop: the warps' O rows
  } u;
  kiln_t q[16 * kLds];
  float m[kMmaWarps][16];
  float l[kMmaWarps][16];
  int last;
};

static_assert(HEAD_DIM > 128 || kMinBlocks * (sizeof(MmaSmemKv8<kMmaStages>) + kSmemReserved) <= kSmemPerSm,
              "attention_decode_mma_kv8: its CTAs per SM do not fit the SM's shared memory");
// The host's mirror (decode_mma.ts decodeMmaKv8SharedBytes).
#if defined(DECODE_MMA_KV8_SMEM_BYTES)
static_assert(sizeof(MmaSmemKv8<kMmaStages>) == DECODE_MMA_KV8_SMEM_BYTES,
              "DECODE_MMA_KV8_SMEM_BYTES is not sizeof(attn::MmaSmemKv8<kMmaStages>)");
#endif

constexpr int kKv8Chunks = HEAD_DIM / 16;  // 16-byte chunks of an E4M3 row
constexpr int kKv8Pieces = HEAD_DIM / 8;   // 8-byte pieces: 8 values, one 16-byte kiln_t store

// Issues this warp's copies of keys [base, base + 16) into `st` (rows and scales; keys ≥ end zero-filled,
// key `skip` not copied). The caller commits the group.
__device__ __forceinline__ void mma_kv8_load(MmaKv8Stage& st, const unsigned char* __restrict__ k_cache,
                                             const unsigned char* __restrict__ v_cache,
                                             const float* __restrict__ k_scale, const float* __restrict__ v_scale,
                                             const int* table, int table_step, int base, int end, int skip,
                                             int kvh) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int c = lane; c < kWarpKeys * kKv8Chunks; c += kWarp) {
    const int r = c / kKv8Chunks, ch = c % kKv8Chunks;
    const int pos = base + r;
    if (pos == skip) continue;
    const bool in = pos < end;
    const size_t off = in ? mma_kv_row(table, table_step, pos, kvh) + (size_t)ch * 16 : 0;
    cp_async_16(st.k + r * HEAD_DIM + ch * 16, k_cache + off, in ? 16 : 0);
    cp_async_16(st.v + r * HEAD_DIM + ch * 16, v_cache + off, in ? 16 : 0);
  }
  const int r = lane % kWarpKeys;  // lanes 0–15: K scales, 16–31: V scales
  const int pos = base + r;
  if (pos != skip) {
    const bool in = pos < end;
    const size_t row = in ? mma_kv_index(table, table_step, pos, kvh) : 0;
    if (lane < kWarpKeys)
      cp_async_4(st.k_scale + r, k_scale + row, in ? 4 : 0);
    else
      cp_async_4(st.v_scale + r, v_scale + row, in ? 4 : 0);
  }
}

// 8 E4M3 bytes (low byte first) as 8 kiln_t values, exactly: E4M3 → fp16 is exact (one conversion per
// pair, the fp16 engine's operand as it is), and every E4M3 value is a bf16 value (3 mantissa bits,
// exponents within bf16's), so the bf16 engine's one rounding of the fp32 pair changes nothing.
__device__ __forceinline__ uint4 mma_kv8_widen8(uint2 b) {
  unsigned w[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const unsigned word = i < 2 ? b.x : b.y;
    const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(word >> (16 * (i & 1))), __NV_E4M3);
#if defined(KILN_DTYPE_F16)
    w[i] = (unsigned)raw.x | (unsigned)raw.y << 16;
#else
    const __half2 h = *reinterpret_cast<const __half2*>(&raw);
    w[i] = pack2(__low2float(h), __high2float(h));
#endif
  }
  return uint4{w[0], w[1], w[2], w[3]};
}

// 8 E4M3 bytes (low byte first) times s, as 8 kiln_t values (kv_fp8.cuh decode2, then one rounding).
__device__ __forceinline__ uint4 mma_kv8_widen8_scaled(uint2 b, float s) {
  unsigned w[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const unsigned word = i < 2 ? b.x : b.y;
    float lo, hi;
    kiln::kv8::decode2((unsigned short)(word >> (16 * (i & 1))), s, lo, hi);
    w[i] = pack2(lo, hi);
  }
  return uint4{w[0], w[1], w[2], w[3]};
}

// The warp's staged keys into its tile (kt: K rows, vt: V rows, kLds apart), by the warp's lanes.
__device__ __forceinline__ void mma_kv8_widen(const MmaKv8Stage& st, kiln_t* kt, kiln_t* vt) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int c = lane; c < kWarpKeys * kKv8Pieces; c += kWarp) {
    const int r = c / kKv8Pieces, p = c % kKv8Pieces;
    const uint2 kb = *reinterpret_cast<const uint2*>(st.k + r * HEAD_DIM + p * 8);
    const uint2 vb = *reinterpret_cast<const uint2*>(st.v + r * HEAD_DIM + p * 8);
    *reinterpret_cast<uint4*>(kt + r * kLds + p * 8) = mma_kv8_widen8(kb);
    *reinterpret_cast<uint4*>(vt + r * kLds + p * 8) =
        kKv8ScaleP ? mma_kv8_widen8(vb) : mma_kv8_widen8_scaled(vb, st.v_scale[r]);
  }
}

template <int kStages>
__device__ __forceinline__ void decode_mma_kv8(kiln_t* __restrict__ out, const MmaPartials& partials,
                                               int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                                               const unsigned char* __restrict__ k_cache,
                                               const unsigned char* __restrict__ v_cache,
                                               const int* __restrict__ context_len,
                                               const int* __restrict__ block_tables, int block_table_stride,
                                               int block_table_step, float scale, int sliding_window, int trigger,
                                               int stop, const float* __restrict__ k_scale,
                                               const float* __restrict__ v_scale) {
  extern __shared__ __align__(16) unsigned char decode_mma_smem[];
  using Smem = MmaSmemKv8<kStages>;
  if (dynamic_smem_bytes() < sizeof(Smem)) __trap();  // the launch must pass sizeof(MmaSmemKv8<kStages>)
  Smem& sm = *reinterpret_cast<Smem*>(decode_mma_smem);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int kvh = blockIdx.x;
  const int h0 = kvh * ATTN_GROUP;
  const int s = blockIdx.y;
  const int* table = block_tables + (size_t)s * block_table_stride;
  const MmaKeys k = mma_keys(context_len[s], sliding_window, partials);
  kiln_t* const kt = sm.u.w.tile[warp][0];
  kiln_t* const vt = sm.u.w.tile[warp][1];
  // This warp's keys of tile t into its stage t % kStages (an empty group past the last tile, or where the
  // warp's keys start past the split: it computes nothing there); before the wait, not the new key.
  auto issue = [&](int t, bool pre) {
    const int base = k.ks + t * kTileKeys + warp * kWarpKeys;
    if (t < k.tiles && base < k.ke)
      mma_kv8_load(sm.u.w.stage[warp][t % kStages], k_cache, v_cache, k_scale, v_scale, table, block_table_step,
                   base, k.ke, pre ? k.new_pos : -1, kvh);
    cp_async_commit();
  };
#pragma unroll
  for (int t = 0; t < kStages - 1; t++) issue(t, true);

  kiln::pdl_wait();  // q and the new key's row and scale come from the kernels before (see pdl.cuh)
  if (trigger == 0) kiln::pdl_launch_dependents();
  if (stop == 1) {
    cp_async_wait<0>();
    return;
  }
  mma_load_q(sm.q, q, s, h0);
  // The new key's bytes and scales into its row of the warp's stage when a pre-wait tile holds it, by the
  // warp that owns the row (no copy in flight writes it).
  const int new_r = (k.new_pos - k.ks) % kTileKeys;
  if (k.holds_new && k.new_tile < kStages - 1 && warp == new_r / kWarpKeys) {
    MmaKv8Stage& st = sm.u.w.stage[warp][k.new_tile % kStages];
    const int r = new_r % kWarpKeys;
    const size_t row = mma_kv_index(table, block_table_step, k.new_pos, kvh), off = row * HEAD_DIM;
    for (int c = lane; c < kKv8Chunks; c += kWarp) {
      *reinterpret_cast<uint4*>(st.k + r * HEAD_DIM + c * 16) = *reinterpret_cast<const uint4*>(k_cache + off + c * 16);
      *reinterpret_cast<uint4*>(st.v + r * HEAD_DIM + c * 16) = *reinterpret_cast<const uint4*>(v_cache + off + c * 16);
    }
    if (lane == 0) {
      st.k_scale[r] = k_scale[row];
      st.v_scale[r] = v_scale[row];
    }
  }
  __syncthreads();  // the queries (and the new row, for its warp)

  unsigned qa[HEAD_DIM / 16][4];
#pragma unroll
  for (int kk = 0; kk < HEAD_DIM / 16; kk++) ldmatrix_x4(qa[kk], &sm.q[(lane & 15) * kLds + kk * 16 + (lane >> 4) * 8]);

  const float sl = scale * kExpScale;
  float m_r[2] = {neg_inf(), neg_inf()};
  float l_r[2] = {0.f, 0.f};
  float o[HEAD_DIM / 8][4];
#pragma unroll
  for (int dt = 0; dt < HEAD_DIM / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;

  for (int t = 0; t < k.tiles; t++) {
    issue(t + kStages - 1, false);  // into the stage widened in the last iteration
    cp_async_wait<kStages - 1>();   // tile t has landed (this lane's copies) …
    __syncwarp();                   // … and the warp's; the last iteration's mma is done with the tile
    const int key0 = k.ks + t * kTileKeys + warp * kWarpKeys;
    if (key0 < k.ke) {  // warp-uniform
      const MmaKv8Stage& st = sm.u.w.stage[warp][t % kStages];
      mma_kv8_widen(st, kt, vt);
      float ksc[4], vsc[4];  // this lane's keys' K and V scales (mma_warp_keys' order)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        ksc[e] = st.k_scale[(e >> 1) * 8 + 2 * (lane & 3) + (e & 1)];
        vsc[e] = st.v_scale[(e >> 1) * 8 + 2 * (lane & 3) + (e & 1)];
      }
      __syncwarp();  // the widened rows, before any lane's ldmatrix
      mma_warp_keys<true>(kt, vt, qa, key0, k.ke, sl, ksc, vsc, m_r, l_r, o);
    }
  }
  cp_async_wait<0>();  // (only empty groups remain)
  __syncthreads();     // every warp is done with its stages and tile: acc overlays them
  mma_finish(out, partials, split_counter, sm, m_r, l_r, o, s, h0, trigger, stop);
}

}  // namespace attn

// attention_decode's arguments (the same list so the runtime launches any decode kernel with one argument
// set; stop 3 acts as 2). num_splits = grid.z: 1 writes out directly (the partials and counters unused,
// may be null); more split each context as attention_decode does, with its partial layout, and leave the
// counters [S, NUM_KV_HEADS] zero as they found them. Grid (NUM_KV_HEADS, S, num_splits), block 128, sizeof(attn::MmaSmem<kMmaStages>) bytes of dynamic shared memory
// (decode_mma.ts decodeMmaSharedBytes; above 48 KiB, the launch opts in).
extern "C" __global__ void __launch_bounds__(attn::kMmaThreads, attn::kMinBlocks)
    attention_decode_mma(kiln_t* __restrict__ out, float* __restrict__ partial_acc, float* __restrict__ partial_m,
                         float* __restrict__ partial_l, int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                         const kiln_t* __restrict__ k_cache, const kiln_t* __restrict__ v_cache,
                         const int* __restrict__ context_len, const int* __restrict__ block_tables,
                         int block_table_stride, int block_table_step, int num_splits, float scale,
                         int sliding_window, int trigger, int stop) {
  const attn::MmaPartials partials = {partial_acc, partial_m, partial_l, num_splits, (int)blockIdx.z};
  attn::decode_mma<attn::kMmaStages, false>(out, partials, split_counter, q, k_cache, v_cache, context_len,
                                            block_tables, block_table_stride, block_table_step, scale,
                                            sliding_window, trigger, stop, attn::RopeIn{});
}

// attention_decode_mma with RoPE fused in (attention_decode_rope's arguments: q is the unrotated q|k|v
// rows, row s at q + s·q_stride, and rope_qkv_fused's inputs after stop): the same bits as rope_qkv_fused
// then attention_decode_mma, the cache included.
extern "C" __global__ void __launch_bounds__(attn::kMmaThreads, attn::kMinBlocks)
    attention_decode_mma_rope(kiln_t* __restrict__ out, float* __restrict__ partial_acc,
                              float* __restrict__ partial_m, float* __restrict__ partial_l,
                              int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                              const kiln_t* __restrict__ k_cache, const kiln_t* __restrict__ v_cache,
                              const int* __restrict__ context_len, const int* __restrict__ block_tables,
                              int block_table_stride, int block_table_step, int num_splits, float scale,
                              int sliding_window, int trigger, int stop, const kiln_t* __restrict__ k_new,
                              const kiln_t* __restrict__ v_new, int q_stride, int kv_stride,
                              const int* __restrict__ positions, const int* __restrict__ slot_mapping,
                              const float* __restrict__ inv_freq, const int* __restrict__ inv_freq_index,
                              float attention_scaling, const kiln_t* __restrict__ q_norm,
                              const kiln_t* __restrict__ k_norm, float norm_eps, int num_slots) {
  const attn::MmaPartials partials = {partial_acc, partial_m, partial_l, num_splits, (int)blockIdx.z};
  const attn::RopeIn ri = {k_new, v_new, q_stride, kv_stride, {positions, inv_freq, inv_freq_index, attention_scaling},
                           slot_mapping, q_norm, k_norm, norm_eps, num_slots};
  attn::decode_mma<attn::kMmaStages, true>(out, partials, split_counter, q, k_cache, v_cache, context_len,
                                           block_tables, block_table_stride, block_table_step, scale,
                                           sliding_window, trigger, stop, ri);
}

// attention_decode_mma over FP8 pools (attention_decode_batch_kv8's arguments: the pools as E4M3 bytes,
// the row scales k_scale, v_scale [numBlocks, BLOCK_SIZE, NUM_KV_HEADS] fp32 at the end). Grid and block
// as attention_decode_mma; sizeof(attn::MmaSmemKv8<kMmaStages>) bytes of dynamic shared memory
// (decode_mma.ts decodeMmaKv8SharedBytes).
extern "C" __global__ void __launch_bounds__(attn::kMmaThreads, attn::kMinBlocks)
    attention_decode_mma_kv8(kiln_t* __restrict__ out, float* __restrict__ partial_acc,
                             float* __restrict__ partial_m, float* __restrict__ partial_l,
                             int* __restrict__ split_counter, const kiln_t* __restrict__ q,
                             const unsigned char* __restrict__ k_cache, const unsigned char* __restrict__ v_cache,
                             const int* __restrict__ context_len, const int* __restrict__ block_tables,
                             int block_table_stride, int block_table_step, int num_splits, float scale,
                             int sliding_window, int trigger, int stop, const float* __restrict__ k_scale,
                             const float* __restrict__ v_scale) {
  const attn::MmaPartials partials = {partial_acc, partial_m, partial_l, num_splits, (int)blockIdx.z};
  attn::decode_mma_kv8<attn::kMmaStages>(out, partials, split_counter, q, k_cache, v_cache, context_len,
                                         block_tables, block_table_stride, block_table_step, scale, sliding_window,
                                         trigger, stop, k_scale, v_scale);
}
