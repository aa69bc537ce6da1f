// The tensor-core int4 decode GEMVs: gemv_wo.cu's gemv_wo4_mma (int4-wo) and gemv_zp.cu's gemv_zp_mma
// (int4-zp: AWQ / GPTQ with G a multiple of 128), and their gated kernels. 16 weight rows a block are
// mma.sync's A operand (m16n8k16, kiln_t: attention_ptx.cuh's mma_16816), the m ≤ 8 rows of x its B
// operand (columns m … 7 zero), fp32 accumulators. The CUDA-core kernels spend four instructions a weight
// (unpack, convert, subtract, FMA) and stay far from the bytes' time; here two int4 weights become one
// kiln_t pair with a shift, a LOP3 and one or two packed adds, and the MMA does the rest.
//
// Dequantization (int4 field j of a 32-bit word: bits 4j … 4j + 3, two's complement q ∈ [−8, 7]): the pair
// of fields (j, j + 4) sits at bits 4j and 16 + 4j, so (w >> 4j) & 0x000f000f ^ (M | 8 in each half) puts
// q + 8 into the low mantissa bits of M = 2^7 (bf16 0x4300) or 2^10 (fp16 0x6400) in both halves: exactly
// M + 8 + q; one packed FMA (x·1 − (M + 8)) leaves q, exact in kiln_t (int4-zp: unsigned q in the mantissa
// of M, − M, − z: Zp below). Products with x are exact, summed in fp32 by the MMA.
//
// k order: a chunk is 128 consecutive k (4 vectors of 16 bytes: one scale group, or 1/(G/128) of one).
// Lane (g = lane / 4, t = lane % 4) loads vector 4c + t of chunk c from weight rows row0 + g and row0 + g + 8
// and the same 32 features of x row g (64 bytes; zeros for g ≥ m and past k). Word i of a vector holds
// features 8i … 8i + 7; its two MMAs take the field pairs (0, 4), (1, 5) and then (2, 6), (3, 7) as a[0],
// a[2] (row g; a[1], a[3] row g + 8) and the matching x pairs as b0, b1. Lanes with the same t read the same
// vector, so each MMA sums 16 products of matching k, and a chunk's 8 MMAs cover its 128 k once: a chunk's
// sum is the group's partial, scaled by the row's group scale into the lane's accumulator.
// Split: a step of the block covers kMmaWarps·4 chunks, whatever the tiles T; warp w takes chunks
// step + 16j + 2w + e (j, e < 2: two pairs 16 chunks apart), 4·64 bytes of each of its 16 rows, loaded in
// rounds of U = 4 / T chunks (2·T·U = 8 16-byte weight loads per lane in flight). So a round of the gated
// kernel (U = 2) reads 16 consecutive chunks of each of its rows, as a round of the plain kernel reads 32,
// not every other 128 bytes; the first round's weights and scales are loaded before the PDL wait. The warps'
// partials add in warp order (gemv_mma_tile.cuh).
// Rows past n are re-read (clamped to n − 1), never stored. Needs k a multiple of 8 (x's 16-byte pieces),
// GEMV_MAX_M ≤ 8. Padding q (features ≥ k of the last group) meets x's zeros: q is finite, so it adds 0.
// The gated kernel runs the gate tile (rows row0 …) and the up tile (inter + row0 …) through the same
// chunks, MMAs and warp order, so each sum is the plain kernel's bit for bit where the MMA sums a row the
// same wherever it sits in the tile (inter a multiple of 16 puts it in the same place).
#pragma once

#include "activations.cuh"
#include "attention_ptx.cuh"
#include "common.cuh"
#include "gemv_mma_tile.cuh"
#include "pdl.cuh"

#ifndef GEMV_MAX_M
#define GEMV_MAX_M 8
#endif
static_assert(GEMV_MAX_M <= 8, "gemv_wo4_mma: x's rows are the 8 columns of one mma tile");

