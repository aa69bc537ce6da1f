// Checks gemv_zp.cu (int4-zp: AWQ / GPTQ weights) on the CPU emulator (fakecuda.h) against a plain C++
// reading of the int4-zp format (src/engine/int4_zp_format.ts), written here again from its header:
// the region is encoded here (unsigned nibbles, feature 2j low, ceil(k / 2) bytes a row; fp32 scales and
// zero points [n, groups]; int32 g_idx [k] with act-order) and decoded again by the reference, which
// takes w[r, c] = (q − z)·s of group g(c) = g_idx ? g_idx[c] : c / G, one fp32 rounding, and sums x·w
// in double. The device layout pads q's end to 16 bytes (the gap filled with garbage: never read).
//   gemv_zp_r2u4w4 / r2u8w4 (G a multiple of 32, no g_idx) and gemv_zp_any_r2u4w4 (any G, g_idx):
//     |got − want| ≤ 2^-21·Σ|x·w| + one rounding of kiln_t of |want|; every output written, nothing
//     past y; r2u4w4 and r2u8w4 the same bits; a NaN after the last x row would show a read past k.
//   gemv_zp[_any]_gated_silu: bit for bit silu(round(gate))·round(up) of the plain kernel's outputs.
//   gemv_zp_mma (G a multiple of 128, no g_idx; attention_ptx_emu.h's mma.sync: 16 exact products summed
//     in double, one rounding into the accumulator): a product meets its chunk's 8 mma accumulations, the
//     scale multiply, one accumulator add per 128-feature chunk, the warps' 7 adds and the bias add, each
//     one fp32 rounding: |got − want| ≤ 2·N·2^-24·Σ|x·w|, N = 8 + chunks + 9, plus one rounding of
//     kiln_t; gemv_zp_mma_gated_silu bit for bit silu(round(gate))·round(up) of gemv_zp_mma's outputs.
//   dequant_zp (every dtype): bit for bit round_t of the reference's fp32 weight, any k (odd too).
// Zero points are integers (AWQ and GPTQ store integers; 16 occurs with GPTQ v1): q − z is then exact.
// Group sizes 32, 64, 128, the whole row, and 48 / 1 (not multiples of 32: the any kernel); act-order
// with a GPTQ-like g_idx (a permutation of features to groups) and with uniformly random groups.
// Build and run: gemv_zp_run.sh.
#include "fakecuda.h"
#if !defined(KILN_DTYPE_F32)
#include "attention_ptx_emu.h"  // mma.sync for gemv_wo_mma.cuh
#endif
#include "../gemv_zp.cu"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

/** An int4-zp weight: the parts, the region's bytes as int4_zp_format.ts encodes them, and the device
 * copy (q padded to 16 bytes, then scales, zeros, g_idx). */
struct Zp {
  int n, k, gs, groups;
  bool act;
  std::vector<unsigned char> qv;  // [n·k] 0..15
  std::vector<float> s, z;        // [n·groups]
  std::vector<int> g_idx;         // [k] or empty
  std::vector<unsigned char> dev; // the device buffer
  size_t so = 0, zo = 0, go = 0;  // its scales, zeros and g_idx offsets
  size_t q_bytes() const { return (size_t)n * ((k + 1) / 2); }
  const unsigned char* q() const { return dev.data(); }
  const float* scales() const { return reinterpret_cast<const float*>(dev.data() + so); }
  const float* zeros() const { return reinterpret_cast<const float*>(dev.data() + zo); }
  const int* gidx() const { return act ? reinterpret_cast<const int*>(dev.data() + go) : nullptr; }
  int group(int c) const { return act ? g_idx[c] : c / gs; }
  float w(int r, int c) const {  // int4_zp_format.ts dequantizeInt4Zp, decoded from the stored bytes
    const unsigned char byte = dev[(size_t)r * ((k + 1) / 2) + c / 2];
    const int q = c % 2 ? byte >> 4 : byte & 15;
    const size_t g = (size_t)r * groups + group(c);
    return (float)(((double)q - zeros()[g]) * scales()[g]);
  }
};

