// ResultEvent.numCachedTokens: the request's first event says how many prompt tokens its first
// admission found in the prefix cache — 0 for a new prompt, whole blocks of a shared prefix after it
// — streamed or not, and only on that first event.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { Executor } from "../../src/executor/executor.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";
import { collect } from "./executor_helpers.ts";

const BLOCK = 4;
const model = writeTinyModel("llama", 7);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: BLOCK });
after(() => model.cleanup());

// 10 shared tokens: two whole blocks of 4, then 2 the next request does not share.
const PREFIX = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7];

test("the second request over a shared prefix reports its cached prompt tokens, in whole blocks", async () => {
  const ex = new Executor(Session.open(dir));
  try {
    for (const streaming of [false, true]) {
      const first = await collect(
        ex,
        ex.enqueue({
          prompt: [...PREFIX, 40 + Number(streaming)],
          maxNewTokens: 3,
          greedy: true,
          streaming,
        }),
      );
      const second = await collect(
        ex,
        ex.enqueue({
          prompt: [...PREFIX, 50 + 5 * Number(streaming), 51, 52],
          maxNewTokens: 3,
          greedy: true,
          streaming,
        }),
      );
      // The first request of the non-streaming round meets an empty cache; the streaming round's
      // first request already finds the prefix.
      assert.equal(first.events[0].numCachedTokens, streaming ? 8 : 0);
      assert.equal(second.events[0].numCachedTokens, 8, "two whole blocks of the 10 shared tokens");
      for (const c of [first, second])
        assert.ok(
          c.events.slice(1).every((e) => e.numCachedTokens === undefined),
          "first event only",
        );
    }
  } finally {
    await ex.shutdown();
  }
});

test("a request that ends at its first token leaves its prompt's blocks cached (overlapped and synchronous steps)", async () => {
  const ex = new Executor(Session.open(dir));
  try {
    for (const [i, sync] of [false, true].entries()) {
      const prefix = PREFIX.map((t) => t + 11 * (i + 1)); // a prefix of its own per round
      // maxNewTokens 1: the request finishes at the token of the step that computed its prompt;
      // returnContextLogits makes that step synchronous.
      const first = await collect(
        ex,
        ex.enqueue({ prompt: [...prefix, 40], maxNewTokens: 1, greedy: true, returnContextLogits: sync }),
      );
      assert.equal(first.tokens.length, 1);
      const second = await collect(
        ex,
        ex.enqueue({ prompt: [...prefix, 50, 51], maxNewTokens: 2, greedy: true }),
      );
      assert.equal(
        second.events[0].numCachedTokens,
        8,
        `${sync ? "synchronous" : "overlapped"}: two whole blocks`,
      );
    }
  } finally {
    await ex.shutdown();
  }
});

test("blocks of a step that failed stay out of the prefix cache", async () => {
  const ex = new Executor(Session.open(dir));
  const backend = ex.session.backend;
  const collectSample = backend.collectSample;
  try {
    const prefix = PREFIX.map((t) => (t + 5) % 50);
    backend.collectSample = () => {
      throw new Error("device lost");
    };
    await assert.rejects(
      collect(ex, ex.enqueue({ prompt: [...prefix, 40], maxNewTokens: 1, greedy: true })),
      /device lost/,
    );
    backend.collectSample = collectSample;
    const after = await collect(
      ex,
      ex.enqueue({ prompt: [...prefix, 50, 51], maxNewTokens: 2, greedy: true }),
    );
    assert.equal(after.events[0].numCachedTokens, 0, "nothing cached from the failed step");
  } finally {
    backend.collectSample = collectSample;
    await ex.shutdown();
  }
});
