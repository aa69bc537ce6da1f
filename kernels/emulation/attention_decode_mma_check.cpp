// Checks attention_decode_mma.cu on the CPU (fakecuda.h fibers, attention_ptx_emu.h for cp.async,
// ldmatrix(.trans) and mma.sync fragment layouts) against a double-precision reference: one query per
// sequence at position ctx − 1 (attention_README.md, "attention_decode_mma"). One build per configuration
// (-DKILN_DTYPE_BF16|F16 -DHEAD_DIM -DBLOCK_SIZE -DNUM_HEADS -DNUM_KV_HEADS [-DKILN_DECODE_MMA_SRC='"path"']).
// Contexts 1, 15, 16, 17, 100, 0 (padding row: zeros), 300, 64, 2, 129, 0, 65, 128, 1, 1000, 63; shuffled
// block table; NaN in every K/V slot and table entry that must not be read (and, with a window, in the
// keys before it). Runs: windows 0, 5 and 70 (lo off a tile boundary, two tiles) × the [S, stride] and
// [stride, S] (step S) tables, CTAs in shuffled orders; context splits 3 and 8 (the last CTA of each
// (sequence, kv head) merging the partials, which start as NaN; the counters must end at zero) on
// w 0 [S, stride] and w 70 [stride, S]; then the profiling stops 1 and 2 must run to the end. One line each for the entry attention_decode_mma and for its body with one K/V stage more
// (decode_mma_deeper, built here only), whose outputs must be the entry's bit for bit: the pipeline depth
// moves copies, never arithmetic.
// Per element the error must stay within the README's bound (P rounded to the dtype before P·V):
//   1e-5·max(absOut) + u·(absOut + |out|) [+ fp16: keys·2⁻²⁵·max|v|],  absOut = Σ_j w_j |v_j|,
// u = 2⁻⁸ (bf16), 2⁻¹¹ (fp16). Prints the largest error / bound; exit 1 on a failure.
#include "fakecuda.h"
#include "attention_ptx_emu.h"
#include "paged_cache.h"
#ifndef KILN_DECODE_MMA_SRC
#define KILN_DECODE_MMA_SRC "../attention_decode_mma.cu"
#endif
#include KILN_DECODE_MMA_SRC
#include "kv_fp8_ref.h"

// attention_decode_mma's body with one stage more in flight: the same arguments, the same call.
static void decode_mma_deeper(kiln_t* out, float* partial_acc, float* partial_m, float* partial_l,
                              int* split_counter, const kiln_t* q, const kiln_t* k_cache, const kiln_t* v_cache,
                              const int* context_len, const int* block_tables, int block_table_stride,
                              int block_table_step, int num_splits, float scale, int sliding_window, int trigger,
                              int stop) {
  const attn::MmaPartials partials = {partial_acc, partial_m, partial_l, num_splits, (int)blockIdx.z};
  attn::decode_mma<attn::kMmaStages + 1, false>(out, partials, split_counter, q, k_cache, v_cache, context_len,
                                                block_tables, block_table_stride, block_table_step, scale,
                                                sliding_window, trigger, stop, attn::RopeIn{});
}

// attention_decode_mma_kv8's body with one stage more in flight.
static void decode_mma_kv8_deeper(kiln_t* out, float* partial_acc, float* partial_m, float* partial_l,
                                  int* split_counter, const kiln_t* q, const unsigned char* k_cache,
                                  const unsigned char* v_cache, const int* context_len, const int* block_tables,
                                  int block_table_stride, int block_table_step, int num_splits, float scale,
                                  int sliding_window, int trigger, int stop, const float* k_scale,
                                  const float* v_scale) {
  const attn::MmaPartials partials = {partial_acc, partial_m, partial_l, num_splits, (int)blockIdx.z};
  attn::decode_mma_kv8<attn::kMmaStages + 1>(out, partials, split_counter, q, k_cache, v_cache, context_len,
                                             block_tables, block_table_stride, block_table_step, scale,
                                             sliding_window, trigger, stop, k_scale, v_scale);
}

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

