// Checks attention_prefill.cu on the CPU (fakecuda.h + attention_ptx_emu.h) against a double-precision
// reference of the masking convention in attention_README.md. One build per configuration:
//   -DKILN_DTYPE_BF16|-DKILN_DTYPE_F16|-DKILN_DTYPE_F32 -DHEAD_DIM= -DBLOCK_SIZE= -DNUM_HEADS= -DNUM_KV_HEADS=
//   [-DKILN_PREFILL_SRC='"path"']  the kernel source (default ../attention_prefill.cu; attention_run.sh
//                                  passes a copy with `extern __shared__` rewritten, see fakecuda.h)
//   [-DPREFILL_SMEM_BYTES=n]       dynamic shared memory of the launch (default attn::kSmemElems ·
//                                  sizeof(kiln_t) if the source defines kSmemElems, else 0)
// Packs sequences with query lengths 37, 0, 150, 1 (contexts 37, 5, 195, 70: two with a cached prefix),
// a shuffled block table, NaN in every K/V slot and table entry the kernel must not read, NaN in out
// before the launch (every row must be written) and sentinel rows after it (must stay untouched).
// Launches: window 0 with grid.x = ceil(maxQueryLen / BLOCK_M); window 40 with grid.x = 1 (each CTA
// walks several tiles). Fails (exit 1) when max|out − ref| / max|ref| exceeds 2e-2 (bf16), 4e-3 (fp16),
// 1e-5 (fp32).
// attention_prefill_kv8 (FP8 pools, kv_fp8_ref.h: the CPU's quantization of the same cache, poison rows
// quantized to NaN) in the same runs: against the reference over the dequantized cache (same bounds),
// and, where the kernel computes on the values the plain one would see (fp32: the fp32 dequantized
// values; the tensor-core path: those rounded to kiln_t in shared memory), bit for bit equal to
// attention_prefill over a cache holding those values.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "kv_fp8_ref.h"
#include "paged_cache.h"
#ifndef KILN_PREFILL_SRC
#define KILN_PREFILL_SRC "../attention_prefill.cu"
#endif
#include KILN_PREFILL_SRC

#include <cstdio>
#include <cstring>
#include <utility>
#include <limits>
#include <random>
#include <vector>

// attn::kSmemElems if the kernel source declares it (qualified lookup prefers attn's own member over
// a namespace nominated by a using-directive), else 0.
namespace attn_probe { constexpr int kSmemElems = 0; }
namespace attn { using namespace attn_probe; }

static float dtype_round(float x) { return attn::to_float(attn::from_float(x)); }

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, G = H / HKV;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16"; const double tol = 2e-2;
#elif defined(KILN_DTYPE_F16)
  const char* dt = "f16"; const double tol = 4e-3;
#else
  const char* dt = "f32"; const double tol = 1e-5;
#endif
#ifdef PREFILL_SMEM_BYTES
  const size_t smem_bytes = PREFILL_SMEM_BYTES;
#else
  const size_t smem_bytes = (size_t)attn::kSmemElems * sizeof(kiln_t);