namespace kiln {
namespace womma {

using gemv_mma::kMmaWarps;
using gemv_mma::kTileRows;
constexpr int kLoads = 8;      // 16-byte weight loads per lane and step: T tiles × 2 rows × U chunks
constexpr int kChunk = 128;    // k per chunk: 4 lanes × 32 int4 features, one scale group
constexpr int kChunkBytes = 64;

#if defined(KILN_DTYPE_F16)
constexpr unsigned kOne = 0x3c003c00u;  // 1.0, 1.0
constexpr unsigned kM = 0x64006400u;    // 2^10 = 1024 in each half: a field in its low mantissa bits
constexpr unsigned kMinusM = 0xe400e400u;
#else
constexpr unsigned kOne = 0x3f803f80u;
constexpr unsigned kM = 0x43004300u;  // 2^7 = 128 in each half
constexpr unsigned kMinusM = 0xc300c300u;
#endif

/** d = a·1 + c on kiln_t pairs (fma.rn.{bf16,f16}x2): exact wherever a + c is representable. */
__device__ __forceinline__ unsigned add2(unsigned a, unsigned c) {
#if defined(__CUDA_ARCH__)
  unsigned r;
#if defined(KILN_DTYPE_F16)
  asm("fma.rn.f16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(kOne), "r"(c));
#else
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(kOne), "r"(c));
#endif
  return r;
#else  // the CPU emulator: each half's sum in fp32 (exact for these small integers), rounded to kiln_t
  const auto half = [](unsigned bits) {
    const unsigned short h = (unsigned short)bits;
    kiln_t e;
    memcpy(&e, &h, 2);
    return kiln::to_float(e);
  };
  const kiln_t e[2] = {kiln::from_float(half(a) + half(c)), kiln::from_float(half(a >> 16) + half(c >> 16))};
  unsigned u;
  memcpy(&u, e, 4);
  return u;
#endif
}

/** int4-wo: signed fields q ∈ [−8, 7], one fp32 scale per 128 features (gemv_wo.cu's layout: rows padded
 * to whole groups). The pair (q_j, q_{j+4}) of word w: nibble ^ 8 = q + 8 in the mantissa of M reads
 * M + 8 + q; one add of −(M + 8) leaves q. */
struct Wo4 {
  static constexpr bool kZeros = false;
  __device__ static unsigned pair(unsigned w, int j, unsigned) {
    return add2(((w >> (4 * j)) & 0x000f000fu) ^ (kM | 0x00080008u), kMinusM8);
  }
#if defined(KILN_DTYPE_F16)
  static constexpr unsigned kMinusM8 = 0xe408e408u;  // −1032
#else
  static constexpr unsigned kMinusM8 = 0xc308c308u;  // −136
#endif
};

/** int4-zp (AWQ, GPTQ): unsigned fields q ∈ [0, 15], fp32 scales and integer zero points per group of G
 * features (G a multiple of 128; gemv_zp.cu's layout: rows of k / 2 bytes). The pair (q_j − z,
 * q_{j+4} − z): q in the mantissa of M, then − M (exact: q), then − z (exact: |q − z| ≤ 255 for the
 * zero points the runtime lets through, zerosExactIn16Bit). `negz` is (−z, −z) as kiln_t. */
struct Zp {
  static constexpr bool kZeros = true;
  __device__ static unsigned pair(unsigned w, int j, unsigned negz) {
    return add2(add2(((w >> (4 * j)) & 0x000f000fu) | kM, kMinusM), negz);
  }
};

/** The x pairs of word i's MMAs, from x piece i (features 8i … 8i + 7 as four kiln_t pairs p.x … p.w):
 * (f0, f4), (f1, f5), (f2, f6), (f3, f7), low half first. */
__device__ __forceinline__ void x_pairs(const uint4& p, unsigned (&b)[4]) {
  b[0] = (p.x & 0xffffu) | (p.z << 16);
  b[1] = (p.x >> 16) | (p.z & 0xffff0000u);
  b[2] = (p.y & 0xffffu) | (p.w << 16);
  b[3] = (p.y >> 16) | (p.w & 0xffff0000u);
}

/** One weight row as a block reads it: its q vectors, and its scales (and zero points) by group. */
struct RowRef {
  const uint4* q;
  const float* s;
  const float* z;  // int4-zp only
};

/** T tiles of 16 weight rows (the gated kernel's gate and up: T = 2) times the m rows of x: each warp's
 * fp32 partial sums over its chunks, scaled by the group scales, in mma fragment order. A step of the
 * block covers kMmaWarps · kStepU chunks, warp w the same kStepU of them (`chunk`, in pairs) whatever T:
 * the gated kernel's gate and up rows get the plain kernel's chunks per warp, in its order, so their sums
 * are its bits. It loads them in kStepU / U rounds of U = kLoads / 2T chunks (the same bytes in flight,
 * and registers for two CTAs an SM; three for the plain kernel). rows[i][h]: tile i's row g (h = 0) and
 * g + 8 (h = 1); a chunk c is group c / cpg (cpg chunks a group). `active` false: a block past the last
 * row, which still waits (every CTA must) and returns false. */
template <class F, int T, bool kPipe = false, int U = kLoads / (2 * T)>
__device__ __forceinline__ bool warp_tiles(const kiln_t* __restrict__ x, const RowRef (&rows)[T][2], int cpg,
                                           bool active, int m, int k, float (&acc)[T][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int vecs = (k + 31) / 32, chunks = (k + kChunk - 1) / kChunk;
  constexpr int kStepU = kLoads / 2;        // chunks per warp and step (the plain kernel's U)
  constexpr int kRounds = kStepU / U;       // load rounds per step
  static_assert(kStepU % U == 0, "a step is whole rounds");
  constexpr int kStep = kMmaWarps * kStepU;  // chunks per step of the whole block
  constexpr int kPair = 2;                   // a warp's consecutive chunks: the gated kernel's U
  static_assert(U % kPair == 0 && kStepU % kPair == 0, "rounds are whole pairs");
  const uint4 zero = {0u, 0u, 0u, 0u};
  // A round's registers: its weight vectors, scales and (int4-zp) zero points.
  struct Round {
    uint4 w[T][2][U];
    float s[T][2][U], z[T][2][U];
  };
  // The warp's i-th chunk of a step (i < kStepU): pair i / kPair of the step's pairs, kMmaWarps·kPair
  // chunks apart, so every round of the block reads whole contiguous runs of each row (U = kPair: the
  // chunks step + j·kMmaWarps·kPair … + kMmaWarps·kPair − 1 for round j), not half of each warp's run.
  auto chunk = [&](int r, int u) {
    const int i = r % kRounds * U + u;
    return r / kRounds * kStep + i / kPair * (kMmaWarps * kPair) + warp * kPair + i % kPair;
  };
  auto load = [&](Round& b, int r) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int c = chunk(r, u), v = 4 * c + t;
#pragma unroll
      for (int i = 0; i < T; i++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
          b.w[i][h][u] = v < vecs ? __ldcs(rows[i][h].q + v) : zero;  // streamed once
          b.s[i][h][u] = c < chunks ? __ldcs(rows[i][h].s + c / cpg) : 0.f;
          if constexpr (F::kZeros) b.z[i][h][u] = c < chunks ? __ldcs(rows[i][h].z + c / cpg) : 0.f;
        }
      }
    }
  };
  const kiln_t* xr = x + (size_t)min(g, m - 1) * k;
  // Round r's chunks into acc, in the warp's chunk order (the same whichever registers hold them).
  auto sum = [&](const Round& b, int r) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int f0 = 32 * (4 * chunk(r, u) + t);  // the lane's first feature
      uint4 xp[4];
#pragma unroll
      for (int p = 0; p < 4; p++)
        xp[p] = g < m && f0 + 8 * p < k ? __ldg(reinterpret_cast<const uint4*>(xr + f0 + 8 * p)) : zero;
#pragma unroll
      for (int i = 0; i < T; i++) {
        float part[4] = {0.f, 0.f, 0.f, 0.f};  // the chunk's (group's) sums
        const unsigned wa[4] = {b.w[i][0][u].x, b.w[i][0][u].y, b.w[i][0][u].z, b.w[i][0][u].w};
        const unsigned wb[4] = {b.w[i][1][u].x, b.w[i][1][u].y, b.w[i][1][u].z, b.w[i][1][u].w};
        unsigned za = 0u, zb = 0u;  // int4-zp: (−z, −z) of each row's group
        if constexpr (F::kZeros) {
          za = attn::pack2(-b.z[i][0][u], -b.z[i][0][u]);
          zb = attn::pack2(-b.z[i][1][u], -b.z[i][1][u]);
        }
#pragma unroll
        for (int q = 0; q < 4; q++) {
          unsigned bx[4];
          x_pairs(xp[q], bx);
          const unsigned a0[4] = {F::pair(wa[q], 0, za), F::pair(wb[q], 0, zb), F::pair(wa[q], 1, za),
                                  F::pair(wb[q], 1, zb)};
          attn::mma_16816(part, a0, bx[0], bx[1]);
          const unsigned a1[4] = {F::pair(wa[q], 2, za), F::pair(wb[q], 2, zb), F::pair(wa[q], 3, za),
                                  F::pair(wb[q], 3, zb)};
          attn::mma_16816(part, a1, bx[2], bx[3]);
        }
        acc[i][0] = fmaf(part[0], b.s[i][0][u], acc[i][0]);
        acc[i][1] = fmaf(part[1], b.s[i][0][u], acc[i][1]);
        acc[i][2] = fmaf(part[2], b.s[i][1][u], acc[i][2]);
        acc[i][3] = fmaf(part[3], b.s[i][1][u], acc[i][3]);
      }
    }
  };
  Round b0;
  if (active) load(b0, 0);
  kiln::pdl_wait();  // x and y belong to the step (pdl.cuh)
  kiln::pdl_launch_dependents();
  if (!active) return false;
