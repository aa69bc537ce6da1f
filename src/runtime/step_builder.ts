// Packs the uncomputed tokens of several sequences into one StepInput (see step.ts for the layout).
import type { Sequence } from "./sequence.ts";
import type { SeqStep, StepInput } from "./step.ts";

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
