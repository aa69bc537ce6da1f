// Turns one SchedulerOutput into the backends' StepInput: the chunks' tokens packed in row order,
// their positions, the KV slot of each token from its sequence's block table, and one logits row for
// each chunk that reaches its sequence's last token (those are sampled). A chunk of a request that
// wants context logits gets a logits row for every token; its last one is also its sample row (the
// rows are out.numLogitRows: chunkLogitRows is this count).
//
//   chunks:      [ r3: start 7, 1 token, sample | r9: start 0, 4 of 10 tokens ]
//   tokenIds:    [ t7(r3) | t0 t1 t2 t3 (r9) ]       seqs: {0, 1, ctx 8} {1, 4, ctx 4}
//   logitRows:   [ 0 ]                               sampled: [ {r3, seq 0, row 0} ]
import type { SeqStep, StepInput } from "../backends/backend.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";

/** A chunk's sampled logits row. */
export interface SampleRow {
  requestId: number;
  /** Index of the sequence in its request's seqs. */
  seq: number;
  /** Row in the step's logits. */
  row: number;
}

/** A chunk's logits rows at every position (context logits). */
export interface ContextRows {
  requestId: number;
  /** Position of the chunk's first token, and its first logits row. */
  start: number;
  row: number;
  count: number;
}

export interface ScheduledStep {
  step: StepInput;
  /** In row order. */
  sampled: SampleRow[];
  context: ContextRows[];
}

export function stepFromSchedule(out: SchedulerOutput, tokensPerBlock: number): ScheduledStep {
  const T = out.numTokens;
  const tokenIds = new Int32Array(T);
  const positions = new Int32Array(T);
  const slotMapping = new Int32Array(T);
  const seqs: SeqStep[] = [];
  const logitRows: number[] = [];
  const sampled: SampleRow[] = [];
  const context: ContextRows[] = [];
  let t = 0;
  for (const c of out.chunks) {
    const queryStart = t;
    c.tokenIds.forEach((id, i) => {
      const pos = c.start + i;
      tokenIds[t] = id;
      positions[t] = pos;
      slotMapping[t] =
        c.blockTable[Math.floor(pos / tokensPerBlock)] * tokensPerBlock + (pos % tokensPerBlock);
      t++;
    });
    const queryLen = c.tokenIds.length;
    seqs.push({ queryStart, queryLen, contextLen: c.start + queryLen, blockTable: c.blockTable });
    if (c.contextLogits) {
      context.push({ requestId: c.requestId, start: c.start, row: logitRows.length, count: queryLen });
      for (let i = queryStart; i < t; i++) logitRows.push(i);
      if (c.sample) sampled.push({ requestId: c.requestId, seq: c.seq, row: logitRows.length - 1 });
    } else if (c.sample) {
      sampled.push({ requestId: c.requestId, seq: c.seq, row: logitRows.length });
      logitRows.push(t - 1);
    }
  }
  return {
    step: { tokenIds, positions, slotMapping, seqs, logitRows: Int32Array.from(logitRows) },
    sampled,
    context,
  };
}
