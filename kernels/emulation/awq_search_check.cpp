// Checks awq_search.cu on the CPU emulator (fakecuda.h) against a C++ double-precision reading of the
// TypeScript reference it must reproduce bit for bit: quantize_weights.ts quantize (scale = fl(max|v| / 7),
// q = sign·round-half-up(|v / scale|) in double, clamped to ±7) and weight_format.ts dequantize (fl(q·scale)),
// scale_search.ts scaledQuantLoss's d = fl(Q(fl(w·s)) / s − w), clip_search.ts's clamp to ±max|w|·shrink,
// and error_energy.ts groupErrors's sums (tiles of 4 rows × 2 samples, tails one at a time).
// The energies must be the same doubles (tolerance 0: the kernel makes the same roundings in the same
// order). Shapes: rows 6, 9, 37 (a 4-row tail, two row tiles), cols 256, 300 (a partial group of 44),
// n 5, 7, 130 (odd; two sample passes), the 10 shrinks; rows with exact .5 ties and an all-zero group.
// Build and run: awq_search_run.sh; with `--io IN OUT` it runs the kernel on a test's inputs instead.
#include "fakecuda.h"
#include "../awq_search.cu"
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace {

using Mat = std::vector<float>;

/** quantize then dequantize, int4-wo, groups of 128 columns of a row. */
Mat int4_round_trip(const Mat& v, int rows, int cols) {
  Mat out(v.size());
  for (int r = 0; r < rows; r++)
    for (int g0 = 0; g0 < cols; g0 += 128) {
      const int g1 = std::min(cols, g0 + 128);
      float max = 0.f;
      for (int c = g0; c < g1; c++) max = std::max(max, std::fabs(v[(size_t)r * cols + c]));
      const float scale = (float)((double)max / 7.0);
      for (int c = g0; c < g1; c++) {
        double q = 0;
        if (scale != 0.f) {
          const double u = (double)v[(size_t)r * cols + c] / (double)scale;
          q = std::min(7.0, std::max(-7.0, (u < 0 ? -1.0 : u > 0 ? 1.0 : 0.0) * std::round(std::fabs(u))));
        }
        out[(size_t)r * cols + c] = (float)(q * (double)scale);
      }
    }
  return out;
}

/** groupErrors of error_energy.ts, written the same way. */
std::vector<double> group_errors(const Mat& d, int rows, int cols, int groups, int gsize, const Mat& x, int n) {
  std::vector<double> err((size_t)rows * groups);
  auto dot = [&](int r, int t, int s, int e) {
    double a = 0;
    for (int c = s; c < e; c++) a += (double)d[(size_t)r * cols + c] * (double)x[(size_t)t * cols + c];
    return a;
  };
  for (int g = 0; g < groups; g++) {
    const int s = g * gsize, e = std::min(cols, s + gsize);
    int r = 0;
    for (; r + 4 <= rows; r += 4)
      for (int k = 0; k < 4; k++) {
        double acc = 0;
        int t = 0;
        for (; t + 2 <= n; t += 2) {
          const double a = dot(r + k, t, s, e), b = dot(r + k, t + 1, s, e);
          acc += a * a + b * b;
        }
        for (; t < n; t++) {
          const double a = dot(r + k, t, s, e);
          acc += a * a;
        }
        err[(size_t)(r + k) * groups + g] = acc;
      }
    for (; r < rows; r++) {
      double acc = 0;
      for (int t = 0; t < n; t++) {
        const double a = dot(r, t, s, e);
        acc += a * a;
      }
      err[(size_t)r * groups + g] = acc;
    }
  }
  return err;
}

Mat random(size_t count, std::mt19937& g, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  Mat m(count);
  for (auto& v : m) v = nd(g);
  return m;
}

/** Row 0: exact ties of round-half-up (max 7 → scale 1, values k + 0.5, among others); row 1's first
 * group all zeros. */
void plant_edges(Mat& w, int rows, int cols) {
  if (rows < 2) return;
  for (int c = 0; c < std::min(cols, 128); c++) w[c] = c == 0 ? 7.f : (float)((c % 13) - 6) + (c % 3 ? 0.5f : 0.25f);
  for (int c = 0; c < std::min(cols, 128); c++) w[(size_t)cols + c] = 0.f;
}

std::vector<double> run_kernel(const Mat& w, const Mat* s, const std::vector<double>* shrinks, const Mat& x,
                               int rows, int cols, int n, int group_cols, int cands) {
  const int groups = (cols + group_cols - 1) / group_cols;
  std::vector<double> err((size_t)cands * rows * groups, std::nan(""));
  const dim3 grid{(unsigned)((rows + 31) / 32), (unsigned)groups, (unsigned)cands};
  launch(grid, {256, 1, 1}, [&] {
    awq_error_energies(w.data(), s ? s->data() : nullptr, shrinks ? shrinks->data() : nullptr, x.data(),
                       err.data(), rows, cols, n, group_cols, rows - rows % 4);
  });
  return err;
}

int compare(const char* what, const std::vector<double>& got, const std::vector<double>& want) {
  int bad = 0;
  for (size_t i = 0; i < want.size(); i++)
    if (std::memcmp(&got[i], &want[i], 8) != 0 && bad++ < 5)
      printf("  %s [%zu]: got %.17g want %.17g\n", what, i, got[i], want[i]);
  printf("%s %s (%zu energies)\n", bad ? "FAIL" : "ok  ", what, want.size());
  return bad;
}

int check_clip(int rows, int cols, int n, int steps, std::mt19937& g) {
  Mat w = random((size_t)rows * cols, g, 0.05f);
  plant_edges(w, rows, cols);
  w[(size_t)(rows - 1) * cols + 3] = 0.9f;  // an outlier: clipping pays
  const Mat x = random((size_t)n * cols, g, 1.f);
  std::vector<double> shrinks;
  for (int i = 0; i < steps; i++) shrinks.push_back(1 - (double)i / 20);
  const int groups = (cols + 127) / 128;
  std::vector<double> want;
  for (double shrink : shrinks) {
    Mat clipped(w.size());
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        float org = 0.f;
        for (int k = c / 128 * 128; k < std::min(cols, c / 128 * 128 + 128); k++)
          org = std::max(org, std::fabs(w[(size_t)r * cols + k]));
        const double m = (double)org * shrink;
        clipped[(size_t)r * cols + c] = (float)std::max(-m, std::min(m, (double)w[(size_t)r * cols + c]));
      }
    Mat d = int4_round_trip(clipped, rows, cols);
    for (size_t k = 0; k < d.size(); k++) d[k] = (float)((double)d[k] - (double)w[k]);
    const auto e = group_errors(d, rows, cols, groups, 128, x, n);
    want.insert(want.end(), e.begin(), e.end());
  }
  char what[96];
  snprintf(what, sizeof what, "clip rows %d cols %d n %d shrinks %d", rows, cols, n, steps);
  return compare(what, run_kernel(w, nullptr, &shrinks, x, rows, cols, n, 128, steps), want);
}

