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
import { groupErrors } from "./error_energy.ts";

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
