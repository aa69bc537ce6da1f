// Linears over weight-only quantized weights (int8-wo, int4-wo; the format is src/engine/weight_format.ts,
// docs/QUANTIZATION.md): a weight [n, k] is q [n, padded] (int8, or two int4 a byte, feature 2j in the low
// nibble) then fp32 scales [n, padded / 128], padded = ceil(k / 128)·128, w[r, c] = q[r, c]·scale[r, c / 128].
//   - decode (m ≤ GEMV_MAX_M rows of x): int8-wo's gemv_wo8_* streams q as it is stored, 16-byte vectors
//     (16 int8 features), and dequantizes in registers: each vector's dot with x is summed in fp32 from
//     exact q values (unpacked without int→float conversions), then scaled by its group's scale (a
//     vector never straddles two groups) and added to the lane's fp32 sum; int4-wo's gemv_wo4_mma
//     (gemv_wo_mma.cuh) makes exact 16-bit pairs of the int4 values for mma.sync. Weight bytes read: the
//     quantized bytes (int4: about 1/4 of bf16's).
//     The warp skeleton is gemv_warp.cuh's (gemv.cu's structure: R rows per warp, U vectors per lane and
//     row in flight, the first U prefetched before the PDL wait, lanes' sums reduced by shuffles); this
//     file gives its format (WoGemv): every variant, and the gated kernel, sums a row over the same
//     vectors in the same order, so they give the same bits.
//   - prefill and larger batches: dequant_woB writes the weight in kiln_t (q·scale in fp32, rounded to
//     kiln_t) into a scratch buffer the runtime hands to its cuBLASLt GEMM (quantized_linears.ts).
// Padding columns (c ≥ k) are never read: vectors wholly past k are skipped, and x is read only below k.
// Reference: the CPU backend, which dequantizes at load (weight_format.ts dequantize) and runs linear().
//
// Macros: KILN_DTYPE_F32 | KILN_DTYPE_F16 | KILN_DTYPE_BF16 (x, bias, y, the dequantized weight);
//   GEMV_MAX_M largest m (default 8); GEMV_ACT as in gemv.cu (which gated kernels are compiled).
//
// 16-bit dtypes only (fp32 engines dequantize and keep cuBLASLt's exact-fp32 GEMMs); int8-wo on the CUDA
// cores (B = 8), int4-wo on the tensor cores (gemv_wo4_mma: its CUDA-core twins measured slower):
// extern "C" __global__ void gemv_wo8_rRuUwW(     variants r2u4w4, r2u8w4 (gemv_wo_variants.ts picks)
//     const kiln_t* x,            // [m, k]
//     const unsigned char* q,     // [n, padded·B/8]   weights: read before the PDL wait
//     const float* scales,        // [n, padded/128]   likewise
//     const kiln_t* bias,         // [n] or null
//     kiln_t* y,                  // [m, n]
//     int m, int n, int k)        // 1 ≤ m ≤ GEMV_MAX_M; k a multiple of 16 bytes of kiln_t (8 elements)
//   grid = (ceil(n / (R·W))), block = (32·W), no shared memory
// extern "C" __global__ void gemv_wo4_mma(x, q, scales, bias, y, m, n, k)     (int4-wo's decode GEMV)
//   the same y on the tensor cores (gemv_wo_mma.cuh: 16 rows a block, 8 warps split k; the MMA's fp32
//   sums of each group's exact products, then the group scale): grid = (ceil(n / 16)), block = (256),
//   4 KiB static shared memory; registers for 3 CTAs an SM (the 8B's qkv, 384 CTAs, in one wave)
// extern "C" __global__ void gemv_wo4_mma_p(x, q, scales, bias, y, m, n, k)
//   gemv_wo4_mma's y, bit for bit, with two load rounds in flight (the next one's loads out while a
//   round is summed; registers for 2 CTAs an SM): for k of several rounds (k > 4,096: the 8B's down)
// extern "C" __global__ void gemv_wo4_mma_gated_ACT(x, q, scales, bias, y, m, inter, k)
//   the gated kernel's y from gemv_wo4_mma's sums: grid = (ceil(inter / 16)), block = (256), 8 KiB
// extern "C" __global__ void gemv_wo8_gated_ACT(x, q, scales, bias, y, m, inter, k)
//   q, scales: the fused gate_up weight [2·inter, ·] (gate rows, then up rows); y [m, inter] =
//   act(x·gateᵀ + b)·(x·upᵀ + b), each rounded to kiln_t first, as gemv.cu's gemv_gated_ACT.
//   grid = (ceil(inter / 8)), block = (256): one output feature (two weight rows) per warp
// Every dtype:
// extern "C" __global__ void dequant_woB(
//     const unsigned char* q, const float* scales,   // as above
//     kiln_t* w,                  // [n, k] = q·scale rounded to kiln_t (the plain weight layout)
//     int n, int k)               // any k ≥ 1
//   grid = (ceil(n·ceil(k / F) / 256)), block = (256): one q vector (F = 128/B: 16 or 32 features) per thread
#include "activations.cuh"
#include "common.cuh"
#include "gemv_warp.cuh"
#if !defined(KILN_DTYPE_F32)
#include "gemv_wo_mma.cuh"
#endif

