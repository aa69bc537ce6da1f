// Linears over int4-zp weights (asymmetric 4-bit with zero points: what AWQ and GPTQ checkpoints load
// into; src/engine/int4_zp_format.ts), in gemv_wo.cu's design (weight-only int8/int4) but its own module:
// the layout differs (unpadded rows, any group size, zero points, g_idx), and an engine compiles only the
// module its weights need (kernel_modules.ts), each one's NVRTC time paid only where it is used.
// A weight [n, k] is, on the device (backends/cuda/int4_zp_weights.ts):
//   q       [n, ceil(k / 2)] bytes, unsigned nibbles 0..15, feature 2j in the low nibble (no padding)
//   scales, zeros [n, groups] fp32, groups = ceil(k / G); g_idx [k] int32 or null (GPTQ act-order)
//   g(c) = g_idx ? g_idx[c] : c / G;  w[r, c] = (q[r, c] − zeros[r, g(c)])·scales[r, g(c)]
// (the region as stored, with q's end padded to 16 bytes before the scales so that they are aligned).
//   - decode (m ≤ GEMV_MAX_M, k a multiple of 32: 16-byte q rows, as the runtime routes): gemv_zp_*
//     streams q as stored, 16-byte vectors of 32 features, on gemv_warp.cuh's skeleton as gemv_wo.cu (R
//     rows per warp, U vectors per lane and row in flight, weights prefetched before the PDL wait, shuffle
//     reduction; this file gives its format, zp::Gemv):
//       gemv_zp_rRuUwW (G a multiple of 32, no g_idx: a vector lies in one group): per vector
//         Σ (q − z)·x in fp32 (q − z exact for integer zero points), times the group's scale;
//       gemv_zp_any_rRuUwW (any G, or g_idx): per feature its group's (q − z)·s in fp32 (the CPU's
//         weight exactly), times x: slower (two cached loads per feature), always right.
//     Every variant of a mode, and its gated kernel, sums a row over the same vectors in the same order.
//   - prefill and larger batches: dequant_zp writes (q − z)·s in fp32 rounded to kiln_t (fp32 engines:
//     the CPU's weights exactly), any k, into the scratch the runtime hands to cuBLASLt.
// Reference: the CPU backend (int4_zp_format.ts dequantizeInt4Zp, then linear()).
//
// 16-bit dtypes only:
// extern "C" __global__ void gemv_zp_rRuUwW(   variants r2u4w4, r2u8w4; and gemv_zp_any_r2u4w4
//     const kiln_t* x,            // [m, k]
//     const unsigned char* q,     // [n, k / 2]          weights: read before the PDL wait
//     const float* scales,        // [n, groups]         likewise
//     const float* zeros,         // [n, groups]         likewise
//     const int* g_idx,           // [k] or null (null in gemv_zp_rRuUwW)
//     const kiln_t* bias,         // [n] or null
//     kiln_t* y,                  // [m, n]
//     int m, int n, int k, int group_size)   // 1 ≤ m ≤ GEMV_MAX_M; k a multiple of 32
//   grid = (ceil(n / (R·W))), block = (32·W), no shared memory
// extern "C" __global__ void gemv_zp_mma(x, q, scales, zeros, g_idx, bias, y, m, n, k, G)   (the default
//   where G is a multiple of 128, no g_idx and the zero points are exact in kiln_t: gemv_zp_variants.ts)
//   on the tensor cores (gemv_wo_mma.cuh: (q − z) exact in kiln_t, the MMA's fp32 sums of each 128-feature
//   chunk, times its group's scale): grid = (ceil(n / 16)), block = (256); gemv_zp_mma_gated_ACT likewise
//   for the gated kernel (grid = (ceil(inter / 16)))
// extern "C" __global__ void gemv_zp[_any]_gated_ACT(x, q, scales, zeros, g_idx, bias, y, m, inter, k, G)
//   the fused gate_up weight [2·inter, ·]; y [m, inter] as gemv_wo.cu's gated kernels.
//   grid = (ceil(inter / 8)), block = (256)
// Every dtype:
// extern "C" __global__ void dequant_zp(q, scales, zeros, g_idx, kiln_t* w /* [n, k] */, int n, int k, int G)
//   grid = (ceil(n·ceil(k / 2) / 256)), block = (256): one q byte (two features) per thread
//
// Macros: KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16; GEMV_MAX_M largest m (default 8); GEMV_ACT
// as in gemv.cu (which gated kernels are compiled).
#include "activations.cuh"
#include "common.cuh"
#include "gemv_warp.cuh"
#if !defined(KILN_DTYPE_F32)
#include "gemv_wo_mma.cuh"
#endif

