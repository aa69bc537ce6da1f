// Linears over fp8 weights (W8A8 E4M3; the format is src/engine/fp8_format.ts, docs/QUANTIZATION.md): a
// weight [n, k] is q [n, k] E4M3 bytes then fp32 scales sw [n] (then, for static activations, one fp32
// input scale); w[r, c] = e4m3(q[r, c])·sw[r]. The input is quantized per token (one row of x) first:
//   quant_fp8_act: s = max|x_row| / 448 in fp32 (dynamic) or the weight's input scale (static), and
//     xq = E4M3(x / s) (x / s in fp32, round to nearest even, saturating at ±448: __NV_SATFINITE); a
//     zero row (s = 0) quantizes to zeros. Writes xq [m, k] and s [m]: the static scale is written for
//     every row too, so the GEMV and the GEMM read one per-row vector either way; and, for the bits
//     GEMV, x̂ = e4m3(xq) exactly in fp32 (not times s), [m, k] in xhat_quad's order. The code is
//     fp8_act.cuh's, which rmsnorm.cu's rms_norm_q8 / add_rms_norm_q8 run on their outputs instead where
//     a norm feeds only fp8 linears (src/backends/cuda/norm_quant.ts).
//   gemv_fp8_*: decode shapes (m ≤ GEMV_MAX_M): y[t, r] = (Σ_c e4m3(q[r, c])·e4m3(xq[t, c]))·s[t]·sw[r]
//     (+ bias), the products exact in fp32 and summed in fp32; the weight streams as stored (16-byte
//     vectors, 16 features), 1 byte a weight. gemv_warp.cuh's skeleton as gemv_wo.cu (R rows per warp, U
//     vectors per lane and row in flight, the first U prefetched before the PDL wait, shuffles reduce the
//     lanes; this file gives its format, Fp8Gemv): every variant and the gated kernel sum a row in the
//     same order, so they give the same bits.
//   gemv_fp8_bits_r4u2w4 (plain linears' decode GEMV; KILN_FP8_GEMV=fma runs gemv_fp8_r2uUw4 instead):
//     gemv_fp8's y bit for bit without conversion instructions: the
//     weight bytes decoded by integer ops into e4m3(q)·2^-120 (decode16_scaled), x read as x̂, the same
//     fmaf chains and sums (every value 2^-120 times gemv_fp8's: exact, Fp8BitsGemv says why), ·2^120
//     before gemv_fp8's scaling. Needs denormals kept (no ftz).
//   Larger steps hand xq and s to a cuBLASLt FP8 GEMM (fp8_linears.ts) with s and sw as its outer-vector
//     scales: the same sum in another order.
// The reference is the CPU backend (fp8_format.ts: x̂ = e4m3(x/s)·s, then x̂·wᵀ in fp32).
//
// Macros: KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16 (x, bias, y); GEMV_MAX_M (default 8);
//   GEMV_ACT as in gemv.cu (which gated kernels are compiled). Needs sm_89+ at run time (the runtime
//   refuses fp8 engines below); compiles for any arch (the conversions fall back to software).
//
// extern "C" __global__ void quant_fp8_act(
//     const kiln_t* x,            // [m, k]
//     unsigned char* xq,          // [m, k] E4M3
//     float* s,                   // [m]
//     const float* static_scale,  // one fp32 (the weight's input scale), or null: dynamic
//     float* xhat,                // [m, k] e4m3(xq) in fp32 (xhat_quad's order), or null: not written
//     int m, int k)               // k a multiple of 16
//   grid = (m), block = (one thread per 16 bytes of the row, whole warps, at most 1,024): a row is one
//   block's, read once (up to 2 vectors a thread stay in registers for the second pass)
// extern "C" __global__ void gemv_fp8_r2uUw4(    variants r2u4w4, r2u8w4 (fp8_linears.ts picks)
//     const unsigned char* xq, const float* s,   // quant_fp8_act's output
//     const unsigned char* q,     // [n, k]      weights: read before the PDL wait
//     const float* sw,            // [n]         likewise
//     const kiln_t* bias,         // [n] or null
//     kiln_t* y,                  // [m, n]
//     int m, int n, int k)        // 1 ≤ m ≤ GEMV_MAX_M; k a multiple of 16
//   grid = (ceil(n / 8)), block = (128), no shared memory
// extern "C" __global__ void gemv_fp8_gated_ACT(xq, s, q, sw, bias, y, m, inter, k)
//   q, sw: the fused gate_up weight [2·inter, k] (gate rows, then up rows); y [m, inter] =
//   act(gate + b)·(up + b), each rounded to kiln_t first, as gemv_wo.cu's gated kernels.
//   grid = (ceil(inter / 8)), block = (256): one output feature (two weight rows) per warp
// extern "C" __global__ void gemv_fp8_mma(xq, s, q, sw, bias, y, m, n, k)      (KILN_FP8_GEMV=mma)
//   gemv_fp8_r2uUw4's y on the tensor cores (gemv_fp8_mma.cuh: 16 rows a block, 8 warps split k): the
//   same products, summed by the mmas (tolerances.ts FP8_MMA bounds them, not gemv_fp8's 2^-21), scaled
//   and rounded as gemv_fp8 does. grid = (ceil(n / 16)), block = (256), 4 KiB static shared memory
// extern "C" __global__ void gemv_fp8_mma_gated_ACT(xq, s, q, sw, bias, y, m, inter, k)
//   gemv_fp8_gated_ACT's y from gemv_fp8_mma's sums (bit for bit gemv_fp8_mma's gate and up then the
//   activation, gemv_fp8_mma.cuh says when). grid = (ceil(inter / 16)), block = (256), 8 KiB shared
// extern "C" __global__ void gemv_fp8_bits_r4u2w4(xhat, s, q, sw, bias, y, m, n, k)   (the default)
//   gemv_fp8_r2uUw4's y bit for bit from quant_fp8_act's x̂ (float* [m, k]) in xq's place; 4 rows a warp.
//   grid = (ceil(n / 16)), block = (128), no shared memory
// extern "C" __global__ void fp8_scale_rows(      the FP8 GEMM's fallback epilogue (fp8_linears.ts)
//     const float* acc,           // [m, n] Σ e4m3·e4m3 from an FP8 GEMM with unit scales, fp32 out
//     const float* s, const float* sw, const kiln_t* bias,   // [m], [n], [n] or null
//     kiln_t* y,                  // [m, n] = acc·s[t]·sw[r] (+ bias), as gemv_fp8 scales its sums
//     int m, int n)
//   grid = (ceil(m·n / 256)), block = (256)
#include <cuda_fp8.h>