#if !KILN_HAS_DTYPE
#error "gemv_wo.cu needs KILN_DTYPE_F32, KILN_DTYPE_F16 or KILN_DTYPE_BF16"
#endif

namespace {

constexpr int kGroup = 128;  // input features per scale (weight_format.ts GROUP_SIZE)

/** Format B (bits per weight): features per 16-byte q vector, and q bytes per row of `k` features. */
template <int B>
struct Wo {
  static constexpr int kFeat = 128 / B;                // 16 (int8) or 32 (int4)
  static constexpr int kVecsPerGroup = kGroup / kFeat;  // 8 or 4: a vector lies in one group
  __device__ static int groups(int k) { return (k + kGroup - 1) / kGroup; }
  __device__ static size_t row_bytes(int k) { return (size_t)groups(k) * kGroup * B / 8; }
};

/** The 32/B signed B-bit fields of the little-endian word w (field j: bits B·j …) as exact floats, with
 * no int→float conversion (a quarter-rate instruction). Field j lies in the word's low or high 16 bits
 * at bit s = B·(j mod 16/B) of them; masked in place into the mantissa of 2^(23−s) with its sign bit
 * flipped (q + 2^(B−1), never negative), it reads as the float 2^(23−s) + q + 2^(B−1), exactly, and one
 * subtraction leaves q: one logic op (LOP3) and one add per field, one shift per word. */
template <int B>
__device__ __forceinline__ void unpack(unsigned w, float (&q)[32 / B]) {
  constexpr int kHalf = 16 / B;  // fields per 16 bits
  constexpr unsigned kMask = (1u << B) - 1, kSign = 1u << (B - 1);
  const unsigned halves[2] = {w, w >> 16};
#pragma unroll
  for (int j = 0; j < 32 / B; j++) {
    const int s = B * (j % kHalf);
    const unsigned e = (unsigned)(127 + 23 - s) << 23;  // the bits of 2^(23−s)
    const unsigned bits = (halves[j / kHalf] & (kMask << s)) ^ (e | (kSign << s));
    q[j] = __uint_as_float(bits) - __uint_as_float(e | (kSign << s));  // − (2^(23−s) + 2^(B−1))
  }
}

/** Σ q_i·x_i over the F features of one q vector (exact q, fp32 products and sum, in feature order). */
template <int B>
__device__ __forceinline__ float dot_q(const uint4& qv, const kiln_t* x) {
  const unsigned words[4] = {qv.x, qv.y, qv.z, qv.w};
  constexpr int kPer = 32 / B;  // fields per 32-bit word: feature i·kPer + j is field j of word i
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float q[kPer];
    unpack<B>(words[i], q);
#pragma unroll
    for (int j = 0; j < kPer; j++) s = fmaf(q[j], kiln::to_float(x[i * kPer + j]), s);
  }
  return s;
}

/** The F features of x row `xr` at vector v (features v·F …), as kiln_t; features ≥ k read as zero
 * (k is a multiple of kVec, so each 16-byte piece is wholly below k or wholly past it). */