int check_scale(int rows, int cols, int n, int cands, std::mt19937& g) {
  Mat w = random((size_t)rows * cols, g, 0.05f);
  plant_edges(w, rows, cols);
  const Mat x = random((size_t)n * cols, g, 1.f);
  std::normal_distribution<float> nd(0.f, 0.7f);
  Mat s((size_t)cands * cols);
  for (int k = 0; k < cands; k++)
    for (int c = 0; c < cols; c++) s[(size_t)k * cols + c] = k == 0 ? 1.f : std::exp(nd(g));
  std::vector<double> want;
  for (int k = 0; k < cands; k++) {
    Mat scaled(w.size());
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++)
        scaled[(size_t)r * cols + c] = (float)((double)w[(size_t)r * cols + c] * (double)s[(size_t)k * cols + c]);
    Mat d = int4_round_trip(scaled, rows, cols);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        const size_t i = (size_t)r * cols + c;
        d[i] = (float)((double)d[i] / (double)s[(size_t)k * cols + c] - (double)w[i]);
      }
    const auto e = group_errors(d, rows, cols, 1, cols, x, n);
    want.insert(want.end(), e.begin(), e.end());
  }
  char what[96];
  snprintf(what, sizeof what, "scale rows %d cols %d n %d candidates %d", rows, cols, n, cands);
  return compare(what, run_kernel(w, &s, nullptr, x, rows, cols, n, cols, cands), want);
}

/** --io IN OUT: the kernel on inputs the TypeScript test wrote, its energies written back (the test
 * compares them with the TypeScript reference itself). IN: int32 mode (0 scale, 1 clip), rows, cols,
 * n, candidates; then w [rows, cols] f32, x [n, cols] f32, then scales [candidates, cols] f32 or
 * shrinks [candidates] f64. OUT: err f64 [candidates, rows, groups]. */
int io(const char* in_path, const char* out_path) {
  FILE* f = fopen(in_path, "rb");
  if (!f) return 2;
  int h[5];
  bool ok = fread(h, 4, 5, f) == 5;
  const int mode = h[0], rows = h[1], cols = h[2], n = h[3], cands = h[4];
  Mat w((size_t)rows * cols), x((size_t)n * cols), s(mode == 0 ? (size_t)cands * cols : 0);
  std::vector<double> shrinks(mode == 1 ? cands : 0);
  ok = ok && fread(w.data(), 4, w.size(), f) == w.size() && fread(x.data(), 4, x.size(), f) == x.size();
  ok = ok && fread(s.data(), 4, s.size(), f) == s.size() && fread(shrinks.data(), 8, shrinks.size(), f) == shrinks.size();
  fclose(f);
  if (!ok) return 2;
  const auto err = mode == 0 ? run_kernel(w, &s, nullptr, x, rows, cols, n, cols, cands)
                             : run_kernel(w, nullptr, &shrinks, x, rows, cols, n, 128, cands);
  FILE* o = fopen(out_path, "wb");
  if (!o || fwrite(err.data(), 8, err.size(), o) != err.size()) return 2;
  fclose(o);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--io") == 0) return io(argv[2], argv[3]);
  std::mt19937 g(19);
  int bad = 0;
  bad += check_clip(37, 300, 5, 10, g);
  bad += check_clip(6, 256, 130, 3, g);
  bad += check_scale(9, 300, 7, 4, g);
  bad += check_scale(37, 256, 130, 2, g);
  return bad ? 1 : 0;
}
