// Paged prefill attention on Hopper warpgroup MMA (sm_90a wgmma), FlashAttention-3 style, over packed
// variable-length sequences. Same arguments, masking, paging and launch grid as attention_prefill
// (attention_prefill.cu; kernels/attention_README.md), for fp16/bf16 q, out and KV pools and HEAD_DIM 64
// or 128 (the launch routes everything else to attention_prefill, prefill_tiles.ts).
//
// FlashAttention-3's warp specialization. One CTA of 384 threads computes tiles of kBlockM = 128 query rows
// of one head of one sequence: warpgroup 0 is the producer, warpgroups 1 and 2 the consumers, consumer c
// owning rows 64·c … 64·c+63. The producer (setmaxnreg down to kProducerRegs) gathers Q and the K/V tiles
// from the paged pools by 16-byte cp.async into kStages buffers, and after each lands (its own
// cp.async.wait_group, then fence.proxy.async: wgmma reads shared memory through the async proxy) arrives
// on the buffer's "full" mbarrier; the consumers (setmaxnreg up to kConsumerRegs) wait on "full", and
// arrive on "empty" once the wgmma that read the buffer has completed, which the producer waits for
// before it refills it. K and V have their own barriers (a tile's K is released after its S, its V only
// after its deferred P·V). Per key tile of kBlockN = 128 keys and consumer:
//   S = Q·Kᵀ     wgmma m64n128k16, A (Q) and B (K) from shared memory by descriptor, HEAD_DIM/16 k-steps,
//                the first with scale-d 0; fp32 accumulators, 64 a thread
//   softmax      online, in registers (exp2 with log2 e folded into the scale); per-element masks only on
//                tiles that cross the warpgroup's diagonal or its window's lower edge
//   O += P·V     wgmma m64nDk16, A = P rounded to the element type in registers (the accumulator
//                layout of S is the A-fragment layout of P: no shuffle), B (V) from shared memory
//                MN-major (imm-trans-b), 8 k-steps of 16 keys
// Intra-warpgroup overlap: tile i's P·V is issued right after tile i + 1's S = Q·Kᵀ and runs during tile
// i + 1's softmax. Inter-warpgroup ping-pong: the two consumers take turns issuing their MMAs (named
// barriers 1 and 2), so one's softmax runs while the other's MMAs hold the tensor cores. Both consumers
// walk the same key tiles (those any row of the CTA's tile may see); masks cover the rest.
//
// Shared-memory layout (attention_README.md, "attention_prefill_wgmma"): Q [kBlockM][HEAD_DIM], then
// kStages × (K [kBlockN][HEAD_DIM], V [kBlockN][HEAD_DIM]), each tile "interleaved" in 8-row × 16-byte
// core matrices (the wgmma no-swizzle canonical layout, attention_wgmma.cuh):
//   element (r, d) at  (r/8)·8·HEAD_DIM + (d/8)·64 + (r%8)·8 + d%8   (elements; r = row / key)
// so one 16-byte chunk (8 consecutive d of one row) is contiguous, and chunk c of the copy order sits at
// element 8c: 8 consecutive lanes write the 8 rows of one core matrix (128 contiguous bytes, no bank
// conflicts). With G = 8·HEAD_DIM·2 bytes (one group of 8 rows), the descriptors are
//   Q (A, K-major):  LBO 128 (next 8 d), SBO G (next 8 rows)
//   K (B, K-major):  LBO 128 (next 8 d), SBO G (next 8 keys)
//   V (B, MN-major): LBO G (next 8 keys, the K direction), SBO 128 (next 8 d, the N direction)
#include "attention_common.cuh"
#include "attention_tile.cuh"
#include "attention_wgmma.cuh"

#if defined(KILN_DTYPE_F32)
#error "attention_prefill_wgmma: fp16/bf16 only"
#endif

// wgmma exists on sm_90a only (the arch-specific target the engine builds Hopper cubins for), and the
// kernel takes HEAD_DIM 64 and 128. Elsewhere (other targets, other heads) the export is a kernel that
// traps, never launched: the routing (prefill_tiles.ts) checks the device, dtype and head size.
#if (HEAD_DIM == 64 || HEAD_DIM == 128) && \
    (!defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(KILN_WGMMA_EMULATED))
