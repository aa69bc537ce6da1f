// Checks gemm_wo.cu on the CPU emulator (fakecuda.h fibers; attention_ptx_emu.h's cp.async, ldmatrix and
// mma.sync) against the weight formats written again in C++:
//   int8-wo / int4-wo (src/engine/weight_format.ts, docs/QUANTIZATION.md; gemv_wo_check.cpp's quantizer:
//     symmetric groups of 128, int4 two a byte, padding to whole groups filled with garbage the kernel must
//     never let through): w = q·scale[c / 128];
//   int4-zp (src/engine/int4_zp_format.ts; unsigned nibbles, rows of k / 2 bytes, integer zero points
//     0…16 as AWQ / GPTQ store them, G a multiple of 32, no g_idx): w = (q − z)·s of group c / G.
// Two references, each with a bound derived from the kernel's arithmetic:
//   exact: Σ x·(q − z)·s + bias in double (z = 0 for int-wo; the weight unrounded). The kernel's products
//     are exact ((q − z) exact in kiln_t); along the longest path a product meets the mma accumulations of
//     its group's partial (at most ceil(min(G, k) / 16)), one scale multiply, one accumulator add per group
//     (`groups` of them), 3 warp-reduction adds and the bias add, each one fp32 rounding (≤ 2^-24
//     relative): |err| ≤ γ_N·Σ|x·w|, N = ceil(min(G, k) / 16) + groups + 5 (int-wo: groups + 13). The
//     hardware's mma may align its 16 products with truncation rather than round once, so the bound
//     takes twice that: 2·N·2^-24·Σ|x·w|, plus one rounding of kiln_t of |want| (the store).
//   cpu: what the CPU backend computes (dequantize to the fp32 weight, one rounding of (q − z)·s, then
//     linear(): Σ x·w in double rounded to fp32): within 2^-24·Σ|x·w| + 2^-24·|want| of exact, so the
//     kernel lies within the exact bound plus that of it.
// Also: every output written and nothing past y (y starts as NaN bytes); a NaN after x's last row (read
// past m or k) would show; every variant on every shape (each is correct for any m); a shuffled block
// order gives the same bits. The gated kernels (silu; the others differ only in activations.cuh's
// functor) over the first 2·⌊n / 2⌋ rows as the fused gate_up weight: bit for bit silu(round(gate))·
// round(up), rounded, of the plain kernel's outputs over the same rows (gate_up then gated_act). Shapes, for m 9, 16, 17, 64, 100, 256: int-wo n 37 (odd, a partial tile),
// 136 × k 8, 264, 1032 (partial groups, padding read); int4-zp n 37, 136 × (k, G) (96, 32), (288, 64),
// (1056, 128), (1056, 256) (partial tiles and groups); bias or none alternately. Build and run:
// gemm_wo_run.sh.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
using attn::__trap;  // the emulator's, for the kernel's shared-memory check
#include "../gemm_wo.cu"
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
  float scale(int r, int c) const { return scales[(size_t)r * groups + c / 128]; }
  float zero(int, int) const { return 0.f; }
  int group_size() const { return 128; }
};

/** An int4-zp weight: q [n, k / 2] unsigned nibbles, scales and zeros [n, groups]. */
struct Zp {
  int n, k, gs, groups;
  std::vector<unsigned char> q;
  std::vector<float> scales, zeros;
  int at(int r, int c) const {
    const unsigned char byte = q[(size_t)r * (k / 2) + c / 2];
    return c % 2 ? byte >> 4 : byte & 15;
  }
  float scale(int r, int c) const { return scales[(size_t)r * groups + c / gs]; }
  float zero(int r, int c) const { return zeros[(size_t)r * groups + c / gs]; }
  int group_size() const { return gs; }
};

Zp make_zp(int n, int k, int gs, std::mt19937& g) {
  Zp out{n, k, gs, (k + gs - 1) / gs, {}, {}, {}};
  std::uniform_int_distribution<int> nib(0, 15), zero(0, 16);
  std::normal_distribution<float> nd(0.f, 1.f);
  out.q.assign((size_t)n * k / 2, 0);
  for (int r = 0; r < n; r++)
    for (int c = 0; c < k; c++) out.q[(size_t)r * (k / 2) + c / 2] |= (unsigned char)(nib(g) << (c % 2 ? 4 : 0));
  out.scales.resize((size_t)n * out.groups);
  out.zeros.resize((size_t)n * out.groups);
  for (auto& v : out.scales) v = 0.01f * std::fabs(nd(g)) + 1e-4f;
  for (auto& v : out.zeros) v = (float)zero(g);
  return out;
}

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
        int q = junk(g) % (2 * qmax + 1) - qmax;  // padding: anything, never let through
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

std::vector<kiln_t> to_t(const std::vector<float>& v) {
  std::vector<kiln_t> out(v.size());
  for (size_t i = 0; i < v.size(); i++) out[i] = kiln::from_float(v[i]);
  return out;
}

