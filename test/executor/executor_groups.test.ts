// Sequence groups in the executor on a tiny CPU engine: numReturnSequences samples and beam search
// run as rows of the same step beside other requests, and every request's sequences equal
// ModelRunner.generate's for it alone (tokens, log-probs, finish reasons, beam scores); context
// logits equal generate's through chunked prefill, and under a backend's bound on logits rows; preemption of groups recomputes the same tokens;
// cancel mid-beam frees every block at once; after every test the idle invariant holds.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Executor, ExecutorRequest } from "../../src/executor/executor.ts";
import { mulberry, ticks, tinyEngineExecutors } from "./executor_helpers.ts";
import { assertSameSequences, collectGroup, type GroupResult, viaRuntime } from "./group_helpers.ts";

const { runner, executor } = tinyEngineExecutors();

/** Deterministic prompts over the tiny vocabulary (61 ids). */
function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 13 + k * 5 + 4) % 61);
}

interface Job {
  ids: number[];
  req: Omit<ExecutorRequest, "prompt">;
  /** Loop iterations to wait before it is enqueued. */
  delay: number;
}

/** Enqueues every job `delay` iterations apart; returns each one's results. */
async function runAll(ex: Executor, js: readonly Job[]): Promise<GroupResult[]> {
  const pending: Promise<GroupResult>[] = [];
  for (const j of js) {
    await ticks(j.delay);
    pending.push(collectGroup(ex, ex.enqueue({ prompt: j.ids, ...j.req })));
  }
  return Promise.all(pending);
}

async function assertAlone(js: readonly Job[], got: readonly GroupResult[]): Promise<void> {
  for (const [i, j] of js.entries()) {
    const want = await viaRuntime(runner, j.ids, j.req);
    assertSameSequences(got[i], want, `request ${i} (${JSON.stringify(j.req)})`);
  }
}

const sampled = (seed: number, n: number, extra: Partial<ExecutorRequest> = {}): Job["req"] => ({
  maxNewTokens: 6 + (seed % 7),
  temperature: 1.1,
  topK: 30,
  seed,
  numReturnSequences: n,
  ...extra,
});
const beams = (w: number, extra: Partial<ExecutorRequest> = {}): Job["req"] => ({
  maxNewTokens: 9,
  beamWidth: w,
  ...extra,
});

describe("executor: numReturnSequences", () => {
  test("n samples equal ModelRunner.generate's, alone, streamed or not", async () => {
    const ex = executor({ maxNumTokens: 16 });
    for (const streaming of [false, true]) {
      const j: Job = { ids: prompt(1, 7), req: { ...sampled(11, 3), streaming }, delay: 0 };
      const [got] = await runAll(ex, [j]);
      await assertAlone([j], [got]);
      const tokens = got.seqs.reduce((n, s) => n + s.tokens.length, 0);
      // streaming: one event per token per sequence; otherwise one per sequence
      assert.equal(got.events.length, streaming ? tokens : 3);
      assert.ok(new Set(got.seqs.map((s) => s.tokens.join())).size > 1, "the samples are all equal");
    }
  });

  test("with an end id, sequences stop on their own; among other requests in flight", async () => {
    const ex = executor({ maxNumTokens: 12, maxNumSeqs: 12 });
    const js: Job[] = [
      {
        ids: prompt(2, 9),
        req: sampled(5, 4, { endId: [7, 9, 11, 13, 20, 21, 22], streaming: true }),
        delay: 0,
      },
      { ids: prompt(3, 5), req: { maxNewTokens: 10, greedy: true, endId: [] }, delay: 1 },
      { ids: prompt(4, 13), req: sampled(8, 2, { repetitionPenalty: 1.3 }), delay: 0 },
      { ids: prompt(5, 3), req: { ...sampled(9, 1), streaming: true }, delay: 2 },
      { ids: prompt(2, 9), req: sampled(6, 3, { endId: [] }), delay: 1 },
    ];
    const got = await runAll(ex, js);
    await assertAlone(js, got);
    const lengths = got[0].seqs.map((s) => s.tokens.length);
    assert.ok(new Set(lengths).size > 1, `the sequences all stopped together: ${lengths}`);
  });
});

