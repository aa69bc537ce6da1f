// The step builder: a SchedulerOutput with a decode and a prefill chunk becomes the packed StepInput
// the backends read (tokens, positions, slots from the block tables, contextLen, logits rows).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ScheduledChunk, SchedulerOutput } from "../../src/executor/scheduler_output.ts";
import { stepFromSchedule } from "../../src/executor/step_from_schedule.ts";

/** A chunk of request `requestId`'s sequence 0 unless `seq` says otherwise; no context logits. */
const chunk = (
  c: Omit<ScheduledChunk, "seq" | "contextLogits"> & Partial<ScheduledChunk>,
): ScheduledChunk => ({
  seq: 0,
  contextLogits: false,
  ...c,
});

test("a decode and a partial prefill chunk pack into one step", () => {
  const out: SchedulerOutput = {
    chunks: [
      // request 3 decodes the token at position 5 (blocks 7, 2: slot 2·4 + 1)
      chunk({ requestId: 3, start: 5, tokenIds: [11], blockTable: Int32Array.of(7, 2), sample: true }),
      // request 9 computes prompt positions 2..4 of a longer prompt: no logits
      chunk({
        requestId: 9,
        start: 2,
        tokenIds: [20, 21, 22],
        blockTable: Int32Array.of(4, 0),
        sample: false,
      }),
      // request 5's last chunk: positions 0..1, sampled
      chunk({ requestId: 5, start: 0, tokenIds: [30, 31], blockTable: Int32Array.of(6), sample: true }),
    ],
    numTokens: 6,
    numLogitRows: 2,
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
  assert.deepEqual(sampled, [
    { requestId: 3, seq: 0, row: 0 },
    { requestId: 5, seq: 0, row: 1 },
  ]);
});

test("context logits: every row of a chunk, its last one also sampled; beams are rows of one request", () => {
  const out: SchedulerOutput = {
    chunks: [
      // request 2's two beams decode (sequences 0 and 1)
      chunk({ requestId: 2, start: 4, tokenIds: [5], blockTable: Int32Array.of(1, 3), sample: true }),
      chunk({ requestId: 2, seq: 1, start: 4, tokenIds: [6], blockTable: Int32Array.of(1, 4), sample: true }),
      // request 7 wants context logits: its middle chunk (no sample) and its last one
      chunk({
        requestId: 7,
        start: 0,
        tokenIds: [1, 2],
        blockTable: Int32Array.of(0),
        sample: false,
        contextLogits: true,
      }),
    ],
    numTokens: 4,
    numLogitRows: 4,
    blockCopies: [],
    preempted: [],
    finished: [],
  };
  const { step, sampled, context } = stepFromSchedule(out, 4);
  assert.deepEqual([...step.logitRows], [0, 1, 2, 3]);
  assert.deepEqual(sampled, [
    { requestId: 2, seq: 0, row: 0 },
    { requestId: 2, seq: 1, row: 1 },
  ]);
  assert.deepEqual(context, [{ requestId: 7, start: 0, row: 2, count: 2 }]);
  out.chunks[2] = { ...out.chunks[2], start: 2, tokenIds: [3], sample: true };
  const last = stepFromSchedule(out, 4);
  assert.deepEqual(last.sampled.at(-1), { requestId: 7, seq: 0, row: 2 });
  assert.deepEqual(last.context, [{ requestId: 7, start: 2, row: 2, count: 1 }]);
});
