// One beam-search step's scores before the selection, in Hugging Face's order: log-softmax of each
// beam's raw logits (temperature 1), then the logits pipeline on the log-probs, processors last (no
// renormalising). The runtime's beam decode and the executor's beam groups both take them from here.
import type { DecodingOps } from "../backends/decoding_ops.ts";
import { processLogits, type Row, stepTransforms } from "./logits_pipeline.ts";
import type { LogitsProcessor } from "./logits_processor.ts";
import type { ResolvedSamplingConfig } from "./sampling_config.ts";

/** `logits`: [rows.length × V] raw logits, one row per beam. Returns their processed log-probs. */
export function beamLogProbs(
  ops: DecodingOps,
  logits: Float32Array,
  V: number,
  rows: readonly Row[],
  cfg: ResolvedSamplingConfig,
  badWordIds: readonly (readonly (readonly number[])[])[], // per prompt
  processors: readonly LogitsProcessor[],
  step: number,
): Float32Array {
  const B = rows.length;
  const lp = new Float32Array(B * V);
  ops.logSoftmax(logits, B, V, new Float32Array(B).fill(1), new Uint8Array(B).fill(1), lp);
  processLogits(ops, lp, V, rows, stepTransforms(rows, cfg, badWordIds), processors, step);
  return lp;
}
