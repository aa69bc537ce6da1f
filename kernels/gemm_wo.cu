// A tensor-core GEMM over weight-only quantized weights (int8-wo, int4-wo: gemv_wo.cu's layout,
// src/engine/weight_format.ts; int4-zp: gemv_zp.cu's, src/engine/int4_zp_format.ts) for batches too large
// for the GEMV and too small to pay for dequantizing the whole weight first: y[m, n] = x[m, k]·Wᵀ (+ bias)
// straight from the quantized bytes, so a step reads the weight's quantized bytes once per BM rows of x
// (int4: about 1/4 of a bf16 weight's) instead of dequantization's read, 16-bit write and cuBLASLt's re-read.
//   int-wo: q [n, padded·B/8] (int8, or two int4 a byte, feature 2j in the low nibble), fp32 scales
//     [n, padded / 128], padded = ceil(k / 128)·128; w[r, c] = q[r, c]·scale[r, c / 128].
//   int4-zp: q [n, k / 2] unsigned nibbles (k a multiple of 32: 16-byte rows), fp32 scales and zeros
//     [n, ceil(k / G)], G a multiple of 32, no g_idx; w[r, c] = (q[r, c] − z[r, c / G])·s[r, c / G], with
//     integer zero points, |z| ≤ 240 (the runtime checks at load: gemm_wo_variants.ts zerosExactIn16Bit).
//
// Numerics (gemv_wo.cu's and gemv_zp.cu's): per group, Σ x·q (int4-zp: x·(q − z)) with the weight value
// exact in kiln_t (an integer of magnitude ≤ 255 is exact in bf16 and fp16), products exact and summed
// in fp32 by mma.sync.m16n8k16 (fp32 accumulation), then that partial times the row's group scale added
// to the fp32 accumulator; + bias, rounded once to kiln_t. A warp's partial covers the k16 steps of one
// group it owns (WK warps split each 128-feature stage's 8 steps), and the WK warps' accumulators are
// summed in shared memory in warp order: the same bits run to run.
//
// Tiles: a CTA of 4 warps computes y[BM rows of x, BN weight rows]; the warps split the BN rows in WN
// parts and each stage's 8 k16 steps in WK parts (WN·WK = 4). A stage is 128 input features: x [BM, 128]
// and q [BN, 128·B/8], brought into shared memory by cp.async, S deep; a warp's A fragments by ldmatrix,
// its B fragments read from the q bytes and converted in registers (no int→float conversions). Rows of x
// past m, features past k and weight rows past n are zero-filled (x, q) or clamped (scales, zeros) and
// never stored; int-wo's padding q bytes (features ≥ k of the last group) are read but meet zeros of x,
// and q is an integer: they add exactly 0. k16 steps wholly past k are skipped.
//   variant   BM  BN  WN×WK  S
//   m16n64    16  64  1×4    6      m ≤ 16
//   m32n64    32  64  2×2    6      m ≤ 32
//   m64n128   64 128  4×1    3      larger m (one CTA row per 64 rows of x)
// Small steps are bound by the weight bytes in flight (few CTAs when n is small: ⌈n / 64⌉), hence their
// deeper pipelines; m64n128's stages are twice the size. The runtime (gemm_wo_variants.ts) takes the
// next smaller tile where a grid would have fewer CTAs than half the SMs.
// PDL: the prologue's q copies are issued before kiln::pdl_wait (weights only), x's after it.
//
// Gated (a gated MLP's fused gate_up weight [2·inter, k], gate rows then up rows): y [m, inter] =
// act(round(x·gateᵀ + b))·round(x·upᵀ + b), rounded, as gemv_warp.cuh's gated epilogue and activation.cu's
// gated_act: the unfused pair's bits. A CTA's BN weight rows are BN / 2 features' gate and up rows, each
// warp's n8 tiles split in a gate half and an up half of the same features, so a thread holds both.
//
// Macros: KILN_DTYPE_F16 | KILN_DTYPE_BF16 (16-bit only: fp32 engines keep dequant + cuBLASLt);
//   GEMM_FAMILY 1: the int-wo kernels only, 2: the int4-zp kernels only, unset: both;
//   GEMV_ACT as in gemv.cu (gemv_variants.ts GATED_ACTS): the gated kernels of one activation (0: none),
//   unset: all five (compile_matrix.json's test compile takes silu's: the others differ only in the
//   activations.cuh functor).
// extern "C" __global__ void gemm_woB_mBMnBN(   B ∈ {8, 4}; gemm_wo_variants.ts picks the variant
//     const kiln_t* x,            // [m, k], 16-byte aligned rows (k a multiple of 8)
//     const unsigned char* q,     // [n, padded·B/8]     weights: the first stages read before the PDL wait
//     const float* scales,        // [n, padded / 128]
//     const kiln_t* bias,         // [n] or null
//     kiln_t* y,                  // [m, n]
//     int m, int n, int k)        // m ≥ 1 (any: grid.x covers it), n ≥ 1, k ≥ 8 a multiple of 8
// extern "C" __global__ void gemm_zp_mBMnBN(x, q /* [n, k / 2] */, scales, const float* zeros, bias, y,
//     int m, int n, int k, int group_size)   // k and group_size multiples of 32
// extern "C" __global__ void gemm_woB_mBMnBN_gated_ACT(x, q, scales, bias, y, m, inter, k),
//   gemm_zp_mBMnBN_gated_ACT(x, q, scales, zeros, bias, y, m, inter, k, group_size):
//   q, scales (zeros), bias: the gate_up weight's [2·inter, ·]; y [m, inter]; grid.y = ceil(inter / (BN / 2))
//   grid = (ceil(m / BM), ceil(n / BN)), block = (128), dynamic shared memory =
//   S·(BM·(128 + 8)·2 + BN·(16·B + 16)) bytes (B = 4 for int4-zp; gemm_wo_variants.ts; traps with less)
#include "activations.cuh"
#include "attention_ptx.cuh"
#include "common.cuh"

