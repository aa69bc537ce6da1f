// Teacher forcing on one backend, below the executor: a prompt's prefill, then one-row decode steps fed
// given tokens (or the backend's own greedy choice), each step's logits kept. Two backends fed the same
// tokens are compared at the same prefixes, so a near-tie that one of them breaks the other way cannot
// change what the later steps see. No prefix cache: every run prefills the whole prompt.
import type { ExecutionBackend } from "../../src/backends/backend.ts";
import { BlockAllocator, buildStep, Sequence } from "../helpers/paged_sequence.ts";

/** KV blocks forcedRun needs at most (call backend.allocateKvCache with at least this once). */
export const FORCED_KV_BLOCKS = 8;

/** Index of the largest entry of row (the first of equals). */
export function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** row[argmax] − the second largest entry: how far greedy decoding is from choosing another token. */
export function topTwoMargin(row: Float32Array): number {
  let first = Number.NEGATIVE_INFINITY;
  let second = Number.NEGATIVE_INFINITY;
  for (const v of row) {
    if (v > first) {
      second = first;
      first = v;
    } else if (v > second) second = v;
  }
  return first - second;
}

/** `steps` steps on `backend`: the prompt's prefill (one step of prompt.length rows), then decode steps
 * of one row, each fed forced[t − 1] when given, else the previous step's argmax. Returns the tokens fed
 * after the prompt (the greedy choices without `forced`) and each step's logits ([steps, V]). */
export function forcedRun(
  backend: ExecutionBackend,
  prompt: readonly number[],
  steps: number,
  forced?: readonly number[],
): { tokens: number[]; logits: Float32Array } {
  const V = backend.vocabSize;
  const alloc = new BlockAllocator(backend.numKvBlocks);
  const seq = new Sequence(0, prompt, backend.kvBlockSize);
  const logits = new Float32Array(steps * V);
  const tokens: number[] = [];
  try {
    for (let t = 0; t < steps; t++) {
      seq.reserve(seq.ids.length, alloc);
      const row = backend.forward(buildStep([seq]));
      logits.set(row.subarray(0, V), t * V);
      seq.numComputed = seq.ids.length;
      const next = forced ? forced[t] : argmax(logits.subarray(t * V, (t + 1) * V));
      tokens.push(next);
      seq.ids.push(next);
    }
  } finally {
    seq.release(alloc);
  }
  return { tokens, logits };
}
