// Checks gemv_wo.cu on the CPU emulator (fakecuda.h) against a plain C++ reading of the weight-only format
// (src/engine/weight_format.ts; docs/QUANTIZATION.md), written here again from the spec: weights are
// quantized here (symmetric, groups of 128 input features of a row, round half away from zero, int4 two a
// byte with the even feature in the low nibble, padding to whole groups) and the reference sums
// x·(q·scale) in double.
//   gemv_wo8_r2u4w4 / r2u8w4 (int8-wo, 16-bit dtypes): |got − want| ≤ 2^-21·Σ|x·w| (fp32 sums in another
//     order) + one rounding of kiln_t of |want|; every output written, nothing past y; the two variants
//     give the same bits; a NaN after the last x row (a read past k) would show.
//   gemv_wo8_gated_silu: bit for bit silu(round(gate))·round(up) of the plain kernel's outputs.
//   gemv_wo4_mma (int4-wo's decode GEMV, the only one since its CUDA-core kernels were removed; 16-bit
//     dtypes; attention_ptx_emu.h's mma.sync: 16 exact products summed in double, one rounding into the
//     accumulator): along the longest path a product meets its group's 8 mma accumulations, the scale
//     multiply, one accumulator add per group, the 7 adds of the warps' sum and the bias add, each one
//     fp32 rounding: |got − want| ≤ 2·N·2^-24·Σ|x·w|, N = 8 + groups + 9 (twice: the hardware may
//     truncate its alignment), plus one rounding of kiln_t of |want|; gemv_wo4_mma_gated_silu bit for bit
//     silu(round(gate))·round(up) of gemv_wo4_mma's outputs; gemv_wo4_mma_p bit for bit gemv_wo4_mma.
//   dequant_woB (every dtype): bit for bit round_t(q·scale), k not a multiple of 8 too (scalar stores).
// The padding of q (features ≥ k of the last group) is filled with non-zero garbage: the spec says it is
// never read, and no output may depend on it. Shapes: n = 1, 37, 50 (partial last blocks), k = 8, 128,
// 264, 1032, 2056, 8200, 14336 (partial groups and partial last vectors; 2056 and up run gemv_wo8's
// U-vector loop; 8200 and 14336 give gemv_wo4_mma_p an odd and an even number of load rounds), m = 1, 2, 8; and gemv_wo4_mma's gated twin over inter 1,031, k 1032, m 8. Build and run:
// gemv_wo_run.sh.
#include "fakecuda.h"
#if !defined(KILN_DTYPE_F32)
#include "attention_ptx_emu.h"  // mma.sync for gemv_wo_mma.cuh
#endif
#include "../gemv_wo.cu"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

struct Quantized {
  int bits, n, k, groups;
  std::vector<unsigned char> q;  // [n, padded·bits/8]
  std::vector<float> scales;     // [n, groups]
  int row_bytes() const { return groups * 128 * bits / 8; }
  int at(int r, int c) const {  // the signed value of feature c of row r
    const unsigned char byte = q[(size_t)r * row_bytes() + (bits == 8 ? c : c / 2)];
    if (bits == 8) return (signed char)byte;
    const int nib = c % 2 ? byte >> 4 : byte & 15;
    return nib >= 8 ? nib - 16 : nib;
  }
  double w(int r, int c) const { return (double)((float)at(r, c) * scales[(size_t)r * groups + c / 128]); }
};

/** The spec's quantizer: scale = max|w| / QMAX over a group, q = clamp(round(w / scale)), padding garbage. */
Quantized quantize(const std::vector<float>& w, int n, int k, int bits, std::mt19937& g) {
  const int qmax = bits == 8 ? 127 : 7;
  Quantized out{bits, n, k, (k + 127) / 128, {}, {}};
  out.q.assign((size_t)n * out.row_bytes(), 0);
  out.scales.assign((size_t)n * out.groups, 0.f);
  std::uniform_int_distribution<int> junk(1, 255);
  for (int r = 0; r < n; r++)
    for (int gi = 0; gi < out.groups; gi++) {
      float amax = 0.f;
      for (int c = gi * 128; c < std::min(k, gi * 128 + 128); c++) amax = std::max(amax, std::fabs(w[(size_t)r * k + c]));
      const float scale = amax / qmax;
      out.scales[(size_t)r * out.groups + gi] = scale;
      for (int c = gi * 128; c < gi * 128 + 128; c++) {
        int q = junk(g) % (2 * qmax + 1) - qmax;  // padding: anything, never read
        if (c < k) q = scale == 0.f ? 0 : std::max(-qmax, std::min(qmax, (int)std::round(w[(size_t)r * k + c] / scale)));
        unsigned char& byte = out.q[(size_t)r * out.row_bytes() + (bits == 8 ? c : c / 2)];
        if (bits == 8) byte = (unsigned char)(signed char)q;
        else byte = c % 2 ? (unsigned char)((byte & 0x0f) | ((q & 15) << 4)) : (unsigned char)((byte & 0xf0) | (q & 15));
      }
    }
  return out;
}