#if !KILN_HAS_DTYPE
#error "gemv_zp.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif

namespace {
namespace zp {

#if !defined(KILN_DTYPE_F32)  // the GEMVs: 16-bit dtypes only

constexpr int kFeat = 32;  // features per 16-byte q vector

/** The 8 unsigned nibbles of the little-endian word w (nibble j: bits 4j …) as exact floats, without
 * int→float conversions: nibble j masked in place into the mantissa of 2^(23−s), s = 4·(j mod 4) its
 * bit within its 16-bit half, reads as 2^(23−s) + q exactly; one subtraction leaves q. */
__device__ __forceinline__ void unpack(unsigned w, float (&q)[8]) {
  const unsigned halves[2] = {w, w >> 16};
#pragma unroll
  for (int j = 0; j < 8; j++) {
    const int s = 4 * (j % 4);
    const unsigned e = (unsigned)(127 + 23 - s) << 23;  // the bits of 2^(23−s)
    q[j] = __uint_as_float((halves[j / 4] & (15u << s)) | e) - __uint_as_float(e);
  }
}

/** A weight row's q vectors, scales and zero points. */
struct Row {
  const uint4* q;
  const float* s;
  const float* z;
};

/** Row `row` of the weight (clamped to n − 1: rows past n are re-read, never stored); k a multiple of 32. */
__device__ __forceinline__ Row row_of(const unsigned char* q, const float* scales, const float* zeros, int row,
                                      int n, int k, int group_size) {
  const int r = min(row, n - 1);
  const size_t groups = (size_t)((k + group_size - 1) / group_size);
  return {reinterpret_cast<const uint4*>(q + (size_t)r * (k / 2)), scales + r * groups, zeros + r * groups};
}

/** Σ (q − z)·x over one q vector's 32 features (one group: ANY false). */
__device__ __forceinline__ float dot_group(const uint4& qv, const kiln_t* x, float z) {
  const unsigned words[4] = {qv.x, qv.y, qv.z, qv.w};
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float q[8];
    unpack(words[i], q);
#pragma unroll
    for (int j = 0; j < 8; j++) s = fmaf(q[j] - z, kiln::to_float(x[i * 8 + j]), s);
  }
  return s;
}

/** w[i] = (q − z)·s of feature c0 + i's own group, in fp32 (the CPU's weight exactly), for one q vector. */
__device__ __forceinline__ void weights_any(const uint4& qv, const Row& w, const int* g_idx, int c0, int group_size,
                                            float (&wv)[kFeat]) {
  const unsigned words[4] = {qv.x, qv.y, qv.z, qv.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float q[8];
    unpack(words[i], q);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const int c = c0 + i * 8 + j;
      const int g = g_idx ? __ldg(g_idx + c) : c / group_size;
      wv[i * 8 + j] = __fmul_rn(q[j] - __ldg(w.z + g), __ldg(w.s + g));
    }
  }
}

/** The 32 features of x row j from feature c0, as kiln_t (k a multiple of 32: whole 16-byte pieces). */
__device__ __forceinline__ void load_x(const kiln_t* __restrict__ xr, int c0, uint4 (&xv)[kFeat / kiln::kVec]) {
#pragma unroll
  for (int p = 0; p < kFeat / kiln::kVec; p++) xv[p] = __ldg(reinterpret_cast<const uint4*>(xr + c0 + p * kiln::kVec));
}

/** gemv_warp.cuh's format for int4-zp rows (k a multiple of 32, so every vector is whole). ANY false: a
 * vector lies in one group and carries its scale and zero point; ANY true (any G, or g_idx): the q
 * vector only, each feature's group read as it is dequantized. */