#if !KILN_HAS_DTYPE || defined(KILN_DTYPE_F32)
#error "gemm_wo.cu needs KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif

namespace {
namespace wog {

constexpr int kGroup = 128;           // input features per scale (weight_format.ts GROUP_SIZE)
constexpr int kSteps = kGroup / 16;   // k16 mma steps per group
constexpr int kThreads = 128;         // 4 warps
constexpr int kXStride = kGroup + 8;  // kiln_t per x row in shared memory: ldmatrix's 8 rows hit 8 bank quads

/** Shared memory of one variant: S stages, each x [BM][kXStride] then q [BN][kQStride] bytes. */
template <int B, int BM, int BN, int S>
struct Layout {
  static constexpr int kQBytes = kGroup * B / 8;   // q bytes of one row of one group: 128 or 64
  static constexpr int kQStride = kQBytes + 16;    // padded: B-fragment reads of 8 rows in distinct banks
  static constexpr int kXStage = BM * kXStride * 2;
  static constexpr int kStage = kXStage + BN * kQStride;
  static constexpr int kBytes = S * kStage;
};

/** The signed int8 value in byte b, as an exact float without an int→float conversion: b ^ 0x80 = q + 128
 * placed in the mantissa of 2^23 reads 2^23 + q + 128. */
__device__ __forceinline__ float q8(unsigned b) {
  return __uint_as_float(0x4B000000u | ((b & 0xffu) ^ 0x80u)) - 8388736.f;  // 2^23 + 128
}
/** The signed int4 value in the low nibble of b, likewise (q + 8 in the mantissa of 2^23). */
__device__ __forceinline__ float q4(unsigned b) {
  return __uint_as_float(0x4B000000u | ((b & 0xfu) ^ 0x8u)) - 8388616.f;  // 2^23 + 8
}
/** int4-zp: the unsigned nibble q in the low nibble of b minus the zero point z, given zc = 2^23 + z:
 * 2^23 + q − (2^23 + z), exact for an integer z (|z| < 2^22). */
__device__ __forceinline__ float qz(unsigned b, float zc) { return __uint_as_float(0x4B000000u | (b & 0xfu)) - zc; }

/** The mma B fragment of weight row `qr` (its q bytes for this stage) at k16 step kk, for lane t = lane % 4:
 * b0 = (features 16kk + 2t, +1), b1 = (16kk + 2t + 8, +9), as kiln_t pairs; int4-zp: q − z (zc = 2^23 + z). */
template <int B, bool ZP>
__device__ __forceinline__ void b_frag(const unsigned char* qr, int kk, int t, float zc, unsigned& b0, unsigned& b1) {
  if constexpr (B == 8) {
    const unsigned lo = *reinterpret_cast<const unsigned short*>(qr + 16 * kk + 2 * t);
    const unsigned hi = *reinterpret_cast<const unsigned short*>(qr + 16 * kk + 2 * t + 8);
    b0 = attn::pack2(q8(lo), q8(lo >> 8));
    b1 = attn::pack2(q8(hi), q8(hi >> 8));
  } else {
    const unsigned lo = qr[8 * kk + t], hi = qr[8 * kk + 4 + t];  // features 2t, 2t+1: one byte
    if constexpr (ZP) {
      b0 = attn::pack2(qz(lo, zc), qz(lo >> 4, zc));
      b1 = attn::pack2(qz(hi, zc), qz(hi >> 4, zc));
    } else {
      b0 = attn::pack2(q4(lo), q4(lo >> 4));
      b1 = attn::pack2(q4(hi), q4(hi >> 4));
    }
  }
}

/** Plain GEMM (no gated activation): the Act of gemm<…, false, NoAct>. */
struct NoAct {};

/** y = x·Wᵀ (+ bias) for the CTA's tile. B: bits (int4-zp: 4); ZP: int4-zp (zeros, group_size G, rows of
 * k / 2 bytes); else int-wo (zeros null, G = 128, rows padded to whole groups).
 * GATED: W is the fused gate_up weight [2·n, ·] (gate rows, then up rows) and y [m, n] = act(gate)·up, n
 * = inter: the CTA's BN weight rows are BN / 2 output features' gate and up rows, each warp's n8 tiles
 * j < NT / 2 gate and j + NT / 2 up of the same features, so a thread holds both of each of its outputs. */
template <int B, bool ZP, int BM, int BN, int WN, int WK, int S, bool GATED, class Act>
__device__ __forceinline__ void gemm(const kiln_t* __restrict__ x, const unsigned char* __restrict__ q,
                                     const float* __restrict__ scales, const float* __restrict__ zeros,
                                     const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m, int n, int k,
                                     int group_size, unsigned char* smem) {
  static_assert(WN * WK * 32 == kThreads && kSteps % WK == 0, "4 warps: WN × WK");
  static_assert(!ZP || B == 4, "int4-zp is 4-bit");
  using L = Layout<B, BM, BN, S>;
  constexpr int MT = BM / 16;  // m16 tiles of a warp
  constexpr int NW = BN / WN;  // weight rows of a warp
  constexpr int NT = NW / 8;   // n8 tiles of a warp
  static_assert(NT * 8 * WN == BN && MT * 16 == BM, "tile shapes");
  static_assert(!GATED || NT % 2 == 0, "gated: a warp's tiles in gate and up halves");

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wn = warp % WN, wk = warp / WN;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * (GATED ? BN / 2 : BN);  // the CTA's first output feature
  // The weight row of the CTA's local row L (0 … BN − 1) and whether it exists: plain, n0 + L; gated,
  // warp block L / NW's half (gate, then up) of its NW / 2 features.
  auto weight_row = [&](int L, bool& ok) {
    if constexpr (GATED) {
      const int f = n0 + (L / NW) * (NW / 2) + L % (NW / 2);
      ok = f < n;
      return L % NW >= NW / 2 ? n + f : f;
    } else {
      ok = n0 + L < n;
      return n0 + L;
    }
  };
  const int tiles = (k + kGroup - 1) / kGroup;               // stages of 128 features
  const int gs = ZP ? group_size : kGroup;                   // features per scale
  const int groups = (k + gs - 1) / gs;                      // scales (and zeros) per row
  const size_t q_row = ZP ? (size_t)k / 2 : (size_t)tiles * L::kQBytes;  // bytes of a q row

  auto x_stage = [&](int s) { return reinterpret_cast<kiln_t*>(smem + s * L::kStage); };
  auto q_stage = [&](int s) { return smem + s * L::kStage + L::kXStage; };
  // Tile ti's q rows into stage s (rows past n, and int4-zp's features past k: zero-filled).
  auto load_q = [&](int ti, int s) {
    constexpr int kChunks = L::kQBytes / 16;
    for (int i = threadIdx.x; i < BN * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      bool ok;
      const int row = weight_row(r, ok);
      ok = ok && (!ZP || ti * kGroup + c * 32 < k);  // int4-zp: 32 features a chunk
      const unsigned char* src = q + (ok ? (size_t)row * q_row + (size_t)ti * L::kQBytes + 16 * c : 0);
      attn::cp_async_16(q_stage(s) + r * L::kQStride + 16 * c, src, ok ? 16 : 0);
    }
  };
  // Tile ti's x columns into stage s (rows past m, features past k: zero-filled).
  auto load_x = [&](int ti, int s) {
    constexpr int kChunks = kGroup / 8;  // 16-byte pieces of a row of the tile
    for (int i = threadIdx.x; i < BM * kChunks; i += kThreads) {
      const int r = i / kChunks, c = i % kChunks;
      const int f = ti * kGroup + 8 * c;
      const bool ok = m0 + r < m && f < k;
      const kiln_t* src = ok ? x + (size_t)(m0 + r) * k + f : x;
      attn::cp_async_16(x_stage(s) + r * kXStride + 8 * c, src, ok ? 16 : 0);
    }
  };

  // Prologue: stages 0 … S−2. Weights first (before the wait), then x; one commit group per stage, the
  // first holding every prologue q copy.
  for (int s = 0; s < S - 1; s++)
    if (s < tiles) load_q(s, s);
  kiln::pdl_wait();
  kiln::pdl_launch_dependents();
  if (attn::dynamic_smem_bytes() < (unsigned)L::kBytes) __trap();  // launched with too little
  for (int s = 0; s < S - 1; s++) {
    if (s < tiles) load_x(s, s);
    attn::cp_async_commit();
  }

  float acc[MT][NT][4], part[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = part[i][j][e] = 0.f;

  // The warp's weight rows (rows that do not exist read row 0's scales and zeros, never stored): of the
  // accumulator, two per n8 tile and lane (2t, 2t + 1); of the B fragment, one (g).
  int col[NT][2], brow[NT];
#pragma unroll
  for (int j = 0; j < NT; j++) {
    bool ok;
#pragma unroll
    for (int e = 0; e < 2; e++) {
      col[j][e] = weight_row(wn * NW + 8 * j + 2 * t + e, ok);
      if (!ok) col[j][e] = 0;
    }
    brow[j] = weight_row(wn * NW + 8 * j + g, ok);
    if (!ok) brow[j] = 0;
  }
  // The group the warp's partial sums belong to; its scales (accumulator columns) and zero points
  // (B fragment rows, as 2^23 + z).
  int cur = -1;
  float sc[NT][2], zc[NT];
  // acc += part · scale of the group, part = 0.
  auto flush = [&]() {
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          acc[i][j][e] = fmaf(part[i][j][e], sc[j][e & 1], acc[i][j][e]);
          part[i][j][e] = 0.f;
        }
  };

  for (int ti = 0; ti < tiles; ti++) {
    attn::cp_async_wait<S - 2>();  // tile ti's stage has landed (this thread's copies) …
    __syncthreads();               // … everyone's; and stage (ti − 1) % S is free again
    if (ti + S - 1 < tiles) {
      load_q(ti + S - 1, (ti + S - 1) % S);
      load_x(ti + S - 1, (ti + S - 1) % S);
    }
    attn::cp_async_commit();  // possibly empty: the wait above counts groups

    const kiln_t* xs = x_stage(ti % S);
    const unsigned char* qs = q_stage(ti % S) + (wn * NW + g) * L::kQStride;
#pragma unroll
    for (int kk = wk; kk < kSteps; kk += WK) {
      if (ti * kGroup + 16 * kk >= k) break;  // wholly past k: it would add zeros (and its group is none)
      // A new group (int-wo: every tile; int4-zp: every G / 16 steps, G a multiple of 32): the old
      // group's partial sums into the accumulator, the new group's scales and zero points.
      const int gr = (ti * kGroup + 16 * kk) / gs;
      if (gr != cur) {
        if (cur >= 0) flush();
        cur = gr;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
          for (int e = 0; e < 2; e++) sc[j][e] = __ldg(scales + (size_t)col[j][e] * groups + gr);
          zc[j] = ZP ? 8388608.f + __ldg(zeros + (size_t)brow[j] * groups + gr) : 0.f;
        }
      }
      unsigned a[MT][4];
#pragma unroll
      for (int i = 0; i < MT; i++)
        attn::ldmatrix_x4(a[i], xs + (16 * i + (lane & 15)) * kXStride + 16 * kk + 8 * (lane >> 4));
#pragma unroll
      for (int j = 0; j < NT; j++) {
        unsigned b0, b1;
        b_frag<B, ZP>(qs + 8 * j * L::kQStride, kk, t, zc[j], b0, b1);
#pragma unroll
        for (int i = 0; i < MT; i++) attn::mma_16816(part[i][j], a[i], b0, b1);
      }
    }
  }
  if (cur >= 0) flush();

