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
// picks one per (n, k) in src/backends/cuda/gemv_plan.ts, from measurements (tools/microbench/gemv_pdl.cu):
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
//
// RMSNorm fused in front (decode steps whose GEMV input is an RMSNorm's only use), 16-bit dtypes:
// gemv_r1u4w8 and gemv_r2u8w4 (the default policy's variants) and every gemv_gated_ACT have `_norm`
// twins (gemv_rRuUwW_norm, gemv_rRuUwW_f32out_norm, gemv_gated_ACT_norm) whose x is replaced by the
// norm's inputs:
//     const kiln_t* nx,      // [m, k] the norm's input (a sublayer's output)
//     const kiln_t* residual, // [m, k] or null. Non-null: add_rms_norm (residual + nx, rounded to kiln_t,
//                            // is normalised and stored to residual_out); null: rms_norm of nx
//     kiln_t* residual_out,  // [m, k] (with a residual): not residual itself, which every CTA reads
//     const kiln_t* gamma,   // [k] the norm's weight; read before the PDL wait
//     float eps,
//     ... then w, bias, y, m, n (or inter), k as above (k is the normalised width)
//   dynamic shared memory: m · k · sizeof(kiln_t) bytes (the normalised rows)
// Each CTA normalises the m rows itself into shared memory (rmsnorm.cuh: the same operations as
// rmsnorm.cu, so the GEMV sees the very bits the norm kernel would have stored; the fp64 sum of fp32
// squares is exact in all but extreme exponent ranges, so its order does not matter), then runs the
// GEMV from shared memory; CTA 0 stores the residual sum.
//
// RMSNorm fused behind (the tail norm, KILN_FUSE_NORM=tail): the same two variants have a producer twin
// for the GEMV whose output feeds a residual add + RMSNorm (o_proj, down), 16-bit dtypes:
// extern "C" __global__ void gemv_rRuUwW_addnorm(
//     const kiln_t* x, const kiln_t* w, const kiln_t* bias,   as gemv_rRuUwW
//     const kiln_t* residual, // [m, n]
//     kiln_t* residual_out,  // [m, n] h = residual + y, rounded as add_rms_norm rounds it (y itself is not stored)
//     const kiln_t* gamma,   // [n] the norm's weight
//     float eps,
//     kiln_t* normed,        // [m, n] RMSNorm(h): the bits add_rms_norm stores
//     int* counter,          // one arrival counter per launch site: zero before, left zero after
//     int m, int n, int k)
//   grid, block as gemv_rRuUwW; shared memory: static only
// Every CTA stores its features of h and arrives on the counter; the last to arrive normalises the m
// whole rows of h (read through L2) into `normed`, so the next GEMV reads normalised rows as usual.
//
// RMSNorm carried across (KILN_FUSE_NORM=carry), 16-bit dtypes: the residual add + RMSNorm between two
// decode GEMVs has no launch and no prologue. The producer (o_proj, down) stores h = residual + y, the
// fp32 products h·γ and Σ h² (fp64, one atomic add per CTA and row); the consumer streams h·γ as its x
// and scales each dot product by rstd = rms_rstd(Σ h²) in its epilogue, since
// Σ_k W[n,k]·(h_k·rstd·γ_k) = rstd · Σ_k W[n,k]·(h_k·γ_k). It skips the two kiln_t roundings of the
// normalised x (rms_apply), so its bits differ from the unfused pair's by rounding only (closer to the
// exact value, not further). The same two variants and every gemv_gated_ACT have the twins:
// extern "C" __global__ void gemv_rRuUwW_addcarry(
//     const kiln_t* x, const kiln_t* w, const kiln_t* bias,   as gemv_rRuUwW
//     const kiln_t* residual, // [m, n]
//     kiln_t* residual_out,  // [m, n] h = residual + y, rounded as add_rms_norm rounds it (may be residual)
//     const kiln_t* gamma,   // [n] the norm's weight
//     float* hg,             // [m, n] fp32 h·γ (the consumer's x)
//     double* sumsq,         // [GEMV_MAX_M] Σ h² per row, added to: zero before the launch
//     int m, int n, int k)
// extern "C" __global__ void gemv_rRuUwW_carry(        (and _f32out_carry, gemv_gated_ACT_carry)
//     const float* hg,       // [m, k] the producer's h·γ
//     const double* sumsq,   // [GEMV_MAX_M] the producer's Σ h²
//     double* clear,         // [GEMV_MAX_M] or null: another site's sums, set to zero by CTA 0 after the
//                            //   PDL wait (the chain of waits has finished every earlier kernel)
//     float eps,
//     ... then w, bias, y, m, n (or inter), k as gemv_rRuUwW (k is the normalised width)
// The slots' zeroing runs along the step: the consumer of each carried norm clears the slot of the one
// before it, the first the last's (src/backends/cuda/cuda_backend.ts carryPlan).
#include "activations.cuh"
#include "common.cuh"
#include "rmsnorm.cuh"

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

