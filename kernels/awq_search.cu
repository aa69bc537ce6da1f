// AWQ's search losses (src/builder/passes/awq/): the int4 output error energy of a candidate, computed
// exactly as the TypeScript reference computes it (scale_search.ts scaledQuantLoss, clip_search.ts, and
// error_energy.ts groupErrors), bit for bit. Compiled by NVRTC at build time (builder/targets/cuda_awq.ts),
// never stored in an engine.
//
// Macros: none (shapes are arguments).
//
// extern "C" __global__ void awq_error_energies(
//     const float* w,         // [rows, cols] the weights searched (scale: sampled rows; clip: picked rows)
//     const float* scales,    // scale search: [candidates, cols] the s of each α; null for the clip search
//     const double* shrinks,  // clip search: [candidates] 1 − i/20; null for the scale search
//     const float* x,         // [n, cols] calibration samples
//     double* err,            // [candidates, rows, ceil(cols / group_cols)]
//     int rows, int cols, int n,
//     int group_cols,         // columns per error: 128 (clip: one per quantization group) or ≥ cols (scale: one per row)
//     int paired_rows)        // rows whose sum over t runs in pairs (groupErrors' 4-row tiles): rows − rows % 4
//   grid  = (ceil(rows / 32), ceil(cols / group_cols), candidates)
//   block = (256), exactly; static shared memory only
//
// Per candidate, d[r, c] (fp32), as the reference's quantize / dequantize round it:
//   scale search: v = fl(w·s), q = Q(v), d = fl((q·scale) / s − w) in double, rounded once to fp32
//   clip search:  m = max|w|_group · shrink (double), v = clamp(w, ±m) rounded to fp32, d = fl(q·scale − w)
//   Q: scale = fl(max|v|_group / 7); q = sign(v/scale)·round-half-up(|v/scale|) (v/scale in double), ±7
// then err = Σ_t (Σ_c d[r, c]·x[t, c])² in double: each dot summed over c in ascending order (the
// products of two floats are exact in double, so fma is the reference's multiply-then-add), the squares
// added in the reference's order (t in pairs for rows < paired_rows, one at a time for the rest). The
// intrinsics (__dmul_rn, __dadd_rn, ...) keep nvcc from contracting them into other fmas.
#include "pdl.cuh"

namespace {

constexpr int TILE_ROWS = 32;  // rows of w per block
constexpr int TILE_T = 128;    // samples per pass over the columns (even: pairs never straddle passes)
constexpr int QGROUP = 128;    // quantization group (engine/weight_format.ts GROUP_SIZE)
constexpr int SUB = 16;        // columns of x staged per step
// d is staged as double (converted once, not once per product: conversions run at a quarter of the
// DFMA rate), x as float; rows padded against bank conflicts, each 16-byte aligned.
constexpr int D_STRIDE = TILE_ROWS + 2;  // ds[c][row] doubles
constexpr int X_STRIDE = TILE_T + 4;     // xs[c][t] floats
constexpr int D_BYTES = 8 * QGROUP * D_STRIDE;
constexpr int STAGE_BYTES = D_BYTES + 4 * SUB * X_STRIDE;
constexpr int DOT_BYTES = 8 * TILE_ROWS * TILE_T;  // dots[row][t], after the columns
constexpr int SMEM_BYTES = STAGE_BYTES > DOT_BYTES ? STAGE_BYTES : DOT_BYTES;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** The reference's int4 code of v at step `scale` (quantize_weights.ts quantize), as a float. */
__device__ __forceinline__ float int4_code(float v, float scale) {
  if (scale == 0.f) return 0.f;
  const double q = __ddiv_rn((double)v, (double)scale);
  const double a = fabs(q);
  double r = floor(a);
  if (__dsub_rn(a, r) >= 0.5) r = __dadd_rn(r, 1.0);  // Math.round: ties toward +∞, on |q|
  r = fmin(r, 7.0);
  return (float)(q < 0 ? -r : r);
}

}  // namespace

