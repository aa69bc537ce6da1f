// A finished sequence as the API returns it, from the sampling loop or from beam search.
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import type { SequenceOutput } from "./outputs.ts";
import type { FinishReason } from "./sequence.ts";

/** Log-probs and their sum only when the config asks for them. */
export function sequenceOutput(
  ids: number[],
  logProbs: number[],
  finishReason: FinishReason,
  cfg: ResolvedSamplingConfig,
  text: string,
  score?: number,
): SequenceOutput {
  const cum = logProbs.reduce((a, b) => a + b, 0);
  return {
    outputIds: ids,
    text,
    logProbs: cfg.outputLogProbs ? logProbs : [],
    cumLogProb: cfg.outputCumLogProbs ? cum : 0,
    ...(score !== undefined ? { score } : {}),
    finishReason,
  };
}

/** Per-step logits rows [V] joined into [steps, V]. */
export function concatRows(parts: Float32Array[], V: number): Float32Array {
  const out = new Float32Array(parts.length * V);
  parts.forEach((p, i) => {
    out.set(p, i * V);
  });
  return out;
}