Zp make(int n, int k, int gs, int act, std::mt19937& g) {
  Zp out{n, k, gs, (k + gs - 1) / gs, act != 0, {}, {}, {}, {}, {}};
  out.so = (out.q_bytes() + 15) / 16 * 16;
  out.zo = out.so + (size_t)n * out.groups * 4;
  out.go = out.zo + (size_t)n * out.groups * 4;
  std::uniform_int_distribution<int> nib(0, 15), zero(0, 16), junk(0, 255);
  std::normal_distribution<float> nd(0.f, 1.f);
  out.qv.resize((size_t)n * k);
  for (auto& v : out.qv) v = (unsigned char)nib(g);
  out.s.resize((size_t)n * out.groups);
  out.z.resize((size_t)n * out.groups);
  for (auto& v : out.s) v = 0.01f * std::fabs(nd(g)) + 1e-4f;
  for (auto& v : out.z) v = (float)zero(g);
  if (act == 1) {  // GPTQ's act-order: features in a permuted order, G of them a group
    std::vector<int> perm(k);
    for (int i = 0; i < k; i++) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), g);
    out.g_idx.resize(k);
    for (int i = 0; i < k; i++) out.g_idx[perm[i]] = i / gs;
  } else if (act == 2) {  // any group of the row for any feature
    std::uniform_int_distribution<int> grp(0, out.groups - 1);
    out.g_idx.resize(k);
    for (auto& v : out.g_idx) v = grp(g);
  }
  const size_t rb = (k + 1) / 2;
  const size_t tail = (size_t)n * out.groups * 8 + (act ? (size_t)k * 4 : 0);
  out.dev.assign(out.so + tail, 0);
  for (size_t i = out.q_bytes(); i < out.so; i++) out.dev[i] = (unsigned char)junk(g);  // the gap
  for (int r = 0; r < n; r++)
    for (int c = 0; c < k; c++) out.dev[r * rb + c / 2] |= out.qv[(size_t)r * k + c] << (c % 2 ? 4 : 0);
  std::memcpy(out.dev.data() + out.so, out.s.data(), out.s.size() * 4);
  std::memcpy(out.dev.data() + out.zo, out.z.data(), out.z.size() * 4);
  if (act) std::memcpy(out.dev.data() + out.go, out.g_idx.data(), (size_t)k * 4);
  return out;
}

std::vector<float> randn(size_t n, float scale, std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = scale * nd(g);
  return v;
}

std::vector<kiln_t> to_t(const std::vector<float>& v) {
  std::vector<kiln_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = kiln::from_float(v[i]);
  return out;
}

