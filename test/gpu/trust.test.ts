// What the CUDA backend does with damaged engines and unusable inputs: a flipped bit in a weight is
// caught while the weights are uploaded (a user's engine is refused, a cached one rebuilt), NaN
// weights are a named error on the fused forward-and-sample and the host-sampling paths of the
// runner's executor, a temperature too small for float32 decodes greedily, and dispose() during a
// generate rejects it by name.
import assert from "node:assert/strict";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { buildEngine } from "../../src/builder/builder.ts";
import { EngineCorruptError } from "../../src/engine/errors.ts";
import { openEngine } from "../../src/engine/reader.ts";
import { NonFiniteLogitsError, RunnerDisposedError } from "../../src/runtime/errors.ts";
import { type GenerateOptions, ModelRunner } from "../../src/runtime/model_runner.ts";
import { noCudaDevice } from "../helpers/gpu.ts";
import { tempCache, writeTinyModel } from "../helpers/tiny_model.ts";

const skip = noCudaDevice();
const DEFAULT_MODEL = fileURLToPath(new URL("../../models/default", import.meta.url));

/** Flips one bit in the middle of the engine's largest weight. */
function flipWeightBit(engineDir: string): void {
  const engine = openEngine(engineDir);
  const w = engine.header.weights.reduce((a, b) => (b.byteLength > a.byteLength ? b : a));
  engine.close();
  const fd = openSync(join(engineDir, "rank0.engine"), "r+");
  try {
    const at = w.offset + Math.floor(w.byteLength / 2);
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, at);
    byte[0] ^= 0x10;
    writeSync(fd, byte, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}

describe("CUDA: damaged engines", { skip }, () => {
  const cache = tempCache();
  after(cache.cleanup);
  const ids = { ids: [1, 2, 3] };
  const greedy: GenerateOptions = { greedy: true, maxNewTokens: 8, ignoreEos: true };

  test("a flipped bit in a user's engine: EngineCorruptError at load, naming the weight", () => {
    const dir = join(cache.dir, "user-engine");
    buildEngine(DEFAULT_MODEL, dir, { backend: "cuda", dtype: "bf16" });
    flipWeightBit(dir);
    assert.throws(
      () => ModelRunner.fromEngine(dir, "cuda"),
      (e: unknown) => e instanceof EngineCorruptError && /rank0\.engine/.test(e.message),
    );
  });

  test("a flipped bit in a cached engine: rebuilt, the same tokens as before", async () => {
    const options = { backend: "cuda", dtype: "bf16", cacheDir: cache.dir } as const;
    const first = ModelRunner.fromDir(DEFAULT_MODEL, options);
    const [before] = await first.generate(ids, greedy);
    first.dispose();
    flipWeightBit(first.engine.dir);
    const again = ModelRunner.fromDir(DEFAULT_MODEL, options);
    try {
      assert.equal(again.engine.origin, "built", "the damaged entry was rebuilt");
      const [rebuilt] = await again.generate(ids, greedy);
      assert.deepEqual(rebuilt.outputIds, before.outputIds);
    } finally {
      again.dispose();
    }
  });
});

describe("CUDA: unusable values", { skip }, () => {
  const cache = tempCache();
  const nan = writeTinyModel("llama", 5, { nanIn: "model.norm.weight" });
  after(() => {
    cache.cleanup();
    nan.cleanup();
  });

  // Greedy and plain sampling sample on the device with the forward (forwardSample); penalties too.
  for (const [mode, opts] of [
    ["greedy", { greedy: true }],
    ["sampling", { temperature: 0.8, topK: 5, seed: 1 }],
    ["with penalties", { greedy: true, repetitionPenalty: 1.2 }],
  ] as [string, GenerateOptions][]) {
    test(`NaN weights, ${mode}: NonFiniteLogitsError`, async () => {
      const runner = ModelRunner.fromDir(nan.dir, { backend: "cuda", dtype: "fp32", cacheDir: cache.dir });
      try {
        await assert.rejects(
          runner.generate({ ids: [1, 2] }, { ...opts, maxNewTokens: 4 }),
          NonFiniteLogitsError,
        );
      } finally {
        runner.dispose();
      }
    });
  }

  test("a temperature below float32's range decodes greedily", async () => {
    const runner = ModelRunner.fromDir(DEFAULT_MODEL, {
      backend: "cuda",
      dtype: "fp32",
      cacheDir: cache.dir,
    });
    try {
      const opts = { maxNewTokens: 24, ignoreEos: true, seed: 3 };
      const [tiny] = await runner.generate("ROMEO:", { ...opts, temperature: 1e-300 });
      const [greedy] = await runner.generate("ROMEO:", { maxNewTokens: 24, ignoreEos: true, greedy: true });
      assert.deepEqual(tiny.outputIds, greedy.outputIds);
      assert.ok(tiny.logProbs.every((p) => Number.isFinite(p)));
    } finally {
      runner.dispose();
    }
  });

  test("an abort mid-stream: the next request is exact", async () => {
    const runner = ModelRunner.fromDir(DEFAULT_MODEL, {
      backend: "cuda",
      dtype: "fp32",
      cacheDir: cache.dir,
    });
    try {
      const greedy = { greedy: true, maxNewTokens: 24, ignoreEos: true } as const;
      const [expected] = await runner.generate("ROMEO:", greedy);
      const controller = new AbortController();
      let seen = 0;
      await assert.rejects(async () => {
        for await (const _ of runner.stream("JULIET:", { ...greedy, signal: controller.signal })) {
          if (++seen === 3) controller.abort(); // the executor may be a step ahead of the reader
        }
      });
      const [after] = await runner.generate("ROMEO:", greedy);
      assert.deepEqual(after.outputIds, expected.outputIds);
    } finally {
      runner.dispose();
    }
  });

  test("dispose() during a generate: RunnerDisposedError, then a new runner works", async () => {
    const options = { backend: "cuda", dtype: "fp32", cacheDir: cache.dir } as const;
    const runner = ModelRunner.fromDir(DEFAULT_MODEL, options);
    const pending = runner.generate("ROMEO:", { greedy: true, maxNewTokens: 200, ignoreEos: true });
    await new Promise((resolve) => setTimeout(resolve, 5));
    runner.dispose();
    await assert.rejects(pending, RunnerDisposedError);
    await runner.close();
    const next = ModelRunner.fromDir(DEFAULT_MODEL, options);
    try {
      const [out] = await next.generate("ROMEO:", { greedy: true, maxNewTokens: 4 });
      assert.equal(out.outputIds.length, 4);
    } finally {
      next.dispose();
    }
  });
});
