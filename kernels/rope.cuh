// One head's optional RMSNorm and RoPE in the registers of one warp: rope_kv.cu's kernels and decode
// attention's fused prologue (attention_decode.cu, attention_decode_rope*) share it, so both store the
// same bits. Reference, in order: rmsNorm over the head (groupWidth = HEAD_DIM) and applyRope (rope.ts)
// of src/backends/cpu/kernels/.
//
// Macros: a dtype macro (common.cuh), HEAD_DIM, ROTARY_DIM (rotated dims at the start of each head,
// partial rotary; even, ≤ HEAD_DIM; default HEAD_DIM).
//
// Lane l holds the rotary pairs (i, i + ROTARY_DIM/2) for i = l, l + 32, … and the pass-through dims
// ROTARY_DIM + l, …:
//   head:  [ x_0 … x_{half-1} | x_half … x_{rotary-1} | pass-through … x_{HEAD_DIM-1} ]
// Arithmetic, per HF (LlamaRotaryEmbedding + apply_rotary_pos_emb) for an input of dtype T:
//   θ = fp32(pos · inv_freq[i]); c = T(fp32(cos θ) · scaling); s = T(fp32(sin θ) · scaling)
//   x_i ← T(T(x_i·c) − T(x_{i+half}·s));   x_{i+half} ← T(T(x_{i+half}·c) + T(x_i·s))
// (HF casts cos/sin to T and each tensor op rounds to T; in fp32 this is the CPU reference op for op.)
// cos/sin are cosf/sinf (≤ 2 ulp in CUDA; never the __cosf intrinsics), the reference's are correctly
// rounded: c and s may differ by an ulp or two of fp32, so rotated fp32 values by a few ulps of the
// input's magnitude. With a q/k norm: h = T(x·rstd), x ← T(w·h) first (rmsnorm.cu's arithmetic).
#pragma once

#include "common.cuh"

#if !KILN_HAS_DTYPE
#error "rope.cuh needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#if !defined(HEAD_DIM)
#error "rope.cuh needs HEAD_DIM"
#endif
#ifndef ROTARY_DIM
#define ROTARY_DIM HEAD_DIM
#endif
#if ROTARY_DIM % 2 != 0 || ROTARY_DIM > HEAD_DIM || ROTARY_DIM < 0
#error "ROTARY_DIM must be even and at most HEAD_DIM"
#endif

namespace kiln::rope {

constexpr int kHalf = ROTARY_DIM / 2;
constexpr int kPairs = (kHalf + 31) / 32;                 // rotary pairs per lane
constexpr int kPass = (HEAD_DIM - ROTARY_DIM + 31) / 32;  // pass-through dims per lane

/** The rotation of one token: its position and its row of inverse frequencies. */
struct Params {
  const int* positions;       // [num_tokens]
  const float* inv_freq;      // [num_freq_rows, ROTARY_DIM / 2], computed on the host (every scaling type)
  const int* inv_freq_index;  // [num_tokens]: each token's row of inv_freq (dynamic NTK); null = row 0
  float attention_scaling;    // multiplies cos and sin (HF attention_scaling)
};

/** A lane's share of one head, in fp32. */
struct Head {
  float x1[kPairs > 0 ? kPairs : 1];  // dims i = lane + 32·j < kHalf
  float x2[kPairs > 0 ? kPairs : 1];  // dims i + kHalf
  float xp[kPass > 0 ? kPass : 1];    // pass-through dims ROTARY_DIM + lane + 32·j
};

__device__ __forceinline__ void load(const kiln_t* src, Head& h) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kPairs; j++) {
    const int i = lane + 32 * j;
    h.x1[j] = i < kHalf ? to_float(src[i]) : 0.0f;
    h.x2[j] = i < kHalf ? to_float(src[i + kHalf]) : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < kPass; j++) {
    const int d = ROTARY_DIM + lane + 32 * j;
    h.xp[j] = d < HEAD_DIM ? to_float(src[d]) : 0.0f;
  }
}