#if !defined(KILN_DTYPE_F32)
/** The fused norm's inputs (gemv_*_norm). */
struct NormIn {
  const kiln_t* x;
  const kiln_t* residual;
  kiln_t* residual_out;
  const kiln_t* gamma;
  float eps;
};

/** 16-byte vectors of the norm weight each thread loads before the PDL wait (weights never depend on
 * the previous kernel): all of them up to k = kGammaPre · 8 · blockDim (4,096 for 256 threads); more
 * would cost registers held across the wait. */
constexpr int kGammaPre = 2;

__device__ __forceinline__ void prefetch_gamma(const NormIn& in, int k, uint4 (&gp)[kGammaPre]) {
  const uint4* gr = reinterpret_cast<const uint4*>(in.gamma);
#pragma unroll
  for (int i = 0; i < kGammaPre; i++) {
    const int v = threadIdx.x + i * blockDim.x;
    if (v < k / kElems) gp[i] = __ldcs(gr + v);  // weights: the one load kind the PDL rule allows early
  }
}

/** One 16-byte vector of h normalised: rms_apply per element, the bits rms_norm stores. */
__device__ __forceinline__ uint4 normalized(uint4 hv, const uint4& gv, float rstd) {
  kiln_t* h = reinterpret_cast<kiln_t*>(&hv);
  const kiln_t* g = reinterpret_cast<const kiln_t*>(&gv);
#pragma unroll
  for (int e = 0; e < kElems; e++) h[e] = kiln::rms_apply(h[e], g[e], rstd);
  return hv;
}

/** One 16-byte vector of a normalised row, in place in shared memory. */
__device__ __forceinline__ void normalize_vec(uint4* hr, int v, const uint4& gv, float rstd) {
  hr[v] = normalized(hr[v], gv, rstd);
}

/** Writes the m normalised rows of `in` to `xs` (shared, [m, k]); after the PDL wait, called by every
 * thread of the block. With a residual, block 0 also stores residual + x to residual_out (another
 * buffer: every block reads the residual). */
