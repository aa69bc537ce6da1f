// Shared by the emulator checks of gemv.cu's norm-producing twins (gemv_tail_check.cpp,
// gemv_carry_check.cpp), included after fakecuda.h, gemv.cu (KILN_GEMV_SRC) and rmsnorm.cu: random
// kiln_t vectors, NaN sentinels, bitwise comparison, and the unfused chain the twins replace.
#pragma once
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using T = kiln_t;

static std::vector<T> randv(size_t n, std::mt19937& g, float scale, float mean = 0.f) {
  std::normal_distribution<float> nd(mean, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = kiln::from_float(nd(g));
  return v;
}
template <class A = T> static std::vector<A> sentinel(size_t n) {
  std::vector<A> v(n);
  std::memset(v.data(), 0xff, n * sizeof(A));  // NaN: an element never stored shows
  return v;
}
template <class A> static int diff_bits(const A* a, const A* b, size_t n, const char* what) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) bad += std::memcmp(&a[i], &b[i], sizeof(A)) != 0;
  if (bad) printf("  %s: %d of %zu differ\n", what, bad, n);
  return bad;
}
template <class A> static int diff_bits(const std::vector<A>& a, const std::vector<A>& b, const char* what) {
  return a.size() == b.size() ? diff_bits(a.data(), b.data(), a.size(), what) : (printf("  %s: sizes differ\n", what), 1);
}

/** The block of the checked GEMV variants: variant 0 is gemv_r2u8w4 (128 threads), 1 gemv_r1u4w8 (256);
 * 8 features per CTA either way, so the grid is ⌈n / 8⌉. */
static unsigned gemv_block(int variant) { return variant == 0 ? 128 : 256; }

/**
 * The unfused chain a producer twin replaces, launched as the backend launches it: the variant's plain
 * GEMV y = x·Wpᵀ + b [m, n] (Wp [n, k]), then add_rms_norm(residual, y) with one vector of the row per
 * thread (rmsnorm.cu's register path; its width is WIDTH = n) into normed and res. Returns y.
 */
static std::vector<T> unfused_add_norm(int variant, const std::vector<T>& x, const std::vector<T>& wp,
                                       const std::vector<T>& bias, const std::vector<T>& residual,
                                       const std::vector<T>& gamma, float eps, int m, int n, int k,
                                       std::vector<T>& normed, std::vector<T>& res) {
  std::vector<T> y((size_t)m * n);
  const unsigned grid = (n + 7) / 8, block = gemv_block(variant);
  if (variant == 0)
    launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r2u8w4(x.data(), wp.data(), bias.data(), y.data(), m, n, k); });
  else
    launch({grid, 1, 1}, {block, 1, 1}, [&] { gemv_r1u4w8(x.data(), wp.data(), bias.data(), y.data(), m, n, k); });
  const unsigned norm_block = std::min(1024u, (unsigned)((WIDTH / kiln::vec_for(WIDTH) + 31) / 32 * 32));
  launch({(unsigned)m, 1, 1}, {norm_block, 1, 1},
         [&] { add_rms_norm(residual.data(), y.data(), gamma.data(), normed.data(), res.data(), eps, m); });
  return y;
}
