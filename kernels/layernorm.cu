// LayerNorm over the last dimension (torch.nn.LayerNorm: biased variance) and the fused residual add +
// LayerNorm. Reference: layerNorm in src/backends/cpu/kernels/norm.ts.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of x, residual, weight, bias and out
//   WIDTH         normalised width (hidden size)
//
// extern "C" __global__ void layer_norm(
//     const kiln_t* x,        // [rows, WIDTH]
//     const kiln_t* weight,   // [WIDTH], or null (weight 1)
//     const kiln_t* bias,     // [WIDTH], or null (bias 0)
//     kiln_t* out,            // [rows, WIDTH]; may be x
//     float eps, int rows)
// extern "C" __global__ void add_layer_norm(
//     kiln_t* residual,       // [rows, WIDTH]; residual += x (rounded to T), in place
//     const kiln_t* x,        // [rows, WIDTH]
//     const kiln_t* weight, const kiln_t* bias,   // [WIDTH] each, or null
//     kiln_t* out,            // [rows, WIDTH]; may be x, must not be residual
//     float eps, int rows)
//   grid  = (rows); block = as rms_norm: min(1024, roundUp(ceil(WIDTH / vec), 32)), any multiple of 32
//   shared memory: 256 bytes, static
//
// Arithmetic: mean and variance in fp64 with two passes (the reference's), rounded to fp32; then the
// reference's fp32 order y = (x·rstd + (−rstd·mean))·w + b, each op rounded to fp32 (no FMA). torch's
// CUDA layer_norm on 16-bit inputs computes in fp32 and rounds once to T at the end; so do we.
#include "common.cuh"

#if !KILN_HAS_DTYPE
#error "layernorm.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#if !defined(WIDTH)
#error "layernorm.cu needs WIDTH"
#endif

namespace {

template <int V>
__device__ __forceinline__ void layer_norm_row(const kiln_t* x, const kiln_t* weight, const kiln_t* bias, kiln_t* out,
                                               float eps, double sum) {
  __shared__ double scratch[32];
  constexpr int n = WIDTH / V;
  const double mean_d = kiln::block_sum(sum, scratch) / (double)WIDTH;
  double sum_sq = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
#pragma unroll
    for (int j = 0; j < V; j++) {
      const double c = (double)kiln::to_float(xv.v[j]) - mean_d;
      sum_sq += c * c;
    }
  }
  sum_sq = kiln::block_sum(sum_sq, scratch);
  const float mean = (float)mean_d;
  const float variance = (float)(sum_sq / (double)WIDTH);
  const float rstd = __frcp_rn(__fsqrt_rn(__fadd_rn(variance, eps)));
  const float shift = __fmul_rn(-rstd, mean);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
    kiln::Vec<kiln_t, V> ov;
#pragma unroll
    for (int j = 0; j < V; j++) {
      float y = __fadd_rn(__fmul_rn(kiln::to_float(xv.v[j]), rstd), shift);
      if (weight != nullptr) y = __fmul_rn(y, kiln::to_float(weight[i * V + j]));
      if (bias != nullptr) y = __fadd_rn(y, kiln::to_float(bias[i * V + j]));
      ov.v[j] = kiln::from_float(y);
    }
    kiln::store_vec<kiln_t, V>(out + i * V, ov);
  }
}

template <int V>
__device__ __forceinline__ double row_sum(const kiln_t* x) {
  constexpr int n = WIDTH / V;
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
#pragma unroll
    for (int j = 0; j < V; j++) sum += (double)kiln::to_float(xv.v[j]);
  }
  return sum;
}

/** residual += x (rounded to T) for this thread's elements; returns their sum. */
template <int V>
__device__ __forceinline__ double add_residual(kiln_t* residual, const kiln_t* x) {
  constexpr int n = WIDTH / V;
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    kiln::Vec<kiln_t, V> rv = kiln::load_vec<kiln_t, V>(residual + i * V);
    const kiln::Vec<kiln_t, V> xv = kiln::load_vec<kiln_t, V>(x + i * V);
#pragma unroll
    for (int j = 0; j < V; j++) {
      rv.v[j] = kiln::from_float(__fadd_rn(kiln::to_float(rv.v[j]), kiln::to_float(xv.v[j])));
      sum += (double)kiln::to_float(rv.v[j]);
    }
    kiln::store_vec<kiln_t, V>(residual + i * V, rv);
  }
  return sum;
}

__device__ __forceinline__ bool all_aligned(const void* a, const void* b, const void* c, const void* d) {
  return kiln::aligned16(a) && kiln::aligned16(b) && kiln::aligned16(c) && kiln::aligned16(d);
}

}  // namespace

extern "C" __global__ void layer_norm(const kiln_t* x, const kiln_t* weight, const kiln_t* bias, kiln_t* out,
                                      float eps, int rows) {
  kiln::pdl_wait();  // x / residual come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int r = blockIdx.x;
  if (r >= rows) return;
  const long long off = (long long)r * WIDTH;
  constexpr int V = kiln::vec_for(WIDTH);
  if (all_aligned(x, weight, bias, out)) {
    layer_norm_row<V>(x + off, weight, bias, out + off, eps, row_sum<V>(x + off));
  } else {
    layer_norm_row<1>(x + off, weight, bias, out + off, eps, row_sum<1>(x + off));
  }
}

// The residual's second and third reads (variance, output) are of elements this thread wrote itself.
extern "C" __global__ void add_layer_norm(kiln_t* residual, const kiln_t* x, const kiln_t* weight,
                                          const kiln_t* bias, kiln_t* out, float eps, int rows) {
  kiln::pdl_wait();  // x / residual come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int r = blockIdx.x;
  if (r >= rows) return;
  const long long off = (long long)r * WIDTH;
  constexpr int V = kiln::vec_for(WIDTH);
  if (all_aligned(residual, x, weight, bias) && kiln::aligned16(out)) {
    layer_norm_row<V>(residual + off, weight, bias, out + off, eps, add_residual<V>(residual + off, x + off));
  } else {
    layer_norm_row<1>(residual + off, weight, bias, out + off, eps, add_residual<1>(residual + off, x + off));
  }
}