__device__ __forceinline__ void norm_rows(const NormIn& in, const uint4 (&gp)[kGammaPre], kiln_t* xs, int m,
                                          int k) {
  __shared__ double partial[GEMV_MAX_M][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int vecs = k / kElems;
  const bool store = in.residual && blockIdx.x == 0;
  for (int j = 0; j < m; j++) {
    const uint4* xr = reinterpret_cast<const uint4*>(in.x + (size_t)j * k);
    const uint4* rr = reinterpret_cast<const uint4*>(in.residual + (size_t)j * k);
    uint4* ro = reinterpret_cast<uint4*>(in.residual_out + (size_t)j * k);
    uint4* hr = reinterpret_cast<uint4*>(xs + (size_t)j * k);
    double sum_sq = 0.0;
    for (int v = threadIdx.x; v < vecs; v += blockDim.x) {
      uint4 hv = xr[v];
      kiln_t* h = reinterpret_cast<kiln_t*>(&hv);
      if (in.residual) {
        const uint4 rv = rr[v];
        const kiln_t* r = reinterpret_cast<const kiln_t*>(&rv);
#pragma unroll
        for (int e = 0; e < kElems; e++) h[e] = kiln::residual_sum(r[e], h[e]);
        if (store) ro[v] = hv;
      }
#pragma unroll
      for (int e = 0; e < kElems; e++) {
        const float f = kiln::to_float(h[e]);
        sum_sq += (double)__fmul_rn(f, f);  // hidden_states.pow(2) is an fp32 tensor
      }
      hr[v] = hv;
    }
    sum_sq = kiln::warp_sum(sum_sq);
    if (lane == 0) partial[j][warp] = sum_sq;
  }
  __syncthreads();
  const uint4* gr = reinterpret_cast<const uint4*>(in.gamma);
  for (int j = 0; j < m; j++) {
    double s = 0.0;  // every thread sums the warps' partials in the same order
    for (int w = 0; w < warps; w++) s += partial[j][w];
    const float rstd = kiln::rms_rstd(s, k, in.eps);
    uint4* hr = reinterpret_cast<uint4*>(xs + (size_t)j * k);
#pragma unroll
    for (int i = 0; i < kGammaPre; i++) {
      const int v = threadIdx.x + i * blockDim.x;
      if (v < vecs) normalize_vec(hr, v, gp[i], rstd);
    }
    for (int v = threadIdx.x + kGammaPre * blockDim.x; v < vecs; v += blockDim.x)
      normalize_vec(hr, v, __ldg(gr + v), rstd);
  }
  __syncthreads();
}
#endif

/** The x of one weight vector: kElems values of kiln_t in `a`, or (a carried norm's fp32 h·γ, XT =
 * float in a 16-bit build) kElems floats in `a` and `b`. */
struct XVec {
  uint4 a, b;
};

template <typename XT>
constexpr bool kF32X = sizeof(XT) == 4 && kElems == 8;

/** x for weight vector v of a row of x: from shared memory (Norm: normalised in the prologue) or global
 * memory. */
template <bool Norm, typename XT>
__device__ __forceinline__ XVec load_x(const XT* x, int v) {
  XVec xv;
  if constexpr (kF32X<XT>) {
    const uint4* xr = reinterpret_cast<const uint4*>(x);
    xv.a = __ldg(xr + 2 * v);
    xv.b = __ldg(xr + 2 * v + 1);
  } else {
    const uint4* xr = reinterpret_cast<const uint4*>(x);
    xv.a = Norm ? xr[v] : __ldg(xr + v);
  }
  return xv;
}

/** acc += w · x over one weight vector, in element order. */
template <typename XT>
__device__ __forceinline__ void dot_x(const uint4& wv, const XVec& xv, float& acc) {
  if constexpr (kF32X<XT>) {
    const kiln_t* w = reinterpret_cast<const kiln_t*>(&wv);
    const float* xa = reinterpret_cast<const float*>(&xv.a);
    const float* xb = reinterpret_cast<const float*>(&xv.b);
#pragma unroll
    for (int i = 0; i < 4; i++) acc = fmaf(kiln::to_float(w[i]), xa[i], acc);
#pragma unroll
    for (int i = 0; i < 4; i++) acc = fmaf(kiln::to_float(w[4 + i]), xb[i], acc);
  } else {
    dot_vec(wv, xv.a, acc);
  }
}

#if !defined(KILN_DTYPE_F32)
/** The consumer's side of a carried norm (gemv_*_carry). */
struct CarryIn {
  const double* sumsq;
  double* clear;
  float eps;
};

/** After the PDL wait: lane j < m holds row j's Σ h²; CTA 0 clears the other site's slot. */
__device__ __forceinline__ double carry_begin(const CarryIn& c, int m) {
  const int lane = threadIdx.x & 31;
  if (c.clear && blockIdx.x == 0 && threadIdx.x < GEMV_MAX_M) c.clear[threadIdx.x] = 0.0;
  return lane < m ? __ldcg(c.sumsq + lane) : 0.0;
}

/** Row j's rstd from the Σ h² lane j holds (every lane calls it). */
__device__ __forceinline__ float carry_rstd(double ss, int j, int k, float eps) {
  return kiln::rms_rstd(__shfl_sync(kiln::kFullMask, ss, j), k, eps);
}
#endif

/** The warp's R dot products with the m rows of x, summed over its lanes' share of k (not yet
 * reduced across the warp): prefetch (weights only), PDL wait, then stream the rows. `active` false:
 * a warp past the last row, which still waits (every CTA must) and returns false. Each row's sum runs
 * over vectors v = lane, lane + 32, … in order whatever R and U are, so every variant (and the gated
 * kernel) gives a row the same bits. Split-K variants (S warps share a row): the warp's share is the
 * vectors slice·32 + lane + 32·S·i, summed in that order. */
template <int R, int U, bool Norm = false, int S = 1, typename XT = kiln_t>
__device__ __forceinline__ bool warp_dots(const XT* __restrict__ x, const uint4* const (&wr)[R], bool active, int m,
                                          int k, float (&acc)[R][GEMV_MAX_M], const void* norm = nullptr,
                                          int slice = 0, double* carry_ss = nullptr) {
  // Prefetching holds R·U vectors (4 registers each) across the wait; more would spill at m = 8.
  // Asking L2 for more of the rows before the wait (one cp.async.bulk.prefetch.L2 per row) measured
  // slower on the H200 (2026-12-03, ce778f2): 1B 0.891 ms (first 4 KB of each row) and 0.916 (whole rows)
  // against 0.835; 8B 4.402 and 4.748 against 4.198. The early CTAs' bulk requests compete with the
  // running kernel's stream and leave it later; removed.
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
#if !defined(KILN_DTYPE_F32)
  uint4 gp[kGammaPre];
  if constexpr (Norm) prefetch_gamma(*static_cast<const NormIn*>(norm), k, gp);
#endif
  kiln::pdl_wait();  // x and y belong to the step (see pdl.cuh)
  kiln::pdl_launch_dependents();
#if !defined(KILN_DTYPE_F32)
  if constexpr (Norm) {
    extern __shared__ uint4 normalized_rows[];  // [m, k] kiln_t
    norm_rows(*static_cast<const NormIn*>(norm), gp, reinterpret_cast<kiln_t*>(normalized_rows), m, k);
    x = reinterpret_cast<const XT*>(normalized_rows);
  }
  // A carried norm (XT = float: x is the producer's h·γ): each lane j < m holds row j's Σ h².
  if constexpr (kF32X<XT>) *carry_ss = carry_begin(*static_cast<const CarryIn*>(norm), m);
#endif
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
        const XT* xr = x + (size_t)j * k;
#pragma unroll
        for (int u = 0; u < U; u++) {
          const XVec xv = load_x<Norm>(xr, v + 32 * S * u);
#pragma unroll
          for (int r = 0; r < R; r++) dot_x<XT>(wv[r][u], xv, acc[r][j]);
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
        const XVec xv = load_x<Norm>(x + (size_t)j * k, v);
#pragma unroll
        for (int r = 0; r < R; r++) dot_x<XT>(wt[r], xv, acc[r][j]);
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

template <int R, int U, int W, typename Out, bool Norm = false, typename XT = kiln_t>
__device__ __forceinline__ void gemv_impl(const XT* __restrict__ x, const kiln_t* __restrict__ w,
                                          const kiln_t* __restrict__ bias, Out* __restrict__ y, int m, int n, int k,
                                          const void* norm = nullptr) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * W + (threadIdx.x >> 5)) * R;  // the warp's rows: row0 .. row0 + R - 1
  const uint4* wr[R];
  weight_rows<R>(w, row0, n, k, wr);
  float acc[R][GEMV_MAX_M];
  double ss = 0.0;  // a carried norm's Σ h² of row `lane`
  if (!warp_dots<R, U, Norm, 1, XT>(x, wr, row0 < n, m, k, acc, norm, 0, &ss)) return;
  float rstd[GEMV_MAX_M];  // a carried norm's rstd of each row, once for the warp's R rows
#if !defined(KILN_DTYPE_F32)
  if constexpr (kF32X<XT>) {
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++)
      if (j < m) rstd[j] = carry_rstd(ss, j, k, static_cast<const CarryIn*>(norm)->eps);
  }
#endif
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r;
    const float b = bias && row < n ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
        float s = kiln::warp_sum(acc[r][j]);
        if constexpr (kF32X<XT>) s = __fmul_rn(s, rstd[j]);
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
  const bool active = warp_dots<R, U, false, S>(x, wr, row0 < n, m, k, acc, nullptr, slice);
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
/** V elements of h at p, which other CTAs of this grid wrote: through L2 (__ldcg), never the
 * non-coherent path. V is kElems (a 16-byte vector) or 1. */
template <int V>
__device__ __forceinline__ kiln::Vec<kiln_t, V> ldcg_vec(const kiln_t* p) {
  kiln::Vec<kiln_t, V> v;
  if constexpr (V == kElems) {
    *reinterpret_cast<uint4*>(&v) = __ldcg(reinterpret_cast<const uint4*>(p));
  } else {
#pragma unroll
    for (int e = 0; e < V; e++) v.v[e] = __ldcg(p + e);
  }
  return v;
}

/** The tail norm: normed[j] = RMSNorm(h[j]) for the m rows of h [m, n], by one CTA, with add_rms_norm's
 * operations (rmsnorm.cuh; the fp64 sum of fp32 squares is exact in all but extreme exponent ranges,
 * so its order does not matter): the bits add_rms_norm stores. */
template <int V>
__device__ __forceinline__ void tail_norm_rows(const kiln_t* h, const kiln_t* __restrict__ gamma, float eps,
                                               kiln_t* __restrict__ normed, int m, int n) {
  __shared__ double partial[GEMV_MAX_M][32];  // [row][warp] Σ h² over the warp's elements
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int groups = n / V;
  for (int j = 0; j < m; j++) {
    const kiln_t* hr = h + (size_t)j * n;
    double sum_sq = 0.0;
    for (int i = threadIdx.x; i < groups; i += blockDim.x) {
      const kiln::Vec<kiln_t, V> hv = ldcg_vec<V>(hr + i * V);
#pragma unroll
      for (int e = 0; e < V; e++) {
        const float f = kiln::to_float(hv.v[e]);
        sum_sq += (double)__fmul_rn(f, f);  // hidden_states.pow(2) is an fp32 tensor
      }
    }
    sum_sq = kiln::warp_sum(sum_sq);
    if (lane == 0) partial[j][warp] = sum_sq;
  }
  __syncthreads();
  for (int j = 0; j < m; j++) {
    double s = 0.0;  // every thread sums the warps' partials in the same order
    for (int w = 0; w < warps; w++) s += partial[j][w];
    const float rstd = kiln::rms_rstd(s, n, eps);
    const kiln_t* hr = h + (size_t)j * n;
    for (int i = threadIdx.x; i < groups; i += blockDim.x) {  // h again: from L2
      const kiln::Vec<kiln_t, V> hv = ldcg_vec<V>(hr + i * V);
      const kiln::Vec<kiln_t, V> gv = kiln::load_vec<kiln_t, V>(gamma + i * V);
      kiln::Vec<kiln_t, V> ov;
#pragma unroll
      for (int e = 0; e < V; e++) ov.v[e] = kiln::rms_apply(hv.v[e], gv.v[e], rstd);
      kiln::store_vec<kiln_t, V>(normed + (size_t)j * n + i * V, ov);
    }
  }
}

/**
 * The tail norm's producer (gemv_*_addnorm): the GEMV whose output y feeds residual + y → RMSNorm
 * (o_proj, down). Instead of y it stores h = residual + y (residual_sum of y rounded to kiln_t, as
 * add_rms_norm forms it) to residual_out; the last CTA to finish (an arrival counter, zero before the
 * launch and reset to zero by that CTA) then normalises the m rows of h into `normed`, so the norm has
 * no launch of its own and the next GEMV reads normalised rows as usual. gamma is read after the PDL
 * wait: only the last CTA needs it.
 */
template <int R, int U, int W>
__device__ __forceinline__ void gemv_addnorm_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                                  const kiln_t* __restrict__ bias, const kiln_t* residual,
                                                  kiln_t* residual_out, const kiln_t* __restrict__ gamma, float eps,
                                                  kiln_t* __restrict__ normed, int* counter, int m, int n, int k) {
  __shared__ bool last;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row0 = (blockIdx.x * W + warp) * R;
  const uint4* wr[R];
  weight_rows<R>(w, row0, n, k, wr);
  float acc[R][GEMV_MAX_M];
  const bool active = warp_dots<R, U>(x, wr, row0 < n, m, k, acc);  // every warp goes on to the barrier
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = row0 + r;
    const float b = bias && row < n ? kiln::to_float(bias[row]) : 0.f;
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (active && j < m) {
        const float s = kiln::warp_sum(acc[r][j]);
        const size_t at = (size_t)j * n + row;
        if (lane == 0 && row < n) residual_out[at] = kiln::residual_sum(residual[at], kiln::from_float(s + b));
      }
    }
  }
  // Arrival: the last CTA sees every CTA's h (each fenced its stores before arriving).
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const bool is_last = atomicAdd(counter, 1) == (int)gridDim.x - 1;
    if (is_last) *counter = 0;  // every CTA has arrived: ready for the next launch
    __threadfence();
    last = is_last;
  }
  __syncthreads();
  if (!last) return;
  const bool vec = n % kElems == 0 && kiln::aligned16(residual_out) && kiln::aligned16(gamma) && kiln::aligned16(normed);
  if (vec) {
    tail_norm_rows<kElems>(residual_out, gamma, eps, normed, m, n);
  } else {
    tail_norm_rows<1>(residual_out, gamma, eps, normed, m, n);
  }
}

