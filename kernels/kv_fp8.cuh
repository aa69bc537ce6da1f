// The FP8 KV cache's rows on the device (`--kv-cache-dtype fp8`; src/backends/kv_cache_dtype.ts defines
// the format, src/backends/cpu/kernels/kv_fp8.ts is the reference): one (slot, kv head) row of HEAD_DIM
// values is E4M3 bytes with one fp32 scale,
//
//   written:  s = fp32(max_d |x_d| / 448),  byte_d = e4m3(fp32(x_d / s))  (round to nearest even,
//             saturating to ±448; s = 0 for an all-zero row, whose bytes are then 0; a NaN makes s NaN)
//   read:     x_d = fp32(e4m3(byte_d) · s)
//
// The encoder is gemv_fp8.cu's (__nv_cvt_float_to_fp8 with __NV_SATFINITE), the decoder exact (E4M3 →
// fp16 is exact), the divisions and the product correctly rounded (__fdiv_rn, __fmul_rn): the bytes and
// scales equal the CPU's bit for bit, and so do the values attention reads. The values written are the
// kiln_t values the plain cache would store (a 16-bit engine quantizes its bf16/fp16 k and v).
//
// Pools (per layer, K and V each): data [numBlocks, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM] uint8 and
// scale [numBlocks, BLOCK_SIZE, NUM_KV_HEADS] fp32; row r = slot · NUM_KV_HEADS + kv head.
// Included by rope_kv.cu and attention_common.cuh; device code only.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace kiln::kv8 {

constexpr float kE4m3Max = 448.f;  // largest finite E4M3

/** |x| folded into a running row max as the CPU does (`a > absMax || isNaN(a)`): a NaN wins. */
__device__ __forceinline__ float absmax(float m, float x) {
  const float a = fabsf(x);
  return a > m || a != a ? a : m;
}

/** absmax over the 32 lanes of a warp (every lane gets the row's max). */
__device__ __forceinline__ float warp_absmax(float m) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) m = absmax(m, __shfl_xor_sync(0xffffffffu, m, o));
  return m;
}

/** The scale of a row whose largest magnitude is `amax`. */
__device__ __forceinline__ float row_scale(float amax) { return __fdiv_rn(amax, kE4m3Max); }

/** One value of a row with scale s as its E4M3 byte. */
__device__ __forceinline__ unsigned char encode(float x, float s) {
  return s == 0.f ? (unsigned char)0
                  : (unsigned char)__nv_cvt_float_to_fp8(__fdiv_rn(x, s), __NV_SATFINITE, __NV_E4M3);
}

/** Two E4M3 bytes (low byte first) of a row with scale s as the fp32 values attention reads. */
__device__ __forceinline__ void decode2(unsigned short pair, float s, float& lo, float& hi) {
  const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)pair, __NV_E4M3);
  const __half2 h = *reinterpret_cast<const __half2*>(&raw);
  lo = __fmul_rn(__low2float(h), s);
  hi = __fmul_rn(__high2float(h), s);
}

/** N E4M3 bytes of a row with scale s as fp32 values. */
template <int N>
__device__ __forceinline__ void decode(const unsigned char (&b)[N], float s, float (&f)[N]) {
#pragma unroll
  for (int i = 0; i + 1 < N; i += 2) decode2((unsigned short)(b[i] | (b[i + 1] << 8)), s, f[i], f[i + 1]);
  if constexpr (N % 2 == 1) {
    float unused;
    decode2((unsigned short)b[N - 1], s, f[N - 1], unused);
  }
}

}  // namespace kiln::kv8
