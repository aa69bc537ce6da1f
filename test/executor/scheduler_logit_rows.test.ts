// The scheduler under a bound on the logits rows of a step (the backend's maxLogitRows): a request
// with context logits takes a row per token it computes, so its prompt is chunked to the rows left;
// a chunk that cannot take the row it would sample stops one token short; decodes always fit. The
// fake engine (fake_engine.ts) checks every step's rows against the bound and its KV reads.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidArgumentError } from "../../src/errors.ts";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import { Scheduler, type SchedulerConfig } from "../../src/executor/scheduler.ts";
import { FakeEngine, shape, solo } from "./fake_engine.ts";
import { assertIdle, range } from "./kv_helpers.ts";

function setup(config: SchedulerConfig) {
  const s = new Scheduler(new KvCacheManager(64, 4), config);
  return { s, e: new FakeEngine(s) };
}

describe("Scheduler: logits rows", () => {
  test("a context-logits prompt is chunked to the rows left; plain chunks stop short of a row", () => {
    const { s, e } = setup({ maxNumTokens: 64, maxLogitRows: 8 });
    const a = s.add({ id: 1, promptIds: range(10, 20), maxNewTokens: 3, contextLogits: true });
    const b = s.add({ id: 2, promptIds: range(40, 5), maxNewTokens: 4 });
    const c = s.add({ id: 3, promptIds: range(60, 11), maxNewTokens: 2, contextLogits: true });
    const outs = [e.step(), e.step(), e.step(), e.step()];
    assert.deepEqual(outs.map(shape), [
      // a takes all 8 rows; b's prompt would sample, so it stops one short; c gets no row
      [
        [1, 0, 8, false],
        [2, 0, 4, false],
      ],
      // b's last prompt token goes first, like a decode (1 row); a takes the 7 left
      [
        [2, 4, 1, true],
        [1, 8, 7, false],
      ],
      // b decodes; a ends its prompt (5 rows) and samples; c starts on the 2 rows left
      [
        [2, 5, 1, true],
        [1, 15, 5, true],
        [3, 0, 2, false],
      ],
      // decodes first (a's decode is a context row too), then c's chunk in the 6 rows left
      [
        [1, 20, 1, true],
        [2, 6, 1, true],
        [3, 2, 6, false],
      ],
    ]);
    assert.deepEqual(
      outs.map((o) => o.numLogitRows),
      [8, 8, 8, 8],
    );
    e.drain();
    assert.deepEqual(a.outputIds, solo(range(10, 20), 3));
    assert.deepEqual(b.outputIds, solo(range(40, 5), 4));
    assert.deepEqual(c.outputIds, solo(range(60, 11), 2));
    assertIdle(s.kv);
  });

  test("a context-logits request still computes its prompt in chunks of the token budget when rows abound", () => {
    const { s, e } = setup({ maxNumTokens: 6 });
    s.add({ id: 1, promptIds: range(0, 10), maxNewTokens: 1, contextLogits: true });
    assert.deepEqual([e.step(), e.step()].map(shape), [[[1, 0, 6, false]], [[1, 6, 4, true]]]);
    assertIdle(s.kv);
  });

  test("maxNumSeqs defaults to at most maxLogitRows; more, or a bound below 1, is refused", () => {
    const kv = new KvCacheManager(8, 4);
    assert.equal(new Scheduler(kv, { maxLogitRows: 8 }).maxNumSeqs, 8);
    assert.throws(
      () => new Scheduler(kv, { maxNumSeqs: 16, maxLogitRows: 8 }),
      (err: Error) =>
        err instanceof InvalidArgumentError && /maxNumSeqs 16 .* lower maxNumSeqs/.test(err.message),
    );
    assert.throws(() => new Scheduler(kv, { maxLogitRows: 0 }), InvalidArgumentError);
  });
});