template <class T>
bool same_bits(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

template <class T>
int untouched(const std::vector<T>& v, size_t from) {  // bytes after `from` not 0xff: a stray store
  int bad = 0;
  for (size_t i = from; i < v.size(); i++) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &v[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  return bad;
}

using Gemv = void (*)(const kiln_t*, const unsigned char*, const float*, const float*, const int*, const kiln_t*,
                      kiln_t*, int, int, int, int);

int check_dequant(const Zp& w) {
  std::vector<kiln_t> out((size_t)w.n * w.k + 8);
  std::memset(out.data(), 0xff, out.size() * sizeof(kiln_t));
  const unsigned grid = (unsigned)((w.q_bytes() + 255) / 256);
  launch({grid, 1, 1}, {256, 1, 1}, [&] { dequant_zp(w.q(), w.scales(), w.zeros(), w.gidx(), out.data(), w.n, w.k, w.gs); });
  int bad = untouched(out, (size_t)w.n * w.k);
  for (int r = 0; r < w.n; r++)
    for (int c = 0; c < w.k; c++) bad += !same_bits(out[(size_t)r * w.k + c], kiln::from_float(w.w(r, c)));
  printf("dequant_zp n %d k %d G %d act %d: %s\n", w.n, w.k, w.gs, (int)w.act, bad ? "FAIL" : "ok");
  return bad != 0;
}

#if !defined(KILN_DTYPE_F32)
std::vector<kiln_t> run_gemv(Gemv kernel, const std::vector<kiln_t>& x, const Zp& w, const std::vector<kiln_t>& bias,
                             int m) {
  std::vector<kiln_t> y((size_t)m * w.n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));
  launch({(unsigned)((w.n + 7) / 8), 1, 1}, {128, 1, 1}, [&] {
    kernel(x.data(), w.q(), w.scales(), w.zeros(), w.gidx(), bias.data(), y.data(), m, w.n, w.k, w.gs);
  });
  return y;
}

double g_worst = 0;

int check_gemv(Gemv a, Gemv b, const std::vector<kiln_t>& x, const Zp& w, const std::vector<kiln_t>& bias, int m,
               const char* name) {
  const auto y = run_gemv(a, x, w, bias, m);
  const auto y2 = b ? run_gemv(b, x, w, bias, m) : y;
  const double u = std::ldexp(1.0, std::is_same_v<kiln_t, __half> ? -11 : -8);
  int bad = untouched(y, (size_t)m * w.n), differ = 0;
  for (int j = 0; j < m; j++)
    for (int r = 0; r < w.n; r++) {
      double want = kiln::to_float(bias[r]), abs_sum = std::fabs(want);
      for (int c = 0; c < w.k; c++) {
        const double p = (double)kiln::to_float(x[(size_t)j * w.k + c]) * w.w(r, c);
        want += p;
        abs_sum += std::fabs(p);
      }
      const double err = std::fabs(kiln::to_float(y[(size_t)j * w.n + r]) - want);
      const double bound = std::ldexp(abs_sum, -21) + u * std::fabs(want) + 1e-30;
      if (!(err <= bound)) bad++;
      g_worst = std::max(g_worst, err / bound);
      differ += !same_bits(y[(size_t)j * w.n + r], y2[(size_t)j * w.n + r]);
    }
  printf("%s m %d n %d k %d G %d act %d: %s%s\n", name, m, w.n, w.k, w.gs, (int)w.act, bad ? "FAIL" : "ok",
         differ ? " (u4 and u8 differ: FAIL)" : "");
  return bad != 0 || differ != 0;
}

int check_gated(Gemv plain, Gemv gated, const std::vector<kiln_t>& x, const Zp& w, const std::vector<kiln_t>& bias,
                int m, const char* name) {
  const int inter = w.n / 2;
  const auto full = run_gemv(plain, x, w, bias, m);
  std::vector<kiln_t> y((size_t)m * inter + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));
  launch({(unsigned)((inter + 7) / 8), 1, 1}, {256, 1, 1}, [&] {
    gated(x.data(), w.q(), w.scales(), w.zeros(), w.gidx(), bias.data(), y.data(), m, inter, w.k, w.gs);
  });
  int bad = untouched(y, (size_t)m * inter);
  for (int j = 0; j < m; j++)
    for (int i = 0; i < inter; i++) {
      const float g = kiln::to_float(full[(size_t)j * w.n + i]);
      const float up = kiln::to_float(full[(size_t)j * w.n + inter + i]);
      bad += !same_bits(y[(size_t)j * inter + i], kiln::from_float(kiln::Silu::apply(g) * up));
    }
  printf("%s m %d inter %d k %d G %d act %d: %s\n", name, m, inter, w.k, w.gs, (int)w.act, bad ? "FAIL" : "ok");
  return bad != 0;
}

/** gemv_zp_mma (16 rows a block of 256 threads) on [n, k], and its gated twin on the first 2·⌊n / 2⌋ rows. */
std::vector<kiln_t> run_mma(Gemv kernel, const std::vector<kiln_t>& x, const Zp& w, const std::vector<kiln_t>& bias,
                            int m, int n) {
  std::vector<kiln_t> y((size_t)m * n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));
  launch({(unsigned)((n + 15) / 16), 1, 1}, {256, 1, 1}, [&] {
    kernel(x.data(), w.q(), w.scales(), w.zeros(), nullptr, bias.data(), y.data(), m, n, w.k, w.gs);
  });
  return y;
}

double g_worst_mma = 0;

