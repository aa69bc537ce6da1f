// Batched generation equals single-request generation, for prompts of different lengths, and a
// prefill split into chunks gives the logits of the whole prefill (the executor relies on both).
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { BlockAllocator, buildStep, Sequence } from "../helpers/paged_sequence.ts";
import { TINY_CONFIGS, writeTinyModel } from "../helpers/tiny_model.ts";

for (const arch of Object.keys(TINY_CONFIGS)) {
  describe(`batching: ${arch}`, () => {
    const model = writeTinyModel(arch, 7);
    after(model.cleanup);
    const dir = join(model.dir, "engine");
    buildEngine(model.dir, dir, { kvBlockSize: 4 });
    const prompts = [{ ids: [5, 6, 7] }, { ids: [9, 1, 4, 4, 30, 2, 8, 13, 21] }, { ids: [50] }];

    test("batch of 3 equals each alone", async () => {
      const runner = ModelRunner.fromEngine(dir);
      const opts = { greedy: true, maxNewTokens: 10, ignoreEos: true };
      const batched = await runner.generate(prompts, opts);
      for (let i = 0; i < prompts.length; i++) {
        const [single] = await runner.generate(prompts[i], opts);
        assert.deepEqual(batched[i].outputIds, single.outputIds, `prompt ${i}`);
        for (let t = 0; t < single.logProbs.length; t++) {
          assert.ok(Math.abs(batched[i].logProbs[t] - single.logProbs[t]) < 1e-5, `prompt ${i} step ${t}`);
        }
      }
      runner.dispose();
    });

    test("chunked prefill equals one-shot prefill", () => {
      const runner = ModelRunner.fromEngine(dir);
      const backend = runner.session.backend;
      backend.allocateKvCache(16);
      const ids = prompts[1].ids;
      const whole = new Sequence(0, ids, 4);
      const alloc = new BlockAllocator(16);
      whole.reserve(ids.length, alloc);
      const ref = backend.forward(buildStep([whole])).slice();
      whole.release(alloc);
      // Same tokens in chunks of 4, 3, 2 (blocks come back in another order: a different layout).
      const chunked = new Sequence(0, ids, 4);
      chunked.reserve(ids.length, alloc);
      chunked.blockTable.reverse();
      let logits = new Float32Array();
      for (const end of [4, 7, 9]) {
        const view = new Sequence(0, ids.slice(0, end), 4);
        view.blockTable.push(...chunked.blockTable);
        view.numComputed = chunked.numComputed;
        logits = backend.forward(buildStep([view])).slice();
        chunked.numComputed = end;
      }
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(ref[i] - logits[i]) < 1e-5, `logit ${i}`);
      runner.dispose();
    });
  });
}
