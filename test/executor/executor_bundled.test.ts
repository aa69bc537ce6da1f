// The executor on the bundled model (CPU): text prompts of different lengths served together give
// each prompt's tokens and text as ModelRunner.generate gives them alone, streamed text deltas add up
// to the whole text, and a text stop word cuts the text where generate cuts it. numReturnSequences,
// beam search and context logits, served together with other requests, equal generate's.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { BUNDLED_MODEL_DIR } from "../../src/bundled_model.ts";
import { Executor } from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import { tempCache } from "../helpers/tiny_model.ts";
import { assertIdle, collect, ticks } from "./executor_helpers.ts";
import { assertSameSequences, collectGroup, viaRuntime } from "./group_helpers.ts";

const cache = tempCache();
const runner = ModelRunner.fromDir(BUNDLED_MODEL_DIR, { backend: "cpu", cacheDir: cache.dir });
after(() => {
  runner.dispose();
  cache.cleanup();
});

const PROMPTS = [
  "Once upon a time",
  "The quick brown fox jumps over the lazy dog, and then",
  "Hello",
  "In a small village by the sea there lived an old fisherman who",
];

test("bundled model: concurrent text prompts equal each alone, tokens and text", async () => {
  const ex = new Executor(Session.open(runner.engine.dir), { maxNumTokens: 16 });
  try {
    const pending = [];
    for (const [i, p] of PROMPTS.entries()) {
      pending.push(
        collect(ex, ex.enqueue({ prompt: p, maxNewTokens: 12 + i, greedy: true, streaming: i % 2 === 0 })),
      );
      await ticks(i);
    }
    const got = await Promise.all(pending);
    for (const [i, p] of PROMPTS.entries()) {
      const [want] = await runner.generate(p, { maxNewTokens: 12 + i, greedy: true });
      assert.deepEqual(got[i].tokens, want.outputIds, `prompt ${i}`);
      assert.equal(got[i].text, want.text, `prompt ${i}`);
      assert.equal(got[i].finishReason, want.finishReason);
      got[i].logProbs.forEach((lp, t) => assert.ok(Math.abs(lp - want.logProbs[t]) < 1e-4, `logProb ${t}`));
      if (i % 2 === 0) assert.equal(got[i].events.length, want.outputIds.length, "one event per token");
      else assert.equal(got[i].events.length, 1, "one event when not streaming");
    }
    assertIdle(ex);
  } finally {
    await ex.shutdown();
  }
});

test("bundled model: a text stop word cuts where generate cuts", async () => {
  const p = PROMPTS[3];
  const [free] = await runner.generate(p, { maxNewTokens: 20, greedy: true, ignoreEos: true });
  const word = free.text.trim().split(/\s+/)[2];
  assert.ok(word, `no third word in ${JSON.stringify(free.text)}`);
  const [want] = await runner.generate(p, { maxNewTokens: 20, greedy: true, stopWords: [word] });
  assert.equal(want.finishReason, "stop");
  const ex = new Executor(Session.open(runner.engine.dir));
  try {
    const got = await collect(
      ex,
      ex.enqueue({ prompt: p, maxNewTokens: 20, greedy: true, stopWords: [word], streaming: true }),
    );
    assert.equal(got.finishReason, "stop");
    assert.equal(got.text, want.text);
    assert.deepEqual(got.tokens, want.outputIds);
    assertIdle(ex);
  } finally {
    await ex.shutdown();
  }
});

test("bundled model: n > 1 samples, beams and context logits in flight together equal generate's", async () => {
  const ex = new Executor(Session.open(runner.engine.dir), { maxNumTokens: 12, maxNumSeqs: 12 });
  try {
    const reqs = [
      { maxNewTokens: 10, numReturnSequences: 3, temperature: 0.9, topK: 40, seed: 5, streaming: true },
      { maxNewTokens: 8, beamWidth: 3, numReturnSequences: 2, lengthPenalty: 0.8 },
      { maxNewTokens: 9, greedy: true, returnContextLogits: true },
      { maxNewTokens: 7, beamWidth: 2, earlyStopping: true, streaming: true, returnContextLogits: true },
    ];
    const pending = [];
    for (const [i, req] of reqs.entries()) {
      pending.push(collectGroup(ex, ex.enqueue({ prompt: PROMPTS[i], ...req })));
      await ticks(1);
    }
    const got = await Promise.all(pending);
    for (const [i, req] of reqs.entries()) {
      const want = await viaRuntime(runner, PROMPTS[i], req);
      assertSameSequences(got[i], want, `prompt ${i}`);
      if (!req.returnContextLogits) continue;
      const c = got[i].contextLogits as Float32Array;
      const w = want.contextLogits as Float32Array;
      assert.equal(c.length, w.length);
      let worst = 0;
      for (let k = 0; k < c.length; k++) worst = Math.max(worst, Math.abs(c[k] - w[k]));
      assert.ok(worst < 1e-3, `prompt ${i}: context logits differ by ${worst}`);
    }
    assertIdle(ex);
  } finally {
    await ex.shutdown();
  }
});
