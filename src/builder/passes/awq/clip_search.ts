// AWQ's weight clipping (Lin et al., 2023; AutoAWQ's _search_best_clip), after the scales are applied:
// for each output row r and quantization group g of a linear, try clipping the group's weights to
// ±max|w|·(1 − i/20), i = 0 … 9, and keep the clip whose int4 output error on that group's share of
// the input is least:
//   err(r, g) = Σ_t (Σ_{c ∈ g} (Q(clip(w))[r, c] − w[r, c]) · x[t, c])²
// A smaller range can pay for the clipped outliers with finer steps for every other weight. Rows
// whose outputs become attention queries or keys are left alone (AutoAWQ: the q·k product is too
// sensitive to clip precisely).
import { dequantize, GROUP_SIZE, quantizedLayout } from "../../../engine/weight_format.ts";
import { quantize } from "../quantize_weights.ts";

/** Shrink steps tried: 1 − i / CLIP_GRID for i < CLIP_STEPS (AutoAWQ: n_grid 20, max_shrink 0.5). */
const CLIP_GRID = 20;
const CLIP_STEPS = 10;

/** Clips `w` [rows, cols] in place, row by row and group by group (rows where `unclipped(row)` aside),
 * choosing each clip on samples `x` [n, cols] (the input as the scaled weights see it). Returns how
 * many (row, group) pairs were clipped. */
export function clipWeights(
  w: Float32Array,
  rows: number,
  cols: number,
  x: Float32Array,
  n: number,
  unclipped: (row: number) => boolean,
): number {
  const picked = Array.from({ length: rows }, (_, r) => r).filter((r) => !unclipped(r));
  if (picked.length === 0) return 0;
  const sub = new Float32Array(picked.length * cols); // [picked, cols]
  picked.forEach((r, i) => sub.set(w.subarray(r * cols, (r + 1) * cols), i * cols));
  const count = clipRows(sub, picked.length, cols, x, n);
  picked.forEach((r, i) => w.set(sub.subarray(i * cols, (i + 1) * cols), r * cols));
  return count;
}

/** clipWeights over every row of `w`. */
function clipRows(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number): number {
  const { groups } = quantizedLayout([rows, cols]);
  const orgMax = new Float32Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * groups + Math.floor(c / GROUP_SIZE);
      orgMax[i] = Math.max(orgMax[i], Math.abs(w[r * cols + c]));
    }
  }
  const bestErr = new Float64Array(rows * groups).fill(Infinity);
  const bestShrink = new Float32Array(rows * groups).fill(1);
  const clipped = new Float32Array(w.length);
  for (let i = 0; i < CLIP_STEPS; i++) {
    const shrink = 1 - i / CLIP_GRID;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const m = orgMax[r * groups + Math.floor(c / GROUP_SIZE)] * shrink;
        const v = w[r * cols + c];
        clipped[r * cols + c] = Math.max(-m, Math.min(m, v));
      }
    }
    const d = dequantize(quantize(clipped, [rows, cols], "int4-wo"), [rows, cols], "int4-wo");
    for (let k = 0; k < d.length; k++) d[k] -= w[k];
    const err = groupErrors(d, rows, cols, groups, x, n);
    for (let k = 0; k < err.length; k++) {
      if (err[k] < bestErr[k]) {
        bestErr[k] = err[k];
        bestShrink[k] = shrink;
      }
    }
  }
  let count = 0;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const shrink = bestShrink[r * groups + g];
      if (shrink === 1) continue;
      count++;
      const m = orgMax[r * groups + g] * shrink;
      const end = Math.min(cols, (g + 1) * GROUP_SIZE);
      for (let c = g * GROUP_SIZE; c < end; c++) {
        const k = r * cols + c;
        w[k] = Math.max(-m, Math.min(m, w[k]));
      }
    }
  }
  return count;
}

/** err[r·groups + g] = Σ_t (Σ_{c ∈ g} d[r, c] · x[t, c])², d [rows, cols], x [n, cols]. Tiles of 4
 * rows × 2 tokens, as scale_search.ts's errorEnergy; the tails one dot product at a time. */
export function groupErrors(
  d: Float32Array,
  rows: number,
  cols: number,
  groups: number,
  x: Float32Array,
  n: number,
): Float64Array {
  const err = new Float64Array(rows * groups);
  for (let g = 0; g < groups; g++) {
    const start = g * GROUP_SIZE;
    const end = Math.min(cols, start + GROUP_SIZE);
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
