// Sequence groups in the scheduler, over a real KvCacheManager and the fake engine (whose KV cache
// stores token ids and checks that every sequence reads exactly its own tokens): a fan-out shares the
// prompt's blocks and copies only the partial one on write; beam branches fork picked parents and
// free the others; a group samples all its rows in one iteration; capacity counts every sequence;
// preemption frees a whole group and its recompute (prompt once, forked) gives the same tokens.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidRequestError, RequestTooLargeError } from "../../src/executor/errors.ts";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import type { Request } from "../../src/executor/request.ts";
import { type Branch, Scheduler, type SchedulerConfig } from "../../src/executor/scheduler.ts";
import { type Brancher, FakeEngine, nextToken, rowShape } from "./fake_engine.ts";
import { assertIdle, range } from "./kv_helpers.ts";

function setup(numBlocks: number, config: SchedulerConfig, prefixCaching = true) {
  const s = new Scheduler(new KvCacheManager(numBlocks, 4, prefixCaching), config);
  return { s, e: new FakeEngine(s) };
}

/** A deterministic "beam search": sequence k of the next step continues parent (k·step) mod rows
 * with token next[parent] + k (so a parent is often picked twice and another not at all). */
function beams(width: number): Brancher {
  return (r: Request, next: readonly number[]) => {
    if (r.numOutputTokens >= r.maxNewTokens) return null;
    const step = r.numOutputTokens + 1;
    return Array.from({ length: width }, (_, k) => {
      const parent = (k * step) % next.length;
      return { parent, token: (next[parent] + k) % 997 };
    });
  };
}

/** What `beams(width)` gives for one request, by replaying it on plain token lists. */
function beamsAlone(prompt: number[], width: number, maxNewTokens: number): number[][] {
  let seqs = [[...prompt]];
  for (let s = 1; s <= maxNewTokens; s++) {
    const next = seqs.map((t) => nextToken(t));
    seqs = Array.from({ length: width }, (_, k) => {
      const parent = (k * s) % next.length;
      return [...seqs[parent], (next[parent] + k) % 997];
    });
  }
  return seqs.map((t) => t.slice(prompt.length));
}