#pragma unroll
  for (int i = 0; i < T; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  const int rounds = (chunks + kStep - 1) / kStep * kRounds;
  if constexpr (!kPipe) {
    for (int r = 0; r < rounds; r++) {
      if (r > 0) load(b0, r);
      sum(b0, r);
    }
  } else {  // two rounds in flight: while one is summed, the next one's loads are out
    Round b1;
    if (rounds > 1) load(b1, 1);
    for (int r = 0; r < rounds; r += 2) {
      sum(b0, r);
      if (r + 2 < rounds) load(b0, r + 2);
      if (r + 1 < rounds) {
        sum(b1, r + 1);
        if (r + 3 < rounds) load(b1, r + 3);
      }
    }
  }
  return true;
}

/** Where a weight's rows lie: q rows of row_bytes, scales (and zero points) rows of `groups`; cpg chunks of
 * 128 features a group. Rows past n are clamped to n − 1 (re-read, never stored). */
struct Layout {
  const unsigned char* q;
  const float* scales;
  const float* zeros;
  size_t row_bytes;
  int groups, cpg;
  __device__ __forceinline__ RowRef row(int r, int n) const {
    const size_t c = (size_t)min(r, n - 1);
    return {reinterpret_cast<const uint4*>(q + c * row_bytes), scales + c * groups, zeros ? zeros + c * groups : nullptr};
  }
};

