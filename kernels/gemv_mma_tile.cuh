// What the tensor-core decode GEMVs (gemv_fp8_mma.cuh, gemv_wo_mma.cuh) share: a block of kMmaWarps warps
// computes T tiles of 16 weight rows × the ≤ 8 rows of x (one mma tile's columns), its warps splitting k;
// each warp's fp32 partial sums (mma C/D fragment order: lane 4g + t holds (row g, columns 2t, 2t + 1) and
// (row g + 8, same columns)) are added in shared memory in warp order, so every run gives the same bits.
#pragma once

namespace kiln {
namespace gemv_mma {

constexpr int kMmaWarps = 8;  // warps per block: the k-split
constexpr int kTileRows = 16;

/** Adds the warps' partial sums (warp order) into part[T][warp] [16 rows][8 columns] and returns after the
 * block's barrier; part is [T][kMmaWarps][16][8] floats of shared memory. */
template <int T>
__device__ __forceinline__ void reduce(const float (&acc)[T][4], float (*part)[kMmaWarps][kTileRows][8]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < T; i++) {
    part[i][warp][g][2 * t] = acc[i][0];
    part[i][warp][g][2 * t + 1] = acc[i][1];
    part[i][warp][g + 8][2 * t] = acc[i][2];
    part[i][warp][g + 8][2 * t + 1] = acc[i][3];
  }
  __syncthreads();
}

/** Σ over the warps, in warp order, of tile i's (row f, column j). */
template <int T>
__device__ __forceinline__ float block_sum(float (*part)[kMmaWarps][kTileRows][8], int i, int f, int j) {
  float s = part[i][0][f][j];
#pragma unroll
  for (int q = 1; q < kMmaWarps; q++) s += part[i][q][f][j];
  return s;
}

}  // namespace gemv_mma
}  // namespace kiln