#endif
  const std::vector<int> qlens = {37, 0, 150, 1};
  const std::vector<int> ctxs = {37, 5, 195, 70};
  const int S = (int)qlens.size();
  std::vector<int> qstart(S + 1, 0);
  for (int s = 0; s < S; s++) qstart[s + 1] = qstart[s] + qlens[s];
  const int T = qstart[S];
  int max_q = 0;
  for (int s = 0; s < S; s++) max_q = std::max(max_q, qlens[s]);
  std::mt19937 gen(1000 * D + 100 * BS + 10 * H + HKV);
  std::normal_distribution<float> nd(0.f, 1.f);
  const float nanv = std::numeric_limits<float>::quiet_NaN();
  std::vector<kiln_t> q((size_t)T * H * D);
  for (auto& x : q) x = attn::from_float(nd(gen));
  const PagedCache cache = make_paged_cache(ctxs, BS, HKV, D, 2, gen);
  const int stride = cache.stride, poison = cache.poison;
  const std::vector<kiln_t>&kc = cache.k, &vc = cache.v;
  const std::vector<int>& table = cache.table;
  const float scale = 1.0f / std::sqrt((float)D);
  const int kGuard = 3;  // sentinel rows after the T rows of out

  // max|out − ref| / max|ref| over every row of every sequence with window w, the reference over the fp32
  // pools kf, vf; and the rows with a NaN or infinite element.
  auto reference_error = [&](const std::vector<kiln_t>& out, const std::vector<float>& kf, const std::vector<float>& vf,
                             int w) -> std::pair<double, int> {
    double max_err = 0, max_ref = 0;
    int nan_rows = 0;
    std::vector<double> sc;
    for (int s = 0; s < S; s++) {
      for (int i = 0; i < qlens[s]; i++) {
        const int p = ctxs[s] - qlens[s] + i;
        const int lo = w > 0 ? std::max(0, p - w + 1) : 0;
        for (int h = 0; h < H; h++) {
          const int kvh = h / G;
          const kiln_t* qr = &q[((size_t)(qstart[s] + i) * H + h) * D];
          sc.assign(p + 1 - lo, 0.0);
          double mx = -INFINITY;
          for (int j = lo; j <= p; j++) {
            const size_t slot = (size_t)table[(size_t)s * stride + j / BS] * BS + j % BS;
            double dot = 0;
            for (int d = 0; d < D; d++) dot += (double)attn::to_float(qr[d]) * (kf[(slot * HKV + kvh) * D + d]);
            sc[j - lo] = dot * scale;
            mx = std::max(mx, sc[j - lo]);
          }
          double den = 0;
          for (double& x : sc) { x = std::exp(x - mx); den += x; }
          const kiln_t* orow = &out[((size_t)(qstart[s] + i) * H + h) * D];
          bool row_nan = false;
          for (int d = 0; d < D; d++) {
            double ref = 0;
            for (int j = lo; j <= p; j++) {
              const size_t slot = (size_t)table[(size_t)s * stride + j / BS] * BS + j % BS;
              ref += sc[j - lo] * (vf[(slot * HKV + kvh) * D + d]);
            }
            ref /= den;
            const float got = attn::to_float(orow[d]);
            if (!std::isfinite(got)) { row_nan = true; continue; }
            max_err = std::max(max_err, std::fabs(got - ref));
            max_ref = std::max(max_ref, std::fabs(ref));
          }
          nan_rows += row_nan;
        }
      }
    }
    return {max_ref > 0 ? max_err / max_ref : max_err, nan_rows};
  };
  std::vector<float> kc_f(kc.size()), vc_f(vc.size());
  for (size_t i = 0; i < kc.size(); i++) kc_f[i] = attn::to_float(kc[i]), vc_f[i] = attn::to_float(vc[i]);
  // The FP8 cache the CPU would hold (kv_fp8_ref.h), and its values as the kernel reads them.
  const std::vector<float> kc8_f = kv8_ref::dequantize(kv8_ref::quantize(kc_f, D), D);
  const std::vector<float> vc8_f = kv8_ref::dequantize(kv8_ref::quantize(vc_f, D), D);
#if defined(KILN_DTYPE_F32) || ATTN_PREFILL_TENSOR_CORES
  const bool kv8_exact = true;
#else
  const bool kv8_exact = false;  // the 16-bit generic path keeps fp32 values the plain kernel cannot see
