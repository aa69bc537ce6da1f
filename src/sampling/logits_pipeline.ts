// The per-step logits pipeline shared by sampling and beam search, in Hugging Face's processor order:
//   embedding bias → repetition/presence/frequency penalties → no-repeat-ngram → bad words →
//   min length (end ids banned) → user LogitsProcessors
// Each stage is a backend decoding op over the whole batch [B, V].

import { applyTransforms, type DecodingOps, type StepTransforms } from "../backends/decoding_ops.ts";
import type { LogitsProcessor, SequenceView } from "./logits_processor.ts";
import type { ResolvedSamplingConfig } from "./sampling_config.ts";
import { badWordBans, noRepeatNgramBans } from "./word_filters.ts";

export interface Row extends SequenceView {
  /** prompt + generated ids. */
  readonly ids: readonly number[];
}

export function stepTransforms(
  rows: readonly Row[],
  cfg: ResolvedSamplingConfig,
  badWordIds: readonly (readonly (readonly number[])[])[], // per prompt: banned token sequences
): StepTransforms {
  const pick = (arr: number[]) => Float32Array.from(rows, (r) => arr[r.promptIndex]);
  const rep = pick(cfg.repetitionPenalty);
  const pres = pick(cfg.presencePenalty);
  const freq = pick(cfg.frequencyPenalty);
  const penalties =
    rep.some((x) => x !== 1) || pres.some((x) => x !== 0) || freq.some((x) => x !== 0)
      ? {
          repetition: rep,
          presence: pres,
          frequency: freq,
          tokens: rows.map((r) => Int32Array.from(r.ids)),
          promptLens: Int32Array.from(rows, (r) => r.promptIds.length),
        }
      : null;
  const banned = rows.map((r) => {
    const p = r.promptIndex;
    const out = [...noRepeatNgramBans(r.ids, cfg.noRepeatNgramSize[p]), ...badWordBans(r.ids, badWordIds[p])];
    if (r.outputIds.length < cfg.minLength[p]) out.push(...cfg.endIds);
    return out;
  });
  return { bias: cfg.embeddingBias, penalties, banned: banned.some((b) => b.length > 0) ? banned : null };
}

export function processLogits(
  ops: DecodingOps,
  logits: Float32Array, // [rows.length, V]
  V: number,
  rows: readonly Row[],
  t: StepTransforms,
  processors: readonly LogitsProcessor[],
  step: number,
): void {
  applyTransforms(ops, logits, rows.length, V, t);
  for (const proc of processors) proc.process(logits, V, rows, step);
}
