// What generation returns.
import type { FinishReason } from "./sequence.ts";

export interface SequenceOutput {
  /** Generated token ids (the end id included when the sequence ended with one). */
  outputIds: number[];
  text: string;
  /** Per generated token: its log-probability under the distribution it was chosen from
   * (after penalties, bans and temperature; before top-k/top-p truncation). Empty when outputLogProbs is off. */
  logProbs: number[];
  /** Sum of logProbs (for beams: the beam's cumulative log-probability). */
  cumLogProb: number;
  /** Beam search only: Hugging Face's sequence score (cumLogProb / length ** lengthPenalty). */
  score?: number;
  finishReason: FinishReason;
}

export interface RequestOutput {
  promptIds: number[];
  /** numReturnSequences sequences (best first for beam search). */
  sequences: SequenceOutput[];
  /** returnContextLogits: logits of every prompt position, [promptLen × vocab]. */
  contextLogits?: Float32Array;
  /** returnGenerationLogits: per sequence, raw logits of each generated step, [steps × vocab]. */
  generationLogits?: Float32Array[];
}

export interface TokenEvent {
  promptIndex: number;
  sequenceIndex: number;
  tokenId: number;
  logProb: number;
  /** Text completed by this token ("" while a multi-byte character is incomplete). */
  text: string;
  finishReason: FinishReason | null;
}

/** One decoding step's output when streaming. Beam search re-ranks beams, so it reports the current
 * beams whole (`beams`) and its final tokens only when done. */
export interface StepOutput {
  step: number;
  tokens: TokenEvent[];
  beams?: { promptIndex: number; sequences: number[][] }[];
}
