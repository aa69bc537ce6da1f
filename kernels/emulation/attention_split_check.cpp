// Checks the split mode of attention_prefill.cu (attention_prefill_split, then
// attention_prefill_merge) on the CPU (fakecuda.h + attention_ptx_emu.h) against a double-precision
// reference, element by element within attention_README.md's bound. One build per configuration:
//   -DKILN_DTYPE_BF16|-DKILN_DTYPE_F16|-DKILN_DTYPE_F32 -DHEAD_DIM= -DBLOCK_SIZE= -DNUM_HEADS= -DNUM_KV_HEADS=
//   [-DKILN_PREFILL_SRC='"path"']  the kernel source (attention_split_run.sh passes a dyn_shared copy)
//   [-DSPLIT_PACK=1]               the short pack (contexts ≤ 300) instead of the long one
// The launch is a mixed step's: sequence 0 is a leading decode row the launch must not touch (its out
// row stays a sentinel), and the kernels get query_start, context_len and the tables offset by one, so
// the partial rows start at query_start[0] = 1. The long pack: (query rows, context) (1, 4100),
// (17, 300), (128, 2176), (200, 4100), (0, 64), (3, 3): cached prefixes, an empty sequence, and
// sequences whose later splits are empty. Windows 0 and 100 (with 100 most splits of the long contexts
// hold no key a row may see, and tiles of 200 rows have rows fully masked in a split); splits 1, 2, 5,
// 16 (SPLITS overrides), CTAs in a shuffled order. The partials start as NaN (the merge may read only
// what the splits wrote), out as NaN (every row written) with sentinel rows around it.
// The `_kv8` twin (FP8 pools, kv_fp8_ref.h) at 1 split and the most: where the kernel computes on the
// values the plain one would see (fp32; the tensor-core path, those rounded to kiln_t), its output
// after the merge must be the plain split kernel's over a cache holding those values, bit for bit.
// Fails (exit 1) when an element is outside the bound, or splits = 1 differs from attention_prefill (the
// unsplit kernel) in any bit, or the `_kv8` twin from the plain kernel. Prints, per run, the worst
// error / bound and the largest difference from the unsplit kernel in units of the same bound.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "kv_fp8_ref.h"
#include "paged_cache.h"
#ifndef KILN_PREFILL_SRC
#define KILN_PREFILL_SRC "../attention_prefill.cu"
#endif
#include KILN_PREFILL_SRC
#ifndef SPLIT_PACK
#define SPLIT_PACK 0
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

namespace attn_probe { constexpr int kSmemElems = 0; }
namespace attn { using namespace attn_probe; }

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, G = H / HKV;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16"; const double u = 1.0 / 256;
#elif defined(KILN_DTYPE_F16)
  const char* dt = "f16"; const double u = 1.0 / 2048;
#else
  const char* dt = "f32"; const double u = 0;
#endif
  const size_t smem_bytes = (size_t)attn::kSmemElems * sizeof(kiln_t);
#if SPLIT_PACK == 1
  const std::vector<int> qlens = {1, 1, 17, 40, 0, 3};
  const std::vector<int> ctxs = {40, 300, 300, 200, 64, 3};
#else
  const std::vector<int> qlens = {1, 1, 17, 128, 200, 0, 3};
  const std::vector<int> ctxs = {40, 4100, 300, 2176, 4100, 64, 3};
