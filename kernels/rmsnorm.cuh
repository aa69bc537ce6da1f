// RMSNorm arithmetic shared by rmsnorm.cu (the norm kernels) and gemv.cu (decode GEMVs with the norm
// fused in front), so both round exactly alike. See rmsnorm.cu's header for the reference (HF's
// LlamaRMSNorm) and why each operation is rounded where it is.
#pragma once

#include "common.cuh"

#if KILN_HAS_DTYPE
namespace kiln {

/** rstd from the sum of squares (fp32 squares summed in fp64), with the reference's fp32 roundings:
 * variance = (float)(Σ / width), rstd = 1 / sqrt(variance + eps), correctly rounded (not rsqrtf). */
__device__ __forceinline__ float rms_rstd(double sum_sq, int width, float eps) {
  const float variance = (float)(sum_sq / (double)width);
  return __frcp_rn(__fsqrt_rn(__fadd_rn(variance, eps)));
}

/** One element of the residual sum as HF stores it: round_t(residual + x). */
__device__ __forceinline__ kiln_t residual_sum(kiln_t residual, kiln_t x) {
  return from_float(__fadd_rn(to_float(residual), to_float(x)));
}

/** One normalised element: weight · round_t(h · rstd), rounded to kiln_t. */
__device__ __forceinline__ kiln_t rms_apply(kiln_t h, kiln_t weight, float rstd) {
  return from_float(__fmul_rn(to_float(weight), round_t(__fmul_rn(to_float(h), rstd))));
}

}  // namespace kiln
#endif
