// Checks sampling.cu's sample_topk_topp on the CPU (fakecuda.h) against a literal C++ port of draw()
// in src/backends/cpu/decoding.ts and counter_rng.ts: identical tokens, log-probs within 1e-5, for the
// runtime's slices per row and other slice / CTA layouts (one line each).
// Usage: ./run.sh [rows] [flat]   ("flat": high temperatures, ties, top-k > 1024: the multi-chunk walks)
#include "fakecuda.h"
#include "../sampling.cu"
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <numeric>
// ---- reference (decoding.ts / counter_rng.ts / sampling_math.ts), ported literally ----
static uint32_t rmix32(uint32_t x) { x ^= x >> 16; x *= 0x21f0aaadu; x ^= x >> 15; x *= 0x735a2d97u; x ^= x >> 15; return x; }
static uint32_t rhash(double seed, uint32_t seq, uint32_t step, uint32_t draw, uint32_t lane) {
  uint32_t lo = (uint32_t)(uint64_t)std::fmod(seed, 4294967296.0); uint32_t hi = (uint32_t)(uint64_t)std::floor(seed / 4294967296.0);
  uint32_t h = rmix32(lo ^ 0x9e3779b9u); h = rmix32(h ^ hi); h = rmix32(h ^ seq); h = rmix32(h ^ step); h = rmix32(h ^ draw); return rmix32(h ^ lane);
}
static double runiform(double seed, int seq, int step) {
  uint32_t hi = rhash(seed, seq, step, 0, 1) >> 5, lo = rhash(seed, seq, step, 0, 2) >> 6;
  return ((double)hi * 67108864.0 + lo) / 9007199254740992.0;
}
static int rargmax(const float* r, int n) { int best = 0; float bv = r[0]; if (std::isnan(bv)) return 0;
  for (int i = 1; i < n; i++) { float v = r[i]; if (v > bv) { best = i; bv = v; } else if (std::isnan(v)) return i; } return best; }
static void rlogsoftmax(const float* x, int n, float* out) { double mx = -INFINITY; for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
  double s = 0; for (int i = 0; i < n; i++) s += std::exp(x[i] - mx); double sh = mx + std::log(s); for (int i = 0; i < n; i++) out[i] = (float)(x[i] - sh); }
