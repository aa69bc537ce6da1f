// Decode GEMV: y[m, n] = x[m, :] · W[n, :]ᵀ (+ bias[n]) for a few rows of x (m ≤ GEMV_MAX_M), the
// bandwidth-bound shape of every decode-step GEMM. One warp owns one output feature n: its lanes
// stream W's row n in 16-byte vectors (8 bf16/fp16), each multiplied with the same columns of all m
// rows of x (read through L1/L2, shared by every warp), accumulated in fp32, reduced across the warp
// by shuffles. Four vectors per lane are in flight per iteration so the memory system stays busy.
// Reference: linear() in src/backends/cpu/kernels/linear.ts (fp32 sums; the summation order differs
// from cuBLASLt's and the CPU's, so 16-bit outputs may differ by one rounding step of kiln_t).
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of x, W, bias and y (the runtime uses it for
//                  16-bit engines; fp32 engines keep cuBLASLt's exact-fp32 GEMMs for Hugging Face fidelity)
//   GEMV_MAX_M     largest m (default 8)
//
// extern "C" __global__ void gemv(
//     const kiln_t* x,       // [m, k]
//     const kiln_t* w,       // [n, k]   (HF nn.Linear layout)
//     const kiln_t* bias,    // [n] or null
//     kiln_t* y,             // [m, n]
//     int m, int n, int k)   // k a multiple of 16 bytes of kiln_t (8 bf16/fp16, 4 fp32); rows 16-byte aligned
// extern "C" __global__ void gemv_f32out(... float* y ...)   the same, fp32 output (logits)
//   grid  = (ceil(n / 8)), block = (256): 8 warps, one output feature each
//   shared memory: none
#include "common.cuh"

#if !KILN_HAS_DTYPE
#error "gemv.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#ifndef GEMV_MAX_M
#define GEMV_MAX_M 8
#endif

namespace {

constexpr int kWarps = 8;
constexpr int kUnroll = 4;
constexpr int kElems = kiln::kVec;  // kiln_t per 16-byte vector

// Overloads, not specialisations: in fp32 builds kiln_t is float and the two coincide.
__device__ __forceinline__ void store_out(float* y, float v) { *y = v; }
#if !defined(KILN_DTYPE_F32)
__device__ __forceinline__ void store_out(kiln_t* y, float v) { *y = kiln::from_float(v); }
#endif

__device__ __forceinline__ void dot_vec(const uint4& wv, const uint4& xv, float& acc) {
  const kiln_t* w = reinterpret_cast<const kiln_t*>(&wv);
  const kiln_t* x = reinterpret_cast<const kiln_t*>(&xv);
#pragma unroll
  for (int i = 0; i < kElems; i++) acc = fmaf(kiln::to_float(w[i]), kiln::to_float(x[i]), acc);
}

template <typename Out>
__device__ __forceinline__ void gemv_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                          const kiln_t* __restrict__ bias, Out* __restrict__ y, int m, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (row >= n) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + (size_t)row * k);
  const int vecs = k / kElems;
  float acc[GEMV_MAX_M];
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) acc[j] = 0.f;
  int v = lane;
  for (; v + 32 * (kUnroll - 1) < vecs; v += 32 * kUnroll) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++) wv[u] = __ldcs(wr + v + 32 * u);  // streamed once: evict first
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        const uint4* xr = reinterpret_cast<const uint4*>(x + (size_t)j * k);
#pragma unroll
        for (int u = 0; u < kUnroll; u++) dot_vec(wv[u], __ldg(xr + v + 32 * u), acc[j]);
      }
    }
  }
  for (; v < vecs; v += 32) {
    const uint4 wv = __ldcs(wr + v);
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) dot_vec(wv, __ldg(reinterpret_cast<const uint4*>(x + (size_t)j * k) + v), acc[j]);
    }
  }
  const float b = bias ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) {
    if (j < m) {
      const float s = kiln::warp_sum(acc[j]);
      if (lane == 0) store_out(y + (size_t)j * n + row, s + b);
    }
  }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(256)
    gemv(const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) {
  gemv_impl<kiln_t>(x, w, bias, y, m, n, k);
}

extern "C" __global__ void __launch_bounds__(256)
    gemv_f32out(const kiln_t* x, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {
  gemv_impl<float>(x, w, bias, y, m, n, k);
}
