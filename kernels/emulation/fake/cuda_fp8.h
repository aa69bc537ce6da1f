// The part of cuda_fp8.h gemv_fp8.cu uses, for the CPU emulator. Written from NVIDIA's documented
// semantics, not from kiln's codec (src/fp8_e4m3.ts), so the check compares two independent readings:
// __nv_cvt_float_to_fp8 rounds to the nearest E4M3 value by searching all of them (ties to the even
// code), saturates to ±448 with __NV_SATFINITE and keeps NaN as NaN; E4M3 → fp16 is exact.
#pragma once
#include <cmath>
#include <cstring>

#include "cuda_fp16.h"

typedef unsigned char __nv_fp8_storage_t;
typedef unsigned short __nv_fp8x2_storage_t;
enum __nv_saturation_t { __NV_NOSAT, __NV_SATFINITE };
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
struct __half2_raw { unsigned short x, y; };
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }

namespace fake_fp8 {
/** The value of E4M3 code b (0x7f / 0xff: NaN). */
inline double value(unsigned b) {
  const int e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp((double)m, -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return b & 0x80 ? -mag : mag;
}
}  // namespace fake_fp8

inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float x, __nv_saturation_t sat, __nv_fp8_interpretation_t kind) {
  if (kind != __NV_E4M3 || sat != __NV_SATFINITE) { fprintf(stderr, "fake cuda_fp8.h: E4M3 with __NV_SATFINITE only\n"); abort(); }
  if (std::isnan(x)) return 0x7f;
  const unsigned sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs((double)x);
  if (a >= 448) return (__nv_fp8_storage_t)(sign | 0x7e);
  unsigned best = 0;
  double best_d = INFINITY;
  for (unsigned c = 0; c <= 0x7e; c++) {  // the non-negative finite codes, in increasing value
    const double d = std::fabs(fake_fp8::value(c) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) { best = c; best_d = d; }
  }
  return (__nv_fp8_storage_t)(sign | best);
}

inline __half2_raw __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t v, __nv_fp8_interpretation_t kind) {
  if (kind != __NV_E4M3) abort();
  const __half lo = __float2half_rn((float)fake_fp8::value(v & 0xff));
  const __half hi = __float2half_rn((float)fake_fp8::value((v >> 8) & 0xff));
  __half2_raw r;
  std::memcpy(&r.x, &lo, 2);
  std::memcpy(&r.y, &hi, 2);
  return r;
}