using WoKernel = void (*)(const kiln_t*, const unsigned char*, const float*, const kiln_t*, kiln_t*, int, int, int);
using ZpKernel = void (*)(const kiln_t*, const unsigned char*, const float*, const float*, const kiln_t*, kiln_t*,
                          int, int, int, int);
struct Variant {
  const char* name;
  WoKernel wo, wo_gated;  // int-wo: the plain kernel and its gated silu kernel
  ZpKernel zp, zp_gated;  // int4-zp: likewise
  int bm, bn;
  size_t smem;
};

/** Runs v over the first rows of w: the plain kernel for y [m, n], or the gated one for y [m, n = inter]
 * over rows [0, 2·inter) (gate rows, then up rows). */
template <class W>
std::vector<kiln_t> run(const Variant& v, const std::vector<kiln_t>& x, const W& w, const kiln_t* bias, int m, int n,
                        bool gated, unsigned order_seed) {
  std::vector<kiln_t> y((size_t)m * n + 8);
  std::memset(y.data(), 0xff, y.size() * sizeof(kiln_t));  // NaN: an output never stored shows
  const int per_cta = gated ? v.bn / 2 : v.bn;               // output features a CTA
  launch({(unsigned)((m + v.bm - 1) / v.bm), (unsigned)((n + per_cta - 1) / per_cta), 1}, {wog::kThreads, 1, 1},
         [&] {
           if constexpr (std::is_same_v<W, Zp>)
             (gated ? v.zp_gated : v.zp)(x.data(), w.q.data(), w.scales.data(), w.zeros.data(), bias, y.data(), m, n,
                                         w.k, w.gs);
           else
             (gated ? v.wo_gated : v.wo)(x.data(), w.q.data(), w.scales.data(), bias, y.data(), m, n, w.k);
         },
         v.smem, order_seed);
  return y;
}
template <class W>
std::vector<kiln_t> run(const Variant& v, const std::vector<kiln_t>& x, const W& w, const kiln_t* bias, int m,
                        unsigned order_seed) {
  return run(v, x, w, bias, m, w.n, false, order_seed);
}

/** The gated kernel over rows [0, 2·inter) of w, inter = n / 2, against the plain kernel over the same rows
 * then gated_act's arithmetic (silu(round(gate))·round(up), rounded), bit for bit; nothing past y. */
template <class W>
int check_gated(const Variant& v, const std::vector<kiln_t>& x, const W& w, const std::vector<kiln_t>* bias, int m) {
  const int inter = w.n / 2;
  const kiln_t* b = bias ? bias->data() : nullptr;
  const auto plain = run(v, x, w, b, m, 2 * inter, false, 0);
  const auto y = run(v, x, w, b, m, inter, true, 3 + m);
  int bad = 0;
  for (int j = 0; j < m; j++)
    for (int f = 0; f < inter; f++) {
      const float gate = kiln::to_float(plain[(size_t)j * 2 * inter + f]);
      const float up = kiln::to_float(plain[(size_t)j * 2 * inter + inter + f]);
      const kiln_t want = kiln::from_float(__fmul_rn(kiln::Silu::apply(gate), up));
      bad += std::memcmp(&want, &y[(size_t)j * inter + f], sizeof(kiln_t)) != 0;
    }
  for (size_t i = (size_t)m * inter; i < y.size(); i++) {
    unsigned char c[sizeof(kiln_t)];
    std::memcpy(c, &y[i], sizeof c);
    for (unsigned char e : c) bad += e != 0xff;
  }
  printf("%s_gated_silu m %d inter %d k %d%s: %s\n", v.name, m, inter, w.k, bias ? " bias" : "", bad ? "FAIL" : "ok");
  return bad != 0;
}

double g_worst = 0, g_worst_cpu = 0;  // largest |got − want| / its bound

