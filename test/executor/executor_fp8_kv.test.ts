// The executor over an FP8 KV cache (--kv-cache-dtype fp8) on the tiny CPU engine: forking sequences
// copy partial blocks with their scales, and preemption recomputes the same tokens. The references are
// runs over the same FP8 cache without the event under test (no fork, no preemption), so a block copied
// without its scales, or a recompute that wrote different bytes, changes the tokens.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Executor, ExecutorRequest } from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { collect, ticks, tinyEngineExecutors } from "./executor_helpers.ts";
import { collectGroup, type GroupResult } from "./group_helpers.ts";

const { dir, executor } = tinyEngineExecutors({}, "fp8");

/** Deterministic prompts over the tiny vocabulary (61 ids). */
function prompt(i: number, len: number): number[] {
  return Array.from({ length: len }, (_, k) => (i * 13 + k * 5 + 4) % 61);
}

/** The request alone on a fresh FP8 executor with room for everything: no preemption. */
async function alone(ids: number[], req: Omit<ExecutorRequest, "prompt">): Promise<GroupResult> {
  const ex = executor();
  return collectGroup(ex, ex.enqueue({ prompt: ids, ...req }));
}

describe("executor with an FP8 KV cache", () => {
  test("the backend is FP8", () => {
    const ex = executor();
    assert.equal(ex.session.backend.kvCacheDtype, "fp8");
    using runner = ModelRunner.fromEngine(dir, undefined, { dtype: "fp8" });
    assert.equal(runner.session.backend.kvCacheDtype, "fp8");
  });

  test("n argmax-only samples fork the prompt's partial block: every one equals the greedy run", async () => {
    const ex = executor();
    const ids = prompt(1, 6); // blocks of 4: the second block is partial and shared by the samples
    const single = await collect(ex, ex.enqueue({ prompt: ids, maxNewTokens: 12, greedy: true, endId: [] }));
    const forked = await collectGroup(
      ex,
      // topP 1e-6 keeps only the most likely token: each sample takes the argmax, as greedy does (greedy
      // refuses numReturnSequences > 1)
      ex.enqueue({
        prompt: ids,
        maxNewTokens: 12,
        temperature: 1,
        topP: 1e-6,
        seed: 3,
        endId: [],
        numReturnSequences: 3,
      }),
    );
    assert.equal(forked.seqs.length, 3);
    for (const s of forked.seqs) assert.deepEqual(s.tokens, single.tokens);
  });

  test("maxUtilization with a tiny cache preempts and recomputes the same tokens (beams, samples)", async () => {
    const jobs: { ids: number[]; req: Omit<ExecutorRequest, "prompt"> }[] = [
      { ids: prompt(17, 9), req: { maxNewTokens: 10, beamWidth: 3, endId: [] } },
      {
        ids: prompt(18, 6),
        req: { maxNewTokens: 10, temperature: 1.1, topK: 30, seed: 21, numReturnSequences: 3, endId: [] },
      },
      { ids: prompt(20, 7), req: { maxNewTokens: 11, greedy: true, endId: [], priority: 1 } },
    ];
    const ex: Executor = executor({
      policy: "maxUtilization",
      maxTokens: 48,
      maxNumTokens: 12,
      maxNumSeqs: 12,
    });
    const pending: Promise<GroupResult>[] = [];
    for (const j of jobs) {
      pending.push(collectGroup(ex, ex.enqueue({ prompt: j.ids, ...j.req })));
      await ticks(0);
    }
    const got = await Promise.all(pending);
    assert.ok(ex.stats().numPreemptions > 0, "nothing was preempted: the test lost its point");
    for (const [i, j] of jobs.entries()) {
      const want = await alone(j.ids, j.req);
      assert.deepEqual(
        got[i].seqs.map((s) => s.tokens),
        want.seqs.map((s) => s.tokens),
        `request ${i}`,
      );
    }
  });
});
