// The feed rule of enqueueSample (backends/token_feed.ts), which both backends check before they run a
// step: one row per sequence, −1 (the host's tokens) or a row of the last queued ticket, and only a
// sequence of one query token fed; fedTokenIds puts each fed token at its sequence's query start.
// Penalty lists fed the same way (checkPenaltyFeed, fedPenalties): a row's last entry from the ticket.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { StepInput } from "../../src/backends/backend.ts";
import type { StepTransforms } from "../../src/backends/decoding_ops.ts";
import {
  checkFeed,
  checkPenaltyFeed,
  fedPenalties,
  fedTokenIds,
  HOST_TOKEN,
  TokenFeedError,
} from "../../src/backends/token_feed.ts";

/** [s0: 3 prompt tokens | s1: decode | s2: decode], placeholders 0 where a token may be fed. */
const step: StepInput = {
  tokenIds: Int32Array.from([5, 6, 7, 0, 12]),
  positions: Int32Array.from([0, 1, 2, 4, 9]),
  slotMapping: Int32Array.from([0, 1, 2, 20, 41]),
  seqs: [
    { queryStart: 0, queryLen: 3, contextLen: 3, blockTable: Int32Array.from([0]) },
    { queryStart: 3, queryLen: 1, contextLen: 5, blockTable: Int32Array.from([5, 6]) },
    { queryStart: 4, queryLen: 1, contextLen: 10, blockTable: Int32Array.from([9, 10, 11]) },
  ],
  logitRows: Int32Array.from([2, 3, 4]),
};
const from = { id: 7, rows: 4 };
const feed = (...rows: number[]) => ({ from, rows: Int32Array.from(rows) });

test("a mixed feed: decode sequences from the ticket, the rest (−1) from the host", () => {
  checkFeed(step, feed(HOST_TOKEN, 3, HOST_TOKEN), 7);
  checkFeed(step, feed(-1, 0, 2), 7);
  const ids = fedTokenIds(step, Int32Array.from([-1, 3, -1]), Int32Array.from([40, 41, 42, 43]));
  assert.deepEqual([...ids], [5, 6, 7, 43, 12]);
  assert.deepEqual([...step.tokenIds], [5, 6, 7, 0, 12], "the caller's step is left as it was");
});

test("every break of the rule is a TokenFeedError naming the sequence or ticket", () => {
  const bad: [ReturnType<typeof feed>, number, RegExp][] = [
    [feed(-1, 3, -1), 8, /last queued one \(ticket 8\), not ticket 7/],
    [feed(-1, 3), 7, /2 feed rows for a step of 3 sequences/],
    [feed(0, -1, -1), 7, /sequence 0 is fed row 0 but carries 3 query tokens/],
    [feed(-1, 4, -1), 7, /sequence 1 is fed row 4; ticket 7 sampled rows 0\.\.3/],
    [feed(-1, -1, -2), 7, /sequence 2 is fed row -2/],
  ];
  for (const [f, last, message] of bad)
    assert.throws(
      () => checkFeed(step, f, last),
      (e: unknown) => e instanceof TokenFeedError && message.test(e.message),
      `${[...f.rows]} after ticket ${last}`,
    );
});

/** Penalties over the step's three logits rows; `fed` as given. */
function penalties(
  fed: number[] | undefined,
  lists = [
    [5, 6, 7],
    [1, 2, 0],
    [3, 12],
  ],
): StepTransforms {
  return {
    bias: null,
    banned: null,
    penalties: {
      repetition: Float32Array.from([1.2, 1.2, 1]),
      presence: Float32Array.from([0, 0.5, 0]),
      frequency: Float32Array.from([0, 0, 0.3]),
      tokens: lists.map((l) => Int32Array.from(l)),
      promptLens: Int32Array.from([3, 1, 1]),
      fed: fed && Int32Array.from(fed),
    },
  };
}

test("a penalty list's fed last entry is the ticket's token; complete lists are left as they are", () => {
  const t = penalties([HOST_TOKEN, 3, HOST_TOKEN]);
  checkPenaltyFeed(step, t, feed(-1, 3, -1));
  checkPenaltyFeed(step, penalties(undefined), undefined);
  checkPenaltyFeed(step, penalties([-1, -1, -1]), undefined);
  const p = fedPenalties(
    t.penalties as NonNullable<StepTransforms["penalties"]>,
    Int32Array.from([40, 41, 42, 43]),
  );
  assert.deepEqual(
    p.tokens.map((l) => [...l]),
    [
      [5, 6, 7],
      [1, 2, 43],
      [3, 12],
    ],
  );
  assert.equal(p.fed, undefined, "the lists are complete now");
  assert.deepEqual(
    [...(t.penalties?.tokens[1] ?? [])],
    [1, 2, 0],
    "the caller's lists are left as they were",
  );
});

test("a penalty feed that breaks the rule is a TokenFeedError naming the row", () => {
  const bad: [StepTransforms, ReturnType<typeof feed> | undefined, RegExp][] = [
    [penalties([-1, 3, -1]), undefined, /penalty row 1 is fed row 3, but the step has no feed/],
    [penalties([-1, 4, -1]), feed(-1, 3, -1), /penalty row 1 is fed row 4; ticket 7 sampled rows 0\.\.3/],
    [penalties([-1, 3]), feed(-1, 3, -1), /2 penalty feed rows for 3 logits rows/],
    [
      penalties([0, -1, -1], [[], [1], [2]]),
      feed(-1, 3, -1),
      /penalty row 0 is fed row 0 but its token list is empty/,
    ],
  ];
  for (const [t, f, message] of bad)
    assert.throws(
      () => checkPenaltyFeed(step, t, f),
      (e: unknown) => e instanceof TokenFeedError && message.test(e.message),
      String(message),
    );
});
