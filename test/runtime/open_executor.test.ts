// openExecutor, the public way to an Executor: from a checkpoint it builds (or reuses) the engine as
// ModelRunner.fromDir does, and the executor it returns serves requests that equal generate's; its
// option keys are checked before any build.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { ModelRunner, openExecutor, UnknownOptionError } from "../../src/index.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const model = writeTinyModel("llama", 3);
const cache = tempCache();
after(() => {
  model.cleanup();
  cache.cleanup();
});

test("openExecutor builds the checkpoint through the engine cache and serves like generate", async () => {
  const ex = openExecutor(model.dir, { cacheDir: cache.dir, kvBlockSize: 4, maxNumSeqs: 4 });
  const runner = ModelRunner.fromDir(model.dir, { cacheDir: cache.dir, kvBlockSize: 4 });
  try {
    assert.equal(runner.engine.origin, "hit", "openExecutor did not put its engine in the cache");
    assert.equal(ex.session.config.build.kvBlockSize, 4, "the build option did not reach the build");
    const prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9]];
    const ids = prompts.map((p) => ex.enqueue({ prompt: p, maxNewTokens: 6, greedy: true, endId: [] }));
    for (const [i, id] of ids.entries()) {
      const got: number[] = [];
      for await (const ev of ex.results(id)) got.push(...ev.tokenIds);
      const [want] = await runner.generate({ ids: prompts[i] }, { maxNewTokens: 6, greedy: true, endId: [] });
      assert.deepEqual(got, want.outputIds, `prompt ${i}`);
    }
  } finally {
    runner.dispose();
    await ex.shutdown();
  }
});

test("a misspelt option is refused before anything is built", () => {
  assert.throws(
    () => openExecutor(model.dir, { cacheDir: cache.dir, maxNumSeq: 4 } as never),
    (e: Error) => e instanceof UnknownOptionError && /maxNumSeqs/.test(e.message),
  );
});