#endif
  std::vector<int> split_counts = {1, 2, 5, 16};
  if (const char* e = std::getenv("SPLITS")) {
    split_counts.clear();
    std::istringstream in(e);
    for (int x; in >> x;) split_counts.push_back(x);
  }
  const int S = (int)qlens.size();
  std::vector<int> qstart(S + 1, 0);
  for (int s = 0; s < S; s++) qstart[s + 1] = qstart[s] + qlens[s];
  const int T = qstart[S];
  const int rows = T - qstart[1];  // the launch's rows: sequences [1, S)
  int max_q = 0;
  for (int s = 1; s < S; s++) max_q = std::max(max_q, qlens[s]);
  std::mt19937 gen(1000 * D + 100 * BS + 10 * H + HKV);
  std::normal_distribution<float> nd(0.f, 1.f);
  const float nanv = std::numeric_limits<float>::quiet_NaN();
  std::vector<kiln_t> q((size_t)T * H * D);
  for (auto& x : q) x = attn::from_float(nd(gen));
  const PagedCache cache = make_paged_cache(ctxs, BS, HKV, D, 2, gen);
  const int stride = cache.stride;
  const float scale = 1.0f / std::sqrt((float)D);
  double max_v = 0;
  for (const kiln_t& x : cache.v) if (std::isfinite(attn::to_float(x))) max_v = std::max(max_v, (double)std::fabs(attn::to_float(x)));

  // The reference for window w: ref and absOut = Σ w_j |v_j| per element of the launch's rows.
  auto reference = [&](int w, std::vector<double>& ref, std::vector<double>& abs_out, std::vector<int>& keys) {
    ref.assign((size_t)T * H * D, 0);
    abs_out.assign(ref.size(), 0);
    keys.assign((size_t)T * H, 0);
    std::vector<double> sc;
    for (int s = 1; s < S; s++) {
      for (int i = 0; i < qlens[s]; i++) {
        const int p = ctxs[s] - qlens[s] + i;
        const int lo = w > 0 ? std::max(0, p - w + 1) : 0;
        for (int h = 0; h < H; h++) {
          const int kvh = h / G;
          const size_t row = (size_t)(qstart[s] + i) * H + h;
          const kiln_t* qr = &q[row * D];
          sc.assign(p + 1 - lo, 0.0);
          double mx = -INFINITY;
          for (int j = lo; j <= p; j++) {
            const size_t slot = (size_t)cache.table[(size_t)s * stride + j / BS] * BS + j % BS;
            double dot = 0;
            for (int d = 0; d < D; d++) dot += (double)attn::to_float(qr[d]) * attn::to_float(cache.k[(slot * HKV + kvh) * D + d]);
            sc[j - lo] = (double)(float)(dot * scale);
            mx = std::max(mx, sc[j - lo]);
          }
          double den = 0;
          for (double& x : sc) { x = std::exp(x - mx); den += x; }
          keys[row] = p + 1 - lo;
          for (int j = lo; j <= p; j++) {
            const size_t slot = (size_t)cache.table[(size_t)s * stride + j / BS] * BS + j % BS;
            const double wj = sc[j - lo] / den;
            for (int d = 0; d < D; d++) {
              const double v = attn::to_float(cache.v[(slot * HKV + kvh) * D + d]);
              ref[row * D + d] += wj * v;
              abs_out[row * D + d] += wj * std::fabs(v);
            }
          }
        }
      }
    }
  };

  // The launch over sequences [1, S): metadata offset by one, as attention_launcher.ts passes it.
  const int* qs1 = qstart.data() + 1;
  const int* ctx1 = ctxs.data() + 1;
  const int* tab1 = cache.table.data() + stride;
  const unsigned tiles_x = (unsigned)((max_q + attn::kBlockM - 1) / attn::kBlockM);
  const unsigned threads = (unsigned)attn::kPrefillThreads;
  const kiln_t sentinel = attn::from_float(12345.f);
  auto fresh_out = [&] {
    std::vector<kiln_t> out((size_t)(T + 1) * H * D, attn::from_float(nanv));
    for (int x = 0; x < H * D; x++) out[x] = sentinel;                   // row 0: the leading decode
    for (size_t x = (size_t)T * H * D; x < out.size(); x++) out[x] = sentinel;  // a guard row after T
    return out;
  };

  // The split launch with window w and the merge over sequences [1, S); `kernel` launches the split
  // kernel given the output and its partials (acc, m, l).
  auto run_split = [&](int w, int splits, auto kernel) {
    const size_t np = (size_t)rows * H * splits;
    std::vector<float> acc(np * D, nanv), pm(np, nanv), pl(np, nanv);
    std::vector<kiln_t> out = fresh_out();
    launch({tiles_x * splits, (unsigned)H, (unsigned)(S - 1)}, {threads, 1, 1}, [&] {
      kernel(out.data(), acc.data(), pm.data(), pl.data());
    }, smem_bytes, 11u + splits + w);
    if (splits > 1) {
      launch({7u, 1u, 1u}, {128u, 1u, 1u}, [&] {  // a grid smaller than the items: the grid-stride loop
        attention_prefill_merge(out.data(), acc.data(), pm.data(), pl.data(), qs1, S - 1, splits);
      });
    }
    return out;
  };

  bool ok = true;
  printf("%s D=%d BLOCK_SIZE=%d H=%d/%d pack=%d BLOCK_M=%d BLOCK_N=%d:\n", dt, D, BS, H, HKV, SPLIT_PACK,
         attn::kBlockM, attn::kBlockN);
  for (const int w : {0, 100}) {
    std::vector<double> ref, abs_out;
    std::vector<int> keys;
    reference(w, ref, abs_out, keys);
    double max_abs = 0;
    for (double a : abs_out) max_abs = std::max(max_abs, a);
    // attention_README.md's bound per element: fp32 part + u·(absOut + |out|) (+ fp16's subnormal weights).
    auto bound = [&](size_t e) {
      double b = 1e-5 * max_abs + u * (abs_out[e] + std::fabs(ref[e]));
#if defined(KILN_DTYPE_F16)
      b += keys[e / D] * std::ldexp(1.0, -25) * max_v;
#endif
      return b;
    };
    std::vector<kiln_t> plain = fresh_out();
    launch({tiles_x, (unsigned)H, (unsigned)(S - 1)}, {threads, 1, 1}, [&] {
      attention_prefill(plain.data(), q.data(), cache.k.data(), cache.v.data(), qs1, ctx1, tab1, stride, scale, w);
    }, smem_bytes, 5u + w);
    for (const int splits : split_counts) {
      std::vector<kiln_t> out = run_split(w, splits, [&](kiln_t* o, float* acc, float* pm, float* pl) {
        attention_prefill_split(o, q.data(), cache.k.data(), cache.v.data(), qs1, ctx1, tab1, stride, scale, w, acc,
                                pm, pl, splits);
      });
      double worst = 0, vs_plain = 0;
      int bad = 0, guard_bad = 0;
      for (int x = 0; x < H * D; x++) guard_bad += std::memcmp(&out[x], &sentinel, sizeof(kiln_t)) != 0;
      for (size_t x = (size_t)T * H * D; x < out.size(); x++) guard_bad += std::memcmp(&out[x], &sentinel, sizeof(kiln_t)) != 0;
      for (size_t e = (size_t)qstart[1] * H * D; e < (size_t)T * H * D; e++) {
        const double got = attn::to_float(out[e]);
        const double b = bound(e);
        const double r = std::isfinite(got) ? std::fabs(got - ref[e]) / b : INFINITY;
        worst = std::max(worst, r);
        bad += !(r <= 1.0);
        vs_plain = std::max(vs_plain, std::fabs(got - attn::to_float(plain[e])) / b);
      }
      const bool same = std::memcmp(out.data(), plain.data(), out.size() * sizeof(kiln_t)) == 0;
      const bool pass = bad == 0 && guard_bad == 0 && (splits > 1 || same);
      ok &= pass;
      printf("  w=%d splits=%d: max err/bound %.3f, |split - unsplit|/bound %.3f%s%s%s%s\n", w, splits, worst, vs_plain,
             same ? " (= unsplit bits)" : "", bad ? " elements out of bound" : "", guard_bad ? " rows outside written" : "",
             pass ? "" : "  FAIL");
    }
  }
  // The `_kv8` twin against the plain split kernel over the cache it reads (poison rows quantized to NaN).
