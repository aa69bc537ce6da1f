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
// extern "C" __global__ void rms_norm_q8(x, weight, out, xq, s, static_scale, xhat, eps, rows)
// extern "C" __global__ void add_rms_norm_q8(residual, x, weight, out, residual_out, xq, s, static_scale,
//                                            xhat, eps, rows)
//   rms_norm / add_rms_norm, then their output quantized for the fp8 linears that read it, bit for bit
//   what gemv_fp8.cu's quant_fp8_act(out, xq, s, static_scale, xhat, rows, WIDTH) writes (the code is
//   fp8_act.cuh's, run on the kiln_t-rounded output): xq [rows, WIDTH] E4M3, s [rows] fp32 (the block's
//   max |out| / 448, or *static_scale: the weight's input scale), x̂ [rows, WIDTH] fp32 unless xhat is
//   null. WIDTH a multiple of 16 and every pointer 16-byte aligned (the arena's and the fp8 scratch's
//   are 256): src/backends/cuda/norm_quant.ts decides which norms run them.
//   grid  = (rows)            one block per row
//   block = (min(1024, roundUp(ceil(WIDTH / vec), 32))) with vec = 16 bytes / sizeof(kiln_t) (4 fp32,
//           8 fp16/bf16) when WIDTH is a multiple of it: one 16-byte vector per thread. Any multiple of
//           32 up to 1024 is correct; the block loops over the row.
//   shared memory: 256 bytes, static (the _q8 kernels: 256 bytes more, their max's reductions)
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
#include "fp8_act.cuh"
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

/** Where a _q8 kernel's row of output is quantized to (fp8_act.cuh, as quant_fp8_act writes it). */
struct Q8Row {
  unsigned char* xq;          // [WIDTH] E4M3
  float* s;                   // the row's scale
  const float* static_scale;  // the weight's input scale, or null: dynamic
  float* xhat;                // [WIDTH] x̂, or null: not written
};

/** The row's quantization from the normalised vector o each thread holds (`mine`: a thread of the row;
 * every thread calls it, a block reduction): the block's max |o| (the kiln_t values stored), the scale,
 * then each thread's bytes, as quantize_row computes them from the stored row. */
template <int V>
__device__ __forceinline__ void quantize_held(const VecT<V>& o, bool mine, const Q8Row& q) {
  __shared__ float scratch[32];
  float scale;
  if (q.static_scale) scale = *q.static_scale;
  else scale = kiln::act8::dynamic_scale(kiln::block_max(mine ? kiln::act8::abs_max<V>(o, 0.f) : 0.f, scratch));
  if (threadIdx.x == 0) *q.s = scale;
  if (mine) kiln::act8::emit<V>(o, threadIdx.x * V, scale, q.xq, q.xhat, WIDTH);
}

// The register path, for rows of at most blockDim.x vectors (every width the launch configuration
// gives ≤ 8,192 elements of 16-bit types): each thread holds one vector of the row, its weight vector
// loaded before the PDL wait (`w`), and normalises it from registers: no second pass over the row and
// no weight load after the wait, the latency a decode step's norm sits on. The same operations in the
// same order as the loops above (one vector per thread there too), so the same bits. block_sum's
// barriers order every read of x before any write of out. kQ8: the row's quantization too, from the
// same registers.
template <int V, bool kAdd, bool kQ8>
__device__ __forceinline__ void norm_reg(const kiln_t* residual, const kiln_t* x, const VecT<V>& w, kiln_t* out,
                                         kiln_t* residual_out, float eps, const Q8Row& q) {
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
  VecT<V> o;
  if (mine) {
    o = normalized<V>(h, w, rstd);
    kiln::store_vec<kiln_t, V>(out + i * V, o);
  }
  if constexpr (kQ8) quantize_held<V>(o, mine, q);
}

/** One block per row: RMSNorm of x (kAdd: of residual + x, stored to residual_out) into out and, with kQ8,
 * out's quantization (q: the whole arrays, [rows, WIDTH] and [rows]). */
template <bool kAdd, bool kQ8>
__device__ __forceinline__ void norm_rows(const kiln_t* residual, const kiln_t* x, const kiln_t* weight, kiln_t* out,
                                          kiln_t* residual_out, float eps, int rows, const Q8Row& q) {
  constexpr int V = kiln::vec_for(WIDTH);
  bool aligned = kiln::aligned16(x) && kiln::aligned16(weight) && kiln::aligned16(out);
  if constexpr (kAdd) aligned = aligned && kiln::aligned16(residual) && kiln::aligned16(residual_out);
  const bool reg = aligned && WIDTH / V <= (int)blockDim.x;
  VecT<V> w;
  if (reg && (int)threadIdx.x < WIDTH / V) w = weight_vec<V>(weight + threadIdx.x * V);  // a constant (pdl.cuh)
  kiln::pdl_wait();  // x / residual come from the previous kernel (see pdl.cuh)
  kiln::pdl_launch_dependents();
  const int r = blockIdx.x;
  if (r >= rows) return;
  const long long off = (long long)r * WIDTH;
  const Q8Row qr = kQ8 ? Q8Row{q.xq + off, q.s + r, q.static_scale, q.xhat ? q.xhat + off : nullptr} : q;
  if (reg) {
    norm_reg<V, kAdd, kQ8>(kAdd ? residual + off : nullptr, x + off, w, out + off,
                           kAdd ? residual_out + off : nullptr, eps, qr);
    return;
  }
  if constexpr (kAdd) {
    if (aligned) add_rms_norm_row<V>(residual + off, x + off, weight, out + off, residual_out + off, eps);
    else add_rms_norm_row<1>(residual + off, x + off, weight, out + off, residual_out + off, eps);
  } else {
    if (aligned) rms_norm_row<V>(x + off, weight, out + off, eps);
    else rms_norm_row<1>(x + off, weight, out + off, eps);
  }
  if constexpr (kQ8) {  // rows past the registers: quantize the stored row, as quant_fp8_act would
    __syncthreads();    // every thread's out stored and visible to the block
    kiln::act8::quantize_row(out + off, qr.xq, qr.s, qr.static_scale, qr.xhat, WIDTH);
  }
}

}  // namespace

extern "C" __global__ void rms_norm(const kiln_t* x, const kiln_t* weight, kiln_t* out, float eps, int rows) {
  norm_rows<false, false>(nullptr, x, weight, out, nullptr, eps, rows, Q8Row{});
}

extern "C" __global__ void add_rms_norm(const kiln_t* residual, const kiln_t* x, const kiln_t* weight, kiln_t* out,
                                        kiln_t* residual_out, float eps, int rows) {
  norm_rows<true, false>(residual, x, weight, out, residual_out, eps, rows, Q8Row{});
}

extern "C" __global__ void rms_norm_q8(const kiln_t* x, const kiln_t* weight, kiln_t* out, unsigned char* xq,
                                       float* s, const float* static_scale, float* xhat, float eps, int rows) {
  norm_rows<false, true>(nullptr, x, weight, out, nullptr, eps, rows, {xq, s, static_scale, xhat});
}

extern "C" __global__ void add_rms_norm_q8(const kiln_t* residual, const kiln_t* x, const kiln_t* weight,
                                           kiln_t* out, kiln_t* residual_out, unsigned char* xq, float* s,
                                           const float* static_scale, float* xhat, float eps, int rows) {
  norm_rows<true, true>(residual, x, weight, out, residual_out, eps, rows, {xq, s, static_scale, xhat});
}