#define ATTN_WGMMA_AVAILABLE 1
#else
#define ATTN_WGMMA_AVAILABLE 0
#endif

#if ATTN_WGMMA_AVAILABLE
namespace attn {
namespace wg {

constexpr int kBlockM = 128;  // query rows per CTA: two warpgroups × 64
constexpr int kBlockN = 128;  // keys per tile
constexpr int kProducerThreads = 128;  // warpgroup 0
constexpr int kConsumerThreads = 256;  // warpgroups 1 and 2
constexpr int kThreads = kProducerThreads + kConsumerThreads;  // the __launch_bounds__ of the export
static_assert(kThreads == 384, "attention_prefill_wgmma's __launch_bounds__");
// Registers per thread after setmaxnreg (launched at 65,536 / 384 = 168): the producer's few, the
// consumers' S, O and P fragments (128 · 24 + 256 · 240 ≤ 65,536).
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
constexpr int kStages = HEAD_DIM == 128 ? 3 : 4;  // K/V buffers; 3 × 64 KiB at D 128, 4 × 32 KiB at D 64
constexpr int kChunks = HEAD_DIM / 8;              // 16-byte chunks per row
constexpr int kTileElems = kBlockN * HEAD_DIM;
constexpr int kSmemElems = kBlockM * HEAD_DIM + 2 * kStages * kTileElems;
static_assert(kSmemElems * 2 + (2 + 4 * kStages) * 8 <= 227 * 1024, "shared memory of one CTA (barriers included)");
static_assert(kStages >= 2, "the producer fills one stage while the consumers read another");
static_assert((kBlockN * kChunks) % kProducerThreads == 0 && (kBlockM * kChunks) % kProducerThreads == 0, "copy shape");

// Copy chunk c (0 … rows·kChunks) of a tile: row (c%8) + 8·(c / (8·kChunks)), columns 8·((c/8) % kChunks)
// + 0…7, stored at element 8c of the interleaved layout.
__device__ __forceinline__ int chunk_row(int c) { return c % 8 + 8 * (c / (8 * kChunks)); }
__device__ __forceinline__ int chunk_col(int c) { return 8 * ((c / 8) % kChunks); }

constexpr unsigned kGroupBytes = 8 * HEAD_DIM * 2;  // 8 rows of a tile: SBO of Q and K, LBO of V
constexpr int kN = kBlockN / 2;   // S accumulators per thread
constexpr int kD = HEAD_DIM / 2;  // O accumulators per thread

// S[64 × kBlockN] of the warpgroup = Q rows [64·wg, +64) · K tileᵀ.
__device__ __forceinline__ void mma_qk(float (&s)[kN], const kiln_t* sq_wg, const kiln_t* sk) {
  const unsigned qa = smem_addr(sq_wg), ka = smem_addr(sk);
#pragma unroll
  for (int ks = 0; ks < HEAD_DIM / 16; ks++) {  // k-step: d [16·ks, +16) = core-matrix columns 2ks, 2ks+1
    const unsigned long long da = wgmma_desc(qa + ks * 256, 128, kGroupBytes);
    const unsigned long long db = wgmma_desc(ka + ks * 256, 128, kGroupBytes);
    wgmma_ss_n128(s, da, db, ks > 0);
  }
}

// O[64 × HEAD_DIM] += P[64 × kBlockN] · V tile; p[kt] the A fragments of keys [16·kt, +16).
__device__ __forceinline__ void mma_pv(float (&o)[kD], const unsigned (&p)[kBlockN / 16][4], const kiln_t* sv) {
  const unsigned va = smem_addr(sv);
#pragma unroll
  for (int kt = 0; kt < kBlockN / 16; kt++) {  // keys [16·kt, +16) = row groups 2kt, 2kt+1
    const unsigned long long db = wgmma_desc(va + kt * 2 * kGroupBytes, kGroupBytes, 128);
#if HEAD_DIM == 128
    wgmma_rs_n128_tb(o, p[kt], db, 1);
#else
    wgmma_rs_n64_tb(o, p[kt], db, 1);
#endif
  }
}

// The online softmax of one tile's scores s (in place: s becomes P, unnormalized, in fp32), rows
// prow[0] = g and prow[1] = g + 8 of the thread: s[i] is row (i/2)%2's key n0 + 8·(i/4) + 2·tq + i%2. m, l:
// the rows' running max (log2 domain) and this thread's share of their sums; corr: what O must be scaled
// by. Masks only where need_mask (tiles crossing the diagonal or the window's edge).
__device__ __forceinline__ void softmax(float (&s)[kN], float (&m)[2], float (&l)[2], float (&corr)[2], bool need_mask,
                                        int n0, int tq, const int (&prow)[2], int window, float sl2) {
#pragma unroll
  for (int i = 0; i < kN; i++) {
    s[i] *= sl2;
    if (need_mask && masked(n0 + 8 * (i / 4) + 2 * tq + i % 2, prow[(i / 2) % 2], window)) s[i] = neg_inf();
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float mx = neg_inf();
#pragma unroll
    for (int i = 0; i < kN; i++)
      if ((i / 2) % 2 == r) mx = fmaxf(mx, s[i]);
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, 2));
    const float m_new = fmaxf(m[r], mx);
    const float m_use = m_new == neg_inf() ? 0.f : m_new;  // a row with no key yet: keep 0s, no NaN
    corr[r] = score_exp(m[r] - m_use);
    m[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kN; i++) {
      if ((i / 2) % 2 == r) {
        s[i] = score_exp(s[i] - m_use);
        sum += s[i];
      }
    }
    l[r] = l[r] * corr[r] + sum;
  }
}

