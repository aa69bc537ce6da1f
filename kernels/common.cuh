// Helpers shared by the non-attention kernels (embedding, norms, RoPE + KV write, activations,
// sampling): the activation element type, conversions, rounding to it, 16-byte vector access, warp and
// block reductions. Compiled by NVRTC at engine-build time and by nvcc in CI: device code only, no C++
// standard library (NVRTC has none), no cuda/std; only <cuda_fp16.h> and <cuda_bf16.h>.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   at most one: the activation dtype `kiln_t`
//     (a file that stores activations errors out without one; sampling.cu works on fp32 logits only)
//
// Numerics: every kernel computes in fp32 (sums in fp64 where the CPU reference sums in double) and
// rounds to kiln_t where Hugging Face's torch code rounds to the model dtype. Products and sums the
// CPU reference rounds one by one use the __f*_rn intrinsics, which the compiler never fuses into an
// FMA, so fp32 builds reproduce the reference's rounding order. Never compile with --use_fast_math.
//
// Programmatic dependent launch (pdl.cuh): every kernel calls kiln::pdl_wait() before its first read
// of a buffer an earlier kernel may write, before its first global write and before any `return`,
// then kiln::pdl_launch_dependents(). Only weights and constant inputs may be read before the wait.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "pdl.cuh"

#if defined(KILN_DTYPE_F32) + defined(KILN_DTYPE_F16) + defined(KILN_DTYPE_BF16) > 1
#error "define at most one of KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16"
#endif

#if defined(KILN_DTYPE_F32)
typedef float kiln_t;
#define KILN_HAS_DTYPE 1
#elif defined(KILN_DTYPE_F16)
typedef __half kiln_t;
#define KILN_HAS_DTYPE 1
#elif defined(KILN_DTYPE_BF16)
typedef __nv_bfloat16 kiln_t;
#define KILN_HAS_DTYPE 1
#else
#define KILN_HAS_DTYPE 0
#endif

namespace kiln {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000); }
__device__ __forceinline__ bool is_nan(float x) { return x != x; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

#if KILN_HAS_DTYPE
/** fp32 → kiln_t, round to nearest even (torch's `.to(dtype)`). */
__device__ __forceinline__ kiln_t from_float(float x) {
#if defined(KILN_DTYPE_F32)
  return x;
#elif defined(KILN_DTYPE_F16)
  return __float2half_rn(x);
#else
  return __float2bfloat16_rn(x);
#endif
}

/** The fp32 value of x rounded to kiln_t: what a torch op on kiln_t tensors stores. Identity for fp32. */
__device__ __forceinline__ float round_t(float x) {
#if defined(KILN_DTYPE_F32)
  return x;
#else
  return to_float(from_float(x));
#endif
}

/** Elements of kiln_t in one 16-byte vector. */
constexpr int kVec = 16 / (int)sizeof(kiln_t);

/** The widest vector (≤ 16 bytes, a power of two of elements) whose length divides `width`. */
__host__ __device__ constexpr int vec_for(int width) {
  int v = kVec;
  while (v > 1 && width % v != 0) v /= 2;
  return v;
}
#endif

/** True when p is 16-byte aligned (vector loads at row starts need it). */
__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

/** V consecutive elements, aligned to their size so one load/store instruction moves them. */
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

// ---- warp reductions (all 32 lanes must call) -------------------------------------------------------

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

__device__ __forceinline__ int warp_sum(int x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}

/** Max ignoring NaN (fmaxf), as the CPU reference's `if (v > max)` loop does. */
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

__device__ __forceinline__ int warp_min(int x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

// ---- block reductions --------------------------------------------------------------------------------
// blockDim.x must be a multiple of 32 (≤ 1024). `scratch` is __shared__ memory of 32 elements; every
// thread gets the result. The combination order is fixed by the launch shape, so results are
// deterministic run to run. They end with a __syncthreads so scratch can be reused at once.

template <typename T>
__device__ __forceinline__ T block_sum(T x, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  x = warp_sum(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  T r = lane < warps ? scratch[lane] : T(0);
  r = warp_sum(r);
  __syncthreads();
  return r;
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  x = warp_max(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = lane < warps ? scratch[lane] : neg_inf();
  r = warp_max(r);
  __syncthreads();
  return r;
}

__device__ __forceinline__ int block_min(int x, int* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  x = warp_min(x);
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  int r = lane < warps ? scratch[lane] : 0x7fffffff;
  r = warp_min(r);
  __syncthreads();
  return r;
}

}  // namespace kiln
