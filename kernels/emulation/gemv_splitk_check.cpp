// Checks gemv.cu's split-K variants (gemv_r1u4w8s2, gemv_r1u4w8s4: S warps per row, slices summed in
// shared memory) on the CPU (fakecuda.h) against a double-precision reference, with the GPU test's
// tolerance (test/gpu/kernels/gemv.test.ts: 2^-22·Σ|x||w| + one rounding of the output type), for
// m = 1, 2, 8, n = 37 (a partial last block), k = 264 and 1032 (vectors per row 33 and 129: a slice may
// get none, the tail loop runs), with bias, kiln_t and fp32 output. Every output must be written; a
// sentinel past y must stay. Build: gemv_splitk_run.sh.
#include "fakecuda.h"
#include "../gemv.cu"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

template <class Out, class K>
static int check(K kernel, int S, int m, int n, int k, std::mt19937& g, const char* name) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<kiln_t> x((size_t)m * k), w((size_t)n * k), bias(n);
  for (auto& v : x) v = kiln::from_float(0.5f * nd(g));
  for (auto& v : w) v = kiln::from_float(0.05f * nd(g));
  for (auto& v : bias) v = kiln::from_float(0.1f * nd(g));
  std::vector<Out> y((size_t)m * n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(Out));  // NaN: an output never stored shows
  const unsigned rows_per_block = 8 / S, grid = (n + rows_per_block - 1) / rows_per_block;
  launch({grid, 1, 1}, {256, 1, 1}, [&] { kernel(x.data(), w.data(), bias.data(), y.data(), m, n, k); });
  const double u = sizeof(Out) == 4 ? 0.0 : std::ldexp(1.0, sizeof(kiln_t) == 2 ? -8 : -24);
  int bad = 0;
  for (int j = 0; j < m; j++)
    for (int r = 0; r < n; r++) {
      double want = kiln::to_float(bias[r]), abs_sum = std::fabs(kiln::to_float(bias[r]));
      for (int i = 0; i < k; i++) {
        const double p = (double)kiln::to_float(x[(size_t)j * k + i]) * kiln::to_float(w[(size_t)r * k + i]);
        want += p;
        abs_sum += std::fabs(p);
      }
      const double got = kiln::to_float(y[(size_t)j * n + r]);
      if (!(std::fabs(got - want) <= std::ldexp(abs_sum, -22) + u * std::fabs(want) + 1e-30)) bad++;
    }
  for (size_t i = (size_t)m * n; i < y.size(); i++) {
    unsigned char b[sizeof(Out)];
    std::memcpy(b, &y[i], sizeof(Out));
    for (unsigned char c : b) bad += c != 0xff;
  }
  printf("%s m %d n %d k %d: %s\n", name, m, n, k, bad ? "FAIL" : "ok");
  return bad != 0;
}

int main() {
  std::mt19937 g(11);
  int fails = 0;
  for (int m : {1, 2, 8})
    for (int k : {264, 1032}) {
      fails += check<kiln_t>(gemv_r1u4w8s2, 2, m, 37, k, g, "gemv_r1u4w8s2");
      fails += check<kiln_t>(gemv_r1u4w8s4, 4, m, 37, k, g, "gemv_r1u4w8s4");
      fails += check<float>(gemv_r1u4w8s2_f32out, 2, m, 37, k, g, "gemv_r1u4w8s2_f32out");
      fails += check<float>(gemv_r1u4w8s4_f32out, 4, m, 37, k, g, "gemv_r1u4w8s4_f32out");
    }
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}