#include "activations.cuh"
#include "common.cuh"
#include "fp8_act.cuh"
#include "gemv_warp.cuh"
#include "gemv_fp8_mma.cuh"

#if !KILN_HAS_DTYPE
#error "gemv_fp8.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif

namespace {

using namespace kiln::act8;  // kFeat, E4M3 decoding, xhat_quad, quantize_row (fp8_act.cuh)

/** The 16 E4M3 bytes of v as exact floats (E4M3 → fp16 is exact; two values per conversion). */
__device__ __forceinline__ void decode16(const uint4& v, float (&f)[kFeat]) {
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(words[i] >> (16 * h)), __NV_E4M3);
      const __half2 pair = *reinterpret_cast<const __half2*>(&raw);
      f[4 * i + 2 * h] = __low2float(pair);
      f[4 * i + 2 * h + 1] = __high2float(pair);
    }
  }
}

/** The 16 E4M3 bytes of v as exact floats times 2^-120 (the `bits` GEMV's decoding, integer ops only:
 * fp8_act.cuh e4m3_scaled). Per 32-bit word: byte 3 is already on top, so
 * an arithmetic shift and the mask (SHF, LOP3); bytes 2, 1, 0 first go on top by a left shift of 8,
 * 16, 24 (SHF, or IMAD.SHL where ptxas moves it to the FMA pipe; a prmt would cost the same): 11
 * integer instructions per 4 weights. Why not fewer: a byte's sign sits right above its magnitude, in
 * fp32 5 bits above it, so each byte needs its own shift from the top, whose sign copies the mask then
 * clears; no shift of the whole word places two bytes at once. */
