// Checks gemv.cu's split norm (a producer GEMV's _addsq epilogue + the consumer's _xnorm reads) on the
// CPU (fakecuda.h) against the unfused launches it replaces: gemv → add_rms_norm (rmsnorm.cu) → gemv,
// gemv_gated_silu and gemv_*_f32out. The residual sum and every output must be the same bits.
// Build: see gemv_split_run.sh (-DKILN_DTYPE_BF16 or F16, -DWIDTH = the producer's n, the consumer's k).
#include "fakecuda.h"
#ifndef KILN_GEMV_SRC
#define KILN_GEMV_SRC "../gemv.cu"  // a copy with extern __shared__ rewritten (gemv_split_run.sh)
#endif
#include KILN_GEMV_SRC
#include "../rmsnorm.cu"
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using T = kiln_t;
static std::vector<T> randv(size_t n, std::mt19937& g, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = kiln::from_float(nd(g));
  return v;
}
template <class A> static int diff_bits(const std::vector<A>& a, const std::vector<A>& b, const char* what) {
  int bad = 0;
  for (size_t i = 0; i < a.size(); i++) bad += std::memcmp(&a[i], &b[i], sizeof(A)) != 0;
  if (bad) printf("  %s: %d of %zu differ\n", what, bad, a.size());
  return bad;
}

int main() {
  constexpr int K = 776, N = WIDTH, N2 = 777, INTER = 389;  // producer [N, K], consumer [N2, N]
  std::mt19937 g(7);
  int fails = 0;
  for (int m = 1; m <= 3; m++) {
    auto x = randv((size_t)m * K, g, 1.f), wp = randv((size_t)N * K, g, 0.05f), bias = randv(N, g, 0.1f);
    auto residual = randv((size_t)m * N, g, 2.f), gamma = randv(N, g, 1.f);
    auto wc = randv((size_t)N2 * N, g, 0.05f), wg = randv((size_t)2 * INTER * N, g, 0.05f);
    const float eps = 1e-5f;
    // Unfused: y = x·Wpᵀ + b; out, residual_out = add_rms_norm(residual, y); z = out·Wcᵀ; gated; logits.
    std::vector<T> y((size_t)m * N), out((size_t)m * N), res_a((size_t)m * N), z_a((size_t)m * N2), gz_a((size_t)m * INTER);
    std::vector<float> lz_a((size_t)m * N2);
    launch({(unsigned)((N + 7) / 8), 1, 1}, {128, 1, 1}, [&] { gemv_r2u8w4(x.data(), wp.data(), bias.data(), y.data(), m, N, K); });
    launch({(unsigned)m, 1, 1}, {128, 1, 1}, [&] { add_rms_norm(residual.data(), y.data(), gamma.data(), out.data(), res_a.data(), eps, m); });
    launch({(unsigned)((N2 + 7) / 8), 1, 1}, {256, 1, 1}, [&] { gemv_r1u4w8(out.data(), wc.data(), nullptr, z_a.data(), m, N2, N); });
    launch({(unsigned)((N2 + 7) / 8), 1, 1}, {128, 1, 1}, [&] { gemv_r2u8w4_f32out(out.data(), wc.data(), nullptr, lz_a.data(), m, N2, N); });
    launch({(unsigned)((INTER + 7) / 8), 1, 1}, {256, 1, 1}, [&] { gemv_gated_silu(out.data(), wg.data(), nullptr, gz_a.data(), m, INTER, N); });
    // Split: the producer stores h and Σ h²; the consumers normalise h as they read it.
    for (int variant = 0; variant < 2; variant++) {
      std::vector<double> sumsq(m, 0.0);
      std::vector<T> res_b((size_t)m * N), z_b((size_t)m * N2), gz_b((size_t)m * INTER);
      std::vector<float> lz_b((size_t)m * N2);
      if (variant == 0)
        launch({(unsigned)((N + 7) / 8), 1, 1}, {128, 1, 1}, [&] { gemv_r2u8w4_addsq(x.data(), wp.data(), bias.data(), residual.data(), res_b.data(), sumsq.data(), m, N, K); }, 0, 3);
      else
        launch({(unsigned)((N + 7) / 8), 1, 1}, {256, 1, 1}, [&] { gemv_r1u4w8_addsq(x.data(), wp.data(), bias.data(), residual.data(), res_b.data(), sumsq.data(), m, N, K); }, 0, 5);
      launch({(unsigned)((N2 + 7) / 8), 1, 1}, {256, 1, 1}, [&] { gemv_r1u4w8_xnorm(res_b.data(), gamma.data(), sumsq.data(), eps, wc.data(), nullptr, z_b.data(), m, N2, N); });
      launch({(unsigned)((N2 + 7) / 8), 1, 1}, {128, 1, 1}, [&] { gemv_r2u8w4_f32out_xnorm(res_b.data(), gamma.data(), sumsq.data(), eps, wc.data(), nullptr, lz_b.data(), m, N2, N); });
      launch({(unsigned)((INTER + 7) / 8), 1, 1}, {256, 1, 1}, [&] { gemv_gated_silu_xnorm(res_b.data(), gamma.data(), sumsq.data(), eps, wg.data(), nullptr, gz_b.data(), m, INTER, N); });
      const int bad = diff_bits(res_a, res_b, "residual_out") + diff_bits(z_a, z_b, "gemv_r1u4w8_xnorm") +
                      diff_bits(lz_a, lz_b, "gemv_r2u8w4_f32out_xnorm") + diff_bits(gz_a, gz_b, "gemv_gated_silu_xnorm");
      printf("WIDTH %d m %d producer %s: %s\n", N, m, variant == 0 ? "r2u8w4" : "r1u4w8", bad ? "FAIL" : "same bits");
      fails += bad != 0;
    }
  }
  return fails != 0;
}