// The mbarriers of the pipeline (static shared memory): Q's, and each stage's K and V, full and empty.
struct Barriers {
  unsigned long long q_full, q_empty;
  unsigned long long k_full[kStages], k_empty[kStages], v_full[kStages], v_empty[kStages];
};

// K or V of keys [n0, n0 + kBlockN) → dst by the producer's 128 threads (cp.async, one group); keys outside
// [t.kv_lo, t.kv_hi) are zeros (masked for every row that may see them).
__device__ __forceinline__ void load_tile_rows(kiln_t* dst, const kiln_t* pool, const int* table, int n0, const Tile& t,
                                               int kvh, int tid) {
#pragma unroll 2  // few registers: the producer runs on kProducerRegs
  for (int j = 0; j < kBlockN * kChunks / kProducerThreads; j++) {
    const int c = tid + j * kProducerThreads;
    const int pos = n0 + chunk_row(c);
    const int b = pos >= t.kv_lo && pos < t.kv_hi ? __ldg(table + pos / BLOCK_SIZE) : -1;
    const size_t off = b >= 0 ? ((size_t)(b * BLOCK_SIZE + pos % BLOCK_SIZE) * NUM_KV_HEADS + kvh) * HEAD_DIM + chunk_col(c) : 0;
    cp_async_16(dst + 8 * c, pool + off, b >= 0 ? 16 : 0);
  }
  cp_async_commit();
}

// The key tiles the CTA's query tile walks: [n_begin, n_begin + n_tiles·kBlockN) ⊇ [kv_lo, kv_hi).
__device__ __forceinline__ int first_key_tile(const Tile& t) { return t.kv_lo / kBlockN * kBlockN; }
__device__ __forceinline__ int key_tiles(const Tile& t) {
  return (t.kv_hi - first_key_tile(t) + kBlockN - 1) / kBlockN;
}