describe("Scheduler: sequence groups", () => {
  test("fan-out shares the prompt's full blocks; only the partial block is copied, on write", () => {
    const { s, e } = setup(32, { maxNumTokens: 16 });
    const r = s.add({ id: 1, promptIds: range(10, 6), maxNewTokens: 4, width: 3 });
    assert.deepEqual(rowShape(e.step(0, beams(3))), [[1, 0, 0, 6, true]]);
    const tables = r.seqs.map((q) => [...s.kv.blockTable(q.kvId)]);
    assert.equal(tables.length, 3);
    assert.deepEqual(tables[1], tables[0], "a fork shares every block until it writes");
    assert.deepEqual(tables[2], tables[0]);
    const out = e.step(0, beams(3));
    assert.deepEqual(rowShape(out), [
      [1, 0, 6, 1, true],
      [1, 1, 6, 1, true],
      [1, 2, 6, 1, true],
    ]);
    // two of the three sequences copy the shared partial block; the full block stays shared
    assert.deepEqual(
      out.blockCopies.map((c) => c.src),
      [tables[0][1], tables[0][1]],
    );
    const after = out.chunks.map((c) => [...c.blockTable]);
    assert.ok(after.every((t) => t[0] === tables[0][0]));
    assert.equal(new Set(after.map((t) => t[1])).size, 3);
    e.drain(100, beams(3));
    assertIdle(s.kv);
  });

  test("beam branches fork picked parents, free the others; every sequence reads its own tokens", () => {
    const { s, e } = setup(64, { maxNumTokens: 8 });
    const prompts = [range(3, 9), range(40, 2), range(80, 13)];
    const reqs = prompts.map((p, i) => s.add({ id: i + 1, promptIds: p, maxNewTokens: 7, width: i + 2 }));
    e.drain(200, (r, next) => beams(r.width)(r, next));
    prompts.forEach((p, i) => {
      const got = reqs[i].seqs.map((q) => q.tokens.slice(p.length));
      assert.deepEqual(got, beamsAlone(p, i + 2, 7), `request ${i + 1}`);
    });
    assertIdle(s.kv);
  });

  test("a group samples all its rows in one iteration: short of budget, each chunk stops one token short", () => {
    const { s, e } = setup(64, { maxNumTokens: 4, policy: "maxUtilization" }, false);
    const r = s.add({ id: 1, promptIds: range(0, 3), maxNewTokens: 20, width: 3 });
    const b = beams(3);
    while (r.numOutputTokens < 2) e.step(0, b);
    // preempt by hand: a second, higher-priority request cannot take r's blocks, so free r instead
    (s as unknown as { preempt(r: Request): void }).preempt(r);
    assert.equal(r.status, "waiting");
    assert.ok(
      r.seqs.every((q) => !s.kv.has(q.kvId)),
      "a preempted group holds no block",
    );
    // 3 sequences of 5 tokens to recompute, 4 tokens per iteration: no row samples until all fit
    const shapes = [rowShape(e.step(0, b))];
    while (!shapes.at(-1)?.some((c) => c[4])) shapes.push(rowShape(e.step(0, b)));
    assert.deepEqual(shapes, [
      [[1, 0, 0, 4, false]],
      [[1, 1, 0, 4, false]],
      [[1, 2, 0, 4, false]],
      [
        [1, 0, 4, 1, true],
        [1, 1, 4, 1, true],
        [1, 2, 4, 1, true],
      ],
    ]);
    e.drain(100, b);
    assert.deepEqual(
      r.seqs.map((q) => q.tokens.slice(3)),
      beamsAlone(range(0, 3), 3, 20),
    );
    assertIdle(s.kv);
  });

  test("a readmitted group forks the prompt from its first sequence: it fits where it first ran", () => {
    // width 3, prompt 16 (4 full blocks) + 4 new: 5 + 2·1 = 7 blocks; three private prompts would need 15
    const { s, e } = setup(8, { maxNumTokens: 32, policy: "maxUtilization" }, false);
    const r = s.add({ id: 1, promptIds: range(0, 16), maxNewTokens: 4, width: 3 });
    const b = beams(3);
    while (r.numOutputTokens < 2) e.step(0, b);
    (s as unknown as { preempt(r: Request): void }).preempt(r);
    let computed = 0;
    for (let i = 0; ; i++) {
      assert.ok(i < 50, "the preempted group never came back");
      const out = e.step(0, b);
      computed += out.numTokens;
      if (out.chunks.some((c) => c.sample)) break;
    }
    // the first sequence's 18 tokens, then 2 of each other's: the prompt is computed once
    assert.equal(computed, 18 + 2 + 2);
    e.drain(100, b);
    assert.deepEqual(
      r.seqs.map((q) => q.tokens.slice(16)),
      beamsAlone(range(0, 16), 3, 4),
    );
    assertIdle(s.kv);
  });

  test("guaranteedNoEvict counts every sequence's blocks; a group wider than maxNumSeqs is refused", () => {
    // width 3, prompt 6 + 6 new: 3 blocks each, the prompt's 1 full block shared: 3 + 2·2 = 7 blocks
    const { s, e } = setup(10, { maxNumTokens: 32 });
    s.add({ id: 1, promptIds: range(0, 6), maxNewTokens: 6, width: 3 });
    s.add({ id: 2, promptIds: range(50, 6), maxNewTokens: 6, width: 3 });
    assert.deepEqual(
      rowShape(e.step(0, beams(3))).map((c) => c[0]),
      [1],
      "the second group must wait for the first's reservation",
    );
    e.drain(100, beams(3));
    // 5 such sequences need 3 + 4·2 = 11 blocks: more than the cache, though one sequence fits
    assert.throws(
      () => s.add({ id: 3, promptIds: range(0, 6), maxNewTokens: 6, width: 5 }),
      (err: Error) =>
        err instanceof RequestTooLargeError &&
        /needs 11 KV blocks \(5 sequences of prompt 6/.test(err.message),
    );
    const narrow = new Scheduler(new KvCacheManager(64, 4), { maxNumSeqs: 2, maxNumTokens: 8 });
    assert.throws(
      () => narrow.add({ id: 1, promptIds: [1], maxNewTokens: 2, width: 3 }),
      (err: Error) => err instanceof InvalidRequestError && /maxNumSeqs/.test(err.message),
    );
    assertIdle(s.kv);
  });

  test("maxUtilization: groups preempted by a tiny cache recompute the same tokens", () => {
    const { s, e } = setup(10, { maxNumTokens: 10, maxNumSeqs: 10, policy: "maxUtilization" });
    const prompts = [range(1, 7), range(30, 5), range(60, 9)];
    const widths = [3, 1, 2];
    const reqs = prompts.map((p, i) => s.add({ id: i + 1, promptIds: p, maxNewTokens: 8, width: widths[i] }));
    e.drain(500, (r, next): Branch[] | null => beams(r.width)(r, next));
    assert.ok(s.stats().numPreemptions > 0, "no preemption: the test lost its point");
    prompts.forEach((p, i) => {
      const got = reqs[i].seqs.map((q) => q.tokens.slice(p.length));
      assert.deepEqual(got, beamsAlone(p, widths[i], 8), `request ${i + 1}`);
    });
    assertIdle(s.kv);
  });
});