template <int B>
__device__ __forceinline__ void load_x(const kiln_t* xr, int v, int k, uint4 (&xv)[Wo<B>::kFeat / kiln::kVec]) {
  constexpr int kPieces = Wo<B>::kFeat / kiln::kVec;
  const int f0 = v * Wo<B>::kFeat;
#pragma unroll
  for (int p = 0; p < kPieces; p++)
    xv[p] = f0 + p * kiln::kVec < k ? __ldg(reinterpret_cast<const uint4*>(xr + f0 + p * kiln::kVec))
                                    : uint4{0u, 0u, 0u, 0u};
}

#if !defined(KILN_DTYPE_F32)
/** gemv_warp.cuh's format for weight-only rows of B bits: a row is its q vectors and its scales; a
 * vector carries its group's scale (a vector never straddles two groups). */
template <int B>
struct WoGemv {
  const kiln_t* x;  // [m, k]
  const unsigned char* q;
  const float* scales;
  int k;

  struct Row {
    const uint4* q;
    const float* s;
  };
  template <int R, int U>
  struct Tile {
    uint4 q[R][U];
    float s[R][U];
  };

  /** q and scale rows of weight row `row` (clamped to n − 1: rows past n are re-read, never stored). */
  __device__ __forceinline__ Row row(int row, int n) const {
    const int r = min(row, n - 1);
    return {reinterpret_cast<const uint4*>(q + (size_t)r * Wo<B>::row_bytes(k)), scales + (size_t)r * Wo<B>::groups(k)};
  }
  /** Vectors holding a feature below k (the last may be partial: load_x masks x); those past are padding. */
  __device__ __forceinline__ int vecs() const { return (k + Wo<B>::kFeat - 1) / Wo<B>::kFeat; }
  /** Loads q vectors v, v + 32, …, v + 32·(U − 1) of each of the warp's R rows and their groups' scales. */
  template <int R, int U>
  __device__ __forceinline__ void load(const Row (&w)[R], int v, Tile<R, U>& t) const {
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
      for (int u = 0; u < U; u++) {
        t.q[r][u] = __ldcs(w[r].q + v + 32 * u);  // streamed once: evict first
        t.s[r][u] = __ldcs(w[r].s + (v + 32 * u) / Wo<B>::kVecsPerGroup);
      }
    }
  }
  /** acc[r][j] += scale · (q vector · x row j) for the m rows of x, each vector of the warp's rows. */
  template <int R, int U>
  __device__ __forceinline__ void accumulate(const Row (&)[R], int v, int m, const Tile<R, U>& t,
                                             float (&acc)[R][GEMV_MAX_M]) const {
#pragma unroll
    for (int j = 0; j < GEMV_MAX_M; j++) {
      if (j < m) {
#pragma unroll
        for (int u = 0; u < U; u++) {
          uint4 xv[Wo<B>::kFeat / kiln::kVec];
          load_x<B>(x + (size_t)j * k, v + 32 * u, k, xv);
          const kiln_t* xe = reinterpret_cast<const kiln_t*>(xv);
#pragma unroll
          for (int r = 0; r < R; r++) acc[r][j] = fmaf(dot_q<B>(t.q[r][u], xe), t.s[r][u], acc[r][j]);
        }
      }
    }
  }
  __device__ __forceinline__ float finish(const Row&, int, float acc) const { return kiln::warp_sum(acc); }
};
#endif

/** One thread per q vector below k: w[row, f] = q·scale rounded to kiln_t, f < k. */
template <int B>
__device__ __forceinline__ void dequant_impl(const unsigned char* __restrict__ q, const float* __restrict__ scales,
                                             kiln_t* __restrict__ w, int n, int k) {
  constexpr int F = Wo<B>::kFeat;
  kiln::pdl_wait();  // w is scratch a previous GEMM may still read
  kiln::pdl_launch_dependents();
  const int vecs = (k + F - 1) / F;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)n * vecs) return;
  const int row = (int)(i / vecs), v = (int)(i % vecs);
  const uint4 qv = __ldcs(reinterpret_cast<const uint4*>(q + (size_t)row * Wo<B>::row_bytes(k)) + v);
  const float s = scales[(size_t)row * Wo<B>::groups(k) + v / Wo<B>::kVecsPerGroup];
  const unsigned words[4] = {qv.x, qv.y, qv.z, qv.w};
  constexpr int kPer = 32 / B;
  kiln::Vec<kiln_t, F> out;  // aligned: its 16-byte pieces are stored whole
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float q[kPer];
    unpack<B>(words[i], q);
