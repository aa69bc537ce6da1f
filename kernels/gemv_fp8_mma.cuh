// The tensor-core FP8 decode GEMV (gemv_fp8.cu's gemv_fp8_mma and gemv_fp8_mma_gated_*; an A/B
// alternative to its CUDA-core kernels, KILN_FP8_GEMV=mma): 16 weight rows a block are mma.sync's A
// operand (mma_fp8.cuh, m16n8k32 E4M3), the m ≤ 8 rows of xq its B operand (columns m … 7 zero), fp32
// accumulators: no per-element conversion or FMA in the kernel. The block's kMmaWarps warps split k and
// add their partial sums in shared memory, in warp order (gemv_mma_tile.cuh); the epilogue scales as gemv_fp8 does.
//
// k order: a chunk is 64 consecutive k (4 vectors of 16 bytes). Lane (g = lane / 4, t = lane % 4) loads
// vector 4c + t of chunk c from weight rows row0 + g and row0 + g + 8 and from xq row g (zeros for g ≥ m
// and past k), one 16-byte load each. The first mma takes bytes 0-7 of each vector, the second bytes
// 8-15: fragment k slot 4t + i (i < 4) is byte i (8 + i) of vector 4c + t, slot 16 + 4t + i its byte
// 4 + i (12 + i). A's rows and B's columns read the same vectors for the same slots, so each mma sums 32
// products of matching k, and a row's 2·⌈k/64⌉ mmas cover every k once. This needs of the fragment
// layout only that a[0], a[2] hold row g and a[1], a[3] row g + 8, and that a[0] and b0 (a[2] and b1)
// of lanes with the same t cover the same k: where in the tile those k sit does not change the sum.
// Split: chunk c = step·(kMmaWarps·U) + warp·U + u (u < U): a warp streams U·64 consecutive bytes of
// each of its 16 rows per step, U·2 16-byte weight loads per lane in flight; the first step's weights
// are loaded before the PDL wait.
// Rows past n are re-read (clamped to n − 1), never stored. Needs k a multiple of 16, GEMV_MAX_M ≤ 8.
// The gated kernel runs the gate tile (rows row0…) and the up tile (inter + row0…) through the same
// chunks, mmas and warp order, so each sum is the plain kernel's bit for bit where the mma sums a row
// the same wherever it sits in the tile (inter a multiple of 16 puts it in the same place).
#pragma once

#include "activations.cuh"
#include "common.cuh"
#include "gemv_mma_tile.cuh"
#include "mma_fp8.cuh"
#include "pdl.cuh"

#ifndef GEMV_MAX_M
#define GEMV_MAX_M 8
#endif
static_assert(GEMV_MAX_M <= 8, "gemv_fp8_mma: x's rows are the 8 columns of one mma tile");

