// Decode GEMV: y[m, n] = x[m, :] · W[n, :]ᵀ (+ bias[n]) for a few rows of x (m ≤ GEMV_MAX_M), the
// bandwidth-bound shape of every decode-step GEMM. A warp owns R consecutive output features: its lanes
// stream W's R rows in 16-byte vectors (8 bf16/fp16), U vectors per lane and row in flight per
// iteration so the memory system stays busy, each multiplied with the same columns of all m rows of x
// (read through L1/L2, shared by every warp), accumulated in fp32, reduced across the warp by shuffles.
// Under programmatic dependent launch the first U vectors of each row are loaded before the
// grid-dependency wait (weights never depend on the previous kernel, see pdl.cuh), so they stream while
// the previous kernel drains.
// Reference: linear() in src/backends/cpu/kernels/linear.ts (fp32 sums; the summation order differs
// from cuBLASLt's and the CPU's, so 16-bit outputs may differ by one rounding step of kiln_t).
//
// Macros:
//   KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16   dtype of x, W, bias and y (the runtime uses it for
//                  16-bit engines; fp32 engines keep cuBLASLt's exact-fp32 GEMMs for Hugging Face fidelity)
//   GEMV_MAX_M     largest m (default 8)
//
// Variants gemv_rRuUwW (R rows per warp, U vectors per lane in flight, W warps per block); the host
// picks one per (n, k) in src/backends/cuda/gemv_variants.ts:
//   gemv_r1u4w8, gemv_r1u16w8, gemv_r1u8w8, gemv_r2u8w4, gemv_r2u4w8
// extern "C" __global__ void gemv_rRuUwW(
//     const kiln_t* x,       // [m, k]
//     const kiln_t* w,       // [n, k]   (HF nn.Linear layout); weights: read before the PDL wait
//     const kiln_t* bias,    // [n] or null
//     kiln_t* y,             // [m, n]
//     int m, int n, int k)   // 1 ≤ m ≤ GEMV_MAX_M, n ≥ 1; k a multiple of 16 bytes of kiln_t (8 bf16/fp16,
//                            // 4 fp32); rows 16-byte aligned
// extern "C" __global__ void gemv_rRuUwW_f32out(... float* y ...)   the same, fp32 output (logits)
//   grid  = (ceil(n / (R·W))), block = (32·W)
//   shared memory: none
// 16-bit dtypes only, one per HF activation ACT ∈ {silu, gelu, gelu_pytorch_tanh, gelu_new, relu}:
// extern "C" __global__ void gemv_gated_ACT(
//     const kiln_t* x,       // [m, k]
//     const kiln_t* w,       // [2·inter, k]: the fused gate_up weight (gate rows, then up rows)
//     const kiln_t* bias,    // [2·inter] or null
//     kiln_t* y,             // [m, inter] = act(x·gateᵀ + b) · (x·upᵀ + b), as gemv + gated_act_ACT
//     int m, int inter, int k)
//   grid  = (ceil(inter / 8)), block = (256): one output feature (two weight rows) per warp
#include "activations.cuh"
#include "common.cuh"

#if !KILN_HAS_DTYPE
#error "gemv.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif
#ifndef GEMV_MAX_M
#define GEMV_MAX_M 8
#endif

namespace {

constexpr int kElems = kiln::kVec;  // kiln_t per 16-byte vector
#if !defined(KILN_DTYPE_F32)
constexpr int kGatedWarps = 8;  // gemv_gated_*: warps (output features) per block
#endif

// Overloads, not specialisations: in fp32 builds kiln_t is float and the two coincide.
__device__ __forceinline__ void store_out(float* y, float v) { *y = v; }
#if !defined(KILN_DTYPE_F32)
__device__ __forceinline__ void store_out(kiln_t* y, float v) { *y = kiln::from_float(v); }
#endif

__device__ __forceinline__ void dot_vec(const uint4& wv, const uint4& xv, float& acc) {
  const kiln_t* w = reinterpret_cast<const kiln_t*>(&wv);
  const kiln_t* x = reinterpret_cast<const kiln_t*>(&xv);
#pragma unroll
  for (int i = 0; i < kElems; i++) acc = fmaf(kiln::to_float(w[i]), kiln::to_float(x[i]), acc);
}

/** Loads vectors v, v + 32·S, …, v + 32·S·(U − 1) of each of the warp's R weight rows (S: warps per row). */
template <int R, int U, int S = 1>
__device__ __forceinline__ void load_w(const uint4* const (&wr)[R], int v, uint4 (&wv)[R][U]) {
#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int u = 0; u < U; u++) wv[r][u] = __ldcs(wr[r] + v + 32 * S * u);  // streamed once: evict first
  }
}

