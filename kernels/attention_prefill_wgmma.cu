// Paged prefill attention on Hopper warpgroup MMA (sm_90a wgmma), FlashAttention-3 style, over packed
// variable-length sequences. Same arguments, masking, paging and launch grid as attention_prefill
// (attention_prefill.cu; kernels/attention_README.md), for fp16/bf16 q, out and KV pools and HEAD_DIM 64
// or 128 (the launch routes everything else to attention_prefill, prefill_tiles.ts).
//
// One CTA of 256 threads = two consumer warpgroups computes a tile of kBlockM = 128 query rows of one
// head of one sequence: warpgroup wg owns rows 64·wg … 64·wg+63. Per key tile of kBlockN = 128 keys:
//   S = Q·Kᵀ     wgmma m64n128k16, A (Q) and B (K) from shared memory by descriptor, HEAD_DIM/16 k-steps,
//                the first with scale-d 0; fp32 accumulators, 64 a thread
//   softmax      online, in registers (exp2 with log2 e folded into the scale); per-element masks only on
//                tiles that cross the warpgroup's diagonal or its window's lower edge
//   O += P·V     wgmma m64nDk16, A = P rounded to the element type in registers (the accumulator
//                layout of S is the A-fragment layout of P: no shuffle), B (V) from shared memory
//                MN-major (imm-trans-b), 8 k-steps of 16 keys
// K/V tiles are copied by all 256 threads with 16-byte cp.async (the pages of the paged cache are
// gathered row by row through the block table), kStages buffers deep: the copies of tile i + kStages − 2
// are issued before the compute of tile i. FlashAttention-3's intra-warpgroup overlap: tile i's P·V is
// issued right after tile i + 1's S = Q·Kᵀ and runs during tile i + 1's softmax. A warpgroup skips key
// tiles none of its rows may see (above its diagonal, below its window); both warpgroups still take part
// in every copy and barrier. Not (yet) FA3's producer warpgroup (TMA, mbarriers) or its ping-pong of the
// two warpgroups.
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
constexpr int kThreads = 256;  // the __launch_bounds__ of the export
constexpr int kStages = HEAD_DIM == 128 ? 3 : 4;  // K/V buffers; 3 × 64 KiB at D 128, 4 × 32 KiB at D 64
constexpr int kChunks = HEAD_DIM / 8;              // 16-byte chunks per row
constexpr int kTileElems = kBlockN * HEAD_DIM;
constexpr int kSmemElems = kBlockM * HEAD_DIM + 2 * kStages * kTileElems;
static_assert(kSmemElems * 2 + 2 * kBlockN * 4 <= 227 * 1024, "shared memory of one CTA (s_blk included)");
static_assert(kStages >= 3, "tile i − 1 (its P·V deferred), tile i, and at least one in flight");
static_assert((kBlockN * kChunks) % kThreads == 0 && (kBlockM * kChunks) % kThreads == 0, "copy shape");

// Copy chunk c (0 … rows·kChunks) of a tile: row (c%8) + 8·(c / (8·kChunks)), columns 8·((c/8) % kChunks)
// + 0…7, stored at element 8c of the interleaved layout.
__device__ __forceinline__ int chunk_row(int c) { return c % 8 + 8 * (c / (8 * kChunks)); }
__device__ __forceinline__ int chunk_col(int c) { return 8 * ((c / 8) % kChunks); }

// K and V of keys [n0, n0 + kBlockN) → sk, sv by cp.async; blk [kBlockN] (shared) their block ids, −1 =
// zeros (keys outside the tile's range: masked for every row that may see them).
__device__ __forceinline__ void load_kv_tile(kiln_t* sk, kiln_t* sv, const kiln_t* k_pool, const kiln_t* v_pool,
                                             const int* blk, int n0, int kvh) {
#pragma unroll
  for (int j = 0; j < kBlockN * kChunks / kThreads; j++) {
    const int c = (int)threadIdx.x + j * kThreads;
    const int r = chunk_row(c);
    const int b = blk[r];
    const size_t off =
        b >= 0 ? ((size_t)(b * BLOCK_SIZE + (n0 + r) % BLOCK_SIZE) * NUM_KV_HEADS + kvh) * HEAD_DIM + chunk_col(c) : 0;
    cp_async_16(sk + 8 * c, k_pool + off, b >= 0 ? 16 : 0);
    cp_async_16(sv + 8 * c, v_pool + off, b >= 0 ? 16 : 0);
  }
}

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