namespace kiln {
namespace fp8mma {

using gemv_mma::block_sum;
using gemv_mma::kMmaWarps;
using gemv_mma::kTileRows;
using gemv_mma::reduce;
constexpr int kMmaU = 4;    // chunks per warp and step (each: two 16-byte weight loads per lane)
constexpr int kChunk = 64;  // k per chunk: 4 lanes × 16 bytes

/** T tiles of 16 weight rows (the gated kernel's gate and up: T = 2) times the m rows of xq: each warp's
 * fp32 partial sums over its chunks, in mma fragment order (mma_fp8.cuh's C/D). `active` false: a block
 * past the last row, which still waits (every CTA must) and returns false. */
template <int T>
__device__ __forceinline__ bool warp_tiles(const unsigned char* __restrict__ xq, const uint4* const (&rows)[T][2],
                                           bool active, int m, int k, float (&acc)[T][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int vecs = k / 16, chunks = (k + kChunk - 1) / kChunk;
  constexpr int kStep = kMmaWarps * kMmaU;  // chunks per step of the whole block
  const uint4 zero = {0u, 0u, 0u, 0u};
  uint4 w[T][2][kMmaU];
  auto load = [&](int step) {
#pragma unroll
    for (int u = 0; u < kMmaU; u++) {
      const int v = 4 * (step + warp * kMmaU + u) + t;
#pragma unroll
      for (int i = 0; i < T; i++) {
#pragma unroll
        for (int h = 0; h < 2; h++) w[i][h][u] = v < vecs ? __ldcs(rows[i][h] + v) : zero;  // streamed once
      }
    }
  };
  if (active) load(0);
  kiln::pdl_wait();  // xq and y belong to the step (pdl.cuh)
  kiln::pdl_launch_dependents();
  if (!active) return false;
  const uint4* xr = reinterpret_cast<const uint4*>(xq + (size_t)min(g, m - 1) * k);
#pragma unroll
  for (int i = 0; i < T; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  for (int step = 0; step < chunks; step += kStep) {
    if (step > 0) load(step);
#pragma unroll
    for (int u = 0; u < kMmaU; u++) {
      const int v = 4 * (step + warp * kMmaU + u) + t;
      const uint4 x = v < vecs && g < m ? __ldg(xr + v) : zero;
#pragma unroll
      for (int i = 0; i < T; i++) {
        const unsigned lo[4] = {w[i][0][u].x, w[i][1][u].x, w[i][0][u].y, w[i][1][u].y};
        mma_e4m3_16832(acc[i], lo, x.x, x.y);
        const unsigned hi[4] = {w[i][0][u].z, w[i][1][u].z, w[i][0][u].w, w[i][1][u].w};
        mma_e4m3_16832(acc[i], hi, x.z, x.w);
      }
    }
  }
  return true;
}

/** The scaled sum as gemv_fp8 scales its own: (Σ·s[j])·sw. */
__device__ __forceinline__ float scale(float sum, const float* __restrict__ s, int j, float sw) {
  return __fmul_rn(__fmul_rn(sum, s[j]), sw);
}

/** y[m, n] = (xq · qᵀ)·s[t]·sw[r] (+ bias): rows blockIdx.x·16 … + 15. */
__device__ __forceinline__ void rows(const unsigned char* __restrict__ xq, const float* __restrict__ s,
                                     const unsigned char* __restrict__ q, const float* __restrict__ sw,
                                     const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m, int n, int k) {
  __shared__ float part[1][kMmaWarps][kTileRows][8];
  const int row0 = blockIdx.x * kTileRows, g = (threadIdx.x & 31) >> 2;
  const uint4* const rows[1][2] = {{reinterpret_cast<const uint4*>(q + (size_t)min(row0 + g, n - 1) * k),
                                    reinterpret_cast<const uint4*>(q + (size_t)min(row0 + g + 8, n - 1) * k)}};
  float acc[1][4];
  if (!warp_tiles<1>(xq, rows, row0 < n, m, k, acc)) return;
  reduce<1>(acc, part);
  const int f = threadIdx.x % kTileRows, j = threadIdx.x / kTileRows, row = row0 + f;
  if (j < m && row < n) {
    const float b = bias ? kiln::to_float(bias[row]) : 0.f;
    y[(size_t)j * n + row] = kiln::from_float(scale(block_sum<1>(part, 0, f, j), s, j, __ldcs(sw + row)) + b);
  }
}

/** The gated kernel: q, sw the fused gate_up weight [2·inter, k]; y [m, inter] = act(gate + b)·(up + b),
 * each rounded to kiln_t first, as gemv_warp.cuh's gated kernels. */
template <class Act>
__device__ __forceinline__ void gated(const unsigned char* __restrict__ xq, const float* __restrict__ s,
                                      const unsigned char* __restrict__ q, const float* __restrict__ sw,
                                      const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m, int inter,
                                      int k) {
  __shared__ float part[2][kMmaWarps][kTileRows][8];
  const int row0 = blockIdx.x * kTileRows, g = (threadIdx.x & 31) >> 2;
  const int ra = min(row0 + g, inter - 1), rb = min(row0 + g + 8, inter - 1);
  const uint4* const rows[2][2] = {
      {reinterpret_cast<const uint4*>(q + (size_t)ra * k), reinterpret_cast<const uint4*>(q + (size_t)rb * k)},
      {reinterpret_cast<const uint4*>(q + (size_t)(inter + ra) * k),
       reinterpret_cast<const uint4*>(q + (size_t)(inter + rb) * k)}};
  float acc[2][4];
  if (!warp_tiles<2>(xq, rows, row0 < inter, m, k, acc)) return;
  reduce<2>(acc, part);
  const int f = threadIdx.x % kTileRows, j = threadIdx.x / kTileRows, row = row0 + f;
  if (j < m && row < inter) {
    const float bg = bias ? kiln::to_float(bias[row]) : 0.f;
    const float bu = bias ? kiln::to_float(bias[inter + row]) : 0.f;
    const float gate = kiln::round_t(scale(block_sum<2>(part, 0, f, j), s, j, __ldcs(sw + row)) + bg);
    const float up = kiln::round_t(scale(block_sum<2>(part, 1, f, j), s, j, __ldcs(sw + inter + row)) + bu);
    y[(size_t)j * inter + row] = kiln::from_float(__fmul_rn(Act::apply(gate), up));
  }
}

}  // namespace fp8mma
}  // namespace kiln