// The producer's part of one query tile: Q, then every key tile's K and V. `g` counts the key tiles this
// CTA has loaded (its stage and phase), `qi` its query tiles (Q's phase). Each tile's copies are waited
// for one K later (cp.async.wait_group 1 after the next K's issue), fenced for the async proxy, and
// announced; a full buffer is refilled only after both consumers released it.
__device__ __forceinline__ void produce(const kiln_t* q, const kiln_t* k_cache, const kiln_t* v_cache, const int* table,
                                        const Tile& t, int h, kiln_t* sQ, kiln_t* sKV, Barriers& bar, int& g, int qi) {
  const int tid = (int)threadIdx.x;  // 0 … 127
  const int kvh = h / ATTN_GROUP;
  mbar_wait(&bar.q_empty, (qi & 1) ^ 1);  // the previous query tile's last S = Q·Kᵀ is done
#pragma unroll 2
  for (int j = 0; j < kBlockM * kChunks / kProducerThreads; j++) {
    const int c = tid + j * kProducerThreads;
    const int r = chunk_row(c);
    const bool ok = r < t.rows;
    const kiln_t* src = ok ? q + ((size_t)(t.q_row + r) * NUM_HEADS + h) * HEAD_DIM + chunk_col(c) : q;
    cp_async_16(sQ + 8 * c, src, ok ? 16 : 0);
  }
  cp_async_commit();
  const int n_begin = first_key_tile(t);
  const int n_tiles = key_tiles(t);
  for (int it = 0; it < n_tiles; it++, g++) {
    const int slot = g % kStages;
    const unsigned phase = (unsigned)(g / kStages) & 1u;
    kiln_t* sk = sKV + 2 * slot * kTileElems;
    mbar_wait(&bar.k_empty[slot], phase ^ 1u);
    load_tile_rows(sk, k_cache, table, n_begin + it * kBlockN, t, kvh, tid);
    cp_async_wait<1>();  // everything but this K: Q (it = 0) or the previous tile's K and V
    fence_proxy_async();
    if (it == 0) {
      mbar_arrive(&bar.q_full);
    } else {
      const int prev = (g - 1) % kStages;
      mbar_arrive(&bar.k_full[prev]);
      mbar_arrive(&bar.v_full[prev]);
    }
    mbar_wait(&bar.v_empty[slot], phase ^ 1u);
    load_tile_rows(sk + kTileElems, v_cache, table, n_begin + it * kBlockN, t, kvh, tid);
  }
  cp_async_wait<0>();
  fence_proxy_async();
  if (n_tiles == 0) {
    mbar_arrive(&bar.q_full);
  } else {
    const int last = (g - 1) % kStages;
    mbar_arrive(&bar.k_full[last]);
    mbar_arrive(&bar.v_full[last]);
  }
}

