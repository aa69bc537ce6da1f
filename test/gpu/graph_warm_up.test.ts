// Decode graphs captured when the executor starts (ExecutorOptions.captureGraphs; CudaBackend
// prepareDecodeGraphs over warm_up_step.ts graphWarmUpSteps) replay real steps exactly: many requests of
// mixed lengths, so the running batch passes through several buckets and split counts, give the same
// greedy tokens with graphs captured at start, captured on first use, and on the CPU backend.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Executor } from "../../src/executor/executor.ts";
import { openExecutor } from "../../src/runtime/open_executor.ts";
import { collect } from "../executor/executor_helpers.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();
const MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

async function tokens(ex: Executor): Promise<number[][]> {
  // 40 requests: prompts of 1 … 300 tokens, 3 … 80 new tokens, so the batch shrinks as they finish
  // and long contexts reach more attention splits at small batch sizes.
  const ids = Array.from({ length: 40 }, (_, r) =>
    ex.enqueue({
      prompt: Array.from({ length: 1 + ((r * 37) % 300) }, (_, i) => 5 + ((r * 131 + i * 17) % 400)),
      maxNewTokens: 3 + ((r * 29) % 78),
      greedy: true,
      endId: [],
    }),
  );
  return Promise.all(ids.map(async (id) => (await collect(ex, id)).tokens));
}

describe("CUDA: decode graphs captured at executor start", { skip }, () => {
  test("same tokens as graphs captured on first use and as the CPU backend", async () => {
    const cache = tempCache();
    const run = async (backend: "cpu" | "cuda", captureGraphs: boolean) => {
      const ex = openExecutor(MODEL, { backend, dtype: "fp32", cacheDir: cache.dir, captureGraphs });
      try {
        return { tokens: await tokens(ex), warm: ex.graphWarmUp };
      } finally {
        await ex.shutdown();
      }
    };
    try {
      const atStart = await run("cuda", true);
      assert.ok(atStart.warm.graphs > 0, "graphs captured at start");
      process.stdout.write(`# ${atStart.warm.graphs} graphs captured in ${atStart.warm.ms.toFixed(0)} ms\n`);
      const lazy = await run("cuda", false);
      assert.equal(lazy.warm.graphs, 0);
      const cpu = await run("cpu", true);
      assert.deepEqual(atStart.tokens, lazy.tokens);
      assert.deepEqual(atStart.tokens, cpu.tokens);
    } finally {
      cache.cleanup();
    }
  });
});
