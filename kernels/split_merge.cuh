// The merge of a decode launch's context splits, shared by attention_decode.cu (its last CTA and its
// cluster merge) and attention_decode_mma.cu (its last CTA), so that every split kernel's output is the
// same function of its partials, operation for operation. One item is V dims of one head:
//   M = max_z m_z,  out = Σ_z e^(m_z − M)·acc_z / Σ_z e^(m_z − M)·l_z   (splits with m_z = −inf skipped),
// summed in split order with fmaf; the callers load the partials (load_partial) N splits at a time.
#pragma once

#include "attention_common.cuh"

namespace attn {

/** V floats of a partial written by other CTAs of this launch: through L2 (ld.global.cg), never the
 * non-coherent path. */
template <int V>
__device__ __forceinline__ void load_partial(const float* p, float (&f)[V]) {
  static_assert(V == 1 || V == 2 || V == 4, "a partial loads in 1, 2 or 4 floats");
  if constexpr (V == 4) {
    const float4 x = __ldcg(reinterpret_cast<const float4*>(p));
    f[0] = x.x;
    f[1] = x.y;
    f[2] = x.z;
    f[3] = x.w;
  } else if constexpr (V == 2) {
    const float2 x = __ldcg(reinterpret_cast<const float2*>(p));
    f[0] = x.x;
    f[1] = x.y;
  } else {
    f[0] = __ldcg(p);
  }
}

/** Splits [z0, z0 + N) of one item into the running sum and a: mz, lz, v hold their m, l and acc (mz =
 * −inf past the last split, or for an empty one: skipped); mx is M over every split. */
template <int N, int V>
__device__ __forceinline__ void merge_batch(const float (&mz)[N], const float (&lz)[N], const float (&v)[N][V],
                                            float mx, float& sum, float (&a)[V]) {
#pragma unroll
  for (int b = 0; b < N; b++) {
    if (mz[b] != neg_inf()) {
      const float w = score_exp(mz[b] - mx);
      sum = fmaf(lz[b], w, sum);
#pragma unroll
      for (int e = 0; e < V; e++) a[e] = fmaf(v[b][e], w, a[e]);
    }
  }
}

/** The item's V outputs, a / sum rounded to kiln_t (0 where every split was empty). */
template <int V>
__device__ __forceinline__ void store_merged(kiln_t* o, float sum, const float (&a)[V]) {
#pragma unroll
  for (int e = 0; e < V; e++) o[e] = from_float(sum > 0.f ? a[e] / sum : 0.f);
}

}  // namespace attn
