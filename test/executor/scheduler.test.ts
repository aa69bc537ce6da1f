// The token-counting scheduler over a real KvCacheManager and a fake engine whose KV cache stores
// token ids (fake_engine.ts): ordering, chunking, budget, both capacity policies, preemption and
// recompute, priorities, cancellation and timeouts, prefix hits; the idle invariant after each test.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidRequestError, QueueFullError, RequestTooLargeError } from "../../src/executor/errors.ts";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import { Scheduler, type SchedulerConfig } from "../../src/executor/scheduler.ts";
import { FakeEngine, shape, solo } from "./fake_engine.ts";
import { assertIdle, range } from "./kv_helpers.ts";

function setup(numBlocks: number, config: SchedulerConfig, tokensPerBlock = 4) {
  const s = new Scheduler(new KvCacheManager(numBlocks, tokensPerBlock), config);
  return { s, e: new FakeEngine(s) };
}

describe("Scheduler", () => {
  test("decodes first; a long prompt is chunked across iterations without stalling them", () => {
    const { s, e } = setup(64, { maxNumTokens: 8 });
    const a = s.add({ id: 1, promptIds: range(10, 3), maxNewTokens: 6 });
    const b = s.add({ id: 2, promptIds: range(20, 3), maxNewTokens: 6 });
    assert.deepEqual(shape(e.step()), [
      [1, 0, 3, true],
      [2, 0, 3, true],
    ]);
    const c = s.add({ id: 3, promptIds: range(30, 20), maxNewTokens: 2 });
    const outs = [e.step(), e.step(), e.step(), e.step()];
    assert.deepEqual(outs.map(shape), [
      [
        [1, 3, 1, true],
        [2, 3, 1, true],
        [3, 0, 6, false],
      ],
      [
        [1, 4, 1, true],
        [2, 4, 1, true],
        [3, 6, 6, false],
      ],
      [
        [1, 5, 1, true],
        [2, 5, 1, true],
        [3, 12, 6, false],
      ],
      [
        [1, 6, 1, true],
        [2, 6, 1, true],
        [3, 18, 2, true],
      ],
    ]);
    assert.deepEqual(
      outs.map((o) => o.numTokens),
      [8, 8, 8, 4],
      "the budget is used exactly while work lasts",
    );
    e.drain();
    assert.deepEqual(a.outputIds, solo(range(10, 3), 6));
    assert.deepEqual(b.outputIds, solo(range(20, 3), 6));
    assert.deepEqual(c.outputIds, solo(range(30, 20), 2));
    assert.equal(a.finishReason, "length");
    assertIdle(s.kv);
  });

  test("waiting requests by priority (higher first), FCFS within one", () => {
    const { s, e } = setup(64, { maxNumSeqs: 1 });
    for (const [id, priority] of [
      [1, 0.2],
      [2, 0.9],
      [3, 0.5],
      [4, 0.9],
      [5, 0.5],
    ]) {
      s.add({ id, promptIds: [id], maxNewTokens: 1, priority });
    }
    const order = e.drain().flatMap((o) => o.chunks.map((c) => c.requestId));
    assert.deepEqual(order, [2, 4, 3, 5, 1]);
    assertIdle(s.kv);
  });

  test("guaranteedNoEvict admits only what can finish, and never preempts", () => {
    const { s, e } = setup(8, { policy: "guaranteedNoEvict" });
    const reqs = [1, 2, 3].map((id) => s.add({ id, promptIds: range(100 * id, 8), maxNewTokens: 8 }));
    const first = e.step();
    assert.deepEqual(
      shape(first),
      [
        [1, 0, 8, true],
        [2, 0, 8, true],
      ],
      "3 waits: 2 × 4 blocks reserved",
    );
    assert.equal(s.kv.stats().numUsed, 4, "reserved blocks are not allocated up front");
    const outs = [first, ...e.drain()];
    const admittedAt = outs.findIndex((o) => o.chunks.some((c) => c.requestId === 3));
    const finishedAt = outs.findIndex((o) => o.finished.length > 0);
    assert.ok(admittedAt >= finishedAt, "3 is admitted only once a request has left");
    assert.equal(s.stats().numPreemptions, 0);
    for (const r of reqs) assert.deepEqual(r.outputIds, solo(range(100 * r.id, 8), 8));
    assertIdle(s.kv);
  });

  test("maxUtilization preempts the newest request when blocks run out; it recomputes identically", () => {
    const { s, e } = setup(6, { policy: "maxUtilization" });
    const a = s.add({ id: 1, promptIds: range(0, 8), maxNewTokens: 12 });
    const b = s.add({ id: 2, promptIds: range(50, 8), maxNewTokens: 12 });
    const outs = e.drain();
    assert.equal(outs.length, 19);
    assert.deepEqual(outs.slice(4, 7).map(shape), [
      [
        [1, 11, 1, true],
        [2, 11, 1, true],
      ],
      [[1, 12, 1, true]], // 2 wanted a 4th block with none free: preempted, its chunk dropped
      [[1, 13, 1, true]], // no admission right after a preemption; then 2 waits for blocks
    ]);
    assert.deepEqual(outs[5].preempted, [2]);
    // 1 finished: 2 comes back with its first block still cached (its tail blocks were evicted first)
    // and recomputes its prompt and the 5 tokens it had generated.
    assert.deepEqual(
      [shape(outs[12]), outs[12].finished],
      [[[2, 4, 9, true]], [{ requestId: 1, reason: "length" }]],
    );
    assert.deepEqual([a.numPreemptions, b.numPreemptions, b.numCachedTokens], [0, 1, 4]);
    assert.deepEqual(a.outputIds, solo(range(0, 8), 12));
    assert.deepEqual(b.outputIds, solo(range(50, 8), 12), "the preempted request's tokens are unchanged");
    assertIdle(s.kv);
  });

  test("a preempted request waits ahead of later arrivals at its priority, behind higher ones", () => {
    const { s, e } = setup(6, { policy: "maxUtilization" });
    s.add({ id: 1, promptIds: range(0, 8), maxNewTokens: 12 });
    s.add({ id: 2, promptIds: range(50, 8), maxNewTokens: 12 });
    for (let i = 0; i < 6; i++) e.step(); // 2 is preempted in the 6th
    s.add({ id: 3, promptIds: [7], maxNewTokens: 1 });
    s.add({ id: 4, promptIds: [8], maxNewTokens: 1, priority: 0.9 });
    const firsts = [...new Set(e.drain().flatMap((o) => o.chunks.map((c) => c.requestId)))];
    assert.deepEqual(firsts, [1, 4, 2, 3]);
    assertIdle(s.kv);
  });

  test("the victim is the lowest priority, then the most recently admitted", () => {
    const { s, e } = setup(7, { policy: "maxUtilization" });
    s.add({ id: 1, promptIds: range(0, 4), maxNewTokens: 8, priority: 0.1 });
    s.add({ id: 2, promptIds: range(10, 4), maxNewTokens: 8, priority: 0.9 });
    s.add({ id: 3, promptIds: range(20, 4), maxNewTokens: 8, priority: 0.9 });
    e.step();
    const first = e.drain().find((o) => o.preempted.length > 0);
    assert.deepEqual(first?.preempted, [1], "lowest priority although admitted first");
    assertIdle(s.kv);
    const t = setup(7, { policy: "maxUtilization" });
    for (const id of [1, 2, 3]) t.s.add({ id, promptIds: range(10 * id, 4), maxNewTokens: 8 });
    assert.deepEqual(t.e.drain().find((o) => o.preempted.length > 0)?.preempted, [3]);
    assertIdle(t.s.kv);
  });

  test("cancel and timeout free a request's blocks in the same iteration, queued or running", () => {
    const { s, e } = setup(16, { maxNumSeqs: 1 });
    s.add({ id: 1, promptIds: range(0, 6), maxNewTokens: 20 });
    s.add({ id: 2, promptIds: range(10, 6), maxNewTokens: 20, allottedTimeMs: 100 });
    s.add({ id: 3, promptIds: range(20, 6), maxNewTokens: 20 }, 0);
    e.step(0);
    assert.equal(s.kv.stats().numUsed, 2);
    assert.ok(s.cancel(1));
    assert.equal(s.kv.stats().numUsed, 0, "blocks freed at once");
    assert.equal(s.cancel(1), false, "a second cancel finds nothing");
    assert.ok(s.cancel(3), "a queued request");
    const next = e.step(50);
    assert.deepEqual(next.finished, [
      { requestId: 1, reason: "cancelled" },
      { requestId: 3, reason: "cancelled" },
    ]);
    assert.deepEqual(shape(next), [[2, 0, 6, true]]);
    const timedOut = e.step(100);
    assert.deepEqual([timedOut.chunks, timedOut.finished], [[], [{ requestId: 2, reason: "timed_out" }]]);
    assert.equal(s.hasWork, false);
    assertIdle(s.kv);
  });

  test("a cancel between schedule and update skips the request's results", () => {
    const { s } = setup(16, {});
    s.add({ id: 1, promptIds: range(0, 6), maxNewTokens: 4 });
    const out = s.schedule();
    s.cancel(1);
    s.update(out, new Map([[1, 5]]));
    assert.equal(s.hasWork, false);
    assertIdle(s.kv);
  });

  test("a prefix hit skips the cached prompt blocks", () => {
    const { s, e } = setup(16, {});
    const prompt = range(0, 10);
    s.add({ id: 1, promptIds: prompt, maxNewTokens: 2 });
    e.drain();
    const b = s.add({ id: 2, promptIds: [...range(0, 8), 77, 78, 79], maxNewTokens: 3 });
    assert.deepEqual(shape(e.step()), [[2, 8, 3, true]]);
    assert.equal(b.numCachedTokens, 8);
    const other = s.add({ id: 3, promptIds: range(0, 10), maxNewTokens: 1, cacheSalt: "lora:x" });
    e.drain();
    assert.equal(other.numCachedTokens, 0, "another cache salt shares nothing");
    assert.deepEqual(b.outputIds, solo([...range(0, 8), 77, 78, 79], 3));
    const k = s.kv.stats();
    assert.deepEqual([k.prefixQueryTokens, k.prefixHitTokens], [31, 8]);
    assertIdle(s.kv);
  });

  test("named errors: too large for the cache, bad fields, a full queue", () => {
    const { s } = setup(4, { maxQueueSize: 1 });
    assert.throws(
      () => s.add({ id: 1, promptIds: range(0, 10), maxNewTokens: 10 }),
      (e: Error) =>
        e instanceof RequestTooLargeError &&
        e.message ===
          "request 1 needs 5 KV blocks (prompt 10 + maxNewTokens 10 tokens at 4 tokens per block) but the KV " +
            "cache holds 4 blocks (16 tokens); lower maxNewTokens to at most 6, shorten the prompt, or give the " +
            "KV cache more memory (--kv-cache-free-gpu-mem-fraction, --max-kv-tokens)",
    );
    assert.throws(() => s.add({ id: 2, promptIds: [], maxNewTokens: 1 }), InvalidRequestError);
    assert.throws(() => s.add({ id: 2, promptIds: [1], maxNewTokens: 0 }), InvalidRequestError);
    assert.throws(() => s.add({ id: 2, promptIds: [1], maxNewTokens: 1, priority: 2 }), InvalidRequestError);
    s.add({ id: 2, promptIds: [1], maxNewTokens: 1 });
    assert.throws(() => s.add({ id: 3, promptIds: [1], maxNewTokens: 1 }), QueueFullError);
    assert.throws(() => new Scheduler(s.kv, { maxNumTokens: 4, maxNumSeqs: 8 }), /lower maxNumSeqs/);
    s.cancel(2);
    assertIdle(s.kv);
  });

  const variants = [
    ["guaranteedNoEvict", Infinity],
    ["maxUtilization", Infinity],
    ["guaranteedNoEvict", 6],
    ["maxUtilization", 6],
  ] as const;
  for (const [policy, maxLogitRows] of variants) {
    // With a bound on the logits rows, every fourth request wants context logits (a row per token).
    const rows = maxLogitRows === Infinity ? "" : `, ${maxLogitRows} logits rows a step`;
    test(`${policy}${rows}: random arrivals, lengths, cancels and a small cache give every request its solo tokens`, () => {
      let seed = 12345; // mulberry32
      const rand = (n: number) => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) % n;
      };
      const { s, e } = setup(24, { policy, maxNumTokens: 16, maxNumSeqs: 6, maxLogitRows });
      const reqs = [];
      const shared = range(500, 12);
      let mostRows = 0;
      for (let id = 0; id < 120 || s.hasWork; ) {
        for (let k = rand(3); k > 0 && id < 120; k--, id++) {
          const p = rand(2)
            ? [...shared.slice(0, 4 * rand(4)), ...range(1000 + id, 1 + rand(20))]
            : range(id, 1 + rand(30));
          const contextLogits = maxLogitRows < Infinity && id % 4 === 0;
          reqs.push(
            s.add({ id, promptIds: p, maxNewTokens: 1 + rand(40), priority: rand(3) / 2, contextLogits }),
          );
        }
        if (rand(25) === 0 && reqs.length > 0) s.cancel(reqs[rand(reqs.length)].id);
        mostRows = Math.max(mostRows, e.step().numLogitRows);
      }
      for (const r of reqs) {
        if (r.finishReason === "cancelled") continue;
        assert.deepEqual(
          r.outputIds,
          solo(r.tokens.slice(0, r.promptLength), r.maxNewTokens),
          `request ${r.id}`,
        );
      }
      if (policy === "guaranteedNoEvict") assert.equal(s.stats().numPreemptions, 0);
      else assert.ok(s.stats().numPreemptions > 0, "the workload exercises preemption");
      assert.ok(s.kv.stats().prefixHitTokens > 0, "and prefix hits");
      if (maxLogitRows < Infinity) assert.equal(mostRows, maxLogitRows, "and steps at the rows bound");
      assertIdle(s.kv);
    });
  }
});