static int rdraw(const float* row, int V, float t, int k, float topP, float minP, double seed, int seq, int step) {
  std::vector<int> order; for (int i = 0; i < V; i++) if (row[i] != -INFINITY) order.push_back(i);
  if (order.empty()) return rargmax(row, V);
  std::sort(order.begin(), order.end(), [&](int a, int b) { double d = (double)row[b] - row[a]; if (d != 0) return d < 0; return a < b; });
  if (k > 0 && k < (int)order.size()) order.resize(k);
  double mx = row[order[0]];
  std::vector<double> w; for (int i : order) w.push_back(std::exp((row[i] - mx) / (double)t));
  double total = 0; for (double x : w) total += x;
  if (topP < 1) { double mass = 0; size_t keep = 0; while (keep < order.size()) { mass += w[keep] / total; keep++; if (mass >= (double)topP) break; }
    order.resize(keep); w.resize(keep); total = 0; for (double x : w) total += x; }
  if (minP > 0) { double cut = (double)minP * w[0]; size_t keep = 0; for (double x : w) keep += x >= cut; order.resize(keep); w.resize(keep); total = 0; for (double x : w) total += x; }
  double u = runiform(seed, seq, step) * total, acc = 0;
  for (size_t i = 0; i < order.size(); i++) { acc += w[i]; if (u < acc) return order[i]; }
  return order.back();
}
int main(int argc, char** argv) {
  const int V = VOCAB;
  std::mt19937 gen(1234 + V);
  std::normal_distribution<float> nd(0, 1);
  struct Case { float t; int k; float p; float mp; int greedy; float scale; int ties; int infs; };
  std::vector<Case> cases;
  int ks[] = {0, 1, 5, 50, 1500, V};
  float ps[] = {1.0f, 0.9f, 0.5f, 0.999f};
  float mps[] = {0.0f, 0.05f};
  float ts[] = {0.3f, 1.0f, 2.5f, 40.0f};
  std::uniform_int_distribution<int> pick(0, 1000000);
  int ncases = argc > 1 ? atoi(argv[1]) : 40;
  for (int c = 0; c < ncases; c++) cases.push_back({ts[pick(gen) % 4], ks[pick(gen) % 6], ps[pick(gen) % 4], mps[pick(gen) % 2], pick(gen) % 7 == 0, (float)(1 + pick(gen) % 3 * 4), pick(gen) % 3 == 0, pick(gen) % 3 == 0});
  if (argc > 2) { int i = 0; for (auto& c : cases) { c.t = (i % 2) ? 40.0f : 3.0f; c.k = (i % 3 == 0) ? 0 : (i % 3 == 1 ? 3000 : 1100); c.greedy = 0; c.ties = 1; c.scale = (i % 4 == 0) ? 0.0f : 1.0f; c.infs = i % 5 == 0; c.p = (i % 7 == 0) ? 0.7f : c.p; i++; } }
  const int B = (int)cases.size();
  std::vector<float> logits((size_t)B * V); std::vector<unsigned char> greedy(B); std::vector<float> temp(B), topp(B), minp(B); std::vector<int> topk(B), seq(B), step(B); std::vector<double> seed(B);
  for (int b = 0; b < B; b++) { auto& c = cases[b];
    for (int i = 0; i < V; i++) { float x = nd(gen) * c.scale; if (c.ties) x = std::round(x); logits[(size_t)b * V + i] = x; }
    if (c.infs) for (int i = 0; i < V; i += 3) logits[(size_t)b * V + i] = -INFINITY;
    greedy[b] = c.greedy; temp[b] = c.t; topk[b] = c.k; topp[b] = c.p; minp[b] = c.mp; seed[b] = (double)pick(gen) * 4294967296.0 * 1000 + pick(gen); seq[b] = pick(gen); step[b] = b; }
  // Slices per row as the runtime picks them (sampling_launch.ts samplingSlices): ceil(V / 4096) in [1, 64];
  // then other slice counts and CTAs per row (Q): a CTA a slice, several slices a CTA (teams of warps),
  // Q not dividing P, and a warp a slice (P = 32, Q = 1). Every launch must give the reference's tokens.
  const int P0 = std::min(64, std::max(1, (V + 4095) / 4096));
  // KILN_SAMPLING_LAYOUTS (indices into that list, e.g. "0 2") narrows the run to the layouts a test needs.
  const int layouts[][2] = {{P0, P0}, {P0, 1}, {32, 1}, {32, 3}, {7, 2}, {5, 8}};
  const int n_layouts = (int)(sizeof(layouts) / sizeof(layouts[0]));
  std::vector<int> picked;
  if (const char* only = getenv("KILN_SAMPLING_LAYOUTS")) {
    for (const char* c = only; *c;) { char* end; long i = strtol(c, &end, 10); if (end == c) { c++; continue; } if (i >= 0 && i < n_layouts) picked.push_back((int)i); c = end; }
  } else for (int i = 0; i < n_layouts; i++) picked.push_back(i);
  bool failed = false;
  for (int li : picked) { const int P = layouts[li][0], Q = layouts[li][1];
  int bad = 0;
  std::vector<int> tok(B); std::vector<float> lp(B);
  std::vector<SliceStats> partials((size_t)B * P); std::vector<unsigned> counters(B, 0);
  launch({(unsigned)Q, (unsigned)B, 1}, {1024, 1, 1}, [&] { sample_topk_topp(logits.data(), greedy.data(), temp.data(), topk.data(), topp.data(), minp.data(), seed.data(), seq.data(), step.data(), tok.data(), lp.data(), partials.data(), counters.data(), P); });
  for (int b = 0; b < B; b++) if (counters[b] != 0) { printf("row %d: arrival counter left at %u\n", b, counters[b]); return 1; }
  double maxlp = 0;
  std::vector<float> tmp(V), rl(V);
  for (int b = 0; b < B; b++) { auto& c = cases[b]; const float* row = &logits[(size_t)b * V];
    int want = (c.greedy || c.k == 1) ? rargmax(row, V) : rdraw(row, V, c.t, c.k, c.p, c.mp, seed[b], seq[b], step[b]);
    float t = c.greedy ? 1 : c.t; for (int i = 0; i < V; i++) tmp[i] = t == 1 ? row[i] : (float)(row[i] / t);
    rlogsoftmax(tmp.data(), V, rl.data());
    double d = std::fabs(rl[want] - lp[b]); if (tok[b] == want) maxlp = std::max(maxlp, d);
    if (tok[b] != want) { bad++; printf("row %d MISMATCH got %d want %d (t=%g k=%d p=%g mp=%g greedy=%d ties=%d infs=%d)\n", b, tok[b], want, c.t, c.k, c.p, c.mp, c.greedy, c.ties, c.infs); }
  }
  const bool lp_ok = maxlp <= 1e-5;
  printf("V=%d rows=%d slices=%d ctas=%d mismatches=%d max|dlogprob|=%g%s\n", V, B, P, Q, bad, maxlp,
         lp_ok ? "" : " (over 1e-5)");
  failed |= bad != 0 || !lp_ok;
  }
  return failed;
}
