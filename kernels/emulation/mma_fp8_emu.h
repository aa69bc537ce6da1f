// Host stand-in for kernels/mma_fp8.cuh (mma.sync m16n8k32 E4M3, fp32 accumulators) on fakecuda.h's
// fibers. Include after fakecuda.h and before the kernel source: it defines KILN_MMA_FP8_CUH, so the
// inline-PTX version is skipped. Warp-collective through kiln_emu::warp_allgather, with the PTX ISA
// fragment layouts (mma_fp8.cuh's comment): each output's 32 products are exact, summed in double and
// added to the fp32 accumulator with one rounding, one instance of what the hardware may do (its
// accumulation is bounded by test/gpu/kernels/tolerances.ts FP8_MMA, which this is well within).
#pragma once
#define KILN_MMA_FP8_CUH
#include "cuda_fp8.h"

namespace kiln {

/** d += A·B for one m16n8k32 E4M3 tile. A(row, k) is byte k % 4 of lane 4·(row % 8) + (k % 16) / 4's
 * a[(row ≥ 8) + 2·(k ≥ 16)]; B(k, col) byte k % 4 of lane 4·col + (k % 16) / 4's b[k ≥ 16]. */
inline void mma_e4m3_16832(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  struct In { unsigned a[4], b[2]; };
  In all[32];
  kiln_emu::warp_allgather(In{{a[0], a[1], a[2], a[3]}, {b0, b1}}, all);
  auto byte = [](unsigned reg, int k) { return fake_fp8::value((reg >> (8 * (k & 3))) & 0xff); };
  auto A = [&](int row, int k) { return byte(all[4 * (row & 7) + (k & 15) / 4].a[(row >= 8) + 2 * (k >= 16)], k); };
  auto B = [&](int k, int col) { return byte(all[4 * col + (k & 15) / 4].b[k >= 16], k); };
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  for (int i = 0; i < 4; i++) {
    const int row = g + 8 * (i >= 2), col = 2 * t + (i & 1);
    double s = 0;
    for (int k = 0; k < 32; k++) s += A(row, k) * B(k, col);
    d[i] = (float)((double)d[i] + s);
  }
}

}  // namespace kiln
