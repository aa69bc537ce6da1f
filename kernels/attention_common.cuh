// Helpers shared by attention_prefill.cu and attention_decode.cu (and nothing else): the element type,
// conversions, vector loads, warp reductions; the PTX wrappers (cp.async, ldmatrix, mma.sync) are in
// attention_ptx.cuh, included at the end. See attention_README.md.
// Compiled by NVRTC at engine-build time and by nvcc in CI: no host code, no standard library.
//
// Macros (all required, set by the builder with -D):
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   element type of q, out and the KV pools
//   HEAD_DIM, BLOCK_SIZE, NUM_HEADS, NUM_KV_HEADS       shapes (NUM_HEADS % NUM_KV_HEADS == 0)
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kv_fp8.cuh"  // kiln::kv8: the FP8 KV cache's rows (the _kv8 kernels)
#include "pdl.cuh"  // kiln::pdl_wait / pdl_launch_dependents: every kernel waits first (see pdl.cuh)

#if defined(KILN_DTYPE_F32) + defined(KILN_DTYPE_F16) + defined(KILN_DTYPE_BF16) != 1
#error "define exactly one of KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16"
#endif
#if !defined(HEAD_DIM) || !defined(BLOCK_SIZE) || !defined(NUM_HEADS) || !defined(NUM_KV_HEADS)
#error "define HEAD_DIM, BLOCK_SIZE, NUM_HEADS and NUM_KV_HEADS"
#endif
#if HEAD_DIM < 1 || HEAD_DIM > 256
#error "HEAD_DIM must be in [1, 256]"
#endif
#if BLOCK_SIZE < 1
#error "BLOCK_SIZE must be at least 1"
#endif
#if NUM_KV_HEADS < 1 || NUM_HEADS % NUM_KV_HEADS != 0
#error "NUM_HEADS must be a positive multiple of NUM_KV_HEADS"
#endif

#define ATTN_GROUP (NUM_HEADS / NUM_KV_HEADS)  // query heads per kv head (HF repeat_kv)

#if defined(KILN_DTYPE_F32)
typedef float kiln_t;
#elif defined(KILN_DTYPE_F16)
typedef __half kiln_t;
#else
typedef __nv_bfloat16 kiln_t;
#endif

namespace attn {

constexpr int kWarp = 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ kiln_t from_float(float x) {
#if defined(KILN_DTYPE_F32)
  return x;
#elif defined(KILN_DTYPE_F16)
  return __float2half_rn(x);
#else
  return __float2bfloat16_rn(x);
#endif
}

// exp of a score difference. fp32 builds use the accurate expf on scores scaled by `scale` (what the
// reference does); 16-bit builds fold log2(e) into the scale and use exp2f (one MUFU.EX2).
#if defined(KILN_DTYPE_F32)
constexpr float kExpScale = 1.0f;
__device__ __forceinline__ float score_exp(float x) { return expf(x); }
#else
constexpr float kExpScale = 1.4426950408889634f;  // log2(e)
__device__ __forceinline__ float score_exp(float x) { return exp2f(x); }
#endif

// Elements per vector load of a K/V/q row: the largest power of two ≤ 16 bytes that divides HEAD_DIM.
constexpr int vec_elems() {
  int v = 16 / (int)sizeof(kiln_t);
  while (v > 1 && HEAD_DIM % v != 0) v /= 2;
  return v;
}
constexpr int kVec = vec_elems();

template <int Bytes> struct RawVec;
template <> struct RawVec<16> { typedef uint4 type; };
template <> struct RawVec<8> { typedef uint2 type; };
template <> struct RawVec<4> { typedef unsigned int type; };
template <> struct RawVec<2> { typedef unsigned short type; };
template <> struct RawVec<1> { typedef unsigned char type; };
typedef RawVec<kVec * (int)sizeof(kiln_t)>::type raw_t;  // kVec elements, loaded in one instruction

__device__ __forceinline__ raw_t load_raw(const kiln_t* p) { return __ldg(reinterpret_cast<const raw_t*>(p)); }

// The kVec elements of a raw vector as floats (a byte copy, not a pointer cast: no aliasing UB).
__device__ __forceinline__ void unpack(const raw_t& r, float (&f)[kVec]) {
  kiln_t e[kVec];
  memcpy(e, &r, sizeof(raw_t));
#pragma unroll
  for (int i = 0; i < kVec; i++) f[i] = to_float(e[i]);
}

__device__ __forceinline__ raw_t zero_raw() {
  raw_t r;
  memset(&r, 0, sizeof(raw_t));
  return r;
}

// How a KV pool stores its rows, the kernels' template parameter (the exports without a suffix take
// KvPlain, the `_kv8` ones KvFp8):
//   KvPlain  kiln_t values; loads of kVec elements (raw_t)
//   KvFp8    E4M3 bytes with an fp32 scale per (slot, kv head) row (kv_fp8.cuh); the same lane layout
//            as KvPlain (a vector is the kVec bytes of kVec elements: narrower loads), so every kernel
//            keeps its shapes and order of operations, and a row is read as fp32(e4m3 · scale)
struct KvPlain {
  static constexpr bool kFp8 = false;
  typedef kiln_t elem_t;
  typedef raw_t vec_t;
};
struct KvFp8 {
  static constexpr bool kFp8 = true;
  typedef unsigned char elem_t;
  typedef RawVec<kVec>::type vec_t;
};

template <class KV>
__device__ __forceinline__ typename KV::vec_t load_kv(const typename KV::elem_t* p) {
  return __ldg(reinterpret_cast<const typename KV::vec_t*>(p));
}

template <class KV>
__device__ __forceinline__ typename KV::vec_t zero_kv() {
  typename KV::vec_t r;
  memset(&r, 0, sizeof(r));
  return r;
}

// The scale of pool row `row` (slot · NUM_KV_HEADS + kv head): KvFp8 only; KvPlain reads nothing.
template <class KV>
__device__ __forceinline__ float load_kv_scale(const float* scale, size_t row) {
  if constexpr (KV::kFp8) {
    return __ldg(scale + row);
  } else {
    return 0.f;
  }
}

// The kVec elements of a K/V vector as floats; s is the row's scale (KvFp8; KvPlain ignores it).
template <class KV>
__device__ __forceinline__ void unpack_kv(const typename KV::vec_t& r, float s, float (&f)[kVec]) {
  if constexpr (KV::kFp8) {
    unsigned char b[kVec];
    memcpy(b, &r, kVec);
    kiln::kv8::decode(b, s, f);
  } else {
    unpack(r, f);
  }
}

// Sums over lanes whose index differs only in bits [log2(from_offset), log2(to_offset)].
__device__ __forceinline__ float xor_sum(float x, int from_offset, int to_offset) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) {
    if (o >= from_offset && o <= to_offset) x += __shfl_xor_sync(kFull, x, o);
  }
  return x;
}

__device__ __forceinline__ float xor_max(float x, int from_offset, int to_offset) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) {
    if (o >= from_offset && o <= to_offset) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  }
  return x;
}

}  // namespace attn

#include "attention_ptx.cuh"
