// One step of the synchronous path: the step runs and its tokens are read before the next step is
// built. With forwardSample (and nothing that needs logits on the host) the decoding runs on the
// device; otherwise the logits come to the host for the logits pipeline and the host sampler.
import type { ExecutionBackend, StepInput } from "../backends/backend.ts";
import { processLogits, stepTransforms } from "../sampling/logits_pipeline.ts";
import type { LogitsProcessor } from "../sampling/logits_processor.ts";
import type { ResolvedSamplingConfig } from "../sampling/sampling_config.ts";
import { type LiveSequence, rowsOf, sampleParamsOf } from "./live_sequence.ts";

export interface SyncStepInputs {
  backend: ExecutionBackend;
  cfg: ResolvedSamplingConfig;
  badWordIds: number[][][];
  processors: readonly LogitsProcessor[];
  /** Whether forwardSample may run this request's decoding on the device. */
  onDevice: boolean;
}

/** The tokens of `step` for `live`: from `hostLogits` when the prefill already returned them (one
 * row per live sequence), else from running `pending`. */
export function syncStep(
  x: SyncStepInputs,
  live: readonly LiveSequence[],
  pending: StepInput | null,
  hostLogits: Float32Array | null,
  step: number,
): { tokens: Int32Array; logProbs: Float32Array } {
  const { backend, cfg } = x;
  const V = backend.vocabSize;
  const rows = rowsOf(live);
  const params = sampleParamsOf(live, step, cfg);
  const transforms = stepTransforms(rows, cfg, x.badWordIds);
  if (pending && x.onDevice && backend.forwardSample) {
    // Bias, penalties, bans and sampling run on the device; only tokens and their log-probs come back.
    return backend.forwardSample(pending, params, transforms);
  }
  const logits = hostLogits ?? backend.forward(pending as StepInput).slice();
  if (cfg.returnGenerationLogits) live.forEach((l, r) => l.genLogits.push(logits.slice(r * V, (r + 1) * V)));
  processLogits(backend.decoding, logits, V, rows, transforms, x.processors, step);
  return backend.decoding.sample(logits, live.length, V, params);
}