/** RMSNorm over the head with weight w (every lane of the warp calls it: a warp reduction). */
__device__ __forceinline__ void norm(Head& h, const kiln_t* w, float eps) {
  const int lane = threadIdx.x & 31;
  double sum_sq = 0.0;
#pragma unroll
  for (int j = 0; j < kPairs; j++) sum_sq += (double)__fmul_rn(h.x1[j], h.x1[j]) + (double)__fmul_rn(h.x2[j], h.x2[j]);
#pragma unroll
  for (int j = 0; j < kPass; j++) sum_sq += (double)__fmul_rn(h.xp[j], h.xp[j]);
  sum_sq = warp_sum(sum_sq);
  const float variance = (float)(sum_sq / (double)HEAD_DIM);
  const float rstd = __frcp_rn(__fsqrt_rn(__fadd_rn(variance, eps)));
#pragma unroll
  for (int j = 0; j < kPairs; j++) {
    const int i = lane + 32 * j;
    if (i < kHalf) {
      h.x1[j] = round_t(__fmul_rn(to_float(w[i]), round_t(__fmul_rn(h.x1[j], rstd))));
      h.x2[j] = round_t(__fmul_rn(to_float(w[i + kHalf]), round_t(__fmul_rn(h.x2[j], rstd))));
    }
  }
#pragma unroll
  for (int j = 0; j < kPass; j++) {
    const int d = ROTARY_DIM + lane + 32 * j;
    if (d < HEAD_DIM) h.xp[j] = round_t(__fmul_rn(to_float(w[d]), round_t(__fmul_rn(h.xp[j], rstd))));
  }
}

/** cos θ and sin θ of a lane's rotary pairs for one token, times the scaling and rounded to kiln_t, as
 * rotate() applies them. They depend only on the position and the inverse frequencies (step metadata and
 * constants), so a kernel may compute them before its PDL wait, off the path of the rows it rotates. */
struct Angles {
  float c[kPairs > 0 ? kPairs : 1];
  float s[kPairs > 0 ? kPairs : 1];
};
__device__ __forceinline__ Angles angles(const Params& a, int t) {
  const int lane = threadIdx.x & 31;
  const float pos = (float)a.positions[t];
  const float* freqs = a.inv_freq + (a.inv_freq_index != nullptr ? (long long)a.inv_freq_index[t] * kHalf : 0ll);
  Angles an;
#pragma unroll
  for (int j = 0; j < kPairs; j++) {
    const int i = lane + 32 * j;
    an.c[j] = an.s[j] = 0.f;
    if (i < kHalf) {
      const float theta = __fmul_rn(pos, freqs[i]);  // inv_freq @ position_ids.float(): one fp32 product
      an.c[j] = round_t(__fmul_rn(cosf(theta), a.attention_scaling));
      an.s[j] = round_t(__fmul_rn(sinf(theta), a.attention_scaling));
    }
  }
  return an;
}
/** Rotates the head's pairs by the token's angles. */
__device__ __forceinline__ void rotate(Head& h, const Angles& an) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kPairs; j++) {
    const int i = lane + 32 * j;
    if (i < kHalf) {
      const float c = an.c[j], s = an.s[j];
      const float r1 = __fsub_rn(round_t(__fmul_rn(h.x1[j], c)), round_t(__fmul_rn(h.x2[j], s)));
      const float r2 = __fadd_rn(round_t(__fmul_rn(h.x2[j], c)), round_t(__fmul_rn(h.x1[j], s)));
      h.x1[j] = r1;
      h.x2[j] = r2;
    }
  }
}
/** Rotates the head's pairs for token t. */
__device__ __forceinline__ void rotate(Head& h, const Params& a, int t) { rotate(h, angles(a, t)); }
/** Each of the head's HEAD_DIM values, rounded to kiln_t, to f(dim, value): the lane's own dims. */
template <typename F>
__device__ __forceinline__ void for_each(const Head& h, F f) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < kPairs; j++) {
    const int i = lane + 32 * j;
    if (i < kHalf) {
      f(i, from_float(h.x1[j]));
      f(i + kHalf, from_float(h.x2[j]));
    }
  }
#pragma unroll
  for (int j = 0; j < kPass; j++) {
    const int d = ROTARY_DIM + lane + 32 * j;
    if (d < HEAD_DIM) f(d, from_float(h.xp[j]));
  }
}

}  // namespace kiln::rope