__device__ __forceinline__ void decode16_scaled(const uint4& v, float (&f)[kFeat]) {
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
#pragma unroll
    for (int j = 0; j < 4; j++) f[4 * i + j] = e4m3_scaled(words[i] << (24 - 8 * j));
  }
}

/** The warp-reduced dot `sum` of row r with x row j, scaled: (Σ)·s[j]·sw[r]. */
__device__ __forceinline__ float scale_sum(float sum, const float* __restrict__ s, int j, float sw) {
  const float sx = s[j];  // via a __restrict__ argument: nvcc reads it by the read-only path (ld.global.nc)
  return __fmul_rn(__fmul_rn(sum, sx), sw);
}
/** A lane's partial dot of row r with x row j, reduced across the warp and scaled. */
__device__ __forceinline__ float scaled(float acc, const float* __restrict__ s, int j, float sw) {
  return scale_sum(kiln::warp_sum(acc), s, j, sw);
}

/** gemv_warp.cuh's format for E4M3 rows: a row is its q vectors and its scale sw (a weight: read with
 * the row, before the PDL wait); x is quant_fp8_act's xq and s. */
struct Fp8Gemv {
  const unsigned char* xq;  // [m, k]
  const float* s;           // [m]
  const unsigned char* q;
  const float* sw;
  int k;

  struct Row {
    const uint4* q;
    float sw;
  };
  template <int R, int U>
  struct Tile {
    uint4 q[R][U];
  };

  /** Weight row `row` as 16-byte vectors and its scale (clamped to n − 1: rows past n are re-read, never stored). */
  __device__ __forceinline__ Row row(int row, int n) const {
    const int r = min(row, n - 1);
    return {reinterpret_cast<const uint4*>(q + (size_t)r * k), __ldcs(sw + r)};
  }
  __device__ __forceinline__ int vecs() const { return k / kFeat; }
  /** Loads q vectors v, v + 32, …, v + 32·(U − 1) of each of the warp's R rows. */
  template <int R, int U>
  __device__ __forceinline__ void load(const Row (&w)[R], int v, Tile<R, U>& t) const {
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int u = 0; u < U; u++) t.q[r][u] = __ldcs(w[r].q + v + 32 * u);  // streamed once: evict first
    }
  }
  /** acc[r][j] += q vector · xq vector (exact products, fp32 sums in feature order) for the m rows of x. */
  template <int R, int U>
  __device__ __forceinline__ void accumulate(const Row (&)[R], int v, int m, const Tile<R, U>& t,
                                             float (&acc)[R][GEMV_MAX_M]) const {
#pragma unroll
    for (int u = 0; u < U; u++) {
      float w[R][kFeat];
#pragma unroll
      for (int r = 0; r < R; r++) decode16(t.q[r][u], w[r]);
#pragma unroll
      for (int j = 0; j < GEMV_MAX_M; j++) {
        if (j < m) {
          float xf[kFeat];
          decode16(__ldg(reinterpret_cast<const uint4*>(xq + (size_t)j * k) + v + 32 * u), xf);
#pragma unroll
          for (int r = 0; r < R; r++) {
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < kFeat; e++) d = fmaf(w[r][e], xf[e], d);
            acc[r][j] += d;
          }
        }
      }
    }
  }
  __device__ __forceinline__ float finish(const Row& w, int j, float acc) const { return scaled(acc, s, j, w.sw); }
};