/** int4-wo (gemv_wo.cu): rows padded to whole groups of 128. */
__device__ __forceinline__ Layout wo4_layout(const unsigned char* q, const float* scales, int k) {
  const int groups = (k + kChunk - 1) / kChunk;
  return {q, scales, nullptr, (size_t)groups * kChunkBytes, groups, 1};
}

/** int4-zp (gemv_zp.cu): rows of k / 2 bytes, groups of G (a multiple of 128). */
__device__ __forceinline__ Layout zp_layout(const unsigned char* q, const float* scales, const float* zeros, int k,
                                            int group_size) {
  return {q, scales, zeros, (size_t)k / 2, (k + group_size - 1) / group_size, group_size / kChunk};
}

/** y[m, n] = x·Wᵀ (+ bias): rows blockIdx.x·16 … + 15. kPipe: two load rounds in flight (the next one's
 * loads out while this one is summed; twice the weight registers), for rows of several rounds. */
template <class F, bool kPipe = false>
__device__ __forceinline__ void rows(const kiln_t* __restrict__ x, const Layout& lo, const kiln_t* __restrict__ bias,
                                     kiln_t* __restrict__ y, int m, int n, int k) {
  __shared__ float part[1][kMmaWarps][kTileRows][8];
  const int row0 = blockIdx.x * kTileRows, g = (threadIdx.x & 31) >> 2;
  const RowRef rr[1][2] = {{lo.row(row0 + g, n), lo.row(row0 + g + 8, n)}};
  float acc[1][4];
  if (!warp_tiles<F, 1, kPipe>(x, rr, lo.cpg, row0 < n, m, k, acc)) return;
  gemv_mma::reduce<1>(acc, part);
  const int f = threadIdx.x % kTileRows, j = threadIdx.x / kTileRows, row = row0 + f;
  if (j < m && row < n) {
    const float b = bias ? kiln::to_float(bias[row]) : 0.f;
    y[(size_t)j * n + row] = kiln::from_float(gemv_mma::block_sum<1>(part, 0, f, j) + b);
  }
}

/** The gated kernel: the fused gate_up weight [2·inter, k]; y [m, inter] = act(gate + b)·(up + b), each
 * rounded to kiln_t first, as gemv_warp.cuh's gated kernels. */
template <class F, class Act>
__device__ __forceinline__ void gated(const kiln_t* __restrict__ x, const Layout& lo, const kiln_t* __restrict__ bias,
                                      kiln_t* __restrict__ y, int m, int inter, int k) {
  __shared__ float part[2][kMmaWarps][kTileRows][8];
  const int row0 = blockIdx.x * kTileRows, g = (threadIdx.x & 31) >> 2;
  const int ra = min(row0 + g, inter - 1), rb = min(row0 + g + 8, inter - 1), n = 2 * inter;
  const RowRef rr[2][2] = {{lo.row(ra, n), lo.row(rb, n)}, {lo.row(inter + ra, n), lo.row(inter + rb, n)}};
  float acc[2][4];
  if (!warp_tiles<F, 2>(x, rr, lo.cpg, row0 < inter, m, k, acc)) return;
  gemv_mma::reduce<2>(acc, part);
  const int f = threadIdx.x % kTileRows, j = threadIdx.x / kTileRows, row = row0 + f;
  if (j < m && row < inter) {
    const float bg = bias ? kiln::to_float(bias[row]) : 0.f;
    const float bu = bias ? kiln::to_float(bias[inter + row]) : 0.f;
    const float gate = kiln::round_t(gemv_mma::block_sum<2>(part, 0, f, j) + bg);
    const float up = kiln::round_t(gemv_mma::block_sum<2>(part, 1, f, j) + bu);
    y[(size_t)j * inter + row] = kiln::from_float(__fmul_rn(Act::apply(gate), up));
  }
}

}  // namespace womma
}  // namespace kiln
