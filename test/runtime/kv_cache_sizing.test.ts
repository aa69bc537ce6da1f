// The runner's KV cache is sized once, by its executor when it starts (executor/kv_cache_size.ts), and
// shared by every request; the runner passes its KvCacheConfig and the engine cap, and reports the
// executor's decision as KvPoolInfo. On a backend that reports free memory (a spy over the CPU backend
// stands in for CUDA), read once after the warm-up: min(engine cap, ⌊fraction × free blocks⌋), or with
// maxTokens min(engine cap, ⌊maxTokens / blockSize⌋, all free blocks); on the CPU, the engine's
// maxSeqLen × maxBatchSize tokens or ⌊maxTokens / blockSize⌋. A request that can never fit gets
// RequestTooLargeError and leaves the session usable.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { KvCacheNoRoomError, RequestTooLargeError } from "../../src/executor/errors.ts";
import { GenerationSession } from "../../src/runtime/generation_session.ts";
import {
  InvalidKvCacheConfigError,
  type KvCacheConfig,
  resolveKvCacheConfig,
} from "../../src/runtime/kv_cache_config.ts";
import { ModelRunner } from "../../src/runtime/model_runner.ts";
import { Session } from "../../src/runtime/session.ts";
import type { SamplingConfig } from "../../src/sampling/sampling_config.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

// Tiny Llama: maxSeqLen 64, KV blocks of 16 tokens, at most 4 sequences per step →
// engine cap = 4 × (64 / 16 + 1) = 20 blocks.
const BS = 16;
const ENGINE_CAP = 20;

// Requests and the blocks they need: sequences × (⌈min(prompt + new, 64) / 16⌉ + 1).
const greedy = (maxNewTokens: number, extra: Partial<SamplingConfig> = {}): Partial<SamplingConfig> => ({
  temperature: 0,
  maxNewTokens,
  endId: [],
  ...extra,
});
const A = { inputs: [[5, 6, 7]], config: greedy(4), blocks: 2 }; // 1 × (⌈7/16⌉ + 1)
const B = {
  inputs: [[5, 6, 7], [9, 1, 4, 4, 30, 2, 8, 13, 21], [50]],
  config: greedy(20),
  blocks: 9, // 3 × (⌈29/16⌉ + 1)
};
const C = {
  inputs: [
    [1, 2, 3, 4, 5],
    [6, 7, 8, 9, 10],
  ],
  config: greedy(40, { temperature: 0.8, numReturnSequences: 2, randomSeed: 3 }),
  blocks: 16, // 2 prompts × 2 samples × (⌈45/16⌉ + 1)
};

