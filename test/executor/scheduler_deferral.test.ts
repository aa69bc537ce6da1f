// Cache-aware admission: a waiting request whose next uncached full block a running request is
// computing (scheduled, not keyed yet) is deferred until that block is keyed, then admitted with it as
// a prefix hit; requests that would reuse nothing are admitted as before; the deferral ends when the
// request computing the block is cancelled or preempted. Fake engine (fake_engine.ts), blocks of 4.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import { Scheduler, type SchedulerConfig } from "../../src/executor/scheduler.ts";
import { FakeEngine, shape, solo } from "./fake_engine.ts";
import { assertIdle, range } from "./kv_helpers.ts";

function setup(numBlocks: number, config: SchedulerConfig, enablePrefixCaching = true) {
  const s = new Scheduler(new KvCacheManager(numBlocks, 4, enablePrefixCaching), config);
  return { s, e: new FakeEngine(s) };
}

const PREFIX = range(100, 16); // 4 whole blocks

describe("Scheduler, cache-aware admission", () => {
  test("a request sharing the prefix another is computing waits one iteration, then hits it", () => {
    const { s, e } = setup(64, { maxNumTokens: 64 });
    const p1 = [...PREFIX, 1, 2];
    const p2 = [...PREFIX, 5, 6, 7];
    const p3 = range(300, 9); // another prefix: passes the deferred request
    const a = s.add({ id: 1, promptIds: p1, maxNewTokens: 3 });
    const b = s.add({ id: 2, promptIds: p2, maxNewTokens: 3 });
    const c = s.add({ id: 3, promptIds: p3, maxNewTokens: 3 });
    assert.deepEqual(shape(e.step()), [
      [1, 0, 18, true],
      [3, 0, 9, true],
    ]);
    assert.equal(b.status, "waiting", "deferred while request 1 computes the prefix");
    assert.equal(s.firstWaiting, b);
    assert.deepEqual(shape(e.step()), [
      [1, 18, 1, true],
      [3, 9, 1, true],
      [2, 16, 3, true], // the 4 prefix blocks come from the cache
    ]);
    assert.equal(b.numCachedTokens, 16);
    assert.equal(s.kv.seqStats(2).reused, 4);
    e.drain();
    assert.deepEqual(a.outputIds, solo(p1, 3));
    assert.deepEqual(b.outputIds, solo(p2, 3));
    assert.deepEqual(c.outputIds, solo(p3, 3));
    assert.deepEqual(s.kv.stats().prefixHitTokens, 16);
    assertIdle(s.kv);
  });

  test("every request of a burst over one prefix waits; a chunked prefix is waited for whole", () => {
    const { s, e } = setup(64, { maxNumTokens: 10 });
    const prompts = [0, 1, 2, 3].map((i) => [...PREFIX, 40 + i, 50 + i]);
    const rs = prompts.map((p, i) => s.add({ id: i + 1, promptIds: p, maxNewTokens: 2 }));
    // Request 1 computes the prefix in two chunks; the others wait for the second one too (the 2
    // tokens left would hit the first chunk's 2 blocks and compute the third).
    assert.deepEqual(shape(e.step()), [[1, 0, 10, false]]);
    assert.deepEqual(shape(e.step()), [[1, 10, 8, true]]);
    assert.deepEqual(shape(e.step()), [
      [1, 18, 1, true],
      [2, 16, 2, true],
      [3, 16, 2, true],
      [4, 16, 2, true],
    ]);
    e.drain();
    assert.deepEqual(
      rs.map((r) => r.numCachedTokens),
      [0, 16, 16, 16],
    );
    assert.equal(s.kv.stats().prefixHitTokens, 48, "the prefix was computed once");
    rs.forEach((r, i) => {
      assert.deepEqual(r.outputIds, solo(prompts[i], 2));
    });
    assertIdle(s.kv);
  });

  test("requests that would reuse no whole block are admitted at once", () => {
    const cases: [string, { promptIds: number[]; cacheSalt?: string; contextLogits?: boolean }][] = [
      ["another prefix", { promptIds: range(300, 18) }],
      ["another cache salt", { promptIds: [...PREFIX, 9], cacheSalt: "lora:x" }],
      ["3 shared tokens, no whole block", { promptIds: [...PREFIX.slice(0, 3), 77, 78] }],
      ["its one shared block holds its last token", { promptIds: PREFIX.slice(0, 4) }],
      ["context logits compute every prompt token", { promptIds: [...PREFIX, 9], contextLogits: true }],
    ];
    for (const [what, spec] of cases) {
      const { s, e } = setup(64, { maxNumTokens: 64 });
      s.add({ id: 1, promptIds: [...PREFIX, 1], maxNewTokens: 2 });
      const b = s.add({ id: 2, maxNewTokens: 2, ...spec });
      assert.deepEqual(
        shape(e.step()).map((c) => c[0]),
        [1, 2],
        what,
      );
      e.drain();
      assert.deepEqual(b.outputIds, solo(spec.promptIds, 2), what);
      assertIdle(s.kv);
    }
    const { s, e } = setup(64, { maxNumTokens: 64 }, false);
    s.add({ id: 1, promptIds: [...PREFIX, 1], maxNewTokens: 2 });
    s.add({ id: 2, promptIds: [...PREFIX, 2], maxNewTokens: 2 });
    assert.deepEqual(
      shape(e.step()).map((c) => c[0]),
      [1, 2],
      "prefix caching off",
    );
    e.drain();
    assertIdle(s.kv);
  });

  test("cancelling the request computing the prefix ends the deferral at once", () => {
    const { s, e } = setup(64, { maxNumTokens: 64 });
    s.add({ id: 1, promptIds: [...PREFIX, 1], maxNewTokens: 4 });
    const p2 = [...PREFIX, 2, 3];
    const b = s.add({ id: 2, promptIds: p2, maxNewTokens: 4 });
    const out = s.schedule();
    assert.deepEqual(shape(out), [[1, 0, 17, true]]);
    assert.equal(s.kv.numInFlight, 4);
    s.cancel(1); // before its step ran: nothing of it is computed, nothing is keyed
    assert.equal(s.kv.numInFlight, 0);
    s.update(out, new Map());
    assert.deepEqual(shape(e.step()), [[2, 0, 18, true]]);
    e.drain();
    assert.deepEqual([b.numCachedTokens, b.outputIds], [0, solo(p2, 4)]);
    assertIdle(s.kv);
  });

  test("maxUtilization preempting the request computing the prefix: every request keeps its tokens", () => {
    // Request 0 decodes at high priority and grows until blocks run out; request 1 (low priority)
    // computes a 24-token prefix in chunks of 3, request 2 (between them) shares it. (That the
    // preempted request's blocks in flight are dropped is scheduler_overlap.test.ts's: in this
    // synchronous loop they are keyed before the next schedule.)
    const { s, e } = setup(10, { maxNumTokens: 4, policy: "maxUtilization" });
    const p0 = range(500, 3);
    const long = range(100, 24);
    const p1 = [...long, 1];
    const p2 = [...long, 2, 3];
    const r0 = s.add({ id: 0, promptIds: p0, maxNewTokens: 12, priority: 0.9 });
    e.step();
    const r1 = s.add({ id: 1, promptIds: p1, maxNewTokens: 3, priority: 0.1 });
    e.step();
    const r2 = s.add({ id: 2, promptIds: p2, maxNewTokens: 3 });
    const outs = e.drain();
    assert.deepEqual(
      outs.flatMap((o) => o.preempted),
      [1],
    );
    assert.ok(r2.numCachedTokens > 0, "request 2 took the blocks request 1 computed");
    assert.equal(r1.numPreemptions, 1);
    assert.deepEqual(r0.outputIds, solo(p0, 12));
    assert.deepEqual(r1.outputIds, solo(p1, 3));
    assert.deepEqual(r2.outputIds, solo(p2, 3));
    assertIdle(s.kv);
  });
});
