// kiln bench's per-run latencies (src/runtime/bench.ts batchLatency) from each prompt's token times:
// TTFT once every prompt has its first token, TPOT the median over sequences of each one's (last −
// first) / (tokens − 1) (per request, as serving benchmarks define it). Lock-step batch steps, which
// the bench timed before, wait for the slowest lane: when the prompts take several prefill iterations the
// early sequences finish first, and those steps time only the last lanes' tokens in an ever smaller batch.
// The token times are the executor's, when it read each step, not when the bench's loop took the event:
// the executor resumes readers a few per turn of the event loop, so with a large batch a reader takes
// several steps' tokens at once.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { READERS_PER_TURN } from "../../src/executor/reader_wakeups.ts";
import { batchLatency, runBench } from "../../src/runtime/bench.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

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
    // Own (last − first) / 3: 300 / 3, 210 / 3, 120 / 3, 30 / 3 → 100, 70, 40, 10 → 55.
    assert.equal(r.tpotMs, 55);
    // Lock-step steps saw only the last lane, decoding alone: 10 ms, below what three of the four
    // requests waited between their tokens.
    assert.equal(lockStepTpot(stamps), 10);
  });

  test("tokens that arrive in bursts: TPOT over the whole sequence, not its ~0 gaps inside a burst", () => {
    // The first token at 40 ms, then every 30 ms a burst of 3 (one step's worth each 10 ms, delivered
    // together): 6 gaps over 60 ms. The median gap is 0.
    const stamps = [0, 1].map(() => [40, 70, 70, 70, 100, 100, 100]);
    const r = batchLatency(stamps, 0);
    assert.equal(r.tpotMs, 10);
    assert.equal(r.ttftMs, 40);
    assert.equal(r.totalMs, 100);
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

describe("runBench on the executor", () => {
  const model = writeTinyModel("llama", 5);
  after(model.cleanup);

  test("a batch of more readers than the executor resumes a turn: TPOT the step, first tokens together", async () => {
    // Every prompt prefills in the first iteration and the batch decodes in lock step, so each
    // sequence's tokens come from the same steps: the same first and last token times for all, TPOT
    // (last − first) / (O − 1) of the batch. Stamped as the bench's loop took the events, readers
    // resumed READERS_PER_TURN a turn got several steps' tokens at once: a TPOT near 0 and first
    // tokens spread over several steps.
    const B = 4 * READERS_PER_TURN;
    const [I, O] = [4, 12];
    const dir = join(model.dir, "engine");
    buildEngine(model.dir, dir, { kvBlockSize: 4, maxBatchSize: B, maxNumTokens: B * I });
    await using runner = ModelRunner.fromEngine(dir);
    const r = await runBench(runner, { batchSize: B, inputLen: I, outputLen: O, runs: 1 });
    assert.equal(r.outputTokens, B * O);
    const totalMs = (1000 * r.outputTokens) / r.outputTokensPerSec;
    const batchTpot = (totalMs - r.ttftMs) / (O - 1);
    assert.ok(r.tpotMs > 0);
    assert.ok(
      Math.abs(r.tpotMs - batchTpot) <= 1e-6 * batchTpot,
      `TPOT ${r.tpotMs} ms, the batch's ${batchTpot} ms`,
    );
    assert.equal(r.firstTokenSpreadMs, 0);
  });
});
