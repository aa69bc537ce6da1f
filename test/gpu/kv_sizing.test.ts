// KV sizing on the device (executor/kv_cache_size.ts, cuda/graph_reserve.ts): after the warm-up step,
// running requests — a prefill at maxNumTokens, decodes at several batch buckets (graphs captured) —
// takes no more device memory, beside the KV pool, than the graphs' reserve the backend keeps back;
// the executor's pool is ⌊fraction × freeMemoryBytes / kvBytesPerBlock⌋ ("free-memory"). Prints what the graphs took,
// the figure docs/TUNING.md asks to record in docs/PERFORMANCE.md.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { CudaBackend } from "../../src/backends/cuda/cuda_backend.ts";
import { engineRowLimits } from "../../src/backends/cuda/gemm_algorithms.ts";
import { graphReserveBytes } from "../../src/backends/cuda/graph_reserve.ts";
import { Executor } from "../../src/executor/executor.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();

describe("CUDA: the KV cache sized from free memory after warm-up", { skip }, () => {
  test("fraction of free memory; what runs after it stays within the graphs' reserve", async () => {
    const cache = tempCache();
    const model = fileURLToPath(new URL("../../models/default", import.meta.url));
    const runner = ModelRunner.fromDir(model, { backend: "cuda", dtype: "fp32", cacheDir: cache.dir });
    const backend = runner.session.backend as CudaBackend;
    const maxNumTokens = runner.session.config.build.maxNumTokens;
    backend.warmUp(maxNumTokens);
    const before = backend.freeMemoryBytes();
    const s = runner.session;
    const borrowed = {
      backend,
      config: s.config,
      tokenizer: s.tokenizer,
      generationDefaults: s.generationDefaults,
      eosTokenIds: s.eosTokenIds,
      dispose: () => {}, // the runner's
    };
    const ex = new Executor(borrowed, { freeGpuMemoryFraction: 0.5, maxNumTokens });
    try {
      const expected = Math.floor((0.5 * before) / backend.kvBytesPerBlock);
      assert.ok(Math.abs(ex.kv.numBlocks - expected) <= 1, `${ex.kv.numBlocks} blocks, expected ${expected}`);
      assert.equal(ex.kvSizing.limitedBy, "free-memory", "no engine cap unless capKvAtEngine");
      assert.ok(Math.abs((ex.kvSizing.freeBlocks ?? 0) - Math.floor(before / backend.kvBytesPerBlock)) <= 1);
      const long = Array.from(
        { length: Math.min(maxNumTokens, runner.session.config.maxSeqLen - 8) },
        (_, i) => 5 + (i % 200),
      );
      const ids = [ex.enqueue({ prompt: long, maxNewTokens: 4, greedy: true, endId: [] })];
      for (let i = 0; i < 13; i++)
        ids.push(ex.enqueue({ prompt: [7 + i, 9, 11], maxNewTokens: 3 + 2 * i, greedy: true, endId: [] }));
      for (const id of ids) for await (const _ of ex.results(id));
      const after = backend.freeMemoryBytes();
      const launches = (backend as unknown as { lowered: { steps: unknown[] } }).lowered.steps.length;
      const reserve = graphReserveBytes(launches, engineRowLimits(s.config.build).maxLogitRows);
      const took = before - after;
      process.stdout.write(
        `# after warm-up the backend took ${(took / 2 ** 20).toFixed(1)} MiB more (reserve ${(reserve / 2 ** 20).toFixed(1)} MiB)\n`,
      );
      assert.ok(took <= reserve, `${took} bytes after warm-up, reserve ${reserve}`);
    } finally {
      await ex.shutdown();
      runner.dispose();
      cache.cleanup();
    }
  });
});