template <bool ANY>
struct Gemv {
  const kiln_t* x;  // [m, k]
  const unsigned char* q;
  const float* scales;
  const float* zeros;
  const int* g_idx;
  int k, group_size;

  using Row = zp::Row;
  template <int R, int U>
  struct Tile {
    uint4 q[R][U];
    float s[R][U], z[R][U];  // ANY false only
  };

  __device__ __forceinline__ Row row(int r, int n) const { return row_of(q, scales, zeros, r, n, k, group_size); }
  __device__ __forceinline__ int vecs() const { return k / kFeat; }
  /** Loads q vectors v, v + 32, … of each of the warp's R rows (and, one group a vector, its scale and zero). */
  template <int R, int U>
  __device__ __forceinline__ void load(const Row (&w)[R], int v, Tile<R, U>& t) const {
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int u = 0; u < U; u++) {
        t.q[r][u] = __ldcs(w[r].q + v + 32 * u);  // streamed once: evict first
        if constexpr (!ANY) {
          const int g = (v + 32 * u) * kFeat / group_size;
          t.s[r][u] = __ldcs(w[r].s + g);  // likewise (before the PDL wait: weights only)
          t.z[r][u] = __ldcs(w[r].z + g);
        }
      }
    }
  }
  /** acc[r][j] += the warp's rows' vectors · x row j, for the m rows of x. The any kernel dequantizes each
   * vector once (its per-feature groups cost loads) and dots the weights with every row of x. */
  template <int R, int U>
  __device__ __forceinline__ void accumulate(const Row (&w)[R], int v, int m, const Tile<R, U>& t,
                                             float (&acc)[R][GEMV_MAX_M]) const {
    if constexpr (ANY) {
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int c0 = (v + 32 * u) * kFeat;
#pragma unroll
        for (int r = 0; r < R; r++) {
          float wv[kFeat];
          weights_any(t.q[r][u], w[r], g_idx, c0, group_size, wv);
#pragma unroll
          for (int j = 0; j < GEMV_MAX_M; j++) {
            if (j < m) {
              uint4 xv[kFeat / kiln::kVec];
              load_x(x + (size_t)j * k, c0, xv);
              const kiln_t* xe = reinterpret_cast<const kiln_t*>(xv);
              float s = 0.f;
#pragma unroll
              for (int i = 0; i < kFeat; i++) s = fmaf(wv[i], kiln::to_float(xe[i]), s);
              acc[r][j] += s;
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < GEMV_MAX_M; j++) {
        if (j < m) {
#pragma unroll
          for (int u = 0; u < U; u++) {
            uint4 xv[kFeat / kiln::kVec];
            load_x(x + (size_t)j * k, (v + 32 * u) * kFeat, xv);
            const kiln_t* xe = reinterpret_cast<const kiln_t*>(xv);
#pragma unroll
            for (int r = 0; r < R; r++)
              acc[r][j] = fmaf(dot_group(t.q[r][u], xe, t.z[r][u]), t.s[r][u], acc[r][j]);
          }
        }
      }
    }
  }
  __device__ __forceinline__ float finish(const Row&, int, float acc) const { return kiln::warp_sum(acc); }
};
#endif

/** One thread per q byte: w[row, c] = (q − z)·s of c's group, rounded to kiln_t, for its two features c < k. */
__device__ __forceinline__ void dequant_impl(const unsigned char* __restrict__ q, const float* __restrict__ scales,
                                             const float* __restrict__ zeros, const int* __restrict__ g_idx,
                                             kiln_t* __restrict__ w, int n, int k, int group_size) {
  kiln::pdl_wait();  // w is scratch a previous GEMM may still read
  kiln::pdl_launch_dependents();
  const int row_bytes = (k + 1) / 2;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)n * row_bytes) return;
  const int row = (int)(i / row_bytes), b = (int)(i % row_bytes);
  const size_t groups = (size_t)((k + group_size - 1) / group_size);
  const unsigned byte = __ldcs(q + i);
