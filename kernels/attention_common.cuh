// Helpers shared by attention_prefill.cu and attention_decode.cu (and nothing else): the element type,
// conversions, vector loads, cp.async, ldmatrix and mma.sync wrappers, warp reductions.
// Compiled by NVRTC at engine-build time and by nvcc in CI: no host code, no standard library.
//
// Macros (all required, set by the builder with -D):
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   element type of q, out and the KV pools
//   HEAD_DIM, BLOCK_SIZE, NUM_HEADS, NUM_KV_HEADS       shapes (NUM_HEADS % NUM_KV_HEADS == 0)
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

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
typedef RawVec<kVec * (int)sizeof(kiln_t)>::type raw_t;  // kVec elements, loaded in one instruction

__device__ __forceinline__ raw_t load_raw(const kiln_t* p) { return __ldg(reinterpret_cast<const raw_t*>(p)); }

// The kVec elements of a raw vector as floats.
__device__ __forceinline__ void unpack(const raw_t& r, float (&f)[kVec]) {
  const kiln_t* e = reinterpret_cast<const kiln_t*>(&r);
#pragma unroll
  for (int i = 0; i < kVec; i++) f[i] = to_float(e[i]);
}

__device__ __forceinline__ raw_t zero_raw() {
  raw_t r;
  unsigned char* b = reinterpret_cast<unsigned char*>(&r);
#pragma unroll
  for (int i = 0; i < (int)sizeof(raw_t); i++) b[i] = 0;
  return r;
}

__device__ __forceinline__ float warp_max_xor(float x, int from_offset) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) {
    if (o >= from_offset) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  }
  return x;
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

// ---- sm_80+ primitives for the tensor-core prefill path (16-bit types only) ----

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}

// 16-byte async copy global → shared; copies `src_bytes` (0 or 16) and zero-fills the rest.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem_dst)), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(smem_row)));
}

#if !defined(KILN_DTYPE_F32)
// d[16x8] += a[16x16] · b[16x8], fp32 accumulation (PTX fragment layouts, "row.col").
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(KILN_DTYPE_F16)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats rounded to the element type, packed as one 32-bit mma operand (lo = first).
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
#if defined(KILN_DTYPE_F16)
  __half2 v = __floats2half2_rn(lo, hi);
#else
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
#endif
  return *reinterpret_cast<unsigned*>(&v);
}
#endif

}  // namespace attn
