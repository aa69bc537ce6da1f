// Checks gemv.cu's carried norm (KILN_FUSE_NORM=carry) on the CPU (fakecuda.h) against the unfused chain
// it replaces: gemv → add_rms_norm (rmsnorm.cu) → gemv / gemv_gated_silu. The producer
// gemv_*_addcarry stores h = residual + y, h·γ (fp32) and adds Σ h² per row; the consumers
// gemv_*_carry, gemv_*_f32out_carry and gemv_gated_silu_carry compute rstd · W·(h·γ) + b.
//   1. Producer (both variants, blocks in shuffled orders; the second variant in place, residual_out =
//      residual): residual_out is the bits add_rms_norm stores for residual + y (y: the plain gemv of the
//      same variant); hg = float(h)·float(γ), bit for bit; sumsq[j] = the sequential fp64 sum of the
//      fp32 squares of row j of h (equal, or within 1e-15 relative: every order is exact here), and the
//      slots of rows ≥ m stay zero.
//   2. Consumers, fed the producer's hg and sumsq (the residual's rows have three scales, so another
//      row's rstd shows): within kTolUlps of the unfused chain (see kTolUlps),
//      and, on average over all its outputs (every m), at least as close to an exact double reference as
//      the unfused chain is (each m's means are printed too; for the gated kernel, whose output both
//      chains round four times alike, one m's means may tie either way).
//   3. The consumer sets all GEMV_MAX_M slots of `clear` to zero (they start nonzero; f32out runs with
//      clear = null) and leaves sumsq and hg as they were.
//   4. Self-test: a consumer fed 4·Σ h², or hg without γ (h alone), must fail check 2.
// Every output must be written (NaN sentinels) and nothing past it. Shapes: m = 1, 2, 8 (or the m given
// as arguments); producer [WIDTH, 264]; consumer n = 37 (the last CTA partial; for r2u8w4 its last warp
// too), k = WIDTH. WIDTH 1032 (129 vectors per row): r1u4w8 and the gated kernel run their main loop
// (the prefetched iteration) and the tail loop, r2u8w4 the tail loop only; 2056 (257) runs every loop
// of both variants, loaded iterations too. A WIDTH not a multiple of 8 (777: the producer's last CTA has
// one row, r2u8w4's last warp one of its two, add_rms_norm its element path) cannot feed a consumer (k is
// a multiple of 8), so it checks the producer only.
// Build: see gemv_carry_run.sh (-DKILN_DTYPE_BF16 or F16, -DWIDTH = the producer's n).
#include "fakecuda.h"
#ifndef KILN_GEMV_SRC
#define KILN_GEMV_SRC "../gemv.cu"  // a copy with extern __shared__ rewritten (gemv_carry_run.sh)
#endif
#include KILN_GEMV_SRC
#include "../rmsnorm.cu"
#include "gemv_norm_common.h"
#include <cmath>

// One ulp of kiln_t at 1 (twice the unit roundoff u).
#if defined(KILN_DTYPE_BF16)
constexpr double kUlp = 0x1p-7;
#else
constexpr double kUlp = 0x1p-10;
#endif
// |carry − unfused| ≤ kTolUlps · kUlp · (the row's max |y|). The carry path skips the two kiln_t
// roundings of the normalised x (rms_apply: round_t(h·rstd), then γ·that rounded), each ≤ u = ulp/2
// relative, so the unfused x_i is x_i(1 + δ_i) with |δ_i| ≤ ulp (its rstd, sum of squares and h are
// the carry path's bits). Σ W·x·δ is a sum of k independent, centred errors (δ_i: two roundings, each
// uniform in ±u): its spread is ulp/√6 · sqrt(Σ W²x²) ≈ ulp/√6 · |y|_rms of the row (random W), 0.4 ulp
// of max|y| at most; each kiln_t output adds ≤ ½ ulp · |y| (two outputs: 1 ulp), and the gated kernel's
// gate and up roundings (round_t, which those differences may flip) move act(g)·u by about an ulp of the
// row's scale. 4 ulps covers the tails over 37·m outputs (seen: ≤ 1.8) and is far below what a wrong rstd
// (×½ for 4·Σ h², another row's) or a missing γ (±20 %) does. (The worst case, ulp · Σ|W||x|, is about
// √k/4 ulps of max|y| here, 8 at k = 1032, and is never approached.)
constexpr double kTolUlps = 4.0;