/**
 * A carried norm's producer (gemv_*_addcarry): the GEMV whose output y feeds residual + y → RMSNorm →
 * one GEMV (o_proj, down). Instead of y it stores h = residual + y (residual_sum of y rounded to kiln_t,
 * as add_rms_norm forms it) to residual_out, the fp32 products h·γ to hg, and adds each row's Σ h² (fp32
 * squares in fp64, as rmsnorm.cu sums them) to sumsq with one atomic per CTA: its only cost over the
 * plain GEMV is its epilogue, no barrier across the grid.
 */
template <int R, int U, int W>
__device__ __forceinline__ void gemv_addcarry_impl(const kiln_t* __restrict__ x, const kiln_t* __restrict__ w,
                                                   const kiln_t* __restrict__ bias, const kiln_t* residual,
                                                   kiln_t* residual_out, const kiln_t* __restrict__ gamma,
                                                   float* __restrict__ hg, double* sumsq, int m, int n, int k) {
  __shared__ double part[W][GEMV_MAX_M];  // [warp][row] Σ h² over the warp's features
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row0 = (blockIdx.x * W + warp) * R;
  const uint4* wr[R];
  weight_rows<R>(w, row0, n, k, wr);
  // The epilogue's operands, loaded before the PDL wait so that no load waits behind the dot products:
  // γ and the bias are weights, and the residual was written two or more kernels back (pdl.cuh), through
  // L2. Lane j < m holds row j's residual of each of the warp's rows; every lane the rows' γ and bias.
  float res[R], gam[R], bia[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    const int row = min(row0 + r, n - 1);
    gam[r] = kiln::to_float(__ldcs(gamma + row));
    bia[r] = bias ? kiln::to_float(__ldcs(bias + row)) : 0.f;
    res[r] = row0 < n && lane < m ? kiln::to_float(__ldcg(residual + (size_t)lane * n + row)) : 0.f;
  }
  float acc[R][GEMV_MAX_M];
  const bool active = warp_dots<R, U>(x, wr, row0 < n, m, k, acc);  // every warp goes on to the barrier
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) {
    double sq = 0.0;
    if (active && j < m) {
#pragma unroll
      for (int r = 0; r < R; r++) {
        const int row = row0 + r;
        const float s = kiln::warp_sum(acc[r][j]);
        const kiln_t rj = kiln::from_float(__shfl_sync(kiln::kFullMask, res[r], j));  // exact: a kiln_t value
        if (row < n) {
          const size_t at = (size_t)j * n + row;
          const kiln_t h = kiln::residual_sum(rj, kiln::from_float(s + bia[r]));
          const float f = kiln::to_float(h);
          sq += (double)__fmul_rn(f, f);  // hidden_states.pow(2) is an fp32 tensor
          if (lane == 0) {
            residual_out[at] = h;
            hg[at] = __fmul_rn(f, gam[r]);
          }
        }
      }
    }
    if (lane == 0) part[warp][j] = sq;
  }
  __syncthreads();
  if (threadIdx.x < m) {
    double s = 0.0;
#pragma unroll
    for (int z = 0; z < W; z++) s += part[z][threadIdx.x];
    atomicAdd(sumsq + threadIdx.x, s);  // exact in all but extreme exponent ranges: the order does not matter
  }
}