describe("executor: beam search", () => {
  test("widths 2–4, length penalties, early stopping and diversity equal the runtime's beam search, alone", async () => {
    const ex = executor({ maxNumTokens: 16 });
    const js: Job[] = [
      { ids: prompt(6, 5), req: beams(2), delay: 0 },
      { ids: prompt(7, 8), req: beams(3, { numReturnSequences: 3, lengthPenalty: 0.5 }), delay: 0 },
      {
        ids: prompt(8, 4),
        req: beams(4, { numReturnSequences: 2, earlyStopping: true, endId: [3, 9, 30] }),
        delay: 0,
      },
      {
        ids: prompt(9, 6),
        req: beams(3, { earlyStopping: "never", lengthPenalty: 2, endId: [5, 6, 40] }),
        delay: 0,
      },
      { ids: prompt(9, 7), req: beams(3, { beamSearchDiversityRate: 0.7, numReturnSequences: 3 }), delay: 0 },
    ];
    for (const j of js) {
      const [got] = await runAll(ex, [j]);
      await assertAlone([j], [got]);
    }
  });

  test("in flight with sampling, n > 1 and other beams, under chunked prefill", async () => {
    const ex = executor({ maxNumTokens: 10, maxNumSeqs: 10 });
    const js: Job[] = [
      { ids: prompt(10, 14), req: beams(3, { numReturnSequences: 2, endId: [1, 8] }), delay: 0 },
      { ids: prompt(11, 6), req: sampled(3, 2), delay: 1 },
      { ids: prompt(12, 9), req: beams(2, { lengthPenalty: 1.5, streaming: true }), delay: 0 },
      { ids: prompt(13, 3), req: { maxNewTokens: 12, greedy: true, endId: [] }, delay: 2 },
      { ids: prompt(10, 14), req: beams(4, { earlyStopping: true, endId: [1, 8, 33] }), delay: 1 },
    ];
    const got = await runAll(ex, js);
    await assertAlone(js, got);
  });

  test("streaming: one event per step with the current beams, then the final beams", async () => {
    const ex = executor();
    const j: Job = {
      ids: prompt(14, 6),
      req: beams(3, { numReturnSequences: 3, streaming: true }),
      delay: 0,
    };
    const [got] = await runAll(ex, [j]);
    const steps = got.events.filter((e) => e.beams);
    const finals = got.events.filter((e) => !e.beams);
    assert.equal(finals.length, 3);
    assert.deepEqual(
      finals.map((e) => e.sequenceIndex),
      [0, 1, 2],
    );
    assert.ok(steps.length >= 1 && steps.length <= 9);
    steps.forEach((e, s) => {
      assert.equal(e.sequenceIndex, 0);
      assert.deepEqual(e.tokenIds, []);
      assert.equal(e.beams?.length, 3);
      for (const b of e.beams ?? []) assert.equal(b.length, s + 1);
    });
    const want = await viaRuntime(runner, j.ids, j.req);
    assertSameSequences(got, want, "streamed beams");
    // the non-streaming request's events are the final ones only
    const [whole] = await runAll(ex, [{ ...j, req: { ...j.req, streaming: false } }]);
    assert.deepEqual(
      whole.events.map((e) => e.tokenIds),
      finals.map((e) => e.tokenIds),
    );
  });

  test("onIteration and stats count a group's rows", async () => {
    const seen: number[] = [];
    const ex = executor({ onIteration: (s) => seen.push(s.numScheduled) });
    const id = ex.enqueue({ prompt: prompt(15, 5), maxNewTokens: 6, beamWidth: 3 });
    await ticks(4);
    assert.equal(ex.stats().numRunning, 1);
    assert.equal(ex.stats().numRunningSequences, 3);
    await collectGroup(ex, id);
    assert.equal(seen[0], 1, "the prompt is one row");
    assert.ok(
      seen.slice(1).every((n) => n === 3),
      `beam steps are 3 rows: ${seen}`,
    );
    assert.equal(ex.stats().numGeneratedTokens, 3 * seen.length);
  });
});

