// The fp8 format's activation quantization (engine/fp8_format.ts), one row (token) of x at a time, shared
// by gemv_fp8.cu's quant_fp8_act and rmsnorm.cu's fused norms (rms_norm_q8, add_rms_norm_q8), so both
// write the same bits:
//   s = max|x_row| / 448 in fp32 (dynamic) or the weight's static input scale; xq = E4M3(x / s) (x / s in
//   fp32, round to nearest even, saturating at ±448: __NV_SATFINITE); a zero row (s = 0) quantizes to
//   zeros; x̂ (what gemv_fp8_bits reads) = e4m3(xq) exactly in fp32 (not times s), [m, k] in xhat_quad's
//   order. Also the integer-op E4M3 decoding behind x̂ and gemv_fp8_bits (e4m3_scaled).
// Rows are k features of kiln_t, k a multiple of 16 (an fp8 linear's in), 16-byte aligned. Device code
// only; the caller does the PDL wait (pdl.cuh) before any of it.
#pragma once

#include <cuda_fp8.h>

#include "common.cuh"

#if KILN_HAS_DTYPE
namespace kiln::act8 {

constexpr int kFeat = 16;          // features per 16-byte vector of q or xq
constexpr float kE4m3Max = 448.f;  // largest finite E4M3

// ---- E4M3 decoding by integer ops: values times 2^-120 ------------------------------------------------
//
// An E4M3 byte b = s eeee mmm in bits 31..24 of a word, shifted right arithmetically by 4 and masked
// with 0x87F00000, is an fp32 word with sign s, exponent field 0000eeee and mantissa mmm0…0:
//   normal codes (e ≥ 1): 2^(e−127)·1.mmm = 2^(e−7)·1.mmm · 2^-120;
//   subnormal codes (e = 0): fp32's subnormal 2^-126·0.mmm = 2^-6·0.mmm · 2^-120 (zeros keep their sign).
// So every code maps to exactly e4m3(b)·2^-120 (the NaN codes 0x7f/0xff, which the quantizer never
// writes, to a finite value). gemv_fp8_bits multiplies its sums by 2^120 before scaling; why that gives
// gemv_fp8's bits: gemv_fp8.cu's Fp8BitsGemv.
constexpr unsigned kE4m3Mask = 0x87F00000u;  // sign, exponent bits 26..23, mantissa bits 22..20
constexpr float kUnscale = 0x1p120f;        // the decoded values' 2^-120, undone

/** e4m3(b)·2^-120 for the E4M3 byte b in bits 31..24 of `top` (the bits below are discarded). */
__device__ __forceinline__ float e4m3_scaled(unsigned top) {
  return __uint_as_float((unsigned)((int)top >> 4) & kE4m3Mask);
}

/** e4m3(b) as an exact float (fp32's normal range holds every E4M3 value: the product is exact). */
__device__ __forceinline__ float e4m3_value(unsigned char b) {
  return __fmul_rn(e4m3_scaled((unsigned)b << 24), kUnscale);
}

/** x̂'s layout ([m, k] fp32): within a row, features 16v + 4p … 16v + 4p + 3 (quad p of vector v) lie at
 * float4 p·(k/16) + v, so each of the 4 float4 loads a gemv_fp8_bits lane makes for its vector is, across
 * the warp's consecutive vectors, one contiguous 512 bytes (in feature order the 32 lanes' loads would
 * stride 64 bytes: 4 times the L1 wavefronts). */
__device__ __forceinline__ size_t xhat_quad(int v, int p, int vecs) { return (size_t)p * vecs + v; }

// ---- quantization ---------------------------------------------------------------------------------------

/** `most` folded with |v|'s elements (fmaxf: exact, in any order). */
template <int V>
__device__ __forceinline__ float abs_max(const Vec<kiln_t, V>& v, float most) {
#pragma unroll
  for (int e = 0; e < V; e++) most = fmaxf(most, fabsf(to_float(v.v[e])));
  return most;
}

/** A row's dynamic scale from its largest |x| (the block's max): max / 448, correctly rounded. */
__device__ __forceinline__ float dynamic_scale(float most) { return __fdiv_rn(most, kE4m3Max); }

/** The E4M3 byte of x in a row of scale s (0 in a zero row, s = 0). */
__device__ __forceinline__ unsigned char code(float x, float scale) {
  return scale == 0.f ? (unsigned char)0
                      : (unsigned char)__nv_cvt_float_to_fp8(__fdiv_rn(x, scale), __NV_SATFINITE, __NV_E4M3);
}

/** Features c … c + V − 1 of a row of k (v, scale `scale`) as E4M3 bytes into qr + c, and, with `xr` (the
 * row's x̂) not null, their exact values in xhat_quad's order. */
template <int V>
__device__ __forceinline__ void emit(const Vec<kiln_t, V>& v, int c, float scale, unsigned char* __restrict__ qr,
                                     float* __restrict__ xr, int k) {
  Vec<unsigned char, V> out;
#pragma unroll
  for (int e = 0; e < V; e++) out.v[e] = code(to_float(v.v[e]), scale);
  store_vec<unsigned char, V>(qr + c, out);
  if (!xr) return;
  if constexpr (V % 4 == 0) {  // whole quads: one float4 store each
#pragma unroll
    for (int e0 = 0; e0 < V; e0 += 4) {
      const int f = c + e0;
      Vec<float, 4> h;
#pragma unroll
      for (int e = 0; e < 4; e++) h.v[e] = e4m3_value(out.v[e0 + e]);
      store_vec<float, 4>(xr + 4 * xhat_quad(f / kFeat, f % kFeat / 4, k / kFeat), h);
    }
  } else {  // narrower vectors (a norm of a width not a multiple of 4: never an fp8 linear's input)
#pragma unroll
    for (int e = 0; e < V; e++) {
      const int f = c + e;
      xr[4 * xhat_quad(f / kFeat, f % kFeat / 4, k / kFeat) + f % 4] = e4m3_value(out.v[e]);
    }
  }
}

/** Vectors of a row each quantize_row thread keeps in registers between its two passes (the max, then
 * the codes): with a block of up to 1,024 threads, rows of up to 2,048·kVec features are read once. */
constexpr int kQuantHeld = 2;

/** One row xr [k] by the whole block (every thread calls it: a block reduction), kVec features per
 * thread and step: its scale into *sr (by thread 0), its E4M3 bytes into qr [k] and, with xhr not null,
 * x̂ into xhr [k]. static_scale: the weight's input scale, or null (dynamic). */
__device__ __forceinline__ void quantize_row(const kiln_t* __restrict__ xr, unsigned char* __restrict__ qr,
                                             float* __restrict__ sr, const float* __restrict__ static_scale,
                                             float* __restrict__ xhr, int k) {
  __shared__ float scratch[32];
  constexpr int V = kVec;
  const float fixed = static_scale ? *static_scale : 0.f;
  const int first = threadIdx.x * V, stride = blockDim.x * V, rest = first + kQuantHeld * stride;
  Vec<kiln_t, V> held[kQuantHeld];
#pragma unroll
  for (int i = 0; i < kQuantHeld; i++)
    if (first + i * stride < k) held[i] = load_vec<kiln_t, V>(xr + first + i * stride);
  float scale = fixed;
  if (!static_scale) {
    float most = 0.f;
#pragma unroll
    for (int i = 0; i < kQuantHeld; i++)
      if (first + i * stride < k) most = abs_max<V>(held[i], most);
    for (int c = rest; c < k; c += stride)  // rows longer than the registers hold
      most = abs_max<V>(load_vec<kiln_t, V>(xr + c), most);
    scale = dynamic_scale(block_max(most, scratch));
  }
  if (threadIdx.x == 0) *sr = scale;
#pragma unroll
  for (int i = 0; i < kQuantHeld; i++)
    if (first + i * stride < k) emit<V>(held[i], first + i * stride, scale, qr, xhr, k);
  for (int c = rest; c < k; c += stride) emit<V>(load_vec<kiln_t, V>(xr + c), c, scale, qr, xhr, k);
}

}  // namespace kiln::act8
#endif