/** Bytes of v from `from` on that are not the 0xff sentinel. */
template <class A> static int sentinel_touched(const std::vector<A>& v, size_t from, const char* what) {
  int bad = 0;
  for (size_t i = from * sizeof(A); i < v.size() * sizeof(A); i++) bad += reinterpret_cast<const unsigned char*>(v.data())[i] != 0xff;
  if (bad) printf("  %s: %d bytes written past the end\n", what, bad);
  return bad;
}
static double f(T v) { return kiln::to_float(v); }

/** The consumers: the plain kernel (on the normalised rows) and its carry twin (on hg and sumsq). */
enum Kind { kR1U4W8, kR1U4W8F32, kR2U8W4, kGatedSilu };
static const char* const kName[] = {"r1u4w8", "r1u4w8_f32out", "r2u8w4", "gated_silu"};

struct Consumer {
  int m, n, k;  // n: output features (gated: inter)
  const std::vector<T>* w;  // [n, k], gated [2·n, k]
  const std::vector<T>* bias;
  float eps;
};

/** Runs consumer `kind` (carry: its _carry twin on hg, sumsq, clear; else the plain kernel on normed) and
 * returns its m × n outputs as doubles (NaN where never stored; outputs stored past the end count in bad). */
static std::vector<double> consume(Kind kind, const Consumer& c, bool carry, const T* normed, const float* hg,
                                   const double* sumsq, double* clear, unsigned seed, int& bad) {
  const size_t len = (size_t)c.m * c.n;
  const unsigned grid = (c.n + 7) / 8;  // 8 features per CTA, every consumer
  const unsigned block = kind == kR2U8W4 ? 128 : 256;
  const T* w = c.w->data();
  const T* b = c.bias->data();
  std::vector<double> out(len);
  if (kind == kR1U4W8F32) {
    auto y = sentinel<float>(len + 8);
    launch({grid, 1, 1}, {block, 1, 1}, [&] {
      if (carry) gemv_r1u4w8_f32out_carry(hg, sumsq, clear, c.eps, w, b, y.data(), c.m, c.n, c.k);
      else gemv_r1u4w8_f32out(normed, w, b, y.data(), c.m, c.n, c.k);
    }, 0, seed);
    bad += sentinel_touched(y, len, "y");
    for (size_t i = 0; i < len; i++) out[i] = y[i];
    return out;
  }
  auto y = sentinel<T>(len + 8);
  launch({grid, 1, 1}, {block, 1, 1}, [&] {
    switch (kind) {
      case kR1U4W8:
        if (carry) gemv_r1u4w8_carry(hg, sumsq, clear, c.eps, w, b, y.data(), c.m, c.n, c.k);
        else gemv_r1u4w8(normed, w, b, y.data(), c.m, c.n, c.k);
        break;
      case kR2U8W4:
        if (carry) gemv_r2u8w4_carry(hg, sumsq, clear, c.eps, w, b, y.data(), c.m, c.n, c.k);
        else gemv_r2u8w4(normed, w, b, y.data(), c.m, c.n, c.k);
        break;
      default:
        if (carry) gemv_gated_silu_carry(hg, sumsq, clear, c.eps, w, b, y.data(), c.m, c.n, c.k);
        else gemv_gated_silu(normed, w, b, y.data(), c.m, c.n, c.k);
    }
  }, 0, seed);
  bad += sentinel_touched(y, len, "y");
  for (size_t i = 0; i < len; i++) out[i] = f(y[i]);
  return out;
}

