// The warp-GEMV skeleton of the quantized decode GEMVs (gemv_wo.cu, gemv_zp.cu, gemv_fp8.cu; gemv.cu keeps
// its own, tuned copy): a warp owns R weight rows; its lanes stream them in 16-byte vectors v = lane,
// lane + 32, … in order, U vectors per lane and row in flight while whole iterations fit, one at a time
// after; the first U are loaded before the PDL wait (weights only, pdl.cuh), x after; each lane keeps
// fp32 sums per row and row of x, reduced across the warp by shuffles in the epilogue. Every variant
// (R, U) and the gated kernel sum a row over the same vectors in the same order, so they agree bit for bit.
//
// A format F (one struct per .cu, built from the kernel's arguments) supplies what differs:
//   F::Row                 one weight row: its pointers (and per-row constants, read with them: weights)
//   F::Tile<R, U>          what a lane holds of U vectors of each of R rows: arrays [R][U] (q vectors, their
//                          groups' scales, …; an array of structs instead compiles to other code)
//   Row row(int r, int n)  weight row r clamped to n − 1 (rows past n are re-read, their sums never stored)
//   int vecs()             vectors per row to stream (those past are padding, never read)
//   load(const Row (&)[R], int v, Tile<R, U>&)   vectors v + 32·u of each row: streaming (__ldcs) loads of
//                          weights only (the first call runs before the PDL wait)
//   accumulate<R, U>(const Row (&)[R], int v, int m, const Tile<R, U>&, float (&acc)[R][GEMV_MAX_M])
//                          acc[r][j] += row r's vectors v + 32·u, u = 0 … U − 1 in order, · x row j (j < m)
//   float finish(const Row&, int j, float acc)   the warp-reduced (kiln::warp_sum) sum, scaled, before bias
// Kernels built on it: grid = (ceil(n / (R·W))), block = (32·W) for rows<R, U, W>; grid =
// (ceil(inter / kGatedWarps)), block = (32·kGatedWarps) for gated<Act> (one output feature a warp; Act one
// of activations.cuh's). Kernels stay in their .cu: names, __launch_bounds__, the format's arguments.
#pragma once

#include "activations.cuh"
#include "common.cuh"

#ifndef GEMV_MAX_M
#define GEMV_MAX_M 8
#endif

namespace kiln {
namespace gemv {

constexpr int kGatedWarps = 8;  // gated kernels: warps (output features) per block

/** The warp's R dot products with the m rows of x over its lanes' vectors (not yet reduced across the
 * warp): prefetch (weights only), PDL wait, then the vectors v = lane, lane + 32, … below f.vecs(), in
 * order, U at a time while whole iterations fit, one at a time after. `active` false: a warp past the
 * last row, which still waits (every CTA must) and returns false. */
template <int R, int U, class F>
__device__ __forceinline__ bool warp_dots(const F& f, const typename F::Row (&w)[R], bool active, int m,
                                          float (&acc)[R][GEMV_MAX_M]) {
  const int lane = threadIdx.x & 31;
  const int vecs = f.vecs();
  typename F::template Tile<R, U> wv;
  int v = lane;
  bool have = false;  // wv holds the vectors of the first iteration
  if (active && v + 32 * (U - 1) < vecs) {
    f.load(w, v, wv);
    have = true;
  }
  kiln::pdl_wait();  // x and y belong to the step (see pdl.cuh)
  kiln::pdl_launch_dependents();
  if (!active) return false;
#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) acc[r][j] = 0.f;
  }
  for (; v + 32 * (U - 1) < vecs; v += 32 * U) {
    if (!have) f.load(w, v, wv);
    have = false;
    f.template accumulate<R, U>(w, v, m, wv, acc);
  }
  for (; v < vecs; v += 32) {  // the rest: fewer than 32·U vectors per row
    typename F::template Tile<R, 1> wt;
    f.load(w, v, wt);
    f.template accumulate<R, 1>(w, v, m, wt, acc);
  }
  return true;
}

/** y[m, n] = x · Wᵀ (+ bias): the warp's rows row0 … row0 + R − 1, W warps a block. */
template <int R, int U, int W, class F>
__device__ __forceinline__ void rows(const F& f, const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m,
                                     int n) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * W + (threadIdx.x >> 5)) * R;  // the warp's rows: row0 .. row0 + R − 1
  typename F::Row w[R];
#pragma unroll
  for (int r = 0; r < R; r++) w[r] = f.row(row0 + r, n);
  float acc[R][GEMV_MAX_M];
  if (!warp_dots<R, U>(f, w, row0 < n, m, acc)) return;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r;
    const float b = bias && row < n ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        const float s = f.finish(w[r], j, acc[r][j]);
        if (lane == 0 && row < n) y[(size_t)j * n + row] = kiln::from_float(s + b);
      }
    }
  }
}

/** The gate_up GEMV with the gated activation as its epilogue (gemv.cu's gemv_gated_impl over another
 * weight format): W is the fused [2·inter, ·] weight (gate rows, then up rows), y [m, inter]; gate and
 * up are rounded to kiln_t as the plain GEMV stores them, then activated and multiplied as
 * activation.cu's gated_act does, so the output is the unfused pair's bit for bit. */
template <class Act, class F>
__device__ __forceinline__ void gated(const F& f, const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m,
                                      int inter) {
  constexpr int U = 4;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kGatedWarps + (threadIdx.x >> 5);
  const int r = min(row, inter - 1);
  const typename F::Row w[2] = {f.row(r, 2 * inter), f.row(inter + r, 2 * inter)};
  float acc[2][GEMV_MAX_M];
  if (!warp_dots<2, U>(f, w, row < inter, m, acc)) return;
  const float bg = bias ? kiln::to_float(bias[row]) : 0.f;
  const float bu = bias ? kiln::to_float(bias[inter + row]) : 0.f;
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) {
    if (j < m) {
      const float sg = f.finish(w[0], j, acc[0][j]), su = f.finish(w[1], j, acc[1][j]);
      const float g = kiln::round_t(sg + bg);
      const float u = kiln::round_t(su + bu);
      if (lane == 0) y[(size_t)j * inter + row] = kiln::from_float(__fmul_rn(Act::apply(g), u));
    }
  }
}

}  // namespace gemv
}  // namespace kiln
