// The step builder: a SchedulerOutput with a decode and a prefill chunk becomes the packed StepInput
// the backends read (tokens, positions, slots from the block tables, contextLen, logits rows).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { SchedulerOutput } from "../../src/executor/scheduler_output.ts";
import { stepFromSchedule } from "../../src/executor/step_from_schedule.ts";

test("a decode and a partial prefill chunk pack into one step", () => {
  const out: SchedulerOutput = {
    chunks: [
      // request 3 decodes the token at position 5 (blocks 7, 2: slot 2·4 + 1)
      { requestId: 3, seq: 0, start: 5, tokenIds: [11], blockTable: Int32Array.of(7, 2), sample: true },
      // request 9 computes prompt positions 2..4 of a longer prompt: no logits
      {
        requestId: 9,
        seq: 0,
        start: 2,
        tokenIds: [20, 21, 22],
        blockTable: Int32Array.of(4, 0),
        sample: false,
      },
      // request 5's last chunk: positions 0..1, sampled
      { requestId: 5, seq: 0, start: 0, tokenIds: [30, 31], blockTable: Int32Array.of(6), sample: true },
    ],
    numTokens: 6,
    blockCopies: [],
    preempted: [],
    finished: [],
  };
  const { step, sampled } = stepFromSchedule(out, 4);
  assert.deepEqual([...step.tokenIds], [11, 20, 21, 22, 30, 31]);
  assert.deepEqual([...step.positions], [5, 2, 3, 4, 0, 1]);
  assert.deepEqual([...step.slotMapping], [9, 18, 19, 0, 24, 25]);
  assert.deepEqual(
    step.seqs.map((s) => [s.queryStart, s.queryLen, s.contextLen, [...s.blockTable]]),
    [
      [0, 1, 6, [7, 2]],
      [1, 3, 5, [4, 0]],
      [4, 2, 2, [6]],
    ],
  );
  assert.deepEqual([...step.logitRows], [0, 5]);
  assert.deepEqual(sampled, [3, 5]);
});