/** The exact consumer output in double: rstd = 1/sqrt(Σ h²/k + eps), y = rstd · W·(h∘γ) + b (gated:
 * silu(g)·u, no rounding anywhere); h is the stored residual sum. */
static std::vector<double> exact(Kind kind, const Consumer& c, const std::vector<T>& h, const std::vector<T>& gamma) {
  std::vector<double> out((size_t)c.m * c.n);
  for (int j = 0; j < c.m; j++) {
    double ss = 0;
    for (int i = 0; i < c.k; i++) ss += f(h[(size_t)j * c.k + i]) * f(h[(size_t)j * c.k + i]);
    const double rstd = 1.0 / std::sqrt(ss / c.k + (double)c.eps);
    auto dot = [&](int row) {
      double s = 0;
      for (int i = 0; i < c.k; i++) s += f((*c.w)[(size_t)row * c.k + i]) * f(h[(size_t)j * c.k + i]) * f(gamma[i]);
      return rstd * s + f((*c.bias)[row]);
    };
    for (int r = 0; r < c.n; r++) {
      if (kind == kGatedSilu) {
        const double g = dot(r), u = dot(c.n + r);
        out[(size_t)j * c.n + r] = g / (1.0 + std::exp(-g)) * u;
      } else {
        out[(size_t)j * c.n + r] = dot(r);
      }
    }
  }
  return out;
}

struct Errors {
  double max_diff = 0;   // max |carry − unfused| / the row's max |exact|, in ulps
  double carry = 0, unfused = 0;  // Σ |· − exact| / the row's max |exact|, in ulps
  long count = 0;        // outputs summed
  int bad = 0;           // outputs beyond kTolUlps (or NaN)
  double carry_mean() const { return carry / count; }
  double unfused_mean() const { return unfused / count; }
};
static Errors compare(const std::vector<double>& carry, const std::vector<double>& unfused, const std::vector<double>& ex,
                      int m, int n) {
  Errors e;
  for (int j = 0; j < m; j++) {
    double row_max = 0;
    for (int r = 0; r < n; r++) row_max = std::max(row_max, std::fabs(ex[(size_t)j * n + r]));
    const double scale = kUlp * row_max;
    for (int r = 0; r < n; r++) {
      const size_t i = (size_t)j * n + r;
      const double d = std::fabs(carry[i] - unfused[i]) / scale;
      if (!(d <= kTolUlps)) e.bad++;
      if (d > e.max_diff || d != d) e.max_diff = d;
      e.carry += std::fabs(carry[i] - ex[i]) / scale;
      e.unfused += std::fabs(unfused[i] - ex[i]) / scale;
    }
  }
  e.count = (long)m * n;
  return e;
}