#pragma unroll
    for (int j = 0; j < kPer; j++) out.v[i * kPer + j] = kiln::from_float(__fmul_rn(q[j], s));
  }
  kiln_t* wr = w + (size_t)row * k + (size_t)v * F;
  const int f0 = v * F;
  if (k % kiln::kVec == 0) {  // rows 16-byte aligned: whole 16-byte pieces, each below k or past it
#pragma unroll
    for (int p = 0; p < F / kiln::kVec; p++)
      if (f0 + p * kiln::kVec < k)
        *reinterpret_cast<uint4*>(wr + p * kiln::kVec) = *reinterpret_cast<const uint4*>(out.v + p * kiln::kVec);
  } else {
#pragma unroll
    for (int e = 0; e < F; e++)
      if (f0 + e < k) wr[e] = out.v[e];
  }
}

}  // namespace

#if !defined(KILN_DTYPE_F32)
#define KILN_GEMV_WO(B, R, U, W)                                                                              \
  extern "C" __global__ void __launch_bounds__(32 * W) gemv_wo##B##_r##R##u##U##w##W(                         \
      const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,     \
      int n, int k) {                                                                                         \
    kiln::gemv::rows<R, U, W>(WoGemv<B>{x, q, scales, k}, bias, y, m, n);                                     \
  }
KILN_GEMV_WO(8, 2, 4, 4)
KILN_GEMV_WO(8, 2, 8, 4)

extern "C" __global__ void __launch_bounds__(32 * kiln::womma::kMmaWarps, 3)
    gemv_wo4_mma(const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,
                 int n, int k) {
  kiln::womma::rows<kiln::womma::Wo4>(x, kiln::womma::wo4_layout(q, scales, k), bias, y, m, n, k);
}
extern "C" __global__ void __launch_bounds__(32 * kiln::womma::kMmaWarps, 2)
    gemv_wo4_mma_p(const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,
                   int n, int k) {
  kiln::womma::rows<kiln::womma::Wo4, true>(x, kiln::womma::wo4_layout(q, scales, k), bias, y, m, n, k);
}

#define KILN_GEMV_WO_GATED(NAME, ACT)                                                                         \
  extern "C" __global__ void __launch_bounds__(32 * kiln::gemv::kGatedWarps) gemv_wo8_gated_##NAME(           \
      const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,     \
      int inter, int k) {                                                                                     \
    kiln::gemv::gated<kiln::ACT>(WoGemv<8>{x, q, scales, k}, bias, y, m, inter);                              \
  }                                                                                                           \
  extern "C" __global__ void __launch_bounds__(32 * kiln::womma::kMmaWarps) gemv_wo4_mma_gated_##NAME(        \
      const kiln_t* x, const unsigned char* q, const float* scales, const kiln_t* bias, kiln_t* y, int m,     \
      int inter, int k) {                                                                                     \
    const kiln::womma::Layout lo = kiln::womma::wo4_layout(q, scales, k);                                     \
    kiln::womma::gated<kiln::womma::Wo4, kiln::ACT>(x, lo, bias, y, m, inter, k);                             \
  }

// GEMV_ACT as in gemv.cu (gemv_variants.ts GATED_ACTS): one activation's gated kernels, none, or all five.
#if !defined(GEMV_ACT) || GEMV_ACT == 1
KILN_GEMV_WO_GATED(silu, Silu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 2
KILN_GEMV_WO_GATED(gelu, Gelu)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 3
KILN_GEMV_WO_GATED(gelu_pytorch_tanh, GeluTanh)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 4
KILN_GEMV_WO_GATED(gelu_new, GeluNew)
#endif
#if !defined(GEMV_ACT) || GEMV_ACT == 5
KILN_GEMV_WO_GATED(relu, Relu)
#endif
#endif

extern "C" __global__ void __launch_bounds__(256)
    dequant_wo8(const unsigned char* q, const float* scales, kiln_t* w, int n, int k) {
  dequant_impl<8>(q, scales, w, n, k);
}
extern "C" __global__ void __launch_bounds__(256)
    dequant_wo4(const unsigned char* q, const float* scales, kiln_t* w, int n, int k) {
  dequant_impl<4>(q, scales, w, n, k);
}
