// AWQ's scale search (Lin et al., 2023, §3.2; AutoAWQ's _search_best_scale): for one group of
// linears W [out, in] sharing an input X [n, in] with per-channel salience s_x = mean|x|, try
//   s = s_x^α (clamped at 1e-4), normalised s / sqrt(max(s)·min(s)),   α = 0, 1/20, …, 19/20,
// and keep the α whose quantized, rescaled weights reproduce the outputs best:
//   loss(α) = ‖Q(W·diag(s))·diag(s)⁻¹·Xᵀ − W·Xᵀ‖²   (Q: int4-wo, group 128, round to nearest).
// α = 0 is s = 1, plain round-to-nearest, so the search never does worse than RTN on X.
import { dequantize } from "../../../engine/weight_format.ts";
import { quantize } from "../quantize_weights.ts";
import { errorEnergy } from "./error_energy.ts";

export const GRID = 20;

export interface ScaleChoice {
  /** The chosen scales, [in]; all ones when α = 0 won. */
  scales: Float32Array;
  alpha: number;
  /** loss at the chosen α and at α = 0 (round to nearest), for the build report. */
  loss: number;
  rtnLoss: number;
}

/** The best s for weights `w` ([rows, cols], the group's linears stacked) on samples `x` [n, cols];
 * `losses` gives scaledQuantLoss of each candidate s (energy_device.ts: on the CPU by default). */
export function searchScales(
  w: Float32Array,
  rows: number,
  cols: number,
  meanAbs: Float32Array,
  x: Float32Array,
  n: number,
  losses: (candidates: readonly Float32Array[]) => number[] = (candidates) =>
    candidates.map((s) => scaledQuantLoss(w, rows, cols, s, x, n)),
): ScaleChoice {
  const candidates = Array.from({ length: GRID }, (_, i) => awqScales(meanAbs, i / GRID));
  const loss = losses(candidates);
  let best: ScaleChoice | null = null;
  for (let i = 0; i < GRID; i++) {
    if (!best || loss[i] < best.loss)
      best = { scales: candidates[i], alpha: i / GRID, loss: loss[i], rtnLoss: 0 };
  }
  return { ...(best as ScaleChoice), rtnLoss: loss[0] };
}

/** s = max(s_x^α, 1e-4) / sqrt(max(s)·min(s)), as AutoAWQ computes it. */
export function awqScales(meanAbs: Float32Array, alpha: number): Float32Array {
  const s = Float32Array.from(meanAbs, (v) => Math.max(v ** alpha, 1e-4));
  let max = 0;
  let min = Infinity;
  for (const v of s) {
    max = Math.max(max, v);
    min = Math.min(min, v);
  }
  const norm = Math.sqrt(max * min);
  for (let c = 0; c < s.length; c++) s[c] /= norm;
  return s;
}

/** ‖(Q(W·diag(s))·diag(s)⁻¹ − W)·Xᵀ‖², summed in fp64. */
export function scaledQuantLoss(
  w: Float32Array,
  rows: number,
  cols: number,
  s: Float32Array,
  x: Float32Array,
  n: number,
): number {
  const scaled = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scaled[r * cols + c] = w[r * cols + c] * s[c];
  const q = dequantize(quantize(scaled, [rows, cols], "int4-wo"), [rows, cols], "int4-wo");
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) q[r * cols + c] = q[r * cols + c] / s[c] - w[r * cols + c];
  }
  return errorEnergy(q, rows, cols, x, n);
}