/** The gate_up GEMV with the gated activation as its epilogue: feature i of the output is
 * act(gate_i) · up_i, where gate_i and up_i are rows i and inter + i of the fused [2·inter, k] weight,
 * both computed by one warp. Each is rounded to kiln_t as the unfused GEMV stores it, then activated
 * and multiplied exactly as activation.cu's gated_act does, so the output is bit for bit the
 * unfused pair's. */
template <class Act, bool Norm = false, typename XT = kiln_t>
__device__ __forceinline__ void gemv_gated_impl(const XT* __restrict__ x, const kiln_t* __restrict__ w,
                                                const kiln_t* __restrict__ bias, kiln_t* __restrict__ y, int m,
                                                int inter, int k, const void* norm = nullptr) {
  constexpr int U = 4;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kGatedWarps + (threadIdx.x >> 5);
  const int r = min(row, inter - 1);
  const uint4* const wr[2] = {reinterpret_cast<const uint4*>(w + (size_t)r * k),
                              reinterpret_cast<const uint4*>(w + (size_t)(inter + r) * k)};
  float acc[2][GEMV_MAX_M];
  double ss = 0.0;  // a carried norm's Σ h² of row `lane`
  if (!warp_dots<2, U, Norm, 1, XT>(x, wr, row < inter, m, k, acc, norm, 0, &ss)) return;
  const float bg = bias ? kiln::to_float(bias[row]) : 0.f;
  const float bu = bias ? kiln::to_float(bias[inter + row]) : 0.f;
#pragma unroll
  for (int j = 0; j < GEMV_MAX_M; j++) {
    if (j < m) {
      float sg = kiln::warp_sum(acc[0][j]), su = kiln::warp_sum(acc[1][j]);
      if constexpr (kF32X<XT>) {
        const float rstd = carry_rstd(ss, j, k, static_cast<const CarryIn*>(norm)->eps);
        sg = __fmul_rn(sg, rstd);
        su = __fmul_rn(su, rstd);
      }
      const float g = kiln::round_t(sg + bg);
      const float u = kiln::round_t(su + bu);
      if (lane == 0) y[(size_t)j * inter + row] = kiln::from_float(__fmul_rn(Act::apply(g), u));
    }
  }
}
#endif

}  // namespace