__device__ __forceinline__ void prefill_tile(kiln_t* __restrict__ out, const kiln_t* __restrict__ q,
                                             const kiln_t* __restrict__ k_cache, const kiln_t* __restrict__ v_cache,
                                             const int* __restrict__ table, const Tile& t, int h, float scale,
                                             int window) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  kiln_t* sQ = reinterpret_cast<kiln_t*>(smem_raw);  // [kBlockM][HEAD_DIM] interleaved
  kiln_t* sKV = sQ + kBlockM * HEAD_DIM;              // [kStages][K, V][kBlockN][HEAD_DIM] interleaved
  __shared__ int s_blk[2][kBlockN];                    // block ids of the tile being copied, by tile parity
  const int tid = (int)threadIdx.x;
  // The consumer warpgroup, broadcast from lane 0 so that the compiler knows it is warp-uniform: branches
  // on it around wgmma are then not divergent paths, which ptxas would serialize the wgmma of.
  const int wgi = __shfl_sync(kFull, tid / 128, 0);
  const int warp = (tid % 128) / kWarp;  // warp within it: rows 16·warp …
  const int lane = tid % kWarp;
  const int g = lane / 4, tq = lane % 4;
  const int kvh = h / ATTN_GROUP;
  const int wrow = wgi * 64;  // the warpgroup's first row in the tile

  __syncthreads();  // this CTA's previous tile is done with the shared buffers
  // Q → sQ (zeros past the tile's rows), in the first copy group with key tile 0.
#pragma unroll
  for (int j = 0; j < kBlockM * kChunks / kThreads; j++) {
    const int c = tid + j * kThreads;
    const int r = chunk_row(c);
    const bool ok = r < t.rows;
    const kiln_t* src = ok ? q + ((size_t)(t.q_row + r) * NUM_HEADS + h) * HEAD_DIM + chunk_col(c) : q;
    cp_async_16(sQ + 8 * c, src, ok ? 16 : 0);
  }
  const int n_begin = t.kv_lo / kBlockN * kBlockN;
  const int n_tiles = (t.kv_hi - n_begin + kBlockN - 1) / kBlockN;
  // Buffers: tile i's P·V runs during tile i + 1 (below), so at tile i the buffers hold tile i − 1 (its V
  // still read), tile i, and the copies of tiles i + 1 … i + kStages − 2 in flight. Prologue: tiles
  // 0 … kStages − 3, one commit group each (every group committed, empty or not, so that
  // wait_group<kStages − 3> at tile i always means "tile i landed").
#pragma unroll
  for (int j = 0; j < kStages - 2; j++) {
    if (tid < kBlockN) s_blk[j & 1][tid] = fetch_block<kBlockN>(table, n_begin + j * kBlockN, t);
    __syncthreads();
    if (j < n_tiles) {
      kiln_t* buf = sKV + 2 * j * kTileElems;
      load_kv_tile(buf, buf + kTileElems, k_cache, v_cache, s_blk[j & 1], n_begin + j * kBlockN, kvh);
    }
    cp_async_commit();
  }
  int next_blk = fetch_block<kBlockN>(table, n_begin + (kStages - 2) * kBlockN, t);

  float o[kD];