#if defined(KILN_DTYPE_F32) || ATTN_PREFILL_TENSOR_CORES
  std::vector<float> kf(cache.k.size()), vf(cache.v.size());
  for (size_t i = 0; i < kf.size(); i++) kf[i] = attn::to_float(cache.k[i]), vf[i] = attn::to_float(cache.v[i]);
  const kv8_ref::Pool k8 = kv8_ref::quantize(kf, D), v8 = kv8_ref::quantize(vf, D);
  const std::vector<float> kd = kv8_ref::dequantize(k8, D), vd = kv8_ref::dequantize(v8, D);
  std::vector<kiln_t> kdt(kd.size()), vdt(vd.size());
  for (size_t i = 0; i < kd.size(); i++) kdt[i] = attn::from_float(kd[i]), vdt[i] = attn::from_float(vd[i]);
  for (const int w : {0, 100}) {
    for (const int splits : {1, split_counts.back()}) {
      const std::vector<kiln_t> o8 = run_split(w, splits, [&](kiln_t* o, float* acc, float* pm, float* pl) {
        attention_prefill_split_kv8(o, q.data(), k8.data.data(), v8.data.data(), qs1, ctx1, tab1, stride, scale, w,
                                    acc, pm, pl, splits, k8.scale.data(), v8.scale.data());
      });
      const std::vector<kiln_t> od = run_split(w, splits, [&](kiln_t* o, float* acc, float* pm, float* pl) {
        attention_prefill_split(o, q.data(), kdt.data(), vdt.data(), qs1, ctx1, tab1, stride, scale, w, acc, pm, pl,
                                splits);
      });
      const bool same = std::memcmp(o8.data(), od.data(), o8.size() * sizeof(kiln_t)) == 0;
      bool finite = true;
      for (size_t e = (size_t)qstart[1] * H * D; e < (size_t)T * H * D; e++) finite &= std::isfinite(attn::to_float(o8[e]));
      ok &= same && finite;
      printf("  kv8 w=%d splits=%d: %s%s\n", w, splits, same ? "= the plain split kernel's bits over the dequantized cache" : "differs from the plain split kernel",
             same && finite ? "" : "  FAIL");
    }
  }
#endif
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
