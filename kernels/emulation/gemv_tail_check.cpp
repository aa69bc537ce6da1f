// Checks gemv.cu's tail norm (gemv_*_addnorm: the producer GEMV stores h = residual + y, its last CTA
// normalises h) on the CPU (fakecuda.h) against the unfused launches it replaces: gemv → add_rms_norm
// (rmsnorm.cu; its register path, the backend's block, is also checked against its loop path, a 32-thread
// block). The residual sum and the normalised rows must be the same bits. Blocks run in shuffled
// orders, so any CTA may be the last; each producer runs twice, and its arrival counter must be zero after
// each launch. Build: see gemv_tail_run.sh (-DKILN_DTYPE_BF16 or F16, -DWIDTH = the producer's n).
#include "fakecuda.h"
#ifndef KILN_GEMV_SRC
#define KILN_GEMV_SRC "../gemv.cu"  // a copy with extern __shared__ rewritten (gemv_tail_run.sh)
#endif
#include KILN_GEMV_SRC
#include "../rmsnorm.cu"
#include "gemv_norm_common.h"

int main() {
  constexpr int K = 264, N = WIDTH;  // producer [N, K]; the norm's width N
  std::mt19937 g(7);
  int fails = 0;
  for (int m = 1; m <= GEMV_MAX_M; m = m < 2 ? m + 1 : m + 6) {  // 1, 2, 8
    auto x = randv((size_t)m * K, g, 1.f), wp = randv((size_t)N * K, g, 0.05f), bias = randv(N, g, 0.1f);
    auto residual = randv((size_t)m * N, g, 2.f), gamma = randv(N, g, 0.2f, 1.f);
    const float eps = 1e-5f;
    for (int variant = 0; variant < 2; variant++) {
      const unsigned block = gemv_block(variant), grid = (N + 7) / 8;
      // Unfused: y = x·Wpᵀ + b; normed, residual_out = add_rms_norm(residual, y).
      std::vector<T> normed_a = sentinel((size_t)m * N), res_a = sentinel((size_t)m * N);
      const auto y = unfused_add_norm(variant, x, wp, bias, residual, gamma, eps, m, N, K, normed_a, res_a);
      if (variant == 0) {  // rmsnorm.cu's loop path (a block narrower than the row) gives the same bits
        std::vector<T> normed_l = sentinel((size_t)m * N), res_l = sentinel((size_t)m * N);
        launch({(unsigned)m, 1, 1}, {32, 1, 1}, [&] { add_rms_norm(residual.data(), y.data(), gamma.data(), normed_l.data(), res_l.data(), eps, m); });
        const int bad = diff_bits(res_a, res_l, "residual_out (loop path)") + diff_bits(normed_a, normed_l, "normed (loop path)");
        printf("WIDTH %d m %d add_rms_norm: register and loop paths %s\n", N, m, bad ? "DIFFER (FAIL)" : "give the same bits");
        fails += bad != 0;
      }
      // Tail: the producer stores h and its last CTA the normalised rows; twice, on one counter.
      int counter = 0;
      for (int round = 0; round < 2; round++) {
        std::vector<T> normed_b = sentinel((size_t)m * N), res_b = sentinel((size_t)m * N);
        const unsigned seed = 3 + 10 * variant + round;
        if (variant == 0)
          launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r2u8w4_addnorm(x.data(), wp.data(), bias.data(), residual.data(), res_b.data(), gamma.data(), eps, normed_b.data(), &counter, m, N, K); }, 0, seed);
        else
          launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r1u4w8_addnorm(x.data(), wp.data(), bias.data(), residual.data(), res_b.data(), gamma.data(), eps, normed_b.data(), &counter, m, N, K); }, 0, seed);
        int bad = diff_bits(res_a, res_b, "residual_out") + diff_bits(normed_a, normed_b, "normed");
        if (counter != 0) {
          printf("  counter %d after the launch\n", counter);
          bad++;
        }
        printf("WIDTH %d m %d %s_addnorm launch %d (%u CTAs, shuffled): %s\n", N, m, variant == 0 ? "r2u8w4" : "r1u4w8",
               round, grid, bad ? "FAIL" : "same bits, counter 0");
        fails += bad != 0;
      }
    }
  }
  return fails != 0;
}