  // The WK warps of a column block sum their accumulators in shared memory, in warp order.
  if constexpr (WK > 1) {
    attn::cp_async_wait<0>();
    __syncthreads();  // every warp is done with the stages
    static_assert((WK - 1) * BM * BN * 4 <= L::kBytes, "the reduction fits the stages");
    float* red = reinterpret_cast<float*>(smem);  // [WK − 1][BM][BN]
    auto at = [&](int w, int i, int j, int e) {
      return ((w * BM) + 16 * i + g + 8 * (e >> 1)) * BN + wn * NW + 8 * j + 2 * t + (e & 1);
    };
    if (wk > 0) {
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) red[at(wk - 1, i, j, e)] = acc[i][j][e];
    }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll
    for (int w = 0; w < WK - 1; w++)
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[i][j][e] += red[at(w, i, j, e)];
  }

  if constexpr (GATED) {
    // Gate and up rounded to kiln_t as the plain GEMM stores them, then activated and multiplied as
    // activation.cu's gated_act does (gemv_warp.cuh's gated epilogue): the unfused pair's bits.
#pragma unroll
    for (int j = 0; j < NT / 2; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int f = n0 + wn * (NW / 2) + 8 * j + 2 * t + e;  // the output feature
        if (f >= n) continue;
        const float bg = bias ? kiln::to_float(bias[f]) : 0.f;
        const float bu = bias ? kiln::to_float(bias[n + f]) : 0.f;
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int r = m0 + 16 * i + g + 8 * h;
            if (r >= m) continue;
            const float gate = kiln::round_t(acc[i][j][2 * h + e] + bg);
            const float up = kiln::round_t(acc[i][j + NT / 2][2 * h + e] + bu);
            y[(size_t)r * n + f] = kiln::from_float(__fmul_rn(Act::apply(gate), up));
          }
      }
  } else {
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int c = n0 + wn * NW + 8 * j + 2 * t;  // columns c, c + 1
      const float b0 = bias && c < n ? kiln::to_float(bias[c]) : 0.f;
      const float b1 = bias && c + 1 < n ? kiln::to_float(bias[c + 1]) : 0.f;
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int r = m0 + 16 * i + g + 8 * h;
          if (r >= m) continue;
          kiln_t* yr = y + (size_t)r * n;
          if (c < n) yr[c] = kiln::from_float(acc[i][j][2 * h] + b0);
          if (c + 1 < n) yr[c + 1] = kiln::from_float(acc[i][j][2 * h + 1] + b1);
        }
    }
  }
}

}  // namespace wog
}  // namespace

