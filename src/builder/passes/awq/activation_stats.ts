// AWQ's calibration pass: calibration tokens run through the network on the CPU backend (fp32), and
// each AWQ group's input activation is observed as the linear reads it: the mean |x| per input
// channel over every token (s_x, the salience AWQ scales by) and a subsample of whole rows (the X of
// the scale search's loss). Windows are independent sequences from position 0, as AutoAWQ's blocks.
import type { StepInput } from "../../../backends/backend.ts";
import { openCalibrationBackend } from "../../../backends/open_backend.ts";
import type { ModelConfig } from "../../../checkpoint/model_config.ts";
import type { Network } from "../../../models/network.ts";
import type { AwqGroup } from "./fold_rules.ts";

/** What the calibration saw at one group's input. */
export interface InputStats {
  /** mean |x| per input channel over all calibration tokens, [inFeatures]. */
  meanAbs: Float32Array;
  /** Sampled rows of x, [rows, inFeatures]. */
  samples: Float32Array;
  rows: number;
}

const KV_BLOCK = 16;

/** Runs `ids` through the network in windows of at most `window` tokens, yielding after each window,
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
): Generator<void, Map<string, InputStats>> {
  const every = Math.max(1, Math.ceil(ids.length / maxSamples));
  const acc = new Map<string, { sum: Float64Array; samples: Float32Array[] }>();
  for (const g of groups) acc.set(g.input, { sum: new Float64Array(g.inFeatures), samples: [] });
  let start = 0; // absolute index of the current window's first token
  const seen = new Set<string>(); // inputs observed in this window (q/k/v unfused read one x thrice)
  const backend = openCalibrationBackend(
    model,
    { ops: net.ops, output: net.output },
    new Map(weights), // the backend's dispose() clears its map, not the caller's
    KV_BLOCK,
    (op, x, rows) => {
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
  );
  try {
    for (; start < ids.length; start += window) {
      const chunk = ids.subarray(start, Math.min(ids.length, start + window));
      seen.clear();
      backend.allocateKvCache(Math.ceil(chunk.length / KV_BLOCK));
      backend.forward(prefillStep(chunk));
      yield;
    }
  } finally {
    backend.dispose();
  }
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

/** One sequence's whole prefill from position 0, its KV cache in blocks 0, 1, …; logits of the last
 * token only (the LM head's output is not needed). */
function prefillStep(ids: Int32Array): StepInput {
  const T = ids.length;
  const iota = Int32Array.from({ length: T }, (_, i) => i);
  const blocks = Int32Array.from({ length: Math.ceil(T / KV_BLOCK) }, (_, i) => i);
  return {
    tokenIds: ids,
    positions: iota,
    slotMapping: iota,
    seqs: [{ queryStart: 0, queryLen: T, contextLen: T, blockTable: blocks }],
    logitRows: Int32Array.of(T - 1),
  };
}