int main() {
  constexpr int D = HEAD_DIM, H = NUM_HEADS, HKV = NUM_KV_HEADS, BS = BLOCK_SIZE, G = H / HKV;
#if defined(KILN_DTYPE_BF16)
  const char* dt = "bf16"; const double u = std::ldexp(1.0, -8); const bool fp16 = false;
#else
  const char* dt = "f16"; const double u = std::ldexp(1.0, -11); const bool fp16 = true;
#endif
  const std::vector<int> ctxs = {1, 15, 16, 17, 100, 0, 300, 64, 2, 129, 0, 65, 128, 1, 1000, 63};
  const int S = (int)ctxs.size();
  std::mt19937 gen(9000 + 1000 * D + 100 * BS + 10 * H + HKV);
  std::normal_distribution<float> nd(0.f, 1.f);
  const float nanv = std::numeric_limits<float>::quiet_NaN();
  std::vector<kiln_t> q((size_t)S * H * D);
  for (auto& x : q) x = attn::from_float(nd(gen));
  const PagedCache cache = make_paged_cache(ctxs, BS, HKV, D, 1, gen);
  const int stride = cache.stride, poison = cache.poison;
  const float scale = 1.0f / std::sqrt((float)D);

  // Entries over 16-bit pools (fn) or FP8 pools (fn8: the pools as the CPU quantizes them, kv_fp8_ref.h);
  // a deeper one must give its base entry's bits.
  struct Entry {
    const char* name;
    decltype(&attention_decode_mma) fn;
    decltype(&attention_decode_mma_kv8) fn8;
    size_t smem;
  };
  const Entry entries[] = {
      {"decode_mma", attention_decode_mma, nullptr, sizeof(attn::MmaSmem<attn::kMmaStages>)},
      {"decode_mma_deeper", decode_mma_deeper, nullptr, sizeof(attn::MmaSmem<attn::kMmaStages + 1>)},
      {"decode_mma_kv8", nullptr, attention_decode_mma_kv8, sizeof(attn::MmaSmemKv8<attn::kMmaStages>)},
      {"decode_mma_kv8_deeper", nullptr, decode_mma_kv8_deeper, sizeof(attn::MmaSmemKv8<attn::kMmaStages + 1>)}};
  std::vector<std::vector<kiln_t>> entry_outs;  // the base entry's outputs, run by run
  bool all_ok = true;
  const char* only = std::getenv("KILN_MMA_CHECK");  // "plain" or "kv8": those entries alone
  for (const Entry& entry : entries) {
    const bool fp8 = entry.fn8 != nullptr;
    const bool first = std::strstr(entry.name, "_deeper") == nullptr;  // a base entry
    if (only != nullptr && std::strcmp(only, fp8 ? "kv8" : "plain") != 0) continue;
    if (first) entry_outs.clear();
    bool ok = true;
    int run = 0, differ = 0;
    printf("%s %s D=%d BLOCK_SIZE=%d H=%d/%d smem=%zu:", entry.name, dt, D, BS, H, HKV, entry.smem);
    for (int w : {0, 5, 70}) {
      for (bool transposed : {false, true}) {
      // Context splits: 3 and 8 on two of the layouts (w 0 [S, stride], w 70 [stride, S]), else one.
      for (int splits : {1, 3, 8}) {
        if (splits > 1 && !((w == 0 && !transposed) || (w == 70 && transposed))) continue;
        std::vector<kiln_t> kw = cache.k, vw = cache.v;
        std::vector<int> tw = cache.table;
        if (w > 0) {  // keys before the window and their table entries must not be read
          for (int s = 0; s < S; s++) {
            const int lo = std::max(0, ctxs[s] - w);
            for (int j = 0; j < lo; j++) {
              const size_t slot = (size_t)cache.table[(size_t)s * stride + j / BS] * BS + j % BS;
              for (int x = 0; x < HKV * D; x++) kw[slot * HKV * D + x] = vw[slot * HKV * D + x] = attn::from_float(nanv);
            }
            for (int b = 0; b < lo / BS; b++) tw[(size_t)s * stride + b] = poison;
          }
        }
        int tstride = stride, tstep = 1;
        if (transposed) {  // [stride, S]: entry j of s at j * S + s
          std::vector<int> t2((size_t)stride * S);
          for (int s = 0; s < S; s++)
            for (int j = 0; j < stride; j++) t2[(size_t)j * S + s] = tw[(size_t)s * stride + j];
          tw = t2; tstride = 1; tstep = S;
        }
        // FP8 pools: the CPU's quantization of these pools (poison rows quantize to NaN), and the values
        // the reference reads, fp32(e4m3 · scale); 16-bit pools: the values as stored.
        std::vector<float> kf(kw.size()), vf(vw.size());
        for (size_t i = 0; i < kw.size(); i++) { kf[i] = attn::to_float(kw[i]); vf[i] = attn::to_float(vw[i]); }
        kv8_ref::Pool k8, v8;
        if (fp8) {
          k8 = kv8_ref::quantize(kf, D);
          v8 = kv8_ref::quantize(vf, D);
          kf = kv8_ref::dequantize(k8, D);
          vf = kv8_ref::dequantize(v8, D);
        }
        std::vector<kiln_t> o((size_t)S * H * D, attn::from_float(nanv));
        // Split launches: partials poisoned with NaN (an unwritten one read by the merge shows), counters
        // zero, and zero again after the launch.
        std::vector<float> pacc((size_t)S * H * splits * D, nanv), pm((size_t)S * H * splits, nanv),
            pl((size_t)S * H * splits, nanv);
        std::vector<int> counters((size_t)S * HKV, 0);
        const bool split = splits > 1;
        launch({(unsigned)HKV, (unsigned)S, (unsigned)splits}, {(unsigned)attn::kMmaThreads, 1, 1}, [&] {
          if (fp8)
            entry.fn8(o.data(), split ? pacc.data() : nullptr, split ? pm.data() : nullptr, split ? pl.data() : nullptr,
                      split ? counters.data() : nullptr, q.data(), k8.data.data(), v8.data.data(), ctxs.data(),
                      tw.data(), tstride, tstep, splits, scale, w, 1, 0, k8.scale.data(), v8.scale.data());
          else
            entry.fn(o.data(), split ? pacc.data() : nullptr, split ? pm.data() : nullptr, split ? pl.data() : nullptr,
                     split ? counters.data() : nullptr, q.data(), kw.data(), vw.data(), ctxs.data(), tw.data(), tstride,
                     tstep, splits, scale, w, 1, 0);
        }, entry.smem, 17u + (unsigned)w + 2u * transposed + 5u * (unsigned)splits);
        int counted = 0;
        for (int c : counters) counted += c != 0;
        if (first) entry_outs.push_back(o);
        else if (std::memcmp(o.data(), entry_outs[run].data(), o.size() * sizeof(kiln_t)) != 0) differ++;
        run++;

        // The reference (double) over the pools as stored, and the worst error / bound.
        double worst = 0;
        int bad = 0;
        for (int s = 0; s < S; s++) {
          const int ctx = ctxs[s], lo = w > 0 ? std::max(0, ctx - w) : 0;
          for (int h = 0; h < H; h++) {
            const int kvh = h / G;
            std::vector<double> p;
            std::vector<size_t> rows;
            double mx = -INFINITY;
            for (int j = lo; j < ctx; j++) {
              const size_t slot = (size_t)cache.table[(size_t)s * stride + j / BS] * BS + j % BS;
              rows.push_back((slot * HKV + kvh) * D);
              double dot = 0;
              for (int d = 0; d < D; d++)
                dot += (double)attn::to_float(q[((size_t)s * H + h) * D + d]) * kf[rows.back() + d];
              p.push_back(dot * scale);
              mx = std::max(mx, dot * scale);
            }
            double den = 0;
            for (double& x : p) { x = std::exp(x - mx); den += x; }
            double max_abs = 0, max_v = 0;
            std::vector<double> ref(D, 0.0), abs_out(D, 0.0);
            for (int d = 0; d < D; d++) {
              for (size_t j = 0; j < rows.size(); j++) {
                const double v = vf[rows[j] + d];
                ref[d] += p[j] * v / den;
                abs_out[d] += p[j] * std::fabs(v) / den;
                max_v = std::max(max_v, std::fabs(v));
              }
              max_abs = std::max(max_abs, abs_out[d]);
            }
            for (int d = 0; d < D; d++) {
              const double got = attn::to_float(o[((size_t)s * H + h) * D + d]);
              // FP8 pools in fp16: V rounded once more, to kiln_t, before P·V (bf16: V's scale on P,
              // V exact: the plain bound)
              double bound = 1e-5 * max_abs + u * ((fp8 && fp16 ? 2 : 1) * abs_out[d] + std::fabs(got));
              if (fp16) bound += (double)rows.size() * std::ldexp(1.0, -25) * max_v;
              if (ctx == 0) bound = 0;  // a padding row: exact zeros
              const double err = std::fabs(got - ref[d]);
              if (!std::isfinite(got) || err > bound) bad++;
              if (bound > 0) worst = std::max(worst, err / bound);
            }
          }
        }
        ok &= bad == 0 && counted == 0;
        printf("  w=%d%s", w, transposed ? " [stride,S]" : "");
        if (split) printf(" %d splits", splits);
        printf(" err/bound=%.2f", worst);
        if (bad) printf(" (FAIL: %d elements)", bad);
        if (counted) printf(" (FAIL: %d counters left non-zero)", counted);
      }
      }
    }
    if (!first) {
      printf("  %s", differ ? "differs from its base entry" : "same bits as its base entry");
      if (differ) printf(" (FAIL: %d runs)", differ);
      ok &= differ == 0;
    }
    // The profiling stops leave every CTA at the same point, and nothing hangs.
    std::vector<kiln_t> o((size_t)S * H * D);
    const std::vector<unsigned char> bytes(cache.k.size(), 0);
    const std::vector<float> scales(cache.k.size() / D, 1.f);
    for (int stop = 1; stop <= 2; stop++)
      launch({(unsigned)HKV, (unsigned)S, 1}, {(unsigned)attn::kMmaThreads, 1, 1}, [&] {
        if (fp8)
          entry.fn8(o.data(), nullptr, nullptr, nullptr, nullptr, q.data(), bytes.data(), bytes.data(), ctxs.data(),
                    cache.table.data(), stride, 1, 1, scale, 0, 1, stop, scales.data(), scales.data());
        else
          entry.fn(o.data(), nullptr, nullptr, nullptr, nullptr, q.data(), cache.k.data(), cache.v.data(), ctxs.data(),
                   cache.table.data(), stride, 1, 1, scale, 0, 1, stop);
      }, entry.smem, 3u);
    printf("  %s\n", ok ? "PASS" : "FAIL");
    all_ok &= ok;
  }
  return all_ok ? 0 : 1;
}