// GEMM_FAMILY: 1 the int-wo kernels only, 2 the int4-zp kernels only, else both (kernel_modules.ts
// compiles the families an engine's weights need). GEMV_ACT as in gemv.cu (gemv_variants.ts GATED_ACTS):
// the gated kernels of one activation, or all five.
#define KILN_GEMM_TILES(F) F(16, 64, 1, 4, 6) F(32, 64, 2, 2, 6) F(64, 128, 4, 1, 3)

#define KILN_GEMM_WO_B(B, BM, BN, WN, WK, S)                                                                  \
  extern "C" __global__ void __launch_bounds__(wog::kThreads) gemm_wo##B##_m##BM##n##BN(                     \
      const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,     \
      int n, int k) {                                                                                         \
    extern __shared__ __align__(16) unsigned char gemm_wo_smem[];                                             \
    wog::gemm<B, false, BM, BN, WN, WK, S, false, wog::NoAct>(x, q, scales, nullptr, bias, y, m, n, k,        \
                                                             wog::kGroup, gemm_wo_smem);                      \
  }
#define KILN_GEMM_WO_GATED_B(B, NAME, ACT, BM, BN, WN, WK, S)                                                 \
  extern "C" __global__ void __launch_bounds__(wog::kThreads) gemm_wo##B##_m##BM##n##BN##_gated_##NAME(      \
      const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,     \
      int inter, int k) {                                                                                     \
    extern __shared__ __align__(16) unsigned char gemm_wo_smem[];                                             \
    wog::gemm<B, false, BM, BN, WN, WK, S, true, kiln::ACT>(x, q, scales, nullptr, bias, y, m, inter, k,      \
                                                            wog::kGroup, gemm_wo_smem);                       \
  }
