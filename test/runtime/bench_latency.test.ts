// kiln bench's per-run latencies (src/runtime/bench.ts batchLatency) from each prompt's token arrival
// times: TTFT once every prompt has its first token, TPOT the median over sequences of each one's median
// gap between its own tokens (per request, as serving benchmarks define it). Lock-step batch steps, which
// the bench timed before, wait for the slowest lane: when the prompts take several prefill iterations the
// early sequences finish first, and those steps time only the last lanes' tokens in an ever smaller batch.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { batchLatency } from "../../src/runtime/bench.ts";

/** What timing lock-step steps gave: step k when every unfinished lane has its k-th token, then the
 * median gap between steps. */
function lockStepTpot(stamps: number[][]): number {
  const steps = Math.max(...stamps.map((s) => s.length));
  const at = Array.from({ length: steps }, (_, k) =>
    Math.max(...stamps.filter((s) => s.length > k).map((s) => s[k])),
  );
  const gaps = at
    .slice(1)
    .map((t, i) => t - at[i])
    .sort((a, b) => a - b);
  return gaps.length % 2
    ? gaps[(gaps.length - 1) / 2]
    : (gaps[gaps.length / 2 - 1] + gaps[gaps.length / 2]) / 2;
}

describe("batchLatency", () => {
  test("a lock-step batch: TTFT its prefill, TPOT its step, the total its last token (as lock-step timing)", () => {
    // 3 sequences, all first tokens at 40 ms, then a step every 10 ms.
    const stamps = [0, 1, 2].map(() => [40, 50, 60, 70]);
    assert.deepEqual(batchLatency(stamps, 0), {
      ttftMs: 40,
      tpotMs: 10,
      totalMs: 70,
      tokens: 12,
      firstTokenSpreadMs: 0,
    });
    assert.equal(lockStepTpot(stamps), 10);
  });

  test("prompts prefilled one iteration after another: every sequence's own gaps, not the last lanes'", () => {
    // 4 prompts, one prefilled per 100 ms iteration (a prefill chunk beside the running decodes); each
    // sequence then takes a token every iteration: 100 ms while prompts are still prefilling, 10 ms once
    // only decodes run (from 400 ms). 4 tokens each.
    const iterationEnds = [100, 200, 300, 400, 410, 420, 430];
    const stamps = [0, 1, 2, 3].map((p) => iterationEnds.slice(p, p + 4));
    const r = batchLatency(stamps, 0);
    assert.equal(r.ttftMs, 400);
    assert.equal(r.totalMs, 430);
    assert.equal(r.tokens, 16);
    assert.equal(r.firstTokenSpreadMs, 300); // staggered: kiln bench says so beside its TPOT
    // Own gaps: [100,100,100], [100,100,10], [100,10,10], [10,10,10] → medians 100, 100, 10, 10 → 55.
    assert.equal(r.tpotMs, 55);
    // Lock-step steps saw only the last lane, decoding alone: 10 ms, below what three of the four
    // requests waited between their tokens.
    assert.equal(lockStepTpot(stamps), 10);
  });

  test("a sequence of one token has no gap; none at all gives no TPOT", () => {
    assert.deepEqual(batchLatency([[5], [7, 9, 11]], 1), {
      ttftMs: 6,
      tpotMs: 2,
      totalMs: 10,
      tokens: 4,
      firstTokenSpreadMs: 2,
    });
    assert.equal(batchLatency([[5], [7]], 0).tpotMs, undefined);
  });
});
