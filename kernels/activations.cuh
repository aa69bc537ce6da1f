// HF ACT2FN activations as device functors, shared by activation.cu (gated and plain activation
// kernels) and gemv.cu (the decode GEMV with the gated activation in its epilogue), so both round
// exactly alike. `apply(x)` gives act(x) already rounded to kiln_t (see activation.cu's header for
// the arithmetic and its reference).
#pragma once

#include "common.cuh"

#if KILN_HAS_DTYPE
namespace kiln {

// Each activation: `apply(x)` gives act(x) already rounded to T.

/** torch silu: x / (1 + exp(-x)). */
struct Silu {
  __device__ static float apply(float x) { return round_t(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x)))); }
};

/** torch gelu (exact): x * 0.5 * (1 + erf(x * M_SQRT1_2)). */
struct Gelu {
  __device__ static float apply(float x) {
    const float e = erff(__fmul_rn(x, 0.70710678118654752440f));
    return round_t(__fmul_rn(__fmul_rn(x, 0.5f), __fadd_rn(1.0f, e)));
  }
};

// torch's kBeta = M_SQRT2 * M_2_SQRTPI * 0.5 and HF's math.sqrt(2 / math.pi): the same fp32 value.
constexpr float kTanhBeta = 0.7978845608028654f;
constexpr float kKappa = 0.044715f;

/** torch gelu(approximate="tanh"): 0.5 * x * (1 + tanh(β (x + κ x³))), one torch kernel. */
struct GeluTanh {
  __device__ static float apply(float x) {
    const float cube = __fmul_rn(__fmul_rn(x, x), x);
    const float inner = __fmul_rn(kTanhBeta, __fadd_rn(x, __fmul_rn(kKappa, cube)));
    return round_t(__fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, tanhf(inner))));
  }
};

/** HF NewGELUActivation, a chain of torch ops each rounded to T:
 *  0.5 * x * (1.0 + tanh(sqrt(2/π) * (x + 0.044715 * pow(x, 3.0)))). */
struct GeluNew {
  __device__ static float apply(float x) {
    const float cube = round_t(__fmul_rn(__fmul_rn(x, x), x));  // torch.pow(x, 3.0) runs as x * x * x
    const float inner = round_t(__fmul_rn(kTanhBeta, round_t(__fadd_rn(x, round_t(__fmul_rn(kKappa, cube))))));
    const float one_plus = round_t(__fadd_rn(1.0f, round_t(tanhf(inner))));
    return round_t(__fmul_rn(round_t(__fmul_rn(0.5f, x)), one_plus));
  }
};

/** torch relu; NaN stays NaN. */
struct Relu {
  __device__ static float apply(float x) { return (x > 0.0f || kiln::is_nan(x)) ? x : 0.0f; }
};

}  // namespace kiln
#endif