int main(int argc, char** argv) {
  constexpr int K = 264, N = WIDTH;  // producer [N, K]; the norm's width N; the consumers' k
  constexpr int N2 = 37;             // the consumers' n (gated: inter)
  constexpr bool kChain = N % kElems == 0;
  std::vector<int> ms;  // the arguments, or 1, 2, 8
  for (int i = 1; i < argc; i++) ms.push_back(std::clamp(std::atoi(argv[i]), 1, GEMV_MAX_M));
  if (ms.empty()) ms = {1, 2, 8};
  int fails = 0;
  Errors total[kGatedSilu + 1];  // each consumer's, over every m
  if (!kChain) printf("WIDTH %d: not a multiple of %d, no consumer can read it: the producer only\n", N, kElems);
  for (const int m : ms) {
    std::mt19937 g(7 + m);
    const size_t mn = (size_t)m * N;
    auto x = randv((size_t)m * K, g, 1.f), wp = randv((size_t)N * K, g, 0.05f), bias = randv(N, g, 0.1f);
    auto residual = randv(mn, g, 2.f), gamma = randv(N, g, 0.2f, 1.f);
    for (size_t i = 0; i < mn; i++) residual[i] = kiln::from_float(f(residual[i]) * (1 + i / N % 3));
    const float eps = 1e-5f;
    std::vector<T> normed;  // the unfused chain's normalised rows (variant 0's)
    std::vector<T> h;       // the producer's residual_out (variant 0's)
    std::vector<float> hg;  // the producer's h·γ
    std::vector<double> sumsq;
    for (int variant = 0; variant < 2; variant++) {
      const unsigned block = gemv_block(variant), grid = (N + 7) / 8;
      // Unfused: y = x·Wpᵀ + b; normed_a, res_a = add_rms_norm(residual, y) (the backend's block).
      std::vector<T> normed_a = sentinel<T>(mn), res_a = sentinel<T>(mn);
      unfused_add_norm(variant, x, wp, bias, residual, gamma, eps, m, N, K, normed_a, res_a);
      // The producer: variant 0 into another buffer, variant 1 in place (residual_out = residual).
      const bool in_place = variant == 1;
      std::vector<T> res_b = in_place ? residual : sentinel<T>(mn + 8);
      if (in_place) res_b.resize(mn + 8), std::memset(res_b.data() + mn, 0xff, 8 * sizeof(T));
      auto hg_b = sentinel<float>(mn + 8);
      std::vector<double> ss_b(GEMV_MAX_M, 0.0);  // zero before the launch
      const unsigned seed = 3 + variant;
      if (variant == 0)
        launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r2u8w4_addcarry(x.data(), wp.data(), bias.data(), residual.data(), res_b.data(), gamma.data(), hg_b.data(), ss_b.data(), m, N, K); }, 0, seed);
      else
        launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r1u4w8_addcarry(x.data(), wp.data(), bias.data(), res_b.data(), res_b.data(), gamma.data(), hg_b.data(), ss_b.data(), m, N, K); }, 0, seed);
      int bad = diff_bits(res_a.data(), res_b.data(), mn, "residual_out") + sentinel_touched(res_b, mn, "residual_out") +
                sentinel_touched(hg_b, mn, "hg");
      std::vector<float> hg_want(mn);
      for (size_t i = 0; i < mn; i++) hg_want[i] = f(res_a[i]) * f(gamma[i % N]);
      bad += diff_bits(hg_want.data(), hg_b.data(), mn, "hg");
      double worst = 0;  // sumsq's relative difference from the sequential sum
      for (int j = 0; j < GEMV_MAX_M; j++) {
        double want = 0;
        for (int i = 0; j < m && i < N; i++) {
          const float v = f(res_a[(size_t)j * N + i]);
          want += (double)(v * v);
        }
        const double rel = ss_b[j] == want ? 0.0 : std::fabs(ss_b[j] - want) / std::fabs(want);
        worst = std::max(worst, rel != rel ? 1.0 : rel);
        if (!(rel <= 1e-15)) {
          printf("  sumsq[%d] = %.17g, the sequential sum %.17g\n", j, ss_b[j], want);
          bad++;
        }
      }
      printf("WIDTH %d m %d %s_addcarry%s (%u CTAs, shuffled): %s (sumsq rel. diff %.1e)\n", N, m,
             variant == 0 ? "r2u8w4" : "r1u4w8", in_place ? " in place" : "", grid,
             bad ? "FAIL" : "residual_out, hg same bits", worst);
      fails += bad != 0;
      if (variant == 0) {
        normed = normed_a;
        h.assign(res_b.begin(), res_b.begin() + mn);
        hg.assign(hg_b.begin(), hg_b.begin() + mn);
        sumsq = ss_b;
      }
    }
    if (!kChain) continue;
    // The consumers on variant 0's hg and sumsq, the unfused chain on its normalised rows.
    auto w2 = randv((size_t)N2 * N, g, 0.05f), b2 = randv(N2, g, 0.1f);
    auto wgu = randv((size_t)2 * N2 * N, g, 0.05f), bgu = randv(2 * N2, g, 0.1f);
    for (int kind = kR1U4W8; kind <= kGatedSilu; kind++) {
      const Kind kd = static_cast<Kind>(kind);
      const Consumer c{m, N2, N, kd == kGatedSilu ? &wgu : &w2, kd == kGatedSilu ? &bgu : &b2, eps};
      int bad = 0;
      const auto unfused = consume(kd, c, false, normed.data(), nullptr, nullptr, nullptr, 0, bad);
      std::vector<double> clear(GEMV_MAX_M, 3.25);
      const auto ss_before = sumsq;
      const auto hg_before = hg;
      double* clr = kd == kR1U4W8F32 ? nullptr : clear.data();  // null: nothing to clear
      const auto carry = consume(kd, c, true, nullptr, hg.data(), sumsq.data(), clr, 5 + kind, bad);
      int not_cleared = 0;
      for (int i = 0; clr && i < GEMV_MAX_M; i++) {
        if (clear[i] != 0.0) {
          printf("  clear[%d] = %g after the launch\n", i, clear[i]);
          not_cleared++;
        }
      }
      bad += not_cleared;
      bad += diff_bits(ss_before, sumsq, "sumsq (the consumer's)") + diff_bits(hg_before, hg, "hg (the consumer's)");
      const auto ex = exact(kd, c, h, gamma);
      const Errors e = compare(carry, unfused, ex, m, N2);
      total[kind].carry += e.carry;
      total[kind].unfused += e.unfused;
      total[kind].count += e.count;
      if (e.bad) printf("  %d of %d outputs differ from the unfused chain's by more than %g ulps of the row's max\n", e.bad, m * N2, kTolUlps);
      bad += e.bad;
      printf("WIDTH %d m %d %s_carry: max |carry - unfused| %.2f ulp; mean |. - exact| carry %.3g, unfused %.3g ulp%s: %s\n",
             N, m, kName[kind], e.max_diff, e.carry_mean(), e.unfused_mean(), !clr ? "" : not_cleared ? ", clear NOT zeroed" : ", clear zeroed",
             bad ? "FAIL" : "ok");
      fails += bad != 0;
      // Self-test (once per build, m = 2): deliberately broken inputs must fail the same comparison.
      if (m != 2 || (kd != kR1U4W8 && kd != kGatedSilu)) continue;
      for (int broken = 0; broken < 2; broken++) {
        auto ss_x = sumsq;
        auto hg_x = hg;
        if (broken == 0) for (double& s : ss_x) s *= 4;                                  // rstd halved
        else for (size_t i = 0; i < hg_x.size(); i++) hg_x[i] = f(h[i]);                // γ left out
        int bad_x = 0;
        const auto wrong = consume(kd, c, true, nullptr, hg_x.data(), ss_x.data(), nullptr, 9, bad_x);
        const Errors ex_e = compare(wrong, unfused, ex, m, N2);
        const bool caught = ex_e.bad + bad_x + (ex_e.carry > ex_e.unfused) > 0;  // check 2 on its own
        printf("WIDTH %d m %d %s_carry fed %s (self-test): max |carry - unfused| %.2f ulp: %s\n", N, m, kName[kind],
               broken == 0 ? "4*sum h^2" : "hg without gamma", ex_e.max_diff, caught ? "FAIL, as it must" : "NOT CAUGHT");
        fails += !caught;
      }
    }
  }
  for (int kind = kR1U4W8; kChain && kind <= kGatedSilu; kind++) {
    const Errors& t = total[kind];
    const bool closer = t.carry <= t.unfused;
    printf("WIDTH %d %s_carry, all %ld outputs: mean |. - exact| carry %.3g, unfused %.3g ulp: %s\n", N, kName[kind], t.count,
           t.carry_mean(), t.unfused_mean(), closer ? "ok" : "FAIL (the carry path is further from the exact values)");
    fails += !closer;
  }
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails != 0;
}
