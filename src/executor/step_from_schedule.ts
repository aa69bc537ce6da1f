// Turns one SchedulerOutput into the backends' StepInput: the chunks' tokens packed in row order,
// their positions, the KV slot of each token from its request's block table, and one logits row for
// each chunk that reaches its request's last token (those are sampled).
//
//   chunks:      [ r3: start 7, 1 token, sample | r9: start 0, 4 of 10 tokens ]
//   tokenIds:    [ t7(r3) | t0 t1 t2 t3 (r9) ]       seqs: {0, 1, ctx 8} {1, 4, ctx 4}
//   logitRows:   [ 0 ]                               sampled: [ 3 ]
import type { SeqStep, StepInput } from "../backends/backend.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";

export interface ScheduledStep {
  step: StepInput;
  /** The request of each logits row, in row order. */
  sampled: number[];
}

export function stepFromSchedule(out: SchedulerOutput, tokensPerBlock: number): ScheduledStep {
  const T = out.numTokens;
  const tokenIds = new Int32Array(T);
  const positions = new Int32Array(T);
  const slotMapping = new Int32Array(T);
  const seqs: SeqStep[] = [];
  const logitRows: number[] = [];
  const sampled: number[] = [];
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
    if (c.sample) {
      logitRows.push(t - 1);
      sampled.push(c.requestId);
    }
  }
  return {
    step: { tokenIds, positions, slotMapping, seqs, logitRows: Int32Array.from(logitRows) },
    sampled,
  };
}