#pragma unroll
  for (int e = 0; e < 2; e++) {
    const int c = 2 * b + e;
    if (c < k) {
      const size_t g = row * groups + (size_t)(g_idx ? __ldg(g_idx + c) : c / group_size);
      const float qv = (float)((byte >> (4 * e)) & 15u);
      w[(size_t)row * k + c] = kiln::from_float(__fmul_rn(qv - __ldg(zeros + g), __ldg(scales + g)));
    }
  }
}

}  // namespace zp
}  // namespace

#if !defined(KILN_DTYPE_F32)
#define KILN_GEMV_ZP(NAME, ANY, R, U, W)                                                                      \
  extern "C" __global__ void __launch_bounds__(32 * W) NAME(                                                  \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const int* g_idx,     \
      const kiln_t* bias, kiln_t* y, int m, int n, int k, int group_size) {                                   \
    const zp::Gemv<ANY> f{x, q, scales, zeros, g_idx, k, group_size};                                         \
    kiln::gemv::rows<R, U, W>(f, bias, y, m, n);                                                              \
  }
KILN_GEMV_ZP(gemv_zp_r2u4w4, false, 2, 4, 4)
KILN_GEMV_ZP(gemv_zp_r2u8w4, false, 2, 8, 4)
KILN_GEMV_ZP(gemv_zp_any_r2u4w4, true, 2, 4, 4)

extern "C" __global__ void __launch_bounds__(32 * kiln::womma::kMmaWarps)
    gemv_zp_mma(const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const int* g_idx,
                const kiln_t* bias, kiln_t* y, int m, int n, int k, int group_size) {
  (void)g_idx;  // null: act-order weights take gemv_zp_any
  kiln::womma::rows<kiln::womma::Zp>(x, kiln::womma::zp_layout(q, scales, zeros, k, group_size), bias, y, m, n, k);
}

#define KILN_GEMV_ZP_GATED(NAME, ACT)                                                                         \
  extern "C" __global__ void __launch_bounds__(32 * kiln::gemv::kGatedWarps) gemv_zp_gated_##NAME(            \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const int* g_idx,     \
      const kiln_t* bias, kiln_t* y, int m, int inter, int k, int group_size) {                               \
    const zp::Gemv<false> f{x, q, scales, zeros, g_idx, k, group_size};                                       \
    kiln::gemv::gated<kiln::ACT>(f, bias, y, m, inter);                                                       \
  }                                                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * kiln::gemv::kGatedWarps) gemv_zp_any_gated_##NAME(        \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const int* g_idx,     \
      const kiln_t* bias, kiln_t* y, int m, int inter, int k, int group_size) {                               \
    const zp::Gemv<true> f{x, q, scales, zeros, g_idx, k, group_size};                                        \
    kiln::gemv::gated<kiln::ACT>(f, bias, y, m, inter);                                                       \
  }                                                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * kiln::womma::kMmaWarps) gemv_zp_mma_gated_##NAME(         \
      const kiln_t* x, const unsigned char* q, const float* scales, const float* zeros, const int* g_idx,     \
      const kiln_t* bias, kiln_t* y, int m, int inter, int k, int group_size) {                               \
    (void)g_idx;                                                                                              \
    const kiln::womma::Layout lo = kiln::womma::zp_layout(q, scales, zeros, k, group_size);                   \
    kiln::womma::gated<kiln::womma::Zp, kiln::ACT>(x, lo, bias, y, m, inter, k);                              \
  }

#if !defined(GEMV_ACT) || GEMV_ACT == 1
KILN_GEMV_ZP_GATED(silu, Silu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 2
KILN_GEMV_ZP_GATED(gelu, Gelu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 3
KILN_GEMV_ZP_GATED(gelu_pytorch_tanh, GeluTanh)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 4
KILN_GEMV_ZP_GATED(gelu_new, GeluNew)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 5
KILN_GEMV_ZP_GATED(relu, Relu)
#endif
#endif

extern "C" __global__ void __launch_bounds__(256)
    dequant_zp(const unsigned char* q, const float* scales, const float* zeros, const int* g_idx, kiln_t* w, int n,
               int k, int group_size) {
  zp::dequant_impl(q, scales, zeros, g_idx, w, n, k, group_size);
}
