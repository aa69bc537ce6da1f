// RMSNorm (LlamaRMSNorm; Mistral, Qwen2, Qwen3's q_norm/k_norm alike) and the fused residual add +
// RMSNorm of a decoder layer. Reference: rmsNorm / addRmsNorm in src/backends/cpu/kernels/norm.ts.
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of x, residual, weight and out
//   WIDTH         normalised width: the hidden size, or the head size for a per-head norm (rows = T·H)
//
// extern "C" __global__ void rms_norm(
//     const kiln_t* x,        // [rows, WIDTH]
//     const kiln_t* weight,   // [WIDTH]
//     kiln_t* out,            // [rows, WIDTH]; may be x
//     float eps, int rows)
// extern "C" __global__ void add_rms_norm(
//     const kiln_t* residual, // [rows, WIDTH]
//     const kiln_t* x,        // [rows, WIDTH]
//     const kiln_t* weight,   // [WIDTH]
//     kiln_t* out,            // [rows, WIDTH]; may be x, must not be residual or residual_out
//     kiln_t* residual_out,   // [rows, WIDTH] = residual + x; may be residual (in place)
//     float eps, int rows)
//   grid  = (rows)            one block per row
//   block = (min(1024, roundUp(ceil(WIDTH / vec), 32))) with vec = 16 bytes / sizeof(kiln_t) (4 fp32,
//           8 fp16/bf16) when WIDTH is a multiple of it: one 16-byte vector per thread. Any multiple of
//           32 up to 1024 is correct; the block loops over the row.
//   shared memory: 256 bytes, static
//   The weight vector of each thread is loaded before the PDL wait when a row fits the block in 16-byte
//   vectors (one per thread); the row is then normalised from registers (norm_reg below).
//
// What HF computes, for an input of dtype T (LlamaRMSNorm.forward):
//   h = x.to(fp32); variance = h.pow(2).mean(-1); h = h * rsqrt(variance + eps)
//   return weight * h.to(T)        ← h is rounded to T BEFORE the weight multiply (a T × T product,
//                                     itself rounded to T). fp32 models round nothing: that is the CPU
//                                     reference, `weight[i] * f32(x * rstd)`.
// Here: squares in fp32 summed in fp64 (the reference sums in double), variance and rstd with the
// reference's correctly rounded fp32 ops (rstd = 1 / sqrt, not the approximate rsqrtf), h = x · rstd
// in fp32, round_t(h), then weight · h rounded to T. In fp32 this is the reference's arithmetic op for
// op; the sum of squares may differ in its last double bits (summation order), so an fp32 output can
// differ from the reference by an ulp, rarely. The residual sum is rounded to T (HF adds in T) and
// the rounded sum is what gets normalised, as HF normalises the stored residual.
#include "common.cuh"
#include "rmsnorm.cuh"

#if !KILN_HAS_DTYPE
#error "rmsnorm.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#if !defined(WIDTH)
#error "rmsnorm.cu needs WIDTH"
#endif

namespace {

template <int V>
using VecT = kiln::Vec<kiln_t, V>;

/** rstd from the sum of squares, with the reference's fp32 roundings (rmsnorm.cuh). */
__device__ __forceinline__ float rstd_of(double sum_sq, float eps) { return kiln::rms_rstd(sum_sq, WIDTH, eps); }

/** sum_sq += the fp32 squares of v's elements, one at a time (hidden_states.pow(2) is an fp32 tensor). */
template <int V>
__device__ __forceinline__ void add_squares(const VecT<V>& v, double& sum_sq) {
#pragma unroll
  for (int j = 0; j < V; j++) {
    const float f = kiln::to_float(v.v[j]);
    sum_sq += (double)__fmul_rn(f, f);
  }
}

/** rv = residual + x rounded to T as HF adds them, and sum_sq += the squares of the sums. */
template <int V>
__device__ __forceinline__ void add_residual(VecT<V>& rv, const VecT<V>& xv, double& sum_sq) {
#pragma unroll
  for (int j = 0; j < V; j++) rv.v[j] = kiln::residual_sum(rv.v[j], xv.v[j]);
  add_squares<V>(rv, sum_sq);
}

/** weight · round_t(x · rstd), element by element. */
template <int V>
__device__ __forceinline__ VecT<V> normalized(const VecT<V>& xv, const VecT<V>& wv, float rstd) {
  VecT<V> ov;
#pragma unroll
  for (int j = 0; j < V; j++) ov.v[j] = kiln::rms_apply(xv.v[j], wv.v[j], rstd);
  return ov;
}

/** out = weight * round_t(x * rstd), for the row `src` (read again: it is in L1 from the first pass). */
template <int V>
__device__ __forceinline__ void normalize_row(const kiln_t* src, const kiln_t* weight, kiln_t* dst, float rstd) {
  constexpr int n = WIDTH / V;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const VecT<V> xv = kiln::load_vec<kiln_t, V>(src + i * V);
    kiln::store_vec<kiln_t, V>(dst + i * V, normalized<V>(xv, kiln::load_vec<kiln_t, V>(weight + i * V), rstd));
  }
}

template <int V>
__device__ __forceinline__ void rms_norm_row(const kiln_t* x, const kiln_t* weight, kiln_t* out, float eps) {
  __shared__ double scratch[32];
  constexpr int n = WIDTH / V;
  double sum_sq = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) add_squares<V>(kiln::load_vec<kiln_t, V>(x + i * V), sum_sq);
  const float rstd = rstd_of(kiln::block_sum(sum_sq, scratch), eps);
  normalize_row<V>(x, weight, out, rstd);
}

