// Requests sharing a prefix that arrive together (many users, one system prompt): the first computes
// the prefix, the others wait for its blocks to be keyed and take them from the prefix cache, in the
// overlapped and in the synchronous loop; every request's tokens equal the request run alone, also
// when the request computing the prefix is cancelled or requests are preempted. Tiny engine, greedy
// fp32, KV blocks of 4; the idle invariant after every test (executor_helpers.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Executor, IterationStats } from "../../src/executor/executor.ts";
import { type BackendBounds, collect, ticks, tinyEngineExecutors } from "./executor_helpers.ts";

const { runner, executor } = tinyEngineExecutors();

const PREFIX = Array.from({ length: 20 }, (_, k) => (k * 11 + 5) % 61); // 5 whole blocks
const SUFFIXES = Array.from({ length: 8 }, (_, i) =>
  Array.from({ length: 1 + (i % 3) }, (_, k) => 30 + i * 3 + k),
);
const PROMPTS = SUFFIXES.map((s) => [...PREFIX, ...s]);
const SUFFIX_TOKENS = SUFFIXES.reduce((n, s) => n + s.length, 0);
const NEW = 6;
const GREEDY = { greedy: true, endId: [] as number[] };

async function alone(ids: number[]): Promise<number[]> {
  const [out] = await runner.generate({ ids }, { maxNewTokens: NEW, ...GREEDY });
  return out.outputIds;
}

const LOOPS: [string, BackendBounds][] = [
  ["overlapped", {}],
  ["synchronous", { queue: false }],
];

/** Enqueues every prompt at once (before the loop runs); returns their ids. */
function burst(ex: Executor): number[] {
  return PROMPTS.map((prompt) => ex.enqueue({ prompt, maxNewTokens: NEW, ...GREEDY }));
}

describe("executor: a burst of requests over one prefix", () => {
  for (const [loop, bounds] of LOOPS) {
    test(`${loop}: the prefix is computed once, and each request's tokens are its own`, async () => {
      const steps: IterationStats[] = [];
      const ex = executor({ onIteration: (st) => steps.push(st) }, bounds);
      const got = await Promise.all(burst(ex).map((id) => collect(ex, id)));
      assert.equal(
        steps.some((st) => st.overlapped),
        loop === "overlapped",
      );
      for (const [i, g] of got.entries()) assert.deepEqual(g.tokens, await alone(PROMPTS[i]), `request ${i}`);
      assert.deepEqual(
        got.map((g) => g.events[0].numCachedTokens),
        [0, 20, 20, 20, 20, 20, 20, 20],
        "every request after the first takes the 5 prefix blocks from the cache",
      );
      const s = ex.stats();
      assert.equal(s.kv.prefixHitTokens, 7 * 20);
      assert.equal(
        s.numContextTokens,
        PREFIX.length + SUFFIX_TOKENS,
        "prompt tokens computed: the prefix once",
      );
    });

    test(`${loop}: cancelling the request computing the prefix, the others still finish`, async () => {
      // The cancel lands before, while and after the first request's prefix step runs.
      for (const wait of [0, 1, 2, 3]) {
        const ex = executor({}, bounds);
        const ids = burst(ex);
        await ticks(wait);
        ex.cancel(ids[0]);
        const got = await Promise.all(ids.map((id) => collect(ex, id)));
        assert.equal(got[0].finishReason, "cancelled");
        for (let i = 1; i < ids.length; i++)
          assert.deepEqual(got[i].tokens, await alone(PROMPTS[i]), `wait ${wait}, request ${i}`);
        assert.ok(
          got.slice(2).every((g) => g.events[0].numCachedTokens === 20),
          `wait ${wait}: the requests after the second hit the prefix`,
        );
        // Cancelled while its step is queued, the first request still leaves the prefix cached.
        assert.equal(ex.stats().numContextTokens, PREFIX.length + SUFFIX_TOKENS, `wait ${wait}`);
      }
    });

    test(`${loop}: preemption (maxUtilization, a cache for few requests) keeps every token`, async () => {
      const ex = executor({ policy: "maxUtilization", maxTokens: 48 }, bounds);
      const got = await Promise.all(burst(ex).map((id) => collect(ex, id)));
      for (const [i, g] of got.entries()) assert.deepEqual(g.tokens, await alone(PROMPTS[i]), `request ${i}`);
      assert.ok(ex.stats().numPreemptions > 0, "nothing was preempted: the test lost its point");
      assert.ok(ex.stats().kv.prefixHitTokens > 0);
    });
  }
});