#define KILN_GEMM_ZP_T(BM, BN, WN, WK, S)                                                                     \
  extern "C" __global__ void __launch_bounds__(wog::kThreads) gemm_zp_m##BM##n##BN(                          \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const kiln_t* bias,   \
      kiln_t* y, int m, int n, int k, int group_size) {                                                       \
    extern __shared__ __align__(16) unsigned char gemm_wo_smem[];                                             \
    wog::gemm<4, true, BM, BN, WN, WK, S, false, wog::NoAct>(x, q, scales, zeros, bias, y, m, n, k,           \
                                                            group_size, gemm_wo_smem);                        \
  }
#define KILN_GEMM_ZP_GATED_T(NAME, ACT, BM, BN, WN, WK, S)                                                    \
  extern "C" __global__ void __launch_bounds__(wog::kThreads) gemm_zp_m##BM##n##BN##_gated_##NAME(           \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const kiln_t* bias,   \
      kiln_t* y, int m, int inter, int k, int group_size) {                                                   \
    extern __shared__ __align__(16) unsigned char gemm_wo_smem[];                                             \
    wog::gemm<4, true, BM, BN, WN, WK, S, true, kiln::ACT>(x, q, scales, zeros, bias, y, m, inter, k,         \
                                                           group_size, gemm_wo_smem);                         \
  }

