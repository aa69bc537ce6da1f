// A tensor-core decode GEMV, for tools/microbench/gemv_mma.cu (not yet in the runtime):
// y[m, n] = x[m, k] · W[n, k]ᵀ for m ≤ 8 bf16 rows. Rows of W are mma.sync's A operand (16 output
// features per block), the rows of x its B operand (8 columns: the batch), fp32 accumulation; the
// block's warps split k and reduce in shared memory. The weights are read once whatever m is, where the
// CUDA-core GEMV (kernels/gemv.cu) spends one FMA pass per row of x on every weight vector.
//
// k order: lane (g = lane / 4, t = lane % 4) loads 16 bytes (8 bf16) of W rows f0 + g and f0 + g + 8
// and of x row g, at vector 4c + t of each 32-element chunk c. A dot product does not care which k sits
// in which fragment slot as long as A and B agree, so the first mma takes elements 0-3 of each vector
// (fragment k 2t, 2t+1 ↔ elements 0, 1; k 2t+8, 2t+9 ↔ elements 2, 3) and the second elements 4-7.
//   A regs {a0a1, a2a3, a4a5, a6a7} = {row g k 2t.., row g+8 k 2t.., row g k 2t+8.., row g+8 k 2t+8..}
//   B regs {b0b1, b2b3} = {x[g] k 2t.., x[g] k 2t+8..};  C: c0 c1 = (feature g, batch 2t, 2t+1),
//   c2 c3 = (feature g + 8, batch 2t, 2t+1)
// Needs: k a multiple of 8, rows 16-byte aligned. Grid ceil(n / 16), block 32 · WARPS.
#pragma once

#if defined(KILN_EMU_MMA)  // the CPU emulator (kernels/emulation/gemv_mma_check.cpp) supplies attn::mma_16816
inline void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  attn::mma_16816(d, a, b0, b1);
}
#else
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

template <int WARPS, int U>
__global__ void __launch_bounds__(32 * WARPS)
    gemv_mma(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w, __nv_bfloat16* __restrict__ y,
             int m, int n, int k) {
  __shared__ float part[WARPS][16][8];  // [warp][feature][batch row]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int f0 = blockIdx.x * 16;
  const uint4* wa = reinterpret_cast<const uint4*>(w + (size_t)min(f0 + g, n - 1) * k);
  const uint4* wb = reinterpret_cast<const uint4*>(w + (size_t)min(f0 + g + 8, n - 1) * k);
  const uint4* xr = reinterpret_cast<const uint4*>(x + (size_t)min(g, m - 1) * k);
  const bool has_x = g < m;
  const int vecs = k / 8, chunks = (vecs + 3) / 4;
  const uint4 zero = {0u, 0u, 0u, 0u};
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int c0 = warp; c0 < chunks; c0 += WARPS * U) {
    uint4 av[U], bv[U], xv[U];
#pragma unroll
    for (int u = 0; u < U; u++) {  // all loads first: U chunks in flight
      const int v = (c0 + u * WARPS) * 4 + t;
      const bool ok = v < vecs;
      av[u] = ok ? __ldcs(wa + v) : zero;
      bv[u] = ok ? __ldcs(wb + v) : zero;
      xv[u] = ok && has_x ? __ldg(xr + v) : zero;
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const unsigned a1[4] = {av[u].x, bv[u].x, av[u].y, bv[u].y};
      mma_bf16_16816(acc, a1, xv[u].x, xv[u].y);
      const unsigned a2[4] = {av[u].z, bv[u].z, av[u].w, bv[u].w};
      mma_bf16_16816(acc, a2, xv[u].z, xv[u].w);
    }
  }
  part[warp][g][2 * t] = acc[0];
  part[warp][g][2 * t + 1] = acc[1];
  part[warp][g + 8][2 * t] = acc[2];
  part[warp][g + 8][2 * t + 1] = acc[3];
  __syncthreads();
  for (int i = threadIdx.x; i < 16 * 8; i += blockDim.x) {
    const int b = i / 16, f = i % 16;  // consecutive threads, consecutive features of one row of y
    float s = 0.f;
#pragma unroll
    for (int q = 0; q < WARPS; q++) s += part[q][f][b];
    if (b < m && f0 + f < n) y[(size_t)b * n + f0 + f] = __float2bfloat16_rn(s);
  }
}