template <class W>
int check(const Variant& v, const std::vector<kiln_t>& x, const W& w, const std::vector<kiln_t>* bias, int m) {
  const auto y = run(v, x, w, bias ? bias->data() : nullptr, m, 0);
  const auto y2 = run(v, x, w, bias ? bias->data() : nullptr, m, 7 + m);
  const double u = std::ldexp(1.0, std::is_same_v<kiln_t, __half> ? -11 : -8);
  const double n_round = 2.0 * ((std::min(w.group_size(), w.k) + 15) / 16 + w.groups + 5);
  int bad = 0, bad_cpu = 0;
  for (int j = 0; j < m; j++)
    for (int r = 0; r < w.n; r++) {
      const double b = bias ? kiln::to_float((*bias)[r]) : 0.0;
      double want = b, cpu = b, abs_sum = std::fabs(b);
      for (int c = 0; c < w.k; c++) {
        const double xv = kiln::to_float(x[(size_t)j * w.k + c]);
        const double qz = (double)w.at(r, c) - w.zero(r, c);
        const double p = xv * qz * (double)w.scale(r, c);
        want += p;
        cpu += xv * (double)((float)qz * w.scale(r, c));  // the CPU backend's fp32 weight
        abs_sum += std::fabs(p);
      }
      cpu = (float)cpu;
      const double got = kiln::to_float(y[(size_t)j * w.n + r]);
      const double bound = n_round * std::ldexp(abs_sum, -24) + u * std::fabs(want) + 1e-30;
      const double bound_cpu = bound + std::ldexp(abs_sum + std::fabs(want), -24);
      const double err = std::fabs(got - want), err_cpu = std::fabs(got - cpu);
      if (!(err <= bound)) bad++;
      if (!(err_cpu <= bound_cpu)) bad_cpu++;
      g_worst = std::max(g_worst, err / bound);
      g_worst_cpu = std::max(g_worst_cpu, err_cpu / bound_cpu);
    }
  for (size_t i = (size_t)m * w.n; i < y.size(); i++) {
    unsigned char b[sizeof(kiln_t)];
    std::memcpy(b, &y[i], sizeof b);
    for (unsigned char c : b) bad += c != 0xff;
  }
  const bool differ = std::memcmp(y.data(), y2.data(), y.size() * sizeof(kiln_t)) != 0;
  printf("%s m %d n %d k %d G %d%s: %s%s%s\n", v.name, m, w.n, w.k, w.group_size(), bias ? " bias" : "",
         bad ? "FAIL" : "ok", bad_cpu ? " (cpu reference: FAIL)" : "", differ ? " (block order changes bits: FAIL)" : "");
  return bad != 0 || bad_cpu != 0 || differ;
}

}  // namespace

#define VARIANT(B, BM, BN, S)                                                                             \
  Variant {                                                                                                \
    "gemm_wo" #B "_m" #BM "n" #BN, gemm_wo##B##_m##BM##n##BN, gemm_wo##B##_m##BM##n##BN##_gated_silu, nullptr, \
        nullptr, BM, BN, (size_t)wog::Layout<B, BM, BN, S>::kBytes                                           \
  }
#define VARIANT_ZP(BM, BN, S)                                                                             \
  Variant {                                                                                                \
    "gemm_zp_m" #BM "n" #BN, nullptr, nullptr, gemm_zp_m##BM##n##BN, gemm_zp_m##BM##n##BN##_gated_silu, BM, BN, \
        (size_t)wog::Layout<4, BM, BN, S>::kBytes                                                             \
  }

int main(int argc, char** argv) {
  // argv[1] (optional): only m of this value (the run script splits the work).
  const int only_m = argc > 1 ? std::atoi(argv[1]) : 0;
  const int ms[] = {9, 16, 17, 64, 100, 256};
  std::mt19937 g(19);
  int fails = 0, shape = 0;
  auto x_for = [&](int m, int k) {
    auto x = to_t(randn((size_t)m * k, 0.5f, g));
    x.resize(x.size() + 64, kiln::from_float(NAN));  // read past the last row or k: NaN outputs
    return x;
  };
  const Variant v8[] = {VARIANT(8, 16, 64, 6), VARIANT(8, 32, 64, 6), VARIANT(8, 64, 128, 3)};
  const Variant v4[] = {VARIANT(4, 16, 64, 6), VARIANT(4, 32, 64, 6), VARIANT(4, 64, 128, 3)};
  for (int bits : {8, 4})
    for (int n : {37, 136})
      for (int k : {8, 264, 1032}) {
        const Quantized qw = quantize(randn((size_t)n * k, 0.05f, g), n, k, bits, g);
        const auto bias = to_t(randn(n, 0.1f, g));
        for (int m : ms) {
          if (only_m && m != only_m) continue;
          const auto x = x_for(m, k);
          for (const Variant& v : bits == 8 ? v8 : v4) {
            fails += check(v, x, qw, shape % 2 ? &bias : nullptr, m);
            fails += check_gated(v, x, qw, shape++ % 2 ? nullptr : &bias, m);
          }
        }
      }
  const Variant vz[] = {VARIANT_ZP(16, 64, 6), VARIANT_ZP(32, 64, 6), VARIANT_ZP(64, 128, 3)};
  for (int n : {37, 136})
    for (auto [k, gs] : {std::pair{96, 32}, {288, 64}, {1056, 128}, {1056, 256}}) {
      const Zp w = make_zp(n, k, gs, g);
      const auto bias = to_t(randn(n, 0.1f, g));
      for (int m : ms) {
        if (only_m && m != only_m) continue;
        const auto x = x_for(m, k);
        for (const Variant& v : vz) {
          fails += check(v, x, w, shape % 2 ? &bias : nullptr, m);
          fails += check_gated(v, x, w, shape++ % 2 ? nullptr : &bias, m);
        }
      }
    }
  printf("worst |got − want| / bound: exact %.3g, cpu %.3g\n", g_worst, g_worst_cpu);
  printf("%s\n", fails ? "FAIL" : "PASS");
  return fails ? 1 : 0;
}
