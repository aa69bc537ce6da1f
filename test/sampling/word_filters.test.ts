// Token bans and penalties as Hugging Face defines them, on hand-worked examples.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cpuDecodingOps } from "../../src/backends/host_decoding.ts";
import { badWordBans, endsWith, noRepeatNgramBans } from "../../src/sampling/word_filters.ts";

describe("word filters", () => {
  test("no-repeat-ngram bans the tokens that complete a seen n-gram", () => {
    // 2-grams seen: (1,2) (2,3) (3,1) (1,2) → last token 2: ban 3 (from "2 3").
    assert.deepEqual(noRepeatNgramBans([1, 2, 3, 1, 2], 2), [3]);
    // 3-grams: last two tokens (1,2) were followed by 3 → ban 3.
    assert.deepEqual(noRepeatNgramBans([1, 2, 3, 1, 2], 3), [3]);
    assert.deepEqual(noRepeatNgramBans([1, 2], 3), []);
    assert.deepEqual(noRepeatNgramBans([5, 5, 5], 1).sort(), [5]);
  });

  test("bad words: single tokens always, longer ones when their prefix ends the sequence", () => {
    assert.deepEqual(badWordBans([4, 5], [[9], [5, 7], [4, 6, 8]]), [9, 7]);
    assert.deepEqual(badWordBans([4, 6], [[4, 6, 8]]), [8]);
    assert.deepEqual(badWordBans([], [[1, 2]]), []);
  });

  test("endsWith", () => {
    assert.ok(endsWith([1, 2, 3], [2, 3]));
    assert.ok(!endsWith([1, 2, 3], [1, 2]));
    assert.ok(!endsWith([3], [2, 3]));
  });

  test("penalties: HF repetition (divide positives, multiply negatives), OpenAI presence/frequency on generated", () => {
    const V = 4;
    const logits = Float32Array.from([2, -2, 1, 0.5]);
    cpuDecodingOps.applyPenalties(logits, 1, V, {
      repetition: Float32Array.of(2),
      presence: Float32Array.of(0.5),
      frequency: Float32Array.of(0.25),
      // prompt [0, 1], generated [2, 2]
      tokens: [Int32Array.of(0, 1, 2, 2)],
      promptLens: Int32Array.of(2),
    });
    assert.deepEqual([...logits], [1, -4, 0.5 - 0.5 - 0.25 * 2, 0.5]);
  });

  test("ban and bias ops", () => {
    const logits = Float32Array.from([1, 2, 3, 4, 5, 6]);
    cpuDecodingOps.addBias(logits, 2, 3, Float32Array.of(10, 0, -1));
    cpuDecodingOps.banTokens(logits, 2, 3, [[1], []]);
    assert.deepEqual([...logits], [11, Number.NEGATIVE_INFINITY, 2, 14, 5, 5]);
  });
});
