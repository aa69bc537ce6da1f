// Checks tools/microbench/gemv_mma.cuh (the tensor-core decode GEMV) on the CPU emulator against a
// double-precision reference: its k permutation and fragment use give x·Wᵀ for m = 1..8, k multiples of
// 8 that are not of 32, features past a block's 16.
//   g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. gemv_mma_check.cpp -lpthread
// (attention_ptx_emu.h's mma needs attention_common.cuh's macros: a bf16 build of any head shape.)
#define KILN_DTYPE_BF16
#define HEAD_DIM 64
#define BLOCK_SIZE 16
#define NUM_HEADS 1
#define NUM_KV_HEADS 1
#define KILN_EMU_MMA
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "../../tools/microbench/gemv_mma.cuh"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  int fails = 0;
  const int shapes[][2] = {{33, 200}, {16, 64}, {50, 1032}};
  for (const auto& s : shapes) {
    const int n = s[0], k = s[1];
    std::vector<__nv_bfloat16> w((size_t)n * k), x(8 * (size_t)k);
    for (auto& v : w) v = __float2bfloat16_rn(nd(gen) * 0.1f);
    for (auto& v : x) v = __float2bfloat16_rn(nd(gen));
    for (int m : {1, 3, 8}) {
      std::vector<__nv_bfloat16> y((size_t)m * n, __float2bfloat16_rn(NAN));
      launch({(unsigned)((n + 15) / 16), 1, 1}, {128, 1, 1}, [&] { gemv_mma<4, 2>(x.data(), w.data(), y.data(), m, n, k); });
      double worst = 0;
      for (int b = 0; b < m; b++) {
        for (int f = 0; f < n; f++) {
          double ref = 0;
          for (int i = 0; i < k; i++)
            ref += (double)__bfloat162float(w[(size_t)f * k + i]) * __bfloat162float(x[(size_t)b * k + i]);
          const double got = __bfloat162float(y[(size_t)b * n + f]);
          const double err = std::fabs(got - ref) / (std::fabs(ref) + 1e-3);
          if (!(err <= worst)) worst = err;  // NaN too
        }
      }
      const bool ok = worst < 8e-3;  // the output is rounded to bf16 (2^-8 relative)
      printf("n %d k %d m %d: worst relative error %.2e %s\n", n, k, m, worst, ok ? "PASS" : "FAIL");
      fails += !ok;
    }
  }
  return fails != 0;
}