std::vector<float> randn(size_t n, float scale, std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * nd(g);
  return v;
}

template <class T>
bool same_bits(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

using Gemv = void (*)(const kiln_t*, const unsigned char*, const float*, const kiln_t*, kiln_t*, int, int, int);
using Dequant = void (*)(const unsigned char*, const float*, kiln_t*, int, int);

int check_dequant(Dequant kernel, const Quantized& qw, const char* name) {
  std::vector<kiln_t> w((size_t)qw.n * qw.k + 8);
  std::memset(w.data(), 0xff, w.size() * sizeof(kiln_t));
  const int vecs = (qw.k + 128 / qw.bits - 1) / (128 / qw.bits);
  const unsigned grid = (unsigned)(((size_t)qw.n * vecs + 255) / 256);
  launch({grid, 1, 1}, {256, 1, 1}, [&] { kernel(qw.q.data(), qw.scales.data(), w.data(), qw.n, qw.k); });
  int bad = 0;
  for (int r = 0; r < qw.n; r++)
    for (int c = 0; c < qw.k; c++) {
      const kiln_t want = kiln::from_float((float)qw.at(r, c) * qw.scales[(size_t)r * qw.groups + c / 128]);
      bad += !same_bits(w[(size_t)r * qw.k + c], want);
    }
  for (size_t i = (size_t)qw.n * qw.k; i < w.size(); i++) {
    unsigned char b[sizeof(kiln_t)];
    std::memcpy(b, &w[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  printf("%s n %d k %d: %s\n", name, qw.n, qw.k, bad ? "FAIL" : "ok");
  return bad != 0;
}

#if !defined(KILN_DTYPE_F32)
/** Runs a gemv_wo kernel of 8·… rows per block (r2w4: 8 rows of 4 warps). */
std::vector<kiln_t> run_gemv(Gemv kernel, const std::vector<kiln_t>& x, const Quantized& qw,
                             const std::vector<kiln_t>& bias, int m) {
  std::vector<kiln_t> y((size_t)m * qw.n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));  // NaN: an output never stored shows
  launch({(unsigned)((qw.n + 7) / 8), 1, 1}, {128, 1, 1},
         [&] { kernel(x.data(), qw.q.data(), qw.scales.data(), bias.data(), y.data(), m, qw.n, qw.k); });
  return y;
}

double g_worst = 0;      // largest |got − want| / its bound (gemv_wo8)
double g_worst_mma = 0;  // the same for gemv_wo4_mma

int check_gemv(Gemv u4, Gemv u8, const std::vector<kiln_t>& x, const Quantized& qw, const std::vector<kiln_t>& bias,
               int m, const char* name) {
  const auto y = run_gemv(u4, x, qw, bias, m);
  const auto y8 = run_gemv(u8, x, qw, bias, m);
  const double u = std::ldexp(1.0, sizeof(kiln_t) == 2 && std::is_same_v<kiln_t, __half> ? -11 : -8);
  int bad = 0, differ = 0;
  for (int j = 0; j < m; j++)
    for (int r = 0; r < qw.n; r++) {
      double want = kiln::to_float(bias[r]), abs_sum = std::fabs(want);
      for (int c = 0; c < qw.k; c++) {
        const double p = (double)kiln::to_float(x[(size_t)j * qw.k + c]) * qw.w(r, c);
        want += p;
        abs_sum += std::fabs(p);
      }
      const double got = kiln::to_float(y[(size_t)j * qw.n + r]);
      const double err = std::fabs(got - want);
      const double bound = std::ldexp(abs_sum, -21) + u * std::fabs(want) + 1e-30;
      if (!(err <= bound)) bad++;
      g_worst = std::max(g_worst, err / bound);
      differ += !same_bits(y[(size_t)j * qw.n + r], y8[(size_t)j * qw.n + r]);
    }
  for (size_t i = (size_t)m * qw.n; i < y.size(); i++) {
    unsigned char b[sizeof(kiln_t)];
    std::memcpy(b, &y[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  printf("%s m %d n %d k %d: %s%s\n", name, m, qw.n, qw.k, bad ? "FAIL" : "ok",
         differ ? " (r2u4w4 and r2u8w4 differ: FAIL)" : "");
  return bad != 0 || differ != 0;
}

/** gemv_wo8_gated_silu against the plain kernel over the same [2·inter, k] weight, bit for bit. */
int check_gated(Gemv plain, Gemv gated, const std::vector<kiln_t>& x, const Quantized& qw,
                const std::vector<kiln_t>& bias, int m, const char* name) {
  const int inter = qw.n / 2;
  const auto full = run_gemv(plain, x, qw, bias, m);  // [m, 2·inter]
  std::vector<kiln_t> y((size_t)m * inter + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));
  launch({(unsigned)((inter + 7) / 8), 1, 1}, {256, 1, 1},
         [&] { gated(x.data(), qw.q.data(), qw.scales.data(), bias.data(), y.data(), m, inter, qw.k); });
  int bad = 0;
  for (int j = 0; j < m; j++)
    for (int i = 0; i < inter; i++) {
      const float g = kiln::to_float(full[(size_t)j * qw.n + i]);
      const float up = kiln::to_float(full[(size_t)j * qw.n + inter + i]);
      bad += !same_bits(y[(size_t)j * inter + i], kiln::from_float(kiln::Silu::apply(g) * up));
    }
  for (size_t i = (size_t)m * inter; i < y.size(); i++) {
    unsigned char b[sizeof(kiln_t)];
    std::memcpy(b, &y[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  printf("%s m %d inter %d k %d: %s\n", name, m, inter, qw.k, bad ? "FAIL" : "ok");
  return bad != 0;
}

/** gemv_wo4_mma ([n, k], 16 rows a block of 256 threads) and its gated twin over the first n − 1 rows. */
std::vector<kiln_t> run_mma(Gemv kernel, const std::vector<kiln_t>& x, const Quantized& qw,
                            const std::vector<kiln_t>& bias, int m, int n) {
  std::vector<kiln_t> y((size_t)m * n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));
  launch({(unsigned)((n + 15) / 16), 1, 1}, {256, 1, 1},
         [&] { kernel(x.data(), qw.q.data(), qw.scales.data(), bias.data(), y.data(), m, n, qw.k); });
  return y;
}

int check_mma(const std::vector<kiln_t>& x, const Quantized& qw, const std::vector<kiln_t>& bias, int m) {
  const auto y = run_mma(gemv_wo4_mma, x, qw, bias, m, qw.n);
  const double u = std::ldexp(1.0, std::is_same_v<kiln_t, __half> ? -11 : -8);
  const int n_round = 8 + qw.groups + 9;
  int bad = 0;
  for (int j = 0; j < m; j++)
    for (int r = 0; r < qw.n; r++) {
      double want = kiln::to_float(bias[r]), abs_sum = std::fabs(want);
      for (int c = 0; c < qw.k; c++) {
        const double p = (double)kiln::to_float(x[(size_t)j * qw.k + c]) * qw.w(r, c);
        want += p;
        abs_sum += std::fabs(p);
      }
      const double err = std::fabs(kiln::to_float(y[(size_t)j * qw.n + r]) - want);
      const double bound = 2.0 * n_round * std::ldexp(abs_sum, -24) + u * std::fabs(want) + 1e-30;
      if (!(err <= bound)) bad++;
      g_worst_mma = std::max(g_worst_mma, err / bound);
    }
  for (size_t i = (size_t)m * qw.n; i < y.size(); i++) {
    unsigned char b[sizeof(kiln_t)];
    std::memcpy(b, &y[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  // gemv_wo4_mma_p: the same chunks in the same order, two load rounds in flight: the same bits.
  const auto yp = run_mma(gemv_wo4_mma_p, x, qw, bias, m, qw.n);
  const int pipe_bad = std::memcmp(y.data(), yp.data(), y.size() * sizeof(kiln_t)) != 0;
  int gated_bad = 0, inter = qw.n / 2;
  if (inter > 0) {  // the gated kernel over [2·inter, k] = the first 2·inter rows, against this y
    const auto full = run_mma(gemv_wo4_mma, x, qw, bias, m, 2 * inter);
    const auto yg = run_mma(gemv_wo4_mma_gated_silu, x, qw, bias, m, inter);
    for (int j = 0; j < m; j++)
      for (int i = 0; i < inter; i++) {
        const float g = kiln::to_float(full[(size_t)j * 2 * inter + i]);
        const float up = kiln::to_float(full[(size_t)j * 2 * inter + inter + i]);
        gated_bad += !same_bits(yg[(size_t)j * inter + i], kiln::from_float(kiln::Silu::apply(g) * up));
      }
    for (size_t i = (size_t)m * inter; i < yg.size(); i++) {
      unsigned char b[sizeof(kiln_t)];
      std::memcpy(b, &yg[i], sizeof b);
      for (unsigned char c : b) gated_bad += c != 0xff;
    }
  }
  printf("gemv_wo4_mma m %d n %d k %d: %s; _p %s; gated inter %d: %s\n", m, qw.n, qw.k, bad ? "FAIL" : "ok",
         pipe_bad ? "FAIL" : "ok", inter, gated_bad ? "FAIL" : "ok");
  return bad != 0 || pipe_bad || gated_bad != 0;
}
#endif

std::vector<kiln_t> to_t(const std::vector<float>& v) {
  std::vector<kiln_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = kiln::from_float(v[i]);
  return out;
}

}  // namespace

int main() {
  std::mt19937 g(19);
  int fails = 0;
  for (int bits : {8, 4}) {
    for (int n : {1, 37, 50}) {
      for (int k : {7, 8, 128, 264, 1032, 2056, 8200, 14336}) {
        const Quantized qw = quantize(randn((size_t)n * k, 0.05f, g), n, k, bits, g);
        fails += check_dequant(bits == 8 ? dequant_wo8 : dequant_wo4, qw, bits == 8 ? "dequant_wo8" : "dequant_wo4");
#if !defined(KILN_DTYPE_F32)
        if (k % kiln::kVec != 0) continue;  // the GEMV needs 16-byte rows of x (else the runtime dequantizes)
        const auto bias = to_t(randn(n, 0.1f, g));
        for (int m : {1, 2, 8}) {
          auto x = to_t(randn((size_t)m * k, 0.5f, g));
          x.resize(x.size() + 64, kiln::from_float(NAN));  // read past the last row's k: NaN outputs
          if (bits == 4) {  // int4-wo: the tensor-core GEMV and its gated twin (check_mma)
            fails += check_mma(x, qw, bias, m);
            continue;
          }
          fails += check_gemv(gemv_wo8_r2u4w4, gemv_wo8_r2u8w4, x, qw, bias, m, "gemv_wo8");
          if (n % 2 == 0 || n == 1) continue;
          // The gated kernel over [2·inter, k] = the first n − 1 rows.
          Quantized pair = qw;
          pair.n = n - 1;
          pair.q.resize((size_t)pair.n * pair.row_bytes());
          pair.scales.resize((size_t)pair.n * pair.groups);
          fails += check_gated(gemv_wo8_r2u4w4, gemv_wo8_gated_silu, x, pair, bias, m, "gemv_wo8_gated_silu");
        }
#endif
      }
    }
  }
#if !defined(KILN_DTYPE_F32)
  {  // gemv_wo4_mma's gated twin over enough features (inter 1,031, 9 chunks) that a sum grouped over its
     // warps otherwise than the plain kernel's shows as a rounding of some output (the GPU test's shape)
    const Quantized qw = quantize(randn((size_t)2062 * 1032, 0.05f, g), 2062, 1032, 4, g);
    const auto bias = to_t(randn(2062, 0.1f, g));
    auto x = to_t(randn((size_t)8 * 1032, 0.5f, g));
    x.resize(x.size() + 64, kiln::from_float(NAN));
    fails += check_mma(x, qw, bias, 8);
  }
  printf("worst |got − want| / bound: gemv_wo8 %.3g, gemv_wo4_mma %.3g\n", g_worst, g_worst_mma);
#endif
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}
