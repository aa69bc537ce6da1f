// Checks sampling.cu's apply_penalties on the CPU (fakecuda.h) against a literal C++ port of
// cpuDecodingOps.applyPenalties (src/backends/host_decoding.ts): bit-exact logits, the counts
// workspace left zero. Rows fed from an earlier step (fed[b] ≥ 0) hold a placeholder as their last
// list entry; the reference's list holds sampled[fed[b]] there. Also run with null sampled/fed (every
// list complete), and checked to differ from the placeholder's result (the substitution shows).
// Usage: ./penalty_run.sh [rows]
#include "fakecuda.h"
#include "../sampling.cu"
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
// ---- reference (host_decoding.ts applyPenalties), ported literally ----
static void rpenalties(float* row, const std::vector<int>& toks, int plen, float rep, float pres, float freq) {
  if (rep != 1.0f) {
    std::set<int> seen(toks.begin(), toks.end());
    for (int t : seen) row[t] = row[t] < 0 ? (float)(row[t] * rep) : (float)(row[t] / rep);
  }
  if (pres != 0.0f || freq != 0.0f) {
    std::map<int, int> counts;
    for (size_t i = plen; i < toks.size(); i++) counts[toks[i]]++;
    for (auto [t, n] : counts) row[t] = (float)((double)row[t] - ((double)pres + (double)freq * n));
  }
}
int main(int argc, char** argv) {
  const int V = VOCAB;
  const int B = argc > 1 ? atoi(argv[1]) : 24;
  std::mt19937 gen(77 + V);
  std::normal_distribution<float> nd(0, 2);
  std::uniform_int_distribution<int> pick(0, 1000000);
  const int L = 48;
  const float reps[] = {1.0f, 1.3f, 0.7f, 1.8f}, press[] = {0.0f, 0.5f, -0.7f}, freqs[] = {0.0f, 0.25f, 1.0f};
  std::vector<float> logits((size_t)B * V);
  for (auto& x : logits) x = nd(gen);
  std::vector<int> ids((size_t)B * L, 0), lens(B), plens(B), fed(B);
  std::vector<float> rep(B), pres(B), freq(B);
  std::vector<int> sampled(B + 3);
  for (auto& s : sampled) s = pick(gen) % V;
  std::vector<std::vector<int>> whole(B), held(B);  // the reference's lists, complete / with the placeholder
  for (int b = 0; b < B; b++) {
    lens[b] = pick(gen) % (L + 1);
    plens[b] = lens[b] ? pick(gen) % lens[b] : 0;
    rep[b] = reps[pick(gen) % 4]; pres[b] = press[pick(gen) % 3]; freq[b] = freqs[pick(gen) % 3];
    if (b % 4 == 0) { rep[b] = 1.5f; pres[b] = 0.4f; freq[b] = 0.3f; }  // some rows always penalised
    fed[b] = (lens[b] > 0 && b % 3 != 2) ? pick(gen) % (int)sampled.size() : -1;
    for (int i = 0; i < lens[b]; i++) ids[(size_t)b * L + i] = pick(gen) % std::min(V, 40);
    if (fed[b] >= 0) ids[(size_t)b * L + lens[b] - 1] = 0;  // the host's placeholder
    held[b].assign(ids.begin() + (size_t)b * L, ids.begin() + (size_t)b * L + lens[b]);
    whole[b] = held[b];
    if (fed[b] >= 0) whole[b][lens[b] - 1] = sampled[fed[b]];
  }
  int bad = 0;
  auto run = [&](bool withFeed, const std::vector<std::vector<int>>& ref, const char* what) {
    std::vector<float> got = logits, want = logits;
    std::vector<int> counts((size_t)B * V, 0);
    launch({(unsigned)B, 1, 1}, {1024, 1, 1}, [&] {
      apply_penalties(got.data(), ids.data(), lens.data(), plens.data(), rep.data(), pres.data(), freq.data(),
                      counts.data(), L, withFeed ? sampled.data() : nullptr, withFeed ? fed.data() : nullptr);
    });
    for (int b = 0; b < B; b++) rpenalties(&want[(size_t)b * V], ref[b], plens[b], rep[b], pres[b], freq[b]);
    int rows = 0;
    for (int b = 0; b < B; b++)
      if (std::memcmp(&got[(size_t)b * V], &want[(size_t)b * V], sizeof(float) * V) != 0) {
        rows++;
        printf("%s: row %d differs (len %d, fed %d)\n", what, b, lens[b], fed[b]);
      }
    for (int c : counts) if (c != 0) { printf("%s: counts workspace not left zero\n", what); rows++; break; }
    bad += rows;
    return got;
  };
  const auto fedOut = run(true, whole, "fed");
  const auto plainOut = run(false, held, "null pointers");
  const bool shows = std::memcmp(fedOut.data(), plainOut.data(), sizeof(float) * fedOut.size()) != 0;
  if (!shows) { printf("the substitution changed nothing: the check lost its point\n"); bad++; }
  printf("V=%d rows=%d mismatching rows=%d\n", V, B, bad);
  return bad != 0;
}
