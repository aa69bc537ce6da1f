// `kiln bench --profile` on the CUDA backend: the prefill's steps (cut to the engine's step size) and a
// decode step, each launch timed on its own; the sums and kinds are consistent and the benchmark's own
// figures stay what they are.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runBench } from "../../src/runtime/bench.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();

describe("CUDA: kiln bench --profile", { skip }, () => {
  test("prefill in engine-sized steps and a decode step, by kernel kind", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    const runner = ModelRunner.fromDir(model, { backend: "cuda", dtype: "bf16", cacheDir: cache.dir });
    try {
      // 3 prompts of 40 tokens through steps of at most 50: [40, 10], [30, 20], [20].
      Object.defineProperty(runner.session.backend, "maxStepTokens", { value: 50, configurable: true });
      const r = await runBench(runner, { batchSize: 3, inputLen: 40, outputLen: 4, runs: 1, profile: true });
      const p = r.profile;
      assert.ok(p?.prefill, "a prefill profile");
      assert.equal(p.prefill.steps, 3);
      assert.equal(p.prefill.tokens, 120);
      for (const prof of [p, p.prefill]) {
        const kinds = Object.entries(prof.byKind);
        assert.ok(
          kinds.some(([k]) => k.startsWith("gemm ")),
          "GEMMs timed",
        );
        assert.ok(
          kinds.some(([k]) => k === "attention"),
          "attention timed",
        );
        for (const [k, v] of kinds) assert.ok(v.ms > 0 && v.count > 0, `${k}: ${v.ms} ms × ${v.count}`);
        const sum = kinds.reduce((a, [, v]) => a + v.ms, 0);
        assert.ok(Math.abs(sum - prof.eagerMs) <= 1e-6 * prof.eagerMs, `${sum} vs ${prof.eagerMs}`);
      }
      // Each prefill step launches every lowered step once: three times the decode step's count.
      const count = (byKind: Record<string, { count: number }>) =>
        Object.values(byKind).reduce((a, v) => a + v.count, 0);
      assert.equal(count(p.prefill.byKind), 3 * count(p.byKind));
      assert.ok(p.graphMs > 0);
      assert.equal(r.outputTokens, 12);
    } finally {
      runner.dispose();
      cache.cleanup();
    }
  });
});