int check_mma(const std::vector<kiln_t>& x, const Zp& w, const std::vector<kiln_t>& bias, int m) {
  const auto y = run_mma(gemv_zp_mma, x, w, bias, m, w.n);
  const double u = std::ldexp(1.0, std::is_same_v<kiln_t, __half> ? -11 : -8);
  const int n_round = 8 + (w.k + 127) / 128 + 9;
  int bad = untouched(y, (size_t)m * w.n);
  for (int j = 0; j < m; j++)
    for (int r = 0; r < w.n; r++) {
      double want = kiln::to_float(bias[r]), abs_sum = std::fabs(want);
      for (int c = 0; c < w.k; c++) {
        const double p = (double)kiln::to_float(x[(size_t)j * w.k + c]) * w.w(r, c);
        want += p;
        abs_sum += std::fabs(p);
      }
      const double err = std::fabs(kiln::to_float(y[(size_t)j * w.n + r]) - want);
      const double bound = 2.0 * n_round * std::ldexp(abs_sum, -24) + u * std::fabs(want) + 1e-30;
      if (!(err <= bound)) bad++;
      g_worst_mma = std::max(g_worst_mma, err / bound);
    }
  int gated_bad = 0;
  const int inter = w.n / 2;
  if (inter > 0) {
    const auto full = run_mma(gemv_zp_mma, x, w, bias, m, 2 * inter);
    const auto yg = run_mma(gemv_zp_mma_gated_silu, x, w, bias, m, inter);
    gated_bad = untouched(yg, (size_t)m * inter);
    for (int j = 0; j < m; j++)
      for (int i = 0; i < inter; i++) {
        const float g = kiln::to_float(full[(size_t)j * 2 * inter + i]);
        const float up = kiln::to_float(full[(size_t)j * 2 * inter + inter + i]);
        gated_bad += !same_bits(yg[(size_t)j * inter + i], kiln::from_float(kiln::Silu::apply(g) * up));
      }
  }
  printf("gemv_zp_mma m %d n %d k %d G %d: %s; gated inter %d: %s\n", m, w.n, w.k, w.gs, bad ? "FAIL" : "ok", inter,
         gated_bad ? "FAIL" : "ok");
  return bad != 0 || gated_bad != 0;
}
#endif

}  // namespace

int main() {
  std::mt19937 g(19);
  int fails = 0;
  // [k, G, act]: act 1 = GPTQ-like g_idx, 2 = random groups.
  const int cases[][3] = {{64, 32, 0},    {128, 64, 0},   {256, 128, 0},   {96, 96, 0},    {8224, 32, 0},
                          {4096, 128, 0}, {160, 48, 0},   {64, 1, 0},      {128, 32, 1},   {384, 128, 1},
                          {96, 32, 2},    {8224, 128, 1}, {7, 2, 0},       {33, 32, 0},    {101, 16, 1},
                          {1056, 128, 0}, {512, 256, 0}};
  for (const auto& cs : cases) {
    const int k = cs[0], gs = cs[1], act = cs[2];
    for (int n : {1, 37}) {
      const Zp w = make(n, k, gs, act, g);
      fails += check_dequant(w);
#if !defined(KILN_DTYPE_F32)
      if (k % 32 != 0) continue;  // the GEMV needs 16-byte q rows (else the runtime dequantizes)
      const bool any = act || gs % 32 != 0;
      const auto bias = to_t(randn(n, 0.1f, g));
      for (int m : {1, 2, 8}) {
        if (k > 4096 && m == 2) continue;  // emulator time
        auto x = to_t(randn((size_t)m * k, 0.5f, g));
        x.resize(x.size() + 64, kiln::from_float(NAN));
        fails += any ? check_gemv(gemv_zp_any_r2u4w4, nullptr, x, w, bias, m, "gemv_zp_any")
                     : check_gemv(gemv_zp_r2u4w4, gemv_zp_r2u8w4, x, w, bias, m, "gemv_zp");
        if (!act && gs % 128 == 0) fails += check_mma(x, w, bias, m);
        if (n == 1) continue;
        Zp pair = w;  // the gated kernel over [2·inter, k] = the first n − 1 rows (same row layout)
        pair.n = n - 1;
        fails += any ? check_gated(gemv_zp_any_r2u4w4, gemv_zp_any_gated_silu, x, pair, bias, m, "gemv_zp_any_gated_silu")
                     : check_gated(gemv_zp_r2u4w4, gemv_zp_gated_silu, x, pair, bias, m, "gemv_zp_gated_silu");
      }
#endif
    }
  }
#if !defined(KILN_DTYPE_F32)
  printf("worst |got − want| / bound: %.3g (gemv_zp_mma %.3g)\n", g_worst, g_worst_mma);
#endif
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}
