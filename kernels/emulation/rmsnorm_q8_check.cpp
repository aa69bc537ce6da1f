// Checks rmsnorm.cu's fused fp8 entries on the CPU emulator (fakecuda.h, fake/cuda_fp8.h) against the pair
// of launches they replace in fp8 engines (src/backends/cuda/norm_quant.ts): rms_norm_q8 against rms_norm
// then gemv_fp8.cu's quant_fp8_act over the stored output, add_rms_norm_q8 against add_rms_norm then
// quant_fp8_act. out, residual_out, xq, s and x̂ bit for bit (the two runs' buffers filled with different
// bytes first, so an element either leaves unwritten differs), and nothing written past them.
// quant_fp8_act itself is checked against the fp8 format in gemv_fp8_check.cpp.
// Cases, for the WIDTH of the build: 5 rows (random of several magnitudes, a zero row, a row with one
// large element); dynamic scales and two static ones (0.002 saturates most of a row's codes at ±448);
// with and without x̂ (x̂ only where WIDTH is a multiple of 16, as for every fp8 linear); the launch's
// block (rowwise_launcher.ts: normBlock, the register path where the row fits it) and 32 threads (the
// loop path, then the stored row quantized by quantize_row). Build and run: rmsnorm_q8_run.sh.
#include "fakecuda.h"
#include "mma_fp8_emu.h"
#include "../rmsnorm.cu"
#include "../gemv_fp8.cu"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr int kRows = 5;
constexpr size_t kN = (size_t)kRows * WIDTH;

template <class T>
std::vector<T> filled(size_t n, unsigned char byte) {
  std::vector<T> v(n);
  std::memset(v.data(), byte, n * sizeof(T));
  return v;
}

/** Elements of a and b in [0, n) that differ, plus those of either past n that lost their fill. */
template <class T>
int differing(const std::vector<T>& a, const std::vector<T>& b, size_t n, unsigned char fill_a, unsigned char fill_b) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) bad += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  for (size_t i = n; i < a.size(); i++) bad += std::memcmp(&a[i], &filled<T>(1, fill_a)[0], sizeof(T)) != 0;
  for (size_t i = n; i < b.size(); i++) bad += std::memcmp(&b[i], &filled<T>(1, fill_b)[0], sizeof(T)) != 0;
  return bad;
}

/** [kRows, WIDTH] in kiln_t: random rows scaled by 1, 0 (a zero row), 300, 1e-3, and a row with one
 * element 50 times the rest. */
std::vector<kiln_t> make_rows(std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  const float scale[kRows] = {1.f, 0.f, 300.f, 1e-3f, 1.f};
  std::vector<kiln_t> x(kN);
  for (int r = 0; r < kRows; r++)
    for (int c = 0; c < WIDTH; c++) x[(size_t)r * WIDTH + c] = kiln::from_float(scale[r] * nd(g));
  x[(size_t)4 * WIDTH + WIDTH / 3] = kiln::from_float(50.f);
  return x;
}

/** The block rowwise_launcher.ts launches the norms with (launch_geometry.ts normBlock). */
unsigned norm_block() {
  constexpr int vec = 16 / (int)sizeof(kiln_t);
  const int per = WIDTH % vec == 0 ? WIDTH / vec : WIDTH;
  return (unsigned)std::min(1024, (per + 31) / 32 * 32);
}

/** quant_fp8_act's block (fp8_variants.ts fp8QuantLaunch). */
unsigned quant_block() {
  const unsigned vectors = ((unsigned)WIDTH * sizeof(kiln_t) + 15) / 16;
  return std::min(1024u, (vectors + 31) / 32 * 32);
}

/** Every output filled with `fill` bytes, and past its end too: the pair and the fused kernel get
 * different fills, so an element either leaves unwritten differs. */
struct Outputs {
  unsigned char fill;
  std::vector<kiln_t> out, residual;  // out [kN], residual_out [kN] (add only) + 8 past the end
  std::vector<unsigned char> xq;      // [kN] + 16
  std::vector<float> s, xhat;         // [kRows] + 1, [kN] + 16
  explicit Outputs(unsigned char b)
      : fill(b),
        out(filled<kiln_t>(kN + 8, b)),
        residual(filled<kiln_t>(kN + 8, b)),
        xq(filled<unsigned char>(kN + 16, b)),
        s(filled<float>(kRows + 1, b)),
        xhat(filled<float>(kN + 16, b)) {}
};

