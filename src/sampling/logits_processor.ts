// Extension points a user implements. Both see each sequence of the step with its tokens so far;
// a LogitsProcessor edits the step's logits in place before sampling, a StoppingCriteria ends a
// sequence. Lists of either are applied in order. The executor calls a processor per request: with
// one sequence's row when sampling, with the request's beams in beam search (never across requests).
import type { FinishReason } from "./stopping.ts";

export interface SequenceView {
  /** Which prompt of the batch. */
  readonly promptIndex: number;
  /** Which returned sequence (sample or beam) of that prompt. */
  readonly sequenceIndex: number;
  readonly promptIds: readonly number[];
  /** Generated tokens so far (the token being chosen is not included). */
  readonly outputIds: readonly number[];
}

export interface LogitsProcessor {
  /** logits: [sequences.length, vocabSize], row r belongs to sequences[r]. Edit in place. */
  process(logits: Float32Array, vocabSize: number, sequences: readonly SequenceView[], step: number): void;
}

export interface StoppingCriteria {
  /** Called after a token was appended; return true (→ finishReason "stop") or a reason to end the sequence. */
  shouldStop(sequence: SequenceView & { readonly text: string }, step: number): boolean | FinishReason;
}