describe("the runner's KV cache", () => {
  const model = writeTinyModel("llama", 3);
  const engineDir = join(model.dir, "engine");
  buildEngine(model.dir, engineDir, { maxBatchSize: 4, kvBlockSize: BS });
  after(model.cleanup);

  /** A session whose backend records allocateKvCache calls; with `free`, it also reports that many
   * blocks of free device memory (and a warm-up hook), as the CUDA backend does, and records the order. */
  function open(free?: number, kvCache: Partial<KvCacheConfig> = {}) {
    const session = Session.open(engineDir);
    const backend = session.backend;
    const calls: number[] = [];
    const events: string[] = [];
    const allocate = backend.allocateKvCache.bind(backend);
    backend.allocateKvCache = (n: number) => {
      calls.push(n);
      events.push(`allocate ${n}`);
      allocate(n);
    };
    if (free !== undefined) {
      backend.warmUp = () => events.push("warmUp");
      backend.freeMemoryBytes = () => {
        events.push("freeMemoryBytes");
        return free * backend.kvBytesPerBlock;
      };
    }
    const gs = new GenerationSession(session, kvCache);
    const dispose = () => {
      void gs.shutdown();
      session.dispose();
    };
    return { session, backend, gs, calls, events, [Symbol.dispose]: dispose };
  }
  const run = (gs: GenerationSession, r: { inputs: number[][]; config: Partial<SamplingConfig> }) =>
    gs.decode(r.inputs, r.config);
  const ids = (outs: Awaited<ReturnType<typeof run>>) => outs.map((o) => o.sequences.map((s) => s.outputIds));

  test("allocated once, at the first request, after warm-up; every request size reuses it", async () => {
    using s = open(1000);
    assert.equal(s.gs.pool, null, "nothing is allocated before the first request");
    assert.deepEqual(s.calls, []);
    const first = await run(s.gs, A);
    for (const r of [B, C, A, B]) await run(s.gs, r);
    const last = await run(s.gs, A);
    assert.deepEqual(s.calls, [ENGINE_CAP]);
    assert.deepEqual(
      s.events,
      ["warmUp", "freeMemoryBytes", `allocate ${ENGINE_CAP}`],
      "one warm-up, then free memory read once, then one allocation",
    );
    assert.equal(s.backend.numKvBlocks, ENGINE_CAP);
    assert.deepEqual(s.gs.pool, {
      numBlocks: ENGINE_CAP,
      blockSize: BS,
      tokens: ENGINE_CAP * BS,
      bytes: ENGINE_CAP * s.backend.kvBytesPerBlock,
      limitedBy: "engine",
      dtype: "auto",
      freeBlocks: 1000,
    });
    assert.deepEqual(ids(last), ids(first));
    assert.equal(first[0].sequences[0].outputIds.length, 4);
    // Same tokens as a session whose pool was sized for exactly this request.
    using cpu = open();
    assert.deepEqual(ids(await run(cpu.gs, A)), ids(first));
    assert.deepEqual(ids(await run(cpu.gs, C)), ids(await run(s.gs, C)));
  });

  const sizes: [string, number, Partial<KvCacheConfig>, number, string][] = [
    ["memory: ⌊0.7 × 15⌋", 15, { freeGpuMemoryFraction: 0.7 }, 10, "free-memory"],
    ["memory: all 15 free blocks at fraction 1", 15, { freeGpuMemoryFraction: 1 }, 15, "free-memory"],
    ["memory: ⌊0.01 × 1000⌋", 1000, { freeGpuMemoryFraction: 0.01 }, 10, "free-memory"],
    ["engine cap under 0.9 × 1000", 1000, {}, ENGINE_CAP, "engine"],
    ["maxTokens 100: ⌊100 / 16⌋", 1000, { maxTokens: 100 }, 6, "max-tokens"],
    [
      "the fraction under maxTokens: ⌊0.5 × 15⌋ < ⌊200 / 16⌋",
      15,
      { freeGpuMemoryFraction: 0.5, maxTokens: 200 },
      7,
      "free-memory",
    ],
    ["maxTokens beyond free memory: ⌊0.9 × 15⌋", 15, { maxTokens: 400 }, 13, "free-memory"],
    ["maxTokens beyond the engine cap", 1000, { maxTokens: 1000 }, ENGINE_CAP, "engine"],
  ];
  for (const [name, free, config, blocks, limitedBy] of sizes) {
    test(`pool size: ${name} → ${blocks} (${limitedBy})`, () => {
      using s = open(free, config);
      const info = s.gs.allocatePool();
      assert.deepEqual(info, {
        numBlocks: blocks,
        blockSize: BS,
        tokens: blocks * BS,
        bytes: blocks * s.backend.kvBytesPerBlock,
        limitedBy,
        dtype: "auto",
        freeBlocks: free,
      });
      assert.deepEqual(s.gs.executor.kvSizing, { numBlocks: blocks, limitedBy, freeBlocks: free });
      s.gs.allocatePool(); // kept, not reallocated
      assert.deepEqual(s.calls, [blocks]);
      assert.equal(s.backend.numKvBlocks, blocks);
    });
  }

  for (const [name, free, config, blocks, limitedBy] of sizes) {
    test(`requests run inside the sized cache: ${name}`, async () => {
      using s = open(free, config);
      if (blocks >= C.blocks / 2) await run(s.gs, C); // 2 requests of 2 samples × 45 tokens
      await run(s.gs, B);
      await run(s.gs, A);
      assert.deepEqual(s.calls, [blocks]);
      assert.equal(s.gs.pool?.limitedBy, limitedBy);
      assert.equal(s.gs.stats()?.kv.numUsed, 0);
    });
  }

  test("a request larger than the whole cache is RequestTooLargeError; the next request still runs", async () => {
    using s = open(1000, { maxTokens: 32 }); // 2 blocks
    const ok = await run(s.gs, A);
    await assert.rejects(run(s.gs, C), (e: unknown) => {
      assert.ok(e instanceof RequestTooLargeError, String(e));
      assert.match(e.message, /the KV cache holds 2 blocks \(32 tokens\)/);
      assert.match(e.message, /--max-kv-tokens/);
      return true;
    });
    assert.deepEqual(ids(await run(s.gs, A)), ids(ok));
    assert.deepEqual(s.calls, [2]);
  });

  test("no block fits in free memory: KvCacheNoRoomError naming free memory, the fraction and the flag", () => {
    using s = open(1, { freeGpuMemoryFraction: 0.5 });
    assert.throws(
      () => s.gs.allocatePool(),
      (e: unknown) =>
        e instanceof KvCacheNoRoomError &&
        e.freeBytes === s.backend.kvBytesPerBlock &&
        e.fraction === 0.5 &&
        /no KV cache block fits: .* MiB of device memory is free .* freeGpuMemoryFraction 0\.5 of it holds no/.test(
          e.message,
        ) &&
        e.message.includes("--kv-cache-free-gpu-mem-fraction"),
    );
    assert.deepEqual(s.calls, []);
    assert.deepEqual(s.events, ["warmUp", "freeMemoryBytes"]);
  });

  test("CPU (no free-memory figure): maxSeqLen × maxBatchSize tokens, or maxTokens", async () => {
    using s = open();
    assert.equal(s.gs.stats(), null, "no executor before the first request");
    await run(s.gs, A);
    assert.equal(s.gs.pool?.numBlocks, 16); // 64 × 4 / 16
    assert.equal(s.gs.pool?.limitedBy, "engine");
    assert.deepEqual(s.events, ["allocate 16"], "no warm-up or memory query on the CPU");
    using capped = open(undefined, { maxTokens: 160 });
    assert.equal(capped.gs.allocatePool().numBlocks, 10);
    assert.equal(capped.gs.pool?.limitedBy, "max-tokens");
  });

  test("KvCacheConfig: defaults, and each bad value names the field, the value and the fix", () => {
    assert.deepEqual(resolveKvCacheConfig(), { freeGpuMemoryFraction: 0.9 });
    assert.deepEqual(resolveKvCacheConfig({ freeGpuMemoryFraction: 1, maxTokens: 4096 }), {
      freeGpuMemoryFraction: 1,
      maxTokens: 4096,
    });
    assert.deepEqual(resolveKvCacheConfig({ dtype: "fp8" }), { freeGpuMemoryFraction: 0.9, dtype: "fp8" });
    assert.deepEqual(resolveKvCacheConfig({ dtype: "auto" }), { freeGpuMemoryFraction: 0.9 });
    const bad: [Partial<KvCacheConfig>, RegExp][] = [
      [{ freeGpuMemoryFraction: 0 }, /freeGpuMemoryFraction must be in \(0, 1\], got 0;.*e\.g\. 0\.9/],
      [{ freeGpuMemoryFraction: 1.5 }, /freeGpuMemoryFraction must be in \(0, 1\], got 1\.5/],
      [{ freeGpuMemoryFraction: -0.2 }, /got -0\.2/],
      [{ freeGpuMemoryFraction: Number.NaN }, /got NaN/],
      [{ maxTokens: 0 }, /maxTokens must be an integer ≥ 1, got 0;.*--max-kv-tokens/],
      [{ maxTokens: 2.5 }, /maxTokens must be an integer ≥ 1, got 2\.5/],
      [{ maxTokens: -16 }, /got -16/],
      [{ dtype: "int8" as never }, /dtype must be one of auto, fp8, got "int8";.*--kv-cache-dtype fp8/],
    ];
    for (const [config, message] of bad) {
      assert.throws(
        () => resolveKvCacheConfig(config),
        (e: unknown) =>
          e instanceof InvalidKvCacheConfigError &&
          e instanceof InvalidArgumentError &&
          message.test(e.message),
        JSON.stringify(config),
      );
    }
  });

  test("maxTokens below one block is rejected when the session is made; bad configs fail before a build", () => {
    const session = Session.open(engineDir);
    try {
      assert.throws(
        () => new GenerationSession(session, { maxTokens: 8 }),
        /maxTokens 8 is less than one KV block of 16 tokens; give at least 16/,
      );
    } finally {
      session.dispose();
    }
    // A directory that does not exist: the config error comes first.
    assert.throws(
      () => ModelRunner.fromDir(join(model.dir, "missing"), { kvCache: { freeGpuMemoryFraction: 2 } }),
      InvalidKvCacheConfigError,
    );
    assert.throws(
      () => ModelRunner.fromEngine(engineDir, undefined, { maxTokens: 15 }),
      /less than one KV block/,
    );
  });
});