extern "C" __global__ void __launch_bounds__(256) awq_error_energies(const float* __restrict__ w,
                                                                     const float* __restrict__ scales,
                                                                     const double* __restrict__ shrinks,
                                                                     const float* __restrict__ x,
                                                                     double* __restrict__ err, int rows,
                                                                     int cols, int n, int group_cols,
                                                                     int paired_rows) {
  kiln::pdl_wait();
  kiln::pdl_launch_dependents();
  __shared__ __align__(16) unsigned char smem[SMEM_BYTES];
  double* ds = reinterpret_cast<double*>(smem);         // [QGROUP][D_STRIDE]: d of this chunk, column-major
  float* xs = reinterpret_cast<float*>(smem + D_BYTES);  // [SUB][X_STRIDE]: x of this step, column-major
  double* dots = reinterpret_cast<double*>(smem);  // [TILE_ROWS][TILE_T], once the columns are done

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row0 = blockIdx.x * TILE_ROWS;
  const int cand = blockIdx.z;
  const int c_begin = blockIdx.y * group_cols;
  const int c_end = min(cols, c_begin + group_cols);
  const int groups = (cols + group_cols - 1) / group_cols;
  const float* s = scales ? scales + (size_t)cand * cols : nullptr;
  const double shrink = shrinks ? shrinks[cand] : 1.0;
  // Dot phase: this thread's 4 rows (tr·4 + i) × 4 samples (tt·4 + j).
  const int tr = tid >> 5, tt = tid & 31;
  double e = 0.0;  // row0 + tid's energy, for tid < TILE_ROWS

  for (int t0 = 0; t0 < n; t0 += TILE_T) {
    double acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[i][j] = 0.0;

    for (int c0 = c_begin; c0 < c_end; c0 += QGROUP) {
      const int width = min(QGROUP, cols - c0);  // this quantization group's columns
      __syncthreads();  // the previous chunk's ds / xs reads are done
      // d of this quantization group: warp `warp` makes rows warp·4 … warp·4 + 3, lane the columns lane + 32·k.
      for (int i = 0; i < 4; i++) {
        const int rl = warp * 4 + i, r = row0 + rl;
        float wv[4], v[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
          const int c = lane + 32 * k;
          wv[k] = (r < rows && c < width) ? w[(size_t)r * cols + c0 + c] : 0.f;
        }
        if (s) {
#pragma unroll
          for (int k = 0; k < 4; k++) {
            const int c = lane + 32 * k;
            v[k] = c < width ? __fmul_rn(wv[k], s[c0 + c]) : 0.f;
          }
        } else {
          float org = 0.f;
#pragma unroll
          for (int k = 0; k < 4; k++) org = fmaxf(org, fabsf(wv[k]));
          const double m = __dmul_rn((double)warp_max(org), shrink);
#pragma unroll
          for (int k = 0; k < 4; k++) {
            const double a = (double)wv[k];
            v[k] = (float)(a > m ? m : (a < -m ? -m : a));
          }
        }
        float vmax = 0.f;
#pragma unroll
        for (int k = 0; k < 4; k++) vmax = fmaxf(vmax, fabsf(v[k]));
        const float scale = __fdiv_rn(warp_max(vmax), 7.f);
#pragma unroll
        for (int k = 0; k < 4; k++) {
          const int c = lane + 32 * k;
          const float deq = __fmul_rn(int4_code(v[k], scale), scale);
          float d = 0.f;
          if (c < width && r < rows)
            d = s ? (float)__dsub_rn(__ddiv_rn((double)deq, (double)s[c0 + c]), (double)wv[k])
                  : __fsub_rn(deq, wv[k]);
          ds[c * D_STRIDE + rl] = (double)d;
        }
      }
      for (int sub = 0; sub < width; sub += SUB) {
        __syncthreads();  // ds written; the previous step's xs reads are done
        // xs[c][t] = x[t0 + t, c0 + sub + c]: a half-warp per sample row, 16 samples per pass.
        for (int t = tid >> 4; t < TILE_T; t += 16) {
          const int cl = tid & 15, c = sub + cl;
          xs[cl * X_STRIDE + t] = (t0 + t < n && c < width) ? x[(size_t)(t0 + t) * cols + c0 + c] : 0.f;
        }
        __syncthreads();
        for (int c = 0; c < SUB; c++) {
          const double2 d01 = *reinterpret_cast<const double2*>(&ds[(sub + c) * D_STRIDE + tr * 4]);
          const double2 d23 = *reinterpret_cast<const double2*>(&ds[(sub + c) * D_STRIDE + tr * 4 + 2]);
          const float4 xv = *reinterpret_cast<const float4*>(&xs[c * X_STRIDE + tt * 4]);
          const double da[4] = {d01.x, d01.y, d23.x, d23.y};
          const double xa[4] = {(double)xv.x, (double)xv.y, (double)xv.z, (double)xv.w};
#pragma unroll
          for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = __fma_rn(da[i], xa[j], acc[i][j]);
        }
      }
    }
    __syncthreads();  // every ds / xs read done: dots reuses the memory
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) dots[(tr * 4 + i) * TILE_T + tt * 4 + j] = acc[i][j];
    __syncthreads();
    if (tid < TILE_ROWS) {
      const double* dr = dots + tid * TILE_T;
      const int count = min(TILE_T, n - t0);
      if (row0 + tid < paired_rows) {
        int t = 0;
        for (; t + 2 <= count; t += 2) e = __dadd_rn(e, __dadd_rn(__dmul_rn(dr[t], dr[t]), __dmul_rn(dr[t + 1], dr[t + 1])));
        if (t < count) e = __dadd_rn(e, __dmul_rn(dr[t], dr[t]));
      } else {
        for (int t = 0; t < count; t++) e = __dadd_rn(e, __dmul_rn(dr[t], dr[t]));
      }
    }
  }
  if (tid < TILE_ROWS && row0 + tid < rows) err[((size_t)cand * rows + row0 + tid) * groups + blockIdx.y] = e;
}
