// Pass: activation-aware weight quantization (--quantize int4-awq; Lin et al., 2023). Calibration text
// runs through the unquantized network (activation_stats.ts); each group of linears sharing an input
// gets the per-channel scales that minimise its int4 output error (scale_search.ts), multiplied into
// its weights' columns and divided out of the op that makes its input (fold_rules.ts); then each
// linear's weights are clipped per group where that lowers the int4 error (clip_search.ts). What comes
// out is an ordinary network's weights: quantize_weights.ts then stores the linears as int4-wo.
import type { ModelConfig } from "../../../checkpoint/model_config.ts";
import { fromF32, toF32 } from "../../../dtype.ts";
import type { EngineWeight } from "../../../engine/writer.ts";
import type { Network } from "../../../models/network.ts";
import { type CalibrationTarget, calibrationWindow } from "../../calibration_run.ts";
import { collectInputStats } from "./activation_stats.ts";
import { clipWeights } from "./clip_search.ts";
import { CPU_ENERGIES, type EnergyDevice } from "./energy_device.ts";
import { applyAwqScales, awqGroups, queryKeyRows } from "./fold_rules.ts";
import { searchScales } from "./scale_search.ts";

/** The search's loss is measured on a sample: at most this many rows of X (tokens, spread evenly over
 * the calibration) and of the group's stacked weights (output channels, evenly spaced; quantization is
 * row by row, so a row's error does not depend on the others). Enough to rank 20 candidates, few
 * enough that a small model calibrates in seconds on one CPU thread. */
export const SEARCH_SAMPLES = 128;
export const SEARCH_ROWS = 256;

/** Per group: the α chosen and the search's loss there and at α = 0 (round to nearest), or why the
 * group was left unscaled; how many (row, group of 128) weight groups were clipped. */
export interface AwqGroupReport {
  input: string;
  alpha?: number;
  loss?: number;
  rtnLoss?: number;
  skip?: string;
  clipped?: number;
}

export interface AwqReport {
  tokens: number;
  groups: AwqGroupReport[];
  /** Wall time of each phase: the calibration forward, the scale search and the clip search; with
   * --backend cuda, compiling their kernels first (`kernels`). */
  ms: { kernels?: number; calibration: number; scaleSearch: number; clipSearch: number };
}

/** Where AWQ's phases run: the calibration forward on `calibration`'s backend, the searches' energies
 * on the device `openEnergies` opens once the calibration's backend is gone (its GPU memory freed).
 * The host side (the search loops, the choices, the folding) is the same code either way. */
export interface AwqTarget {
  calibration: CalibrationTarget;
  openEnergies(): EnergyDevice;
}

/** Everything on the CPU: the reference, and what --backend cpu builds with. */
export const CPU_AWQ: AwqTarget = { calibration: { backend: "cpu" }, openEnergies: () => CPU_ENERGIES };

/** `weights` with AWQ's scales applied (still in their dtype, unquantized), and what was chosen. The
 * generator yields after each calibration window and each group searched. */
export function* awqScaledWeights(
  model: ModelConfig,
  net: Network,
  weights: EngineWeight[],
  ids: Int32Array,
  maxSeqLen: number,
  target: AwqTarget = CPU_AWQ,
): Generator<void, { weights: EngineWeight[]; report: AwqReport }> {
  const fp32 = new Map(weights.map((w) => [w.name, toF32(w.bytes(), w.dtype)]));
  const groups = awqGroups(net);
  const window = calibrationWindow(model, maxSeqLen);
  const t0 = performance.now();
  const stats = yield* collectInputStats(
    model,
    net,
    fp32,
    groups,
    ids,
    window,
    SEARCH_SAMPLES,
    target.calibration,
  );
  const t1 = performance.now();
  const scales = new Map<string, Float32Array>();
  const report: AwqGroupReport[] = [];
  const energies = target.openEnergies();
  let t2 = t1;
  try {
    for (const g of groups) {
      if (!g.fold) {
        report.push({ input: g.input, skip: g.skip });
        continue;
      }
      const st = stats.get(g.input)!;
      const { rows, w } = sampledRows(
        g.linears.map((l) => fp32.get(l.weight)!),
        g.inFeatures,
        SEARCH_ROWS,
      );
      const session = energies.scaleSession(w, rows, g.inFeatures, st.samples, st.rows);
      try {
        const best = searchScales(w, rows, g.inFeatures, st.meanAbs, st.samples, st.rows, (c) =>
          session.losses(c),
        );
        if (best.alpha > 0) scales.set(g.input, best.scales);
        report.push({ input: g.input, alpha: best.alpha, loss: best.loss, rtnLoss: best.rtnLoss });
      } finally {
        session.dispose();
      }
      yield;
    }
    applyAwqScales(groups, scales, fp32);
    t2 = performance.now();
    // Clipping sees the scaled weights and the input they now read, x / s.
    const qk = queryKeyRows(net);
    for (const [i, g] of groups.entries()) {
      const st = stats.get(g.input)!;
      const s = scales.get(g.input);
      const x = s ? st.samples.map((v, k) => v / s[k % g.inFeatures]) : st.samples;
      const session = energies.clipSession(x, st.rows, g.inFeatures);
      let clipped = 0;
      try {
        for (const l of g.linears) {
          const ranges = qk.get(l.weight) ?? [];
          const unclipped = (r: number) => ranges.some(([from, to]) => r >= from && r < to);
          clipped += clipWeights(
            fp32.get(l.weight)!,
            l.outFeatures,
            l.inFeatures,
            x,
            st.rows,
            unclipped,
            (...a) => session.errors(...a),
          );
        }
      } finally {
        session.dispose();
      }
      report[i].clipped = clipped;
      yield;
    }
  } finally {
    energies.dispose();
  }
  const ms = { calibration: t1 - t0, scaleSearch: t2 - t1, clipSearch: performance.now() - t2 };
  const touched = new Set(
    groups.flatMap((g) => [
      ...g.linears.map((l) => l.weight),
      ...(g.fold?.kind === "vectors" && scales.has(g.input) ? g.fold.weights : []),
      ...(g.fold?.kind === "rows" && scales.has(g.input)
        ? [g.fold.weight, ...(g.fold.bias ? [g.fold.bias] : [])]
        : []),
    ]),
  );
  for (const name of [...fp32.keys()]) if (!touched.has(name)) fp32.delete(name);
  const out = weights.map((w): EngineWeight => {
    if (!touched.has(w.name)) return w;
    const values = fp32.get(w.name)!;
    return { ...w, bytes: () => fromF32(values, w.dtype) };
  });
  return { weights: out, report: { tokens: ids.length, groups: report, ms } };
}

/** At most `max` rows, evenly spaced, of the weights [out_i, cols] stacked, [rows, cols]. */
function sampledRows(ws: Float32Array[], cols: number, max: number): { rows: number; w: Float32Array } {
  const total = ws.reduce((s, w) => s + w.length / cols, 0);
  const every = Math.ceil(total / max);
  const rows = Math.ceil(total / every);
  const out = new Float32Array(rows * cols);
  let r = 0; // row index in the stack
  for (const w of ws) {
    for (let i = 0; i < w.length / cols; i++, r++) {
      if (r % every === 0) out.set(w.subarray(i * cols, (i + 1) * cols), (r / every) * cols);
    }
  }
  return { rows, w: out };
}