#if !defined(GEMM_FAMILY) || GEMM_FAMILY != 2
#define KILN_GEMM_WO8(BM, BN, WN, WK, S) KILN_GEMM_WO_B(8, BM, BN, WN, WK, S)
#define KILN_GEMM_WO4(BM, BN, WN, WK, S) KILN_GEMM_WO_B(4, BM, BN, WN, WK, S)
KILN_GEMM_TILES(KILN_GEMM_WO8)
KILN_GEMM_TILES(KILN_GEMM_WO4)
#endif
#if !defined(GEMM_FAMILY) || GEMM_FAMILY != 1
KILN_GEMM_TILES(KILN_GEMM_ZP_T)
#endif

// The gated kernels of one activation: every family's, every tile's.
#if !defined(GEMM_FAMILY) || GEMM_FAMILY != 2
#define KILN_GEMM_GATED_WO(NAME, ACT, BM, BN, WN, WK, S)                                                      \
  KILN_GEMM_WO_GATED_B(8, NAME, ACT, BM, BN, WN, WK, S) KILN_GEMM_WO_GATED_B(4, NAME, ACT, BM, BN, WN, WK, S)
#else
#define KILN_GEMM_GATED_WO(NAME, ACT, BM, BN, WN, WK, S)
#endif
#if !defined(GEMM_FAMILY) || GEMM_FAMILY != 1
#define KILN_GEMM_GATED_ZP(NAME, ACT, BM, BN, WN, WK, S) KILN_GEMM_ZP_GATED_T(NAME, ACT, BM, BN, WN, WK, S)
#else
#define KILN_GEMM_GATED_ZP(NAME, ACT, BM, BN, WN, WK, S)
#endif
#define KILN_GEMM_GATED(NAME, ACT)                                                                            \
  KILN_GEMM_GATED_WO(NAME, ACT, 16, 64, 1, 4, 6)                                                              \
  KILN_GEMM_GATED_WO(NAME, ACT, 32, 64, 2, 2, 6)                                                              \
  KILN_GEMM_GATED_WO(NAME, ACT, 64, 128, 4, 1, 3)                                                             \
  KILN_GEMM_GATED_ZP(NAME, ACT, 16, 64, 1, 4, 6)                                                              \
  KILN_GEMM_GATED_ZP(NAME, ACT, 32, 64, 2, 2, 6)                                                              \
  KILN_GEMM_GATED_ZP(NAME, ACT, 64, 128, 4, 1, 3)

#if !defined(GEMV_ACT) || GEMV_ACT == 1
KILN_GEMM_GATED(silu, Silu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 2
KILN_GEMM_GATED(gelu, Gelu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 3
KILN_GEMM_GATED(gelu_pytorch_tanh, GeluTanh)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 4
KILN_GEMM_GATED(gelu_new, GeluNew)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 5
KILN_GEMM_GATED(relu, Relu)
#endif