#endif

  struct Run { int window; unsigned grid_x; };
  const Run runs[] = {{0, (unsigned)((max_q + attn::kBlockM - 1) / attn::kBlockM)}, {40, 1u}};
  bool ok = true;
  printf("%s D=%d BLOCK_SIZE=%d H=%d/%d BLOCK_M=%d threads=%d smem=%zu:", dt, D, BS, H, HKV, attn::kBlockM,
         attn::kPrefillThreads, smem_bytes);
  for (const Run& run : runs) {
    const int w = run.window;
    // Poison what the kernel must not read with this window: keys before every row's window.
    std::vector<kiln_t> kw = kc, vw = vc;
    std::vector<int> tw = table;
    if (w > 0) {
      for (int s = 0; s < S; s++) {
        const int lo = std::max(0, ctxs[s] - qlens[s] - w + 1);  // first key any row of s attends
        for (int j = 0; j < lo; j++) {
          const size_t slot = (size_t)table[(size_t)s * stride + j / BS] * BS + j % BS;
          for (int x = 0; x < HKV * D; x++) kw[slot * HKV * D + x] = vw[slot * HKV * D + x] = attn::from_float(nanv);
        }
        for (int b = 0; b < lo / BS; b++) tw[(size_t)s * stride + b] = poison;
      }
    }
    std::vector<kiln_t> out((size_t)(T + kGuard) * H * D, attn::from_float(nanv));
    for (size_t i = (size_t)T * H * D; i < out.size(); i++) out[i] = attn::from_float(12345.f);
    launch({run.grid_x, (unsigned)H, (unsigned)S}, {(unsigned)attn::kPrefillThreads, 1, 1}, [&] {
      attention_prefill(out.data(), q.data(), kw.data(), vw.data(), qstart.data(), ctxs.data(), tw.data(), stride,
                        scale, w);
    }, smem_bytes, 7u + w);

    int guard_bad = 0;
    auto [rel, nan_rows] = reference_error(out, kc_f, vc_f, w);
    for (size_t i = (size_t)T * H * D; i < out.size(); i++) guard_bad += attn::to_float(out[i]) != dtype_round(12345.f);
    // The same launch over FP8 pools (the poisoned cache quantized: NaN rows stay NaN).
    std::vector<float> kw_f(kw.size()), vw_f(vw.size());
    for (size_t i = 0; i < kw.size(); i++) kw_f[i] = attn::to_float(kw[i]), vw_f[i] = attn::to_float(vw[i]);
    const kv8_ref::Pool k8 = kv8_ref::quantize(kw_f, D), v8 = kv8_ref::quantize(vw_f, D);
    std::vector<kiln_t> out8((size_t)(T + kGuard) * H * D, attn::from_float(nanv));
    for (size_t i = (size_t)T * H * D; i < out8.size(); i++) out8[i] = attn::from_float(12345.f);
    launch({run.grid_x, (unsigned)H, (unsigned)S}, {(unsigned)attn::kPrefillThreads, 1, 1}, [&] {
      attention_prefill_kv8(out8.data(), q.data(), k8.data.data(), v8.data.data(), qstart.data(), ctxs.data(),
                            tw.data(), stride, scale, w, k8.scale.data(), v8.scale.data());
    }, smem_bytes, 9u + w);
    auto [rel8, nan_rows8] = reference_error(out8, kc8_f, vc8_f, w);
    for (size_t i = (size_t)T * H * D; i < out8.size(); i++) guard_bad += attn::to_float(out8[i]) != dtype_round(12345.f);
    bool differ8 = false;
    if (kv8_exact) {  // attention_prefill over the dequantized values (rounded to kiln_t) gives the same bits
      const std::vector<float> kd = kv8_ref::dequantize(k8, D), vd = kv8_ref::dequantize(v8, D);
      std::vector<kiln_t> kdt(kd.size()), vdt(vd.size());
      for (size_t i = 0; i < kd.size(); i++) kdt[i] = attn::from_float(kd[i]), vdt[i] = attn::from_float(vd[i]);
      std::vector<kiln_t> outd((size_t)(T + kGuard) * H * D, attn::from_float(nanv));
      for (size_t i = (size_t)T * H * D; i < outd.size(); i++) outd[i] = attn::from_float(12345.f);
      launch({run.grid_x, (unsigned)H, (unsigned)S}, {(unsigned)attn::kPrefillThreads, 1, 1}, [&] {
        attention_prefill(outd.data(), q.data(), kdt.data(), vdt.data(), qstart.data(), ctxs.data(), tw.data(),
                          stride, scale, w);
      }, smem_bytes, 7u + w);
      differ8 = std::memcmp(outd.data(), out8.data(), (size_t)T * H * D * sizeof(kiln_t)) != 0;
    }
    const bool pass = nan_rows == 0 && nan_rows8 == 0 && guard_bad == 0 && rel <= tol && rel8 <= tol && !differ8;
    ok &= pass;
    printf("  w=%d grid.x=%u rel=%.2e kv8 rel=%.2e%s", w, run.grid_x, rel, rel8, kv8_exact ? " =plain" : "");
    if (differ8) printf(" kv8 not the plain kernel's bits over the dequantized cache");
    if (nan_rows || nan_rows8) printf(" unwritten/NaN rows=%d kv8 %d", nan_rows, nan_rows8);
    if (guard_bad) printf(" written past T=%d", guard_bad);
    if (!pass) printf(" (FAIL, tol %.0e)", tol);
  }
  printf("  %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