/** Fp8Gemv without conversions (gemv_fp8_bits): the weight decoded by decode16_scaled (values
 * w' = w·2^-120), x read as quant_fp8_act's x̂ (exact e4m3(xq) in fp32, 4 float4 loads a vector and row of
 * x), the same fmaf chain per vector, sums and reduction as Fp8Gemv, then ·2^120 before the scales.
 * Bit for bit Fp8Gemv: every product w'·x = (w·x)·2^-120 is exact (w·x has ≤ 8 significant bits and is
 * a multiple of 2^-18, so w'·x is a multiple of 2^-138 above fp32's 2^-149 grid). By induction every
 * partial sum (fma chain, acc +=, warp shuffles) is the original's times 2^-120: the original's exact
 * result V is a multiple of 2^-18; if |V| ≥ 2^-6 both V and V·2^-120 are normal and rounding to 24
 * significant bits commutes with the power-of-two scale; if |V| < 2^-6 then V < 2^12 units of 2^-18 is
 * exact in fp32, and V·2^-120 < 2^-126, a multiple of 2^-138, is an exact subnormal. This needs
 * denormals kept: NVRTC compiles without ftz (src/backends/cuda/ffi/nvrtc.ts; no --use_fast_math). The
 * sum times 2^120 is then exactly gemv_fp8's sum, scaled as it scales it. */
struct Fp8BitsGemv : Fp8Gemv {  // Fp8Gemv's xq unused (null)
  const float* xhat;  // [m, k] quant_fp8_act's x̂, xhat_quad's layout

  /** acc[r][j] += q vector · x̂ vector, each ·2^-120 (exact products, fp32 sums in feature order). */
  template <int R, int U>
  __device__ __forceinline__ void accumulate(const Row (&)[R], int v, int m, const Tile<R, U>& t,
                                             float (&acc)[R][GEMV_MAX_M]) const {
    const int vecs = k / kFeat;
#pragma unroll
    for (int u = 0; u < U; u++) {
      float w[R][kFeat];
#pragma unroll
      for (int r = 0; r < R; r++) decode16_scaled(t.q[r][u], w[r]);
#pragma unroll
      for (int j = 0; j < GEMV_MAX_M; j++) {
        if (j < m) {
          const float4* xr = reinterpret_cast<const float4*>(xhat + (size_t)j * k);
          float xf[kFeat];
#pragma unroll
          for (int p = 0; p < 4; p++) {
            const float4 f = __ldg(xr + xhat_quad(v + 32 * u, p, vecs));
            xf[4 * p] = f.x;
            xf[4 * p + 1] = f.y;
            xf[4 * p + 2] = f.z;
            xf[4 * p + 3] = f.w;
          }
#pragma unroll
          for (int r = 0; r < R; r++) {
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < kFeat; e++) d = fmaf(w[r][e], xf[e], d);
            acc[r][j] += d;
          }
        }
      }
    }
  }
  /** The warp's sum times 2^120 (exact: gemv_fp8's sum), then gemv_fp8's scaling. */
  __device__ __forceinline__ float finish(const Row& w, int j, float acc) const {
    return scale_sum(__fmul_rn(kiln::warp_sum(acc), kUnscale), s, j, w.sw);
  }
};

}  // namespace

extern "C" __global__ void __launch_bounds__(1024) quant_fp8_act(const kiln_t* x, unsigned char* xq, float* s,
                                                                 const float* static_scale, float* xhat, int m,
                                                                 int k) {
  (void)m;  // one block per row: grid = (m)
  kiln::pdl_wait();  // x belongs to the step; xq and s are scratch an earlier kernel may still read
  kiln::pdl_launch_dependents();
  const size_t off = (size_t)blockIdx.x * k;
  kiln::act8::quantize_row(x + off, xq + off, s + blockIdx.x, static_scale, xhat ? xhat + off : nullptr, k);
}

#define KILN_GEMV_FP8(R, U, W)                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_fp8_r##R##u##U##w##W(                             \
      const unsigned char* xq, const float* s, const unsigned char* q, const float* sw, const kiln_t* bias,   \
      kiln_t* y, int m, int n, int k) {                                                                       \
    kiln::gemv::rows<R, U, W>(Fp8Gemv{xq, s, q, sw, k}, bias, y, m, n);                                       \
  }
KILN_GEMV_FP8(2, 4, 4)
KILN_GEMV_FP8(2, 8, 4)

