// A sequence of the sampling loop while it generates: the KV-backed token sequence, which prompt and
// sample it is, its detokenised text and its own top-p (which decays per token). Also the per-row
// views the logits pipeline and the backend's sampler take.
import type { SampleParams } from "../backends/decoding_ops.ts";
import type { TextTracker } from "../executor/text_tracker.ts";
import type { Row } from "../sampling/logits_pipeline.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import type { Sequence } from "./sequence.ts";

export interface LiveSequence {
  seq: Sequence;
  promptIndex: number;
  sequenceIndex: number;
  text: TextTracker;
  topP: number;
  /** Raw logits of each generated token (returnGenerationLogits), [V] each. */
  genLogits: Float32Array[];
}

/** The logits pipeline's view of each live sequence, in row order. */
export function rowsOf(ls: readonly LiveSequence[]): Row[] {
  return ls.map((l) => ({
    promptIndex: l.promptIndex,
    sequenceIndex: l.sequenceIndex,
    promptIds: l.seq.promptIds,
    outputIds: l.seq.generated,
    ids: l.seq.ids,
  }));
}

/** The sampler's per-row settings for `step`; the RNG key is (seed, sample index, step). */
export function sampleParamsOf(
  ls: readonly LiveSequence[],
  step: number,
  cfg: ResolvedSamplingConfig,
): SampleParams {
  return {
    greedy: Uint8Array.from(ls, (l) => (cfg.greedy[l.promptIndex] ? 1 : 0)),
    temperature: Float32Array.from(ls, (l) => cfg.temperature[l.promptIndex]),
    topK: Int32Array.from(ls, (l) => cfg.topK[l.promptIndex]),
    topP: Float32Array.from(ls, (l) => l.topP),
    minP: Float32Array.from(ls, (l) => cfg.minP[l.promptIndex]),
    seed: Float64Array.from(ls, (l) => cfg.randomSeed[l.promptIndex]),
    sequence: Int32Array.from(ls, (l) => l.sequenceIndex),
    step: Int32Array.from(ls, () => step),
  };
}