/** The warp's R dot products with the m rows of x, summed over its lanes' share of k (not yet
 * reduced across the warp): prefetch (weights only), PDL wait, then stream the rows. `active` false:
 * a warp past the last row, which still waits (every CTA must) and returns false. Each row's sum runs
 * over vectors v = lane, lane + 32, … in order whatever R and U are, so every variant (and the gated
 * kernel) gives a row the same bits. Split-K variants (S warps share a row): the warp's share is the
 * vectors slice·32 + lane + 32·S·i, summed in that order. */
template <int R, int U, int S = 1>
__device__ __forceinline__ bool warp_dots(const kiln_t* __restrict__ x, const uint4* const (&wr)[R], bool active,
                                          int m, int k, float (&acc)[R][GEMV_MAX_M], int slice = 0) {
  // Prefetching holds R·U vectors (4 registers each) across the wait; more would spill at m = 8.
  // Prefetching more of the rows into L2 before the wait measured slower (docs/PERFORMANCE.md): the
  // early CTAs' requests compete with the running kernel's stream.
  constexpr bool kPrefetch = R * U <= 16;
  const int lane = threadIdx.x & 31;
  const int vecs = k / kElems;
  uint4 wv[R][U];
  int v = lane + 32 * slice;
  bool have = false;  // wv holds the vectors of the first iteration
  if (kPrefetch && active && v + 32 * S * (U - 1) < vecs) {
    load_w<R, U, S>(wr, v, wv);
    have = true;
  }
  kiln::pdl_wait();  // x and y belong to the step (see pdl.cuh)
  kiln::pdl_launch_dependents();
  if (!active) return false;

#pragma unroll
  for (int r = 0; r < R; r++) {
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) acc[r][j] = 0.f;
  }
  for (; v + 32 * S * (U - 1) < vecs; v += 32 * S * U) {
    if (!have) load_w<R, U, S>(wr, v, wv);
    have = false;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        const uint4* xr = reinterpret_cast<const uint4*>(x + (size_t)j * k);
#pragma unroll
        for (int u = 0; u < U; u++) {
          const uint4 xv = __ldg(xr + (v + 32 * S * u));
#pragma unroll
          for (int r = 0; r < R; r++) dot_vec(wv[r][u], xv, acc[r][j]);
        }
      }
    }
  }
  for (; v < vecs; v += 32 * S) {  // the rest: fewer than 32·S·U vectors per row
    uint4 wt[R];
#pragma unroll
    for (int r = 0; r < R; r++) wt[r] = __ldcs(wr[r] + v);
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + (size_t)j * k) + v);
#pragma unroll
        for (int r = 0; r < R; r++) dot_vec(wt[r], xv, acc[r][j]);
      }
    }
  }
  return true;
}

/** The warp's R weight rows row0 .. row0 + R - 1 as 16-byte vectors; rows past n (the last warp's) re-read
 * row n - 1, and their sums are never stored. */
template <int R>
__device__ __forceinline__ void weight_rows(const kiln_t* w, int row0, int n, int k, const uint4* (&wr)[R]) {
#pragma unroll
  for (int r = 0; r < R; r++) wr[r] = reinterpret_cast<const uint4*>(w + (size_t)min(row0 + r, n - 1) * k);
}

template <int R, int U, int W, typename Out>
__device__ __forceinline__ void gemv_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                          const kiln_t* __restrict__ bias, Out* __restrict__ y, int m, int n, int k) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * W + (threadIdx.x >> 5)) * R;  // the warp's rows: row0 .. row0 + R - 1
  const uint4* wr[R];
  weight_rows<R>(w, row0, n, k, wr);
  float acc[R][GEMV_MAX_M];
  if (!warp_dots<R, U>(x, wr, row0 < n, m, k, acc)) return;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r;
    const float b = bias && row < n ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        const float s = kiln::warp_sum(acc[r][j]);
        if (lane == 0 && row < n) store_out(y + (size_t)j * n + row, s + b);
      }
    }
  }
}

/** Split-K GEMV (gemv_rRuUwWsS): S warps share each group of R rows, warp `slice` streaming the vectors
 * slice·32 + lane + 32·S·i of every row, so a row of k takes 1/S of the dependent load rounds of the
 * one-warp variants (a long row, k = 8192: 2 instead of 8 rounds of U vectors per lane at S = 4), with
 * the registers of R·U vectors per lane. The slices' sums meet in shared memory and slice 0 adds them
 * in slice order (deterministic; other bits than the one-warp variants, within the same tolerance).
 *   block: W warps = W/S row groups of S slices; CTA rows = R·W/S. */
