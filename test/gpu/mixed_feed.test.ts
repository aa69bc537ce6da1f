// A mixed step queued before the previous step's tokens are read (enqueueSample with a feed of −1 and
// fed rows): a prompt chunk and a host-token decode beside a fed decode, run eagerly, then a
// decode-only step fed in a permuted order (its graph replays), equal to the same steps run unfed and
// synchronously; with graphs off too. The steps: test/helpers/mixed_feed.ts.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cudaTuning } from "../../src/backends/cuda/tuning.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { assertLogProbsNear } from "../helpers/log_probs.ts";
import { runMixedSteps } from "../helpers/mixed_feed.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();

describe("CUDA: mixed fed steps equal the unfed synchronous path", { skip }, () => {
  const cache = tempCache(); // one engine build for both tests
  after(() => cache.cleanup());
  for (const graphs of [true, false]) {
    test(`graphs ${graphs ? "on" : "off"}`, () => {
      const model = fileURLToPath(new URL("../../models/default", import.meta.url));
      const runner = ModelRunner.fromDir(model, {
        backend: "cuda",
        dtype: "fp32",
        cacheDir: cache.dir,
        cudaTuning: cudaTuning({ graphs }),
      });
      try {
        const backend = runner.session.backend;
        assert.ok(backend.enqueueSample, "the engine has the sampling kernels");
        backend.allocateKvCache(16);
        const unfed = runMixedSteps(backend);
        const hostTokenOfB = unfed[0].tokens[0];
        for (const placeholder of [0, 57]) {
          const fed = runMixedSteps(backend, { hostTokenOfB, placeholder });
          fed.forEach((s, i) => {
            assert.deepEqual([...s.tokens], [...unfed[i].tokens], `step ${i}, placeholder ${placeholder}`);
            assertLogProbsNear([...s.logProbs], [...unfed[i].logProbs], 1e-6, `step ${i} log-probs`);
          });
        }
      } finally {
        runner.dispose();
      }
    });
  }
});