// One variant: its kiln_t-output and fp32-output kernels; for 16-bit dtypes, optionally their fused-norm twins.
#define KILN_GEMV_PLAIN(R, U, W)                                                                               \
  extern "C" __global__ void __launch_bounds__(32 * W)                                                       \
      gemv_r##R##u##U##w##W(const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) { \
    gemv_impl<R, U, W, kiln_t>(x, w, bias, y, m, n, k);                                                       \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_f32out(                       \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {                   \
    gemv_impl<R, U, W, float>(x, w, bias, y, m, n, k);                                                        \
  }

#if !defined(KILN_DTYPE_F32)
#define KILN_NORM_PARAMS \
  const kiln_t *nx, const kiln_t *residual, kiln_t *residual_out, const kiln_t *gamma, float eps
// The tail norm's producer (gemv_addnorm_impl).
#define KILN_GEMV_TAIL_NORM(R, U, W)                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_addnorm(                      \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, const kiln_t* residual, kiln_t* residual_out,       \
      const kiln_t* gamma, float eps, kiln_t* normed, int* counter, int m, int n, int k) {                     \
    gemv_addnorm_impl<R, U, W>(x, w, bias, residual, residual_out, gamma, eps, normed, counter, m, n, k);     \
  }
// A carried norm's producer (gemv_addcarry_impl) and consumers (gemv_impl over fp32 h·γ).
#define KILN_CARRY_PARAMS const float *hg, const double *sumsq, double *clear, float eps
#define KILN_GEMV_CARRY(R, U, W)                                                                               \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_addcarry(                     \
      const kiln_t* x, const kiln_t* w, const kiln_t* bias, const kiln_t* residual, kiln_t* residual_out,       \
      const kiln_t* gamma, float* hg, double* sumsq, int m, int n, int k) {                                    \
    gemv_addcarry_impl<R, U, W>(x, w, bias, residual, residual_out, gamma, hg, sumsq, m, n, k);               \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_carry(                        \
      KILN_CARRY_PARAMS, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) {                \
    const CarryIn in{sumsq, clear, eps};                                                                       \
    gemv_impl<R, U, W, kiln_t, false, float>(hg, w, bias, y, m, n, k, &in);                                   \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_f32out_carry(                 \
      KILN_CARRY_PARAMS, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {                 \
    const CarryIn in{sumsq, clear, eps};                                                                       \
    gemv_impl<R, U, W, float, false, float>(hg, w, bias, y, m, n, k, &in);                                    \
  }
#define KILN_GEMV_NORM(R, U, W)                                                                                \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_norm(                         \
      KILN_NORM_PARAMS, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int n, int k) {                 \
    const NormIn in{nx, residual, residual_out, gamma, eps};                                                        \
    gemv_impl<R, U, W, kiln_t, true>(static_cast<const kiln_t*>(nullptr), w, bias, y, m, n, k, &in);                                      \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_r##R##u##U##w##W##_f32out_norm(                  \
      KILN_NORM_PARAMS, const kiln_t* w, const kiln_t* bias, float* y, int m, int n, int k) {                  \
    const NormIn in{nx, residual, residual_out, gamma, eps};                                                        \
    gemv_impl<R, U, W, float, true>(static_cast<const kiln_t*>(nullptr), w, bias, y, m, n, k, &in);                                       \
  }
#endif

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
// Fused-norm twins of the variants the default policy runs (gemv_plan.ts: GEMV_NORM_VARIANTS); each
// twin doubles a variant's compile time, so the others have none.
KILN_GEMV_NORM(1, 4, 8)
KILN_GEMV_NORM(2, 8, 4)
KILN_GEMV_TAIL_NORM(1, 4, 8)
KILN_GEMV_TAIL_NORM(2, 8, 4)
KILN_GEMV_CARRY(1, 4, 8)
KILN_GEMV_CARRY(2, 8, 4)
#endif

#if !defined(KILN_DTYPE_F32)
#define KILN_GEMV_GATED(NAME, ACT)                                                                              \
  extern "C" __global__ void __launch_bounds__(32 * kGatedWarps)                                             \
      gemv_gated_##NAME(const kiln_t* x, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int inter, int k) { \
    gemv_gated_impl<kiln::ACT>(x, w, bias, y, m, inter, k);                                                   \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * kGatedWarps) gemv_gated_##NAME##_norm(                   \
      KILN_NORM_PARAMS, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int inter, int k) {             \
    const NormIn in{nx, residual, residual_out, gamma, eps};                                                        \
    gemv_gated_impl<kiln::ACT, true>(static_cast<const kiln_t*>(nullptr), w, bias, y, m, inter, k, &in);                                  \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(32 * kGatedWarps) gemv_gated_##NAME##_carry(                  \
      KILN_CARRY_PARAMS, const kiln_t* w, const kiln_t* bias, kiln_t* y, int m, int inter, int k) {            \
    const CarryIn in{sumsq, clear, eps};                                                                       \
    gemv_gated_impl<kiln::ACT, false, float>(hg, w, bias, y, m, inter, k, &in);                               \
  }

// GEMV_ACT (gemv_plan.ts: GATED_ACTS): 1–5 compiles only that activation's gated kernels (an engine
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