#define KILN_GEMV_FP8_BITS(R, U, W)                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_fp8_bits_r##R##u##U##w##W(                        \
      const float* xhat, const float* s, const unsigned char* q, const float* sw, const kiln_t* bias,         \
      kiln_t* y, int m, int n, int k) {                                                                       \
    kiln::gemv::rows<R, U, W>(Fp8BitsGemv{{nullptr, s, q, sw, k}, xhat}, bias, y, m, n);                     \
  }
// R = 4: each x̂ load serves 4 weight rows. x̂ is 4 bytes a feature, so its L1 traffic per x row is 4×
// xq's; at R = 2 it would outgrow the issue work as m grows (16 FMAs per vector and row of x against
// 4 float4 loads shared by R rows). U = 2 keeps 8 vectors a lane in flight, as r2u4w4; U = 4 nearly
// fills the register file.
KILN_GEMV_FP8_BITS(4, 2, 4)

#define KILN_GEMV_FP8_GATED(NAME, ACT)                                                                        \
  extern "C" __global__ void __launch_bounds__(32 * kiln::gemv::kGatedWarps) gemv_fp8_gated_##NAME(           \
      const unsigned char* xq, const float* s, const unsigned char* q, const float* sw, const kiln_t* bias,   \
      kiln_t* y, int m, int inter, int k) {                                                                   \
    kiln::gemv::gated<kiln::ACT>(Fp8Gemv{xq, s, q, sw, k}, bias, y, m, inter);                                \
  }

extern "C" __global__ void __launch_bounds__(32 * kiln::fp8mma::kMmaWarps)
    gemv_fp8_mma(const unsigned char* xq, const float* s, const unsigned char* q, const float* sw,
                 const kiln_t* bias, kiln_t* y, int m, int n, int k) {
  kiln::fp8mma::rows(xq, s, q, sw, bias, y, m, n, k);
}

#define KILN_GEMV_FP8_MMA_GATED(NAME, ACT)                                                                    \
  extern "C" __global__ void __launch_bounds__(32 * kiln::fp8mma::kMmaWarps) gemv_fp8_mma_gated_##NAME(       \
      const unsigned char* xq, const float* s, const unsigned char* q, const float* sw, const kiln_t* bias,   \
      kiln_t* y, int m, int inter, int k) {                                                                   \
    kiln::fp8mma::gated<kiln::ACT>(xq, s, q, sw, bias, y, m, inter, k);                                       \
  }

// GEMV_ACT as in gemv.cu (gemv_variants.ts GATED_ACTS): one activation's gated kernels, none, or all five.
#if !defined(GEMV_ACT) || GEMV_ACT == 1
KILN_GEMV_FP8_GATED(silu, Silu)
KILN_GEMV_FP8_MMA_GATED(silu, Silu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 2
KILN_GEMV_FP8_GATED(gelu, Gelu)
KILN_GEMV_FP8_MMA_GATED(gelu, Gelu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 3
KILN_GEMV_FP8_GATED(gelu_pytorch_tanh, GeluTanh)
KILN_GEMV_FP8_MMA_GATED(gelu_pytorch_tanh, GeluTanh)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 4
KILN_GEMV_FP8_GATED(gelu_new, GeluNew)
KILN_GEMV_FP8_MMA_GATED(gelu_new, GeluNew)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 5
KILN_GEMV_FP8_GATED(relu, Relu)
KILN_GEMV_FP8_MMA_GATED(relu, Relu)
#endif

extern "C" __global__ void __launch_bounds__(256)
    fp8_scale_rows(const float* acc, const float* s, const float* sw, const kiln_t* bias, kiln_t* y, int m, int n) {
  kiln::pdl_wait();  // acc is the GEMM's output; y may still be read by an earlier kernel
  kiln::pdl_launch_dependents();
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)m * n) return;
  const int t = (int)(i / n), r = (int)(i % n);
  const float b = bias ? kiln::to_float(bias[r]) : 0.f;
  y[i] = kiln::from_float(__fmul_rn(__fmul_rn(acc[i], s[t]), sw[r]) + b);
}