// A consumer's part of one query tile: its 64 rows against every key tile, then its rows of out. `c` the
// consumer (0, 1), `g` and `qi` as the producer's (each consumer counts the same tiles).
__device__ __forceinline__ void consume(kiln_t* __restrict__ out, const Tile& t, int h, float scale, int window,
                                        const kiln_t* sQ, const kiln_t* sKV, Barriers& bar, int& g, int qi, int c) {
  const int tid = (int)threadIdx.x - kProducerThreads - c * 128;  // within the warpgroup
  const int warp = tid / kWarp;                                   // rows 16·warp … of the warpgroup's 64
  const int lane = tid % kWarp;
  const int gq = lane / 4, tq = lane % 4;
  const int wrow = c * 64;  // the warpgroup's first row in the tile
  const int n_begin = first_key_tile(t);
  const int n_tiles = key_tiles(t);
  const kiln_t* sq = sQ + wrow * HEAD_DIM;

  float o[kD];
#pragma unroll
  for (int i = 0; i < kD; i++) o[i] = 0.f;
  float m[2] = {neg_inf(), neg_inf()};  // running max of rows gq, gq+8 (log2 domain)
  float l[2] = {0.f, 0.f};              // this thread's columns' share of the running sums
  const float sl2 = scale * kExpScale;
  const int w_first = t.p_first + wrow;  // positions of the warpgroup's first and last rows
  const int w_last = w_first + 63;
  const int prow[2] = {w_first + 16 * warp + gq, w_first + 16 * warp + gq + 8};  // this thread's rows
  unsigned p[kBlockN / 16][4];  // P of the previous tile as A fragments (keys 16·kt …), its P·V deferred
  const kiln_t* pv_v = nullptr;  // that tile's V
  int pv_slot = 0;

  mbar_wait(&bar.q_full, (unsigned)qi & 1u);
  for (int it = 0; it < n_tiles; it++, g++) {
    const int n0 = n_begin + it * kBlockN;
    const int slot = g % kStages;
    const unsigned phase = (unsigned)(g / kStages) & 1u;
    const kiln_t* sk = sKV + 2 * slot * kTileElems;
    const bool need_mask = n0 + kBlockN - 1 > w_first || (window > 0 && n0 <= w_last - window);
    float s[kN];
    float corr[2];
    mbar_wait(&bar.k_full[slot], phase);
    // Both paths straight-line (each wait where ptxas can see it), so that no path reads an accumulator of
    // an operation still in flight: ptxas would serialize every wgmma of the kernel.
    if (it > 0) {
      // (The producer announces a tile's V before the next tile's K, so this never waits; it keeps the
      // consumer right whatever the producer's order.)
      mbar_wait(&bar.v_full[pv_slot], (unsigned)((g - 1) / kStages) & 1u);
      named_bar_sync(1 + c, 2 * 128);  // this consumer's turn at the tensor cores
      wgmma_fence();
      mma_qk(s, sq, sk);
      wgmma_commit();
      mma_pv(o, p, pv_v);
      wgmma_commit();
      named_bar_arrive(2 - c, 2 * 128);  // the other's turn
      wgmma_wait<1>();  // S landed; the previous tile's P·V may still run, during the softmax
      fence_operand(s);
      mbar_arrive(&bar.k_empty[slot]);
      if (it == n_tiles - 1) mbar_arrive(&bar.q_empty);
      softmax(s, m, l, corr, need_mask, n0, tq, prow, window, sl2);
      wgmma_wait<0>();  // the previous tile's P·V is in O, and done with p and its V
      mbar_arrive(&bar.v_empty[pv_slot]);
    } else {
      named_bar_sync(1 + c, 2 * 128);
      wgmma_fence();
      mma_qk(s, sq, sk);
      wgmma_commit();
      named_bar_arrive(2 - c, 2 * 128);
      wgmma_wait<0>();
      fence_operand(s);
      mbar_arrive(&bar.k_empty[slot]);
      if (it == n_tiles - 1) mbar_arrive(&bar.q_empty);
      softmax(s, m, l, corr, need_mask, n0, tq, prow, window, sl2);
    }
    fence_operand(o);
#pragma unroll
    for (int i = 0; i < kD; i++) o[i] *= corr[(i / 2) % 2];
#pragma unroll
    for (int kt = 0; kt < kBlockN / 16; kt++) {
      p[kt][0] = pack2(s[8 * kt + 0], s[8 * kt + 1]);
      p[kt][1] = pack2(s[8 * kt + 2], s[8 * kt + 3]);
      p[kt][2] = pack2(s[8 * kt + 4], s[8 * kt + 5]);
      p[kt][3] = pack2(s[8 * kt + 6], s[8 * kt + 7]);
    }
    pv_v = sk + kTileElems;
    pv_slot = slot;
  }
  if (n_tiles == 0) mbar_arrive(&bar.q_empty);  // (a tile's rows see at least their own keys: not reached)
  if (n_tiles > 0) {  // the last tile's P·V
    mbar_wait(&bar.v_full[pv_slot], (unsigned)((g - 1) / kStages) & 1u);
    wgmma_fence();
    mma_pv(o, p, pv_v);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operand(o);
    mbar_arrive(&bar.v_empty[pv_slot]);
  }

#pragma unroll
  for (int r = 0; r < 2; r++) {
    float sum = l[r];
    sum += __shfl_xor_sync(kFull, sum, 1);
    sum += __shfl_xor_sync(kFull, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = wrow + 16 * warp + gq + 8 * r;
    if (row < t.rows) {
      kiln_t* dst = out + ((size_t)(t.q_row + row) * NUM_HEADS + h) * HEAD_DIM + 2 * tq;
#pragma unroll
      for (int dt = 0; dt < HEAD_DIM / 8; dt++) {
        *reinterpret_cast<unsigned*>(dst + dt * 8) = pack2(o[4 * dt + 2 * r] * inv, o[4 * dt + 2 * r + 1] * inv);
      }
    }
  }
}

}  // namespace wg
}  // namespace attn

#endif  // ATTN_WGMMA_AVAILABLE