template <int R, int U, int W, int S, typename Out>
__device__ __forceinline__ void gemv_splitk_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                                 const kiln_t* __restrict__ bias, Out* __restrict__ y, int m, int n,
                                                 int k) {
  static_assert(W % S == 0, "S must divide W");
  __shared__ float part[W][R][GEMV_MAX_M];  // [warp][row][m] each slice's sums
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int group = warp / S, slice = warp % S;
  const int row0 = (blockIdx.x * (W / S) + group) * R;  // the group's rows: row0 .. row0 + R - 1
  const uint4* wr[R];
  weight_rows<R>(w, row0, n, k, wr);
  float acc[R][GEMV_MAX_M];
  const bool active = warp_dots<R, U, S>(x, wr, row0 < n, m, k, acc, slice);
  if (active) {
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int j = 0; j < GEMV_MAX_M; j++) {
        if (j < m) {
          const float s = kiln::warp_sum(acc[r][j]);
          if (lane == 0) part[warp][r][j] = s;
        }
      }
    }
  }
  __syncthreads();  // every warp, active or not
  if (!active || slice != 0 || lane != 0) return;
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r;
    if (row >= n) continue;
    const float b = bias ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        float s = 0.f;
#pragma unroll
        for (int z = 0; z < S; z++) s += part[warp + z][r][j];
        store_out(y + (size_t)j * n + row, s + b);
      }
    }
  }
}

#if !defined(KILN_DTYPE_F32)
/** The gate_up GEMV with the gated activation as its epilogue: feature i of the output is
 * act(gate_i) · up_i, where gate_i and up_i are rows i and inter + i of the fused [2·inter, k] weight,
 * both computed by one warp. Each is rounded to kiln_t as the unfused GEMV stores it, then activated
 * and multiplied exactly as activation.cu's gated_act does, so the output is bit for bit the
 * unfused pair's. */
template <class Act>
__device__ __forceinline__ void gemv_gated_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                                const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m,
                                                int inter, int k) {
  constexpr int U = 4;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kGatedWarps + (threadIdx.x >> 5);
  const int r = min(row, inter - 1);
  const uint4* const wr[2] = {reinterpret_cast<const uint4*>(w + (size_t)r * k),
                              reinterpret_cast<const uint4*>(w + (size_t)(inter + r) * k)};
  float acc[2][GEMV_MAX_M];
  if (!warp_dots<2, U>(x, wr, row < inter, m, k, acc)) return;
  const float bg = bias ? kiln::to_float(bias[row]) : 0.f;
  const float bu = bias ? kiln::to_float(bias[inter + row]) : 0.f;
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) {
    if (j < m) {
      const float sg = kiln::warp_sum(acc[0][j]), su = kiln::warp_sum(acc[1][j]);
      const float g = kiln::round_t(sg + bg);
      const float u = kiln::round_t(su + bu);
      if (lane == 0) y[(size_t)j * inter + row] = kiln::from_float(__fmul_rn(Act::apply(g), u));
    }
  }
}
#endif

}  // namespace

// One variant: its kiln_t-output and fp32-output kernels.
#define KILN_GEMV_PLAIN(R, U, W)                                                                               \
  extern "C" __global__ void __launch_bounds__(32 * W)                                                       \
      gemv_r##R##u##U##w##W(const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) { \
    gemv_impl<R, U, W, kiln_t>(x, w, bias, y, m, n, k);                                                       \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_f32out(                       \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {                   \
    gemv_impl<R, U, W, float>(x, w, bias, y, m, n, k);                                                        \
  }

KILN_GEMV_PLAIN(1, 4, 8)
KILN_GEMV_PLAIN(1, 16, 8)
KILN_GEMV_PLAIN(1, 8, 8)
KILN_GEMV_PLAIN(2, 8, 4)
KILN_GEMV_PLAIN(2, 4, 8)

// Split-K variants (gemv_splitk_impl): S warps per row.
#define KILN_GEMV_SPLITK(R, U, W, S)                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##s##S(                          \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) {                   \
    gemv_splitk_impl<R, U, W, S, kiln_t>(x, w, bias, y, m, n, k);                                             \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##s##S##_f32out(                 \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {                   \
    gemv_splitk_impl<R, U, W, S, float>(x, w, bias, y, m, n, k);                                              \
  }
KILN_GEMV_SPLITK(1, 4, 8, 2)
KILN_GEMV_SPLITK(1, 4, 8, 4)
#if !defined(KILN_DTYPE_F32)
#define KILN_GEMV_GATED(NAME, ACT)                                                                              \
  extern "C" __global__ void __launch_bounds__(32 * kGatedWarps)                                             \
      gemv_gated_##NAME(const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int inter, int k) { \
    gemv_gated_impl<kiln::ACT>(x, w, bias, y, m, inter, k);                                                   \
  }

// GEMV_ACT (gemv_variants.ts: GATED_ACTS): 1–5 compiles only that activation's gated kernels (an engine
// needs its model's one), 0 none; left undefined, all five (tests, CI's nvcc check).
#if !defined(GEMV_ACT) || GEMV_ACT == 1
KILN_GEMV_GATED(silu, Silu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 2
KILN_GEMV_GATED(gelu, Gelu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 3
KILN_GEMV_GATED(gelu_pytorch_tanh, GeluTanh)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 4
KILN_GEMV_GATED(gelu_new, GeluNew)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 5
KILN_GEMV_GATED(relu, Relu)
#endif
#endif