describe("executor: context logits", () => {
  test("equal generate's through chunked prefill and prefix-cache hits, for all kinds", async () => {
    const ex = executor({ maxNumTokens: 5 });
    const ids = prompt(16, 13);
    for (const req of [
      { maxNewTokens: 3, greedy: true },
      sampled(4, 2),
      beams(2, { maxNewTokens: 4 }),
    ] as Job["req"][]) {
      const j: Job = { ids, req: { ...req, returnContextLogits: true }, delay: 0 };
      const [got] = await runAll(ex, [j]);
      const want = await viaRuntime(runner, ids, j.req);
      assertSameSequences(got, want, JSON.stringify(req));
      const c = got.contextLogits;
      assert.ok(c && want.contextLogits);
      assert.equal(c.length, want.contextLogits.length);
      let worst = 0;
      c.forEach((x, i) => {
        worst = Math.max(worst, Math.abs(x - (want.contextLogits as Float32Array)[i]));
      });
      assert.ok(worst < 1e-4, `context logits differ by ${worst}`);
    }
    const [plain] = await runAll(ex, [{ ids, req: { maxNewTokens: 2, greedy: true }, delay: 0 }]);
    assert.equal(plain.contextLogits, undefined);
  });

  test("a backend returning at most 8 logits rows a step: longer prompts give the same logits, in flight", async () => {
    // 21 and 13 prompt rows: the backend throws on a step of more than 8 (as the CUDA one does).
    const jobs: Job[] = [
      { ids: prompt(21, 21), req: { maxNewTokens: 4, greedy: true, returnContextLogits: true }, delay: 0 },
      { ids: prompt(5, 13), req: beams(2, { maxNewTokens: 4, returnContextLogits: true }), delay: 0 },
      { ids: prompt(9, 6), req: sampled(3, 3), delay: 1 },
    ];
    const want = await runAll(executor(), jobs);
    const got = await runAll(executor({}, { maxLogitRows: 8 }), jobs);
    await assertAlone(jobs, got);
    got.forEach((g, i) =>
      assert.deepEqual(g.contextLogits, want[i].contextLogits, `request ${i}'s context logits`),
    );
  });
});

