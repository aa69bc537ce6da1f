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

/** For each shrink, the error per (row, group) of clipping `w` [rows, cols] to ±orgMax·shrink ([rows,
 * groups]) and quantizing, on `x` [n, cols]: energy_device.ts's ClipErrors.errors. */
export type ClipErrorsFn = (
  w: Float32Array,
  rows: number,
  orgMax: Float32Array,
  shrinks: readonly number[],
) => Float64Array[];

/** Clips `w` [rows, cols] in place, row by row and group by group (rows where `unclipped(row)` aside),
 * choosing each clip on samples `x` [n, cols] (the input as the scaled weights see it); `errors` ranks
 * the clips (energy_device.ts: on the CPU by default). Returns how many (row, group) pairs were clipped. */
export function clipWeights(
  w: Float32Array,
  rows: number,
  cols: number,
  x: Float32Array,
  n: number,
  unclipped: (row: number) => boolean,
  errors: ClipErrorsFn = (sub, subRows, orgMax, shrinks) =>
    clipErrors(sub, subRows, cols, orgMax, shrinks, x, n),
): number {
  const picked = Array.from({ length: rows }, (_, r) => r).filter((r) => !unclipped(r));
  if (picked.length === 0) return 0;
  const sub = new Float32Array(picked.length * cols); // [picked, cols]
  picked.forEach((r, i) => sub.set(w.subarray(r * cols, (r + 1) * cols), i * cols));
  const count = clipRows(sub, picked.length, cols, errors);
  picked.forEach((r, i) => w.set(sub.subarray(i * cols, (i + 1) * cols), r * cols));
  return count;
}

/** The CPU reference of ClipErrorsFn over samples `x` [n, cols]. */
export function clipErrors(
  w: Float32Array,
  rows: number,
  cols: number,
  orgMax: Float32Array,
  shrinks: readonly number[],
  x: Float32Array,
  n: number,
): Float64Array[] {
  const { groups } = quantizedLayout([rows, cols]);
  const clipped = new Float32Array(w.length);
  return shrinks.map((shrink) => {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const m = orgMax[r * groups + Math.floor(c / GROUP_SIZE)] * shrink;
        const v = w[r * cols + c];
        clipped[r * cols + c] = Math.max(-m, Math.min(m, v));
      }
    }
    const d = dequantize(quantize(clipped, [rows, cols], "int4-wo"), [rows, cols], "int4-wo");
    for (let k = 0; k < d.length; k++) d[k] -= w[k];
    return groupErrors(d, rows, cols, groups, x, n);
  });
}

/** clipWeights over every row of `w`. */
function clipRows(w: Float32Array, rows: number, cols: number, errors: ClipErrorsFn): number {
  const { groups } = quantizedLayout([rows, cols]);
  const orgMax = new Float32Array(rows * groups); // max |w| per (row, group): a pass over every weight
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      let m = 0;
      const end = r * cols + Math.min(cols, (g + 1) * GROUP_SIZE);
      for (let k = r * cols + g * GROUP_SIZE; k < end; k++) m = Math.max(m, Math.abs(w[k]));
      orgMax[r * groups + g] = m;
    }
  }
  const bestErr = new Float64Array(rows * groups).fill(Infinity);
  const bestShrink = new Float32Array(rows * groups).fill(1);
  const shrinks = Array.from({ length: CLIP_STEPS }, (_, i) => 1 - i / CLIP_GRID);
  const errs = errors(w, rows, orgMax, shrinks);
  for (const [i, shrink] of shrinks.entries()) {
    const err = errs[i];
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