/** One case: the fused kernel against the unfused pair, with `block` threads for the norms. */
int check(bool add, const std::vector<kiln_t>& residual, const std::vector<kiln_t>& x, const std::vector<kiln_t>& w,
          const float* fixed, bool with_xhat, unsigned block, const char* kind) {
  const float eps = 1e-5f;
  Outputs want(0xa5), got(0x5a);
  float* const want_xhat = with_xhat ? want.xhat.data() : nullptr;
  float* const got_xhat = with_xhat ? got.xhat.data() : nullptr;
  if (add)
    launch({kRows, 1, 1}, {block, 1, 1}, [&] {
      add_rms_norm(residual.data(), x.data(), w.data(), want.out.data(), want.residual.data(), eps, kRows);
    });
  else
    launch({kRows, 1, 1}, {block, 1, 1}, [&] { rms_norm(x.data(), w.data(), want.out.data(), eps, kRows); });
  launch({kRows, 1, 1}, {quant_block(), 1, 1}, [&] {
    quant_fp8_act(want.out.data(), want.xq.data(), want.s.data(), fixed, want_xhat, kRows, WIDTH);
  });
  if (add)
    launch({kRows, 1, 1}, {block, 1, 1}, [&] {
      add_rms_norm_q8(residual.data(), x.data(), w.data(), got.out.data(), got.residual.data(), got.xq.data(),
                      got.s.data(), fixed, got_xhat, eps, kRows);
    });
  else
    launch({kRows, 1, 1}, {block, 1, 1}, [&] {
      rms_norm_q8(x.data(), w.data(), got.out.data(), got.xq.data(), got.s.data(), fixed, got_xhat, eps, kRows);
    });
  const auto differ = [&](const auto& a, const auto& b, size_t n) { return differing(a, b, n, got.fill, want.fill); };
  const int bad_out = differ(got.out, want.out, kN);
  const int bad_res = differ(got.residual, want.residual, add ? kN : 0);
  const int bad_xq = differ(got.xq, want.xq, kN), bad_s = differ(got.s, want.s, kRows);
  const int bad_xhat = differ(got.xhat, want.xhat, with_xhat ? kN : 0);
  int saturated = 0;
  for (size_t i = 0; i < kN; i++) saturated += (want.xq[i] & 0x7f) == 0x7e;
  const int bad = bad_out + bad_res + bad_xq + bad_s + bad_xhat;
  printf("%s WIDTH %d block %u %s%s: %s", add ? "add_rms_norm_q8" : "rms_norm_q8", WIDTH, block, kind,
         with_xhat ? " x̂" : "", bad ? "FAIL" : "ok");
  if (bad)
    printf(" (differ: out %d, residual_out %d, xq %d, s %d, x̂ %d)", bad_out, bad_res, bad_xq, bad_s, bad_xhat);
  printf(" [%d codes at ±448]\n", saturated);
  return bad != 0;
}

}  // namespace

int main() {
  std::mt19937 g(23);
  std::normal_distribution<float> nd(0.f, 1.f);
  const auto residual = make_rows(g);
  const auto x = make_rows(g);  // row 1 zero in both: add_rms_norm's sum is a zero row too
  std::vector<kiln_t> w(WIDTH);
  for (auto& v : w) v = kiln::from_float(nd(g));
  const float small = 0.002f, large = 0.05f;
  int fails = 0;
  for (unsigned block : {norm_block(), 32u})
    for (bool add : {false, true})
      for (bool with_xhat : {false, true}) {
        if (with_xhat && WIDTH % 16 != 0) continue;  // x̂'s layout is of 16-feature vectors
        fails += check(add, residual, x, w, nullptr, with_xhat, block, "dynamic");
        fails += check(add, residual, x, w, &small, with_xhat, block, "static 0.002");
        fails += check(add, residual, x, w, &large, with_xhat, block, "static 0.05");
      }
  printf("%s\n", fails ? "FAIL" : "all ok");
  return fails != 0;
}
