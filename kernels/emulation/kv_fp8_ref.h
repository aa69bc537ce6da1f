// The FP8 KV cache's rows as the CPU backend writes and reads them, for the emulator checks of the `_kv8`
// kernels: a port of src/fp8_e4m3.ts (f32ToE4m3 on the fp32 bits, e4m3ToF32) and of writeFp8Slot /
// readFp8Slot (src/backends/cpu/kernels/kv_fp8.ts), JavaScript's double arithmetic kept where it rounds
// (x / s and absMax / 448 in double, then to fp32; e4m3 · s exact in double, then to fp32). Independent
// of the kernels' encoder (cuda_fp8.h's __nv_cvt_float_to_fp8; fake/cuda_fp8.h searches all codes).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace kv8_ref {

inline uint32_t bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }

inline double round_half_even(double v) {
  const double f = std::floor(v), frac = v - f;
  if (frac > 0.5) return f + 1;
  if (frac < 0.5) return f;
  return std::fmod(f, 2.0) == 0 ? f : f + 1;
}

/** src/fp8_e4m3.ts f32ToE4m3 (x already fp32). */
inline uint8_t f32_to_e4m3(float x) {
  const uint32_t b = bits(x), sign = (b >> 24) & 0x80, abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint8_t)(0x7f | sign);
  if (abs >= 0x43e00000u) return (uint8_t)(0x7e | sign);
  const uint32_t exp = abs >> 23;
  if (exp < 121) return (uint8_t)((uint32_t)round_half_even((double)(float)(std::fabs((double)x) * 512)) | sign);
  const uint32_t rounded = abs + 0x7ffffu + ((abs >> 20) & 1);
  const uint32_t e = (rounded >> 23) - 120, m = (rounded >> 20) & 7;
  return (uint8_t)((e << 3) | m | sign);
}

/** src/fp8_e4m3.ts e4m3ToF32. */
inline float e4m3_to_f32(uint8_t byte) {
  const double sign = byte & 0x80 ? -1 : 1;
  const int e = (byte >> 3) & 15, m = byte & 7;
  if (e == 15 && m == 7) return NAN;
  if (e == 0) return (float)(sign * m * std::ldexp(1.0, -9));
  return (float)(sign * (1 + m / 8.0) * std::ldexp(1.0, e - 7));
}

/** One pool as FP8: data [rows, D] E4M3, scale [rows]. */
struct Pool {
  std::vector<uint8_t> data;
  std::vector<float> scale;
};

/** writeFp8Slot over every row of an fp32 pool [rows, D]. */
inline Pool quantize(const std::vector<float>& x, int D) {
  const size_t rows = x.size() / D;
  Pool p;
  p.data.assign(x.size(), 0);
  p.scale.assign(rows, 0.f);
  for (size_t r = 0; r < rows; r++) {
    float absmax = 0;
    for (int d = 0; d < D; d++) {
      const float a = std::fabs(x[r * D + d]);
      if (a > absmax || std::isnan(a)) absmax = a;
    }
    const float s = (float)((double)absmax / 448.0);
    p.scale[r] = s;
    if (s == 0) continue;
    for (int d = 0; d < D; d++) p.data[r * D + d] = f32_to_e4m3((float)((double)x[r * D + d] / (double)s));
  }
  return p;
}

/** readFp8Slot over every row: fp32(e4m3 · s). */
inline std::vector<float> dequantize(const Pool& p, int D) {
  std::vector<float> x(p.data.size());
  for (size_t i = 0; i < x.size(); i++) x[i] = (float)((double)e4m3_to_f32(p.data[i]) * (double)p.scale[i / D]);
  return x;
}

}  // namespace kv8_ref