describe("executor: capacity with groups", () => {
  test("maxUtilization with a tiny KV cache preempts groups and recomputes the same tokens", async () => {
    const js: Job[] = [
      { ids: prompt(17, 9), req: beams(3, { maxNewTokens: 10, endId: [] }), delay: 0 },
      { ids: prompt(18, 6), req: sampled(21, 3, { maxNewTokens: 10, endId: [] }), delay: 0 },
      { ids: prompt(19, 5), req: beams(2, { maxNewTokens: 8 }), delay: 1 },
      // higher priority: the groups are the ones preempted
      { ids: prompt(20, 7), req: { maxNewTokens: 11, greedy: true, endId: [], priority: 1 }, delay: 0 },
    ];
    let paused = 0;
    const ex = executor({
      policy: "maxUtilization",
      maxTokens: 48,
      maxNumTokens: 12,
      maxNumSeqs: 12,
      onIteration: (it) => {
        paused += it.numPaused;
      },
    });
    const got = await runAll(ex, js);
    assert.ok(paused > 0 && ex.stats().numPreemptions === paused, "no preemption: the test lost its point");
    await assertAlone(js, got);
  });

  test("guaranteedNoEvict reserves every sequence's blocks: a tight cache runs groups one after another", async () => {
    // one beam-4 group of 6 + 10 tokens needs 4 + 3 × (4 − 1) = 13 blocks of 4; the cache has 16
    const ex = executor({ maxTokens: 64, maxNumTokens: 16 });
    const js: Job[] = [
      { ids: prompt(21, 6), req: beams(4, { maxNewTokens: 10, endId: [] }), delay: 0 },
      { ids: prompt(22, 6), req: sampled(2, 4, { maxNewTokens: 10, endId: [] }), delay: 0 },
    ];
    const got = await runAll(ex, js);
    assert.equal(ex.stats().numPreemptions, 0);
    await assertAlone(js, got);
  });

  test("cancel mid-beam ends the whole group and frees its blocks in the same iteration", async () => {
    const ex = executor();
    const id = ex.enqueue({ prompt: prompt(23, 6), maxNewTokens: 40, beamWidth: 4, endId: [] });
    const other = ex.enqueue({
      prompt: prompt(24, 6),
      maxNewTokens: 40,
      numReturnSequences: 3,
      temperature: 1,
      endId: [],
    });
    const results = [collectGroup(ex, id), collectGroup(ex, other)];
    await ticks(6);
    assert.ok(ex.stats().kv.numUsed > 0);
    assert.ok(ex.cancel(id));
    assert.ok(ex.cancel(other));
    assert.equal(ex.stats().kv.numUsed, 0, "blocks still held after cancel");
    const [b, s] = await Promise.all(results);
    assert.equal(b.events.at(-1)?.finishReason, "cancelled");
    assert.equal(s.seqs.length, 3, "every sample ends");
    for (const q of s.seqs) assert.equal(q.finishReason, "cancelled");
  });

  test("a group that times out ends every sequence with timed_out and frees its blocks", async () => {
    let now = 0;
    const ex = executor({ clock: () => now });
    const id = ex.enqueue({
      prompt: prompt(25, 5),
      maxNewTokens: 40,
      numReturnSequences: 2,
      temperature: 1,
      endId: [],
      allottedTimeMs: 10,
    });
    const beam = ex.enqueue({
      prompt: prompt(26, 5),
      maxNewTokens: 40,
      beamWidth: 2,
      endId: [],
      allottedTimeMs: 10,
    });
    const results = [collectGroup(ex, id), collectGroup(ex, beam)];
    await ticks(4);
    now = 20;
    const [s, b] = await Promise.all(results);
    assert.deepEqual(
      s.seqs.map((q) => q.finishReason),
      ["timed_out", "timed_out"],
    );
    assert.ok(s.seqs.every((q) => q.tokens.length > 0));
    assert.equal(b.events.at(-1)?.finishReason, "timed_out");
  });
});

describe("executor: randomised mixes of every kind equal each request alone", () => {
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: single, n > 1 and beams; random budget, cache, policy, arrivals`, async () => {
      const r = mulberry(seed);
      const pick = (n: number) => Math.floor(r() * n);
      const policy = seed % 2 ? "maxUtilization" : "guaranteedNoEvict";
      const maxNumTokens = 8 + pick(16);
      // the widest group (4 beams, 12 + 10 tokens) needs 6 + 3 × 3 = 15 blocks of 4
      const ex = executor({
        policy,
        maxNumTokens,
        maxNumSeqs: Math.min(maxNumTokens, 8 + pick(8)),
        maxTokens: policy === "maxUtilization" ? 60 : 60 + 4 * pick(8),
      });
      const stem = prompt(seed, 12);
      const js: Job[] = Array.from({ length: 16 }, (_, i) => {
        const ids = r() < 0.4 ? stem.slice(0, 4 + pick(9)) : prompt(30 + i, 1 + pick(12));
        const maxNewTokens = 3 + pick(8);
        const common = { maxNewTokens, streaming: r() < 0.5, priority: pick(3) / 2 };
        const kind = pick(4);
        const req: Job["req"] =
          kind === 0
            ? { ...common, greedy: true, endId: [] }
            : kind === 1
              ? { ...common, temperature: 0.8, topK: 20, seed: pick(1000), numReturnSequences: 1 + pick(3) }
              : {
                  ...common,
                  beamWidth: 2 + pick(3),
                  lengthPenalty: [0.5, 1, 1.5][pick(3)],
                  earlyStopping: [true, false, "never" as const][pick(3)],
                  endId: [pick(61), pick(61)],
                };
        return { ids, req, delay: pick(2) };
      });
      const got = await runAll(ex, js);
      await assertAlone(js, got);
      if (policy === "maxUtilization")
        assert.ok(ex.stats().numPreemptions > 0, "no preemption: the test lost its point");
    });
  }
});