template <int V>
__device__ __forceinline__ void add_rms_norm_row(const kiln_t* residual, const kiln_t* x, const kiln_t* weight,
                                                 kiln_t* out, kiln_t* residual_out, float eps) {
  __shared__ double scratch[32];
  constexpr int n = WIDTH / V;
  double sum_sq = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    VecT<V> rv = kiln::load_vec<kiln_t, V>(residual + i * V);
    add_residual<V>(rv, kiln::load_vec<kiln_t, V>(x + i * V), sum_sq);
    kiln::store_vec<kiln_t, V>(residual_out + i * V, rv);
  }
  // Each thread reads back only the residual elements it wrote itself, so no extra barrier is needed;
  // block_sum's barriers order every read of x (pass 1) before any write of out (pass 2).
  const float rstd = rstd_of(kiln::block_sum(sum_sq, scratch), eps);
  normalize_row<V>(residual_out, weight, out, rstd);
}

/** The weight's vector at p (V elements) through the read-only path, ld.global.nc: the kernels load it
 * before their PDL wait (a constant: pdl.cuh). */
template <int V>
__device__ __forceinline__ VecT<V> weight_vec(const kiln_t* p) {
  VecT<V> w;
  if constexpr (sizeof(w) == 16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    memcpy(&w, &u, sizeof(w));
  } else if constexpr (sizeof(w) == 8) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    memcpy(&w, &u, sizeof(w));
  } else if constexpr (sizeof(w) == 4) {
    const unsigned u = __ldg(reinterpret_cast<const unsigned*>(p));
    memcpy(&w, &u, sizeof(w));
  } else {
    const unsigned short u = __ldg(reinterpret_cast<const unsigned short*>(p));
    memcpy(&w, &u, sizeof(w));
  }
  return w;
}

// The register path, for rows of at most blockDim.x vectors (every width the launch configuration
// gives ≤ 8,192 elements of 16-bit types): each thread holds one vector of the row, its weight vector
// loaded before the PDL wait (`w`), and normalises it from registers: no second pass over the row and
// no weight load after the wait, the latency a decode step's norm sits on. The same operations in the
// same order as the loops above (one vector per thread there too), so the same bits. block_sum's
// barriers order every read of x before any write of out.
template <int V, bool kAdd>
__device__ __forceinline__ void norm_reg(const kiln_t* residual, const kiln_t* x, const VecT<V>& w, kiln_t* out,
                                         kiln_t* residual_out, float eps) {
  __shared__ double scratch[32];
  const int i = threadIdx.x;
  const bool mine = i < WIDTH / V;
  VecT<V> h;  // x, or residual + x (kAdd: add_rms_norm)
  double sum_sq = 0.0;
  if (mine) {
    if constexpr (kAdd) {
      h = kiln::load_vec<kiln_t, V>(residual + i * V);
      add_residual<V>(h, kiln::load_vec<kiln_t, V>(x + i * V), sum_sq);
      kiln::store_vec<kiln_t, V>(residual_out + i * V, h);
    } else {
      h = kiln::load_vec<kiln_t, V>(x + i * V);
      add_squares<V>(h, sum_sq);
    }
  }
  const float rstd = rstd_of(kiln::block_sum(sum_sq, scratch), eps);
  if (mine) kiln::store_vec<kiln_t, V>(out + i * V, normalized<V>(h, w, rstd));
}

}  // namespace

extern "C" __global__ void rms_norm(const kiln_t* x, const kiln_t* weight, kiln_t* out, float eps, int rows) {
  constexpr int V = kiln::vec_for(WIDTH);
  const bool reg = kiln::aligned16(x) && kiln::aligned16(weight) && kiln::aligned16(out) && WIDTH / V <= (int)blockDim.x;
  VecT<V> w;
  if (reg && (int)threadIdx.x < WIDTH / V) w = weight_vec<V>(weight + threadIdx.x * V);  // a constant (pdl.cuh)
  kiln::pdl_wait();  // x / residual come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int r = blockIdx.x;
  if (r >= rows) return;
  const long long off = (long long)r * WIDTH;
  if (reg) {
    norm_reg<V, false>(nullptr, x + off, w, out + off, nullptr, eps);
  } else if (kiln::aligned16(x) && kiln::aligned16(weight) && kiln::aligned16(out)) {
    rms_norm_row<V>(x + off, weight, out + off, eps);
  } else {
    rms_norm_row<1>(x + off, weight, out + off, eps);
  }
}

extern "C" __global__ void add_rms_norm(const kiln_t* residual, const kiln_t* x, const kiln_t* weight, kiln_t* out,
                                        kiln_t* residual_out, float eps, int rows) {
  constexpr int V = kiln::vec_for(WIDTH);
  const bool aligned = kiln::aligned16(residual) && kiln::aligned16(x) && kiln::aligned16(weight) &&
                       kiln::aligned16(out) && kiln::aligned16(residual_out);
  const bool reg = aligned && WIDTH / V <= (int)blockDim.x;
  VecT<V> w;
  if (reg && (int)threadIdx.x < WIDTH / V) w = weight_vec<V>(weight + threadIdx.x * V);  // a constant (pdl.cuh)
  kiln::pdl_wait();  // x / residual come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int r = blockIdx.x;
  if (r >= rows) return;
  const long long off = (long long)r * WIDTH;
  if (reg) {
    norm_reg<V, true>(residual + off, x + off, w, out + off, residual_out + off, eps);
  } else if (aligned) {
    add_rms_norm_row<V>(residual + off, x + off, weight, out + off, residual_out + off, eps);
  } else {
    add_rms_norm_row<1>(residual + off, x + off, weight, out + off, residual_out + off, eps);
  }
}
