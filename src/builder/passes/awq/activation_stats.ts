// AWQ's calibration pass: calibration tokens run through the network in fp32 (on the CPU backend, or
// the CUDA backend for --backend cuda builds: the same observer contract), and each AWQ group's input
// activation is observed as the linear reads it: the mean |x| per input channel over every token
// (s_x, the salience AWQ scales by) and a subsample of whole rows (the X of the scale search's loss).
// Windows are independent sequences from position 0, as AutoAWQ's blocks.
import type { ModelConfig } from "../../../checkpoint/model_config.ts";
import type { Network } from "../../../models/network.ts";
import { type CalibrationTarget, runCalibration } from "../../calibration_run.ts";
import type { AwqGroup } from "./fold_rules.ts";

/** What the calibration saw at one group's input. */
export interface InputStats {
  /** mean |x| per input channel over all calibration tokens, [inFeatures]. */
  meanAbs: Float32Array;
  /** Sampled rows of x, [rows, inFeatures]. */
  samples: Float32Array;
  rows: number;
}

/** Runs `ids` through the network in windows of at most `window` tokens on `target`'s backend (the
 * CPU by default; both observe fp32 inputs the same way), yielding after each window,
 * and returns the stats of every group's input; at most `maxSamples` rows are kept per group, spread
 * evenly over the tokens. `weights` (fp32) are only read. */
export function* collectInputStats(
  model: ModelConfig,
  net: Network,
  weights: ReadonlyMap<string, Float32Array>,
  groups: readonly AwqGroup[],
  ids: Int32Array,
  window: number,
  maxSamples: number,
  target: CalibrationTarget = { backend: "cpu" },
): Generator<void, Map<string, InputStats>> {
  const every = Math.max(1, Math.ceil(ids.length / maxSamples));
  const acc = new Map<string, { sum: Float64Array; samples: Float32Array[] }>();
  for (const g of groups) acc.set(g.input, { sum: new Float64Array(g.inFeatures), samples: [] });
  let window0 = -1; // first token of the window the `seen` set belongs to
  const seen = new Set<string>(); // inputs observed in this window (q/k/v unfused read one x thrice)
  yield* runCalibration(
    model,
    net,
    weights,
    ids,
    window,
    (op, x, rows, start) => {
      if (start !== window0) {
        seen.clear();
        window0 = start;
      }
      const a = acc.get(op.x);
      if (!a || seen.has(op.x)) return;
      seen.add(op.x);
      const n = op.inFeatures;
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * n, (r + 1) * n);
        for (let c = 0; c < n; c++) a.sum[c] += Math.abs(row[c]);
        if ((start + r) % every === 0) a.samples.push(row.slice());
      }
    },
    target,
  );
  const stats = new Map<string, InputStats>();
  for (const g of groups) {
    const a = acc.get(g.input)!;
    const samples = new Float32Array(a.samples.length * g.inFeatures);
    a.samples.forEach((row, i) => samples.set(row, i * g.inFeatures));
    const meanAbs = Float32Array.from(a.sum, (v) => v / ids.length);
    stats.set(g.input, { meanAbs, samples, rows: a.samples.length });
  }
  return stats;
}
