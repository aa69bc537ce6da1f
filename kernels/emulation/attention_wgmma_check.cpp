// Checks attention_prefill_wgmma.cu on the CPU (fakecuda.h + attention_ptx_emu.h + attention_wgmma_emu.h)
// against a double-precision reference of the masking convention in attention_README.md. One build per
// configuration:
//   -DKILN_DTYPE_BF16|-DKILN_DTYPE_F16 -DHEAD_DIM=64|128 -DBLOCK_SIZE= -DNUM_HEADS= -DNUM_KV_HEADS=
//   [-DKILN_PREFILL_SRC='"path"']  the kernel source (attention_wgmma_run.sh passes a copy with
//                                  `extern __shared__` rewritten, see fakecuda.h)
// Packs sequences with query lengths 1, 17, 64, 65, 200, 0, 1 (contexts 70, 17, 100, 65, 333, 5, 1: cached
// prefixes of 69, 36 and 133 tokens; a query tile of 128 rows ends inside the sequence of 200, one of 65
// crosses the two warpgroups' halves), a shuffled block table, NaN in every K/V slot and table entry the
// kernel must not read, NaN in out before the launch (every row must be written) and sentinel rows after
// it (must stay untouched). Launches: window 0 with grid.x = ceil(maxQueryLen / 128); window 40 and
// window 150 with grid.x = 1 (each CTA walks several query tiles; 150 crosses key tiles). Fails (exit 1)
// when a row's max|out − ref| / max|ref| exceeds 2e-2 (bf16) or 4e-3 (fp16), attention_check.cpp's bounds
// (which it applies over all rows at once).
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "attention_wgmma_emu.h"
#include "paged_cache.h"
#ifndef KILN_PREFILL_SRC
#define KILN_PREFILL_SRC "../attention_prefill_wgmma.cu"
#endif
#include KILN_PREFILL_SRC

#include <cstdio>
#include <limits>
#include <random>
#include <utility>
#include <vector>

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, G = H / HKV;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16"; const double tol = 2e-2;
#else
  const char* dt = "f16"; const double tol = 4e-3;
#endif
  const size_t smem_bytes = (size_t)attn::wg::kSmemElems * sizeof(kiln_t);
  const std::vector<int> qlens = {1, 17, 64, 65, 200, 0, 1};
  const std::vector<int> ctxs = {70, 17, 100, 65, 333, 5, 1};
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
  const std::vector<int>& table = cache.table;
  const float scale = 1.0f / std::sqrt((float)D);
  const int kGuard = 3;  // sentinel rows after the T rows of out

  // The largest over rows (every row of every sequence, every head) of max|out − ref| / max|ref| within the
  // row (row-wise, so that rows of long contexts, whose outputs are averages and small, count as much as
  // any), for window w; and the rows with a NaN or infinite element.
  auto reference_error = [&](const std::vector<kiln_t>& out, int w) -> std::pair<double, int> {
    double worst = 0;
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
            for (int d = 0; d < D; d++) dot += (double)attn::to_float(qr[d]) * attn::to_float(cache.k[(slot * HKV + kvh) * D + d]);
            sc[j - lo] = dot * scale;
            mx = std::max(mx, sc[j - lo]);
          }
          double den = 0;
          for (double& x : sc) { x = std::exp(x - mx); den += x; }
          const kiln_t* orow = &out[((size_t)(qstart[s] + i) * H + h) * D];
          bool row_nan = false;
          double max_err = 0, max_ref = 0;
          for (int d = 0; d < D; d++) {
            double ref = 0;
            for (int j = lo; j <= p; j++) {
              const size_t slot = (size_t)table[(size_t)s * stride + j / BS] * BS + j % BS;
              ref += sc[j - lo] * attn::to_float(cache.v[(slot * HKV + kvh) * D + d]);
            }
            ref /= den;
            const float got = attn::to_float(orow[d]);
            if (!std::isfinite(got)) { row_nan = true; continue; }
            max_err = std::max(max_err, std::fabs(got - ref));
            max_ref = std::max(max_ref, std::fabs(ref));
          }
          nan_rows += row_nan;
          worst = std::max(worst, max_ref > 0 ? max_err / max_ref : max_err);
        }
      }
    }
    return {worst, nan_rows};
  };

  struct Run { int window; unsigned grid_x; };
  const Run runs[] = {{0, (unsigned)((max_q + attn::wg::kBlockM - 1) / attn::wg::kBlockM)}, {40, 1u}, {150, 1u}};
  bool ok = true;
  printf("wgmma %s D=%d BLOCK_SIZE=%d H=%d/%d BLOCK_M=%d threads=%d stages=%d smem=%zu:", dt, D, BS, H, HKV,
         attn::wg::kBlockM, attn::wg::kThreads, attn::wg::kStages, smem_bytes);
  for (const Run& run : runs) {
    const int w = run.window;
    // Poison what the kernel must not read with this window: keys before every row's window.
    std::vector<kiln_t> kw = cache.k, vw = cache.v;
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
    launch({run.grid_x, (unsigned)H, (unsigned)S}, {(unsigned)attn::wg::kThreads, 1, 1}, [&] {
      attention_prefill_wgmma(out.data(), q.data(), kw.data(), vw.data(), qstart.data(), ctxs.data(), tw.data(), stride,
                              scale, w);
    }, smem_bytes, 7u + w);
    int guard_bad = 0;
    auto [rel, nan_rows] = reference_error(out, w);
    for (size_t i = (size_t)T * H * D; i < out.size(); i++)
      guard_bad += attn::to_float(out[i]) != attn::to_float(attn::from_float(12345.f));
    const bool pass = nan_rows == 0 && guard_bad == 0 && rel <= tol;
    ok &= pass;
    printf("  w=%d grid.x=%u rel=%.2e", w, run.grid_x, rel);
    if (nan_rows) printf(" unwritten/NaN rows=%d", nan_rows);
    if (guard_bad) printf(" written past T=%d", guard_bad);
    if (!pass) printf(" (FAIL, tol %.0e)", tol);
  }
  printf("  %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
