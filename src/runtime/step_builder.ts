// Packs the uncomputed tokens of several sequences into one StepInput (see step.ts for the layout).

import type { SeqStep, StepInput } from "../backends/backend.ts";
import type { Sequence } from "./sequence.ts";

export function buildStep(seqs: readonly Sequence[]): StepInput {
  let total = 0;
  for (const s of seqs) total += s.ids.length - s.numComputed;
  const tokenIds = new Int32Array(total);
  const positions = new Int32Array(total);
  const slotMapping = new Int32Array(total);
  const logitRows = new Int32Array(seqs.length);
  const steps: SeqStep[] = [];
  let t = 0;
  seqs.forEach((s, i) => {
    const start = t;
    for (let pos = s.numComputed; pos < s.ids.length; pos++, t++) {
      tokenIds[t] = s.ids[pos];
      positions[t] = pos;
      slotMapping[t] = s.slot(pos);
    }
    steps.push({
      queryStart: start,
      queryLen: t - start,
      contextLen: s.ids.length,
      blockTable: Int32Array.from(s.blockTable),
    });
    logitRows[i] = t - 1;
  });
  return { tokenIds, positions, slotMapping, seqs: steps, logitRows };
}

/**
 * A prefill chunk of at most `budget` tokens that never takes a sequence's last uncomputed token
 * (that one goes into the final step, which produces the logits). Returns null when nothing is
 * left to chunk. Chunk i of a long prompt:   [ computed | chunk i | … | last token ]
 */
export function buildChunkStep(
  seqs: readonly Sequence[],
  budget: number,
): { step: StepInput; taken: number[] } | null {
  let left = budget;
  const taken = seqs.map((s) => {
    const n = Math.max(0, Math.min(s.ids.length - s.numComputed - 1, left));
    left -= n;
    return n;
  });
  const total = budget - left;
  if (total === 0) return null;
  const tokenIds = new Int32Array(total);
  const positions = new Int32Array(total);
  const slotMapping = new Int32Array(total);
  const steps: SeqStep[] = [];
  let t = 0;
  seqs.forEach((s, i) => {
    if (taken[i] === 0) return;
    const start = t;
    for (let pos = s.numComputed; pos < s.numComputed + taken[i]; pos++, t++) {
      tokenIds[t] = s.ids[pos];
      positions[t] = pos;
      slotMapping[t] = s.slot(pos);
    }
    steps.push({
      queryStart: start,
      queryLen: taken[i],
      contextLen: s.numComputed + taken[i],
      blockTable: Int32Array.from(s.blockTable),
    });
  });
  return { step: { tokenIds, positions, slotMapping, seqs: steps, logitRows: new Int32Array(0) }, taken };
}