// out          [T, NUM_HEADS, HEAD_DIM]      kiln_t; rows of every sequence written, others untouched
// q            [T, NUM_HEADS, HEAD_DIM]      kiln_t, already rotated
// k_cache      [numBlocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM]   this layer's K pool (new keys written)
// v_cache      same layout, V pool
// query_start  [S + 1] int32   cu_seqlens: sequence s owns rows [query_start[s], query_start[s+1])
// context_len  [S] int32       tokens in the cache for s, its new ones included (≥ its query length)
// block_tables [S, block_table_stride] int32
// scale        multiplies q·k (HF: head_dim ** -0.5)
// sliding_window  attend to the last w positions only; 0 = full causal
// Grid (x, NUM_HEADS, S), block 384, dynamic shared memory attn::wg::kSmemElems · 2 bytes (prefill_tiles.ts):
// x = ceil(maxQueryLen / 128) is best; any x ≥ 1 is correct (each CTA walks its sequence's query tiles
// from the last, the longest, down with stride x; its three warpgroups walk the same tiles).
extern "C" __global__ void __launch_bounds__(384, 1)
    attention_prefill_wgmma(kiln_t* __restrict__ out, const kiln_t* __restrict__ q, const kiln_t* __restrict__ k_cache,
                            const kiln_t* __restrict__ v_cache, const int* __restrict__ query_start,
                            const int* __restrict__ context_len, const int* __restrict__ block_tables,
                            int block_table_stride, float scale, int sliding_window) {
  kiln::pdl_wait();  // q, the KV cache and the step metadata come from earlier kernels (see pdl.cuh)
  kiln::pdl_launch_dependents();
#if ATTN_WGMMA_AVAILABLE
  namespace wg = attn::wg;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  kiln_t* sQ = reinterpret_cast<kiln_t*>(smem_raw);  // [kBlockM][HEAD_DIM] interleaved
  kiln_t* sKV = sQ + wg::kBlockM * HEAD_DIM;              // [kStages][K, V][kBlockN][HEAD_DIM] interleaved
  __shared__ wg::Barriers bar;
  if (threadIdx.x == 0) {
    attn::mbar_init(&bar.q_full, wg::kProducerThreads);
    attn::mbar_init(&bar.q_empty, wg::kConsumerThreads);
    for (int i = 0; i < wg::kStages; i++) {
      attn::mbar_init(&bar.k_full[i], wg::kProducerThreads);
      attn::mbar_init(&bar.v_full[i], wg::kProducerThreads);
      attn::mbar_init(&bar.k_empty[i], wg::kConsumerThreads);
      attn::mbar_init(&bar.v_empty[i], wg::kConsumerThreads);
    }
    attn::mbar_init_fence();
  }
  __syncthreads();
  const int s = blockIdx.z;
  const int h = blockIdx.y;
  const int q0 = query_start[s];
  const int qlen = query_start[s + 1] - q0;
  const int ctx = context_len[s];
  const int* table = block_tables + (size_t)s * block_table_stride;
  const int tiles = (qlen + wg::kBlockM - 1) / wg::kBlockM;
  // The warpgroup, broadcast from lane 0 so that the compiler knows it is warp-uniform: branches on it
  // around wgmma are then not divergent paths, which ptxas would serialize the wgmma of.
  const int wgi = __shfl_sync(attn::kFull, (int)threadIdx.x / 128, 0);
  int g = 0;  // key tiles walked (stage, phase)
  if (wgi == 0) {
    attn::setmaxnreg_dec<wg::kProducerRegs>();
    int qi = 0;
    for (int tile = tiles - 1 - (int)blockIdx.x; tile >= 0; tile -= (int)gridDim.x, qi++) {
      const attn::Tile t = attn::make_tile<wg::kBlockM>(q0, qlen, ctx, tile * wg::kBlockM, sliding_window);
      wg::produce(q, k_cache, v_cache, table, t, h, sQ, sKV, bar, g, qi);
    }
  } else {
    attn::setmaxnreg_inc<wg::kConsumerRegs>();
    const int c = wgi - 1;
    if (c == 0) attn::named_bar_arrive(1, 2 * 128);  // consumer 0 issues first
    int qi = 0;
    for (int tile = tiles - 1 - (int)blockIdx.x; tile >= 0; tile -= (int)gridDim.x, qi++) {
      const attn::Tile t = attn::make_tile<wg::kBlockM>(q0, qlen, ctx, tile * wg::kBlockM, sliding_window);
      wg::consume(out, t, h, scale, sliding_window, sQ, sKV, bar, g, qi, c);
    }
  }
#else
  __trap();
#endif
}