#pragma unroll
  for (int i = 0; i < kD; i++) o[i] = 0.f;
  float m[2] = {neg_inf(), neg_inf()};  // running max of rows g, g+8 (log2 domain)
  float l[2] = {0.f, 0.f};              // this thread's columns' share of the running sums
  const float sl2 = scale * kExpScale;
  const int w_first = t.p_first + wrow;  // positions of the warpgroup's first and last rows
  const int w_last = w_first + 63;
  const int prow[2] = {w_first + 16 * warp + g, w_first + 16 * warp + g + 8};  // this thread's rows
  // Whether some row of the warpgroup may see a key of the tile at n0 (not above its diagonal, not
  // below its window, not past the tile's rows): the tiles it sees are consecutive.
  auto sees = [&](int n0) {
    return wrow < t.rows && n0 <= w_last && (window <= 0 || n0 + kBlockN > w_first - window + 1);
  };
  // FlashAttention-3's intra-warpgroup overlap: the P·V of a tile is issued with the next tile's
  // S = Q·Kᵀ (S first, so wait_group 1 returns S), and runs while that tile's softmax does.
  unsigned p[kBlockN / 16][4];  // P as A fragments: keys 16·kt … (accumulator blocks 2kt, 2kt+1)
  bool pv_pending = false;      // p holds a tile whose P·V is not yet issued; its V at pv_tile
  const kiln_t* pv_tile = nullptr;

  for (int it = 0; it < n_tiles; it++) {
    const int n0 = n_begin + it * kBlockN;
    cp_async_wait<kStages - 3>();  // this thread's copies of tile it (and Q) landed
    fence_proxy_async();           // … and are visible to wgmma's async proxy
    const int ahead = it + kStages - 2;  // the tile whose copies go out now
    if (tid < kBlockN) s_blk[ahead & 1][tid] = next_blk;
    next_blk = fetch_block<kBlockN>(table, n_begin + (ahead + 1) * kBlockN, t);
    __syncthreads();  // tile it visible to all; both warpgroups done with tile it − 2's buffer
    if (ahead < n_tiles) {
      kiln_t* buf = sKV + 2 * (ahead % kStages) * kTileElems;
      load_kv_tile(buf, buf + kTileElems, k_cache, v_cache, s_blk[ahead & 1], n_begin + ahead * kBlockN, kvh);
    }
    cp_async_commit();

    if (!sees(n0)) continue;  // warpgroup-uniform
    const kiln_t* sk = sKV + 2 * (it % kStages) * kTileElems;
    const kiln_t* sv = sk + kTileElems;

    // Both paths straight-line (each wait where ptxas can see it), so that no path reads an accumulator
    // of an operation still in flight: ptxas would serialize every wgmma of the kernel.
    float s[kN];
    float corr[2];
    const bool need_mask = n0 + kBlockN - 1 > w_first || (window > 0 && n0 <= w_last - window);
    if (pv_pending) {
      wgmma_fence();
      mma_qk(s, sQ + wrow * HEAD_DIM, sk);
      wgmma_commit();
      mma_pv(o, p, pv_tile);
      wgmma_commit();
      wgmma_wait<1>();  // S landed; the previous tile's P·V may still run, during the softmax
      fence_operand(s);
      softmax(s, m, l, corr, need_mask, n0, tq, prow, window, sl2);
      wgmma_wait<0>();  // the previous tile's P·V is in O, and done with p
    } else {
      wgmma_fence();
      mma_qk(s, sQ + wrow * HEAD_DIM, sk);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operand(s);
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
    // Defer this tile's P·V to the next tile if the warpgroup sees it (its V stays in its buffer: copies
    // reach that buffer only two barriers later); else issue it now.
    pv_pending = it + 1 < n_tiles && sees(n0 + kBlockN);
    pv_tile = sv;
    if (!pv_pending) {
      wgmma_fence();
      mma_pv(o, p, sv);
      wgmma_commit();
      wgmma_wait<0>();
      fence_operand(o);
    }
  }

#pragma unroll
  for (int r = 0; r < 2; r++) {
    float sum = l[r];
    sum += __shfl_xor_sync(kFull, sum, 1);
    sum += __shfl_xor_sync(kFull, sum, 2);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    const int row = wrow + 16 * warp + g + 8 * r;
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
// Grid (x, NUM_HEADS, S), block 256, dynamic shared memory attn::wg::kSmemElems · 2 bytes (prefill_tiles.ts):
// x = ceil(maxQueryLen / 128) is best; any x ≥ 1 is correct (each CTA walks its sequence's query tiles
// from the last, the longest, down with stride x).
extern "C" __global__ void __launch_bounds__(256, 1)
    attention_prefill_wgmma(kiln_t* __restrict__ out, const kiln_t* __restrict__ q, const kiln_t* __restrict__ k_cache,
                            const kiln_t* __restrict__ v_cache, const int* __restrict__ query_start,
                            const int* __restrict__ context_len, const int* __restrict__ block_tables,
                            int block_table_stride, float scale, int sliding_window) {
  kiln::pdl_wait();  // q, the KV cache and the step metadata come from earlier kernels (see pdl.cuh)
  kiln::pdl_launch_dependents();
#if ATTN_WGMMA_AVAILABLE
  const int s = blockIdx.z;
  const int h = blockIdx.y;
  const int q0 = query_start[s];
  const int qlen = query_start[s + 1] - q0;
  const int ctx = context_len[s];
  const int* table = block_tables + (size_t)s * block_table_stride;
  const int tiles = (qlen + attn::wg::kBlockM - 1) / attn::wg::kBlockM;
  for (int tile = tiles - 1 - (int)blockIdx.x; tile >= 0; tile -= (int)gridDim.x) {
    const attn::Tile t = attn::make_tile<attn::wg::kBlockM>(q0, qlen, ctx, tile * attn::wg::kBlockM, sliding_window);
    attn::wg::prefill_tile(out, q, k_cache, v_cache, table, t, h, scale, sliding_window);
  }
#else
  __trap();
#endif
}
