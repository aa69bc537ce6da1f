// The squared output error of a weight difference d over calibration rows x, the loss both AWQ searches
// minimise: per (row, group of 128) for the clip search, in total for the scale search.
import { GROUP_SIZE } from "../../../engine/weight_format.ts";

/** Σ over rows r of d and rows t of x of (d_r · x_t)², d [rows, cols], x [n, cols]. */
export function errorEnergy(d: Float32Array, rows: number, cols: number, x: Float32Array, n: number): number {
  let total = 0;
  for (const e of groupErrors(d, rows, cols, 1, x, n, cols)) total += e;
  return total;
}

/** err[r·groups + g] = Σ_t (Σ_{c ∈ g} d[r, c] · x[t, c])², d [rows, cols], x [n, cols], groups of
 * `groupSize` columns. Tiles of 4 rows of d × 2 rows of x keep 8 sums in registers, so each loaded
 * value serves two or four products; the tails one dot product at a time. */
export function groupErrors(
  d: Float32Array,
  rows: number,
  cols: number,
  groups: number,
  x: Float32Array,
  n: number,
  groupSize = GROUP_SIZE,
): Float64Array {
  const err = new Float64Array(rows * groups);
  for (let g = 0; g < groups; g++) {
    const start = g * groupSize;
    const end = Math.min(cols, start + groupSize);
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const d0 = r * cols;
      const d1 = d0 + cols;
      const d2 = d1 + cols;
      const d3 = d2 + cols;
      const e = new Float64Array(4); // this tile's four rows
      let t = 0;
      for (; t + 2 <= n; t += 2) {
        const xa = t * cols;
        const xb = xa + cols;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let b0 = 0;
        let b1 = 0;
        let b2 = 0;
        let b3 = 0;
        for (let c = start; c < end; c++) {
          const u = x[xa + c];
          const v = x[xb + c];
          const w0 = d[d0 + c];
          const w1 = d[d1 + c];
          const w2 = d[d2 + c];
          const w3 = d[d3 + c];
          a0 += w0 * u;
          a1 += w1 * u;
          a2 += w2 * u;
          a3 += w3 * u;
          b0 += w0 * v;
          b1 += w1 * v;
          b2 += w2 * v;
          b3 += w3 * v;
        }
        e[0] += a0 * a0 + b0 * b0;
        e[1] += a1 * a1 + b1 * b1;
        e[2] += a2 * a2 + b2 * b2;
        e[3] += a3 * a3 + b3 * b3;
      }
      for (let k = 0; k < 4; k++) {
        for (let u = t; u < n; u++) e[k] += partialDot(d, (r + k) * cols, x, u * cols, start, end) ** 2;
        err[(r + k) * groups + g] = e[k];
      }
    }
    for (; r < rows; r++) {
      let e = 0;
      for (let t = 0; t < n; t++) e += partialDot(d, r * cols, x, t * cols, start, end) ** 2;
      err[r * groups + g] = e;
    }
  }
  return err;
}

/** Σ_{c ∈ [start, end)} a[i + c] · b[j + c]. */
function partialDot(
  a: Float32Array,
  i: number,
  b: Float32Array,
  j: number,
  start: number,
  end: number,
): number {
  let s = 0;
  for (let c = start; c < end; c++) s += a[i + c] * b[j + c];
  return s;
}
