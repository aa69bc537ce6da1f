// The executor's KV cache is sized once, in its constructor (executor/kv_cache_size.ts), and
// executor.kvSizing says how: on a backend that reports free device memory (a spy over the CPU backend
// stands in for CUDA), after a warm-up at the executor's maxNumTokens, ⌊freeGpuMemoryFraction × free /
// kvBytesPerBlock⌋ blocks (default 0.9), not capped at the engine unless capKvAtEngine; with an
// explicit maxTokens the smaller of the two (TensorRT-LLM's rule); a fraction outside (0, 1] is an
// InvalidArgumentError; free memory that holds no block is a KvCacheNoRoomError; without reports,
// maxTokens or the engine's maxSeqLen × maxBatchSize, at most DEFAULT_KV_BYTES.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { KvCacheNoRoomError } from "../../src/executor/errors.ts";
import { DEFAULT_KV_BYTES, Executor, type ExecutorOptions } from "../../src/executor/executor.ts";
import { Session } from "../../src/runtime/session.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";
import { assertIdle, collect } from "./executor_helpers.ts";

const BS = 4;
const model = writeTinyModel("llama", 5);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: BS, maxBatchSize: 4 });
after(model.cleanup);
const probe = Session.open(dir, { backend: "cpu" });
const perBlock = probe.backend.kvBytesPerBlock;
const { maxSeqLen, build } = probe.config;
probe.dispose();

/** A session whose backend reports `free` bytes of device memory (read after warm-up) and records the
 * order of warmUp, freeMemoryBytes and allocateKvCache; `bytesPerBlock` overrides the block's size
 * the sizing sees. */
function open(free?: number, bytesPerBlock?: number) {
  const session = Session.open(dir, { backend: "cpu" });
  const backend = session.backend;
  if (bytesPerBlock !== undefined)
    Object.defineProperty(backend, "kvBytesPerBlock", { value: bytesPerBlock });
  const events: string[] = [];
  const allocate = backend.allocateKvCache.bind(backend);
  backend.allocateKvCache = (n: number) => {
    events.push(`allocate ${n}`);
    allocate(n);
  };
  if (free !== undefined) {
    backend.warmUp = (tokens?: number) => events.push(`warmUp ${tokens}`);
    backend.freeMemoryBytes = () => {
      events.push("freeMemoryBytes");
      return free;
    };
  }
  return { session, events };
}

async function sized(free: number | undefined, o: ExecutorOptions, bytesPerBlock?: number) {
  const s = open(free, bytesPerBlock);
  const ex = new Executor(s.session, o);
  try {
    // The cache runs a request: it is the size the backend allocated.
    const id = ex.enqueue({ prompt: [3, 5, 7], maxNewTokens: 3, greedy: true, endId: [] });
    assert.equal((await collect(ex, id)).tokens.length, 3);
    assertIdle(ex);
    assert.equal(ex.kvSizing.numBlocks, ex.kv.numBlocks);
    return { blocks: ex.kv.numBlocks, sizing: ex.kvSizing, events: s.events };
  } finally {
    await ex.shutdown();
  }
}

test("free memory: warm-up at maxNumTokens first, then ⌊0.9 × free / kvBytesPerBlock⌋ blocks", async () => {
  const free = 1000 * perBlock + 7;
  const r = await sized(free, { maxNumTokens: 16 });
  assert.equal(r.blocks, 900);
  assert.deepEqual(r.sizing, { numBlocks: 900, limitedBy: "free-memory", freeBlocks: 1000 });
  assert.deepEqual(r.events, ["warmUp 16", "freeMemoryBytes", "allocate 900"]);
  const half = await sized(free, { maxNumTokens: 16, freeGpuMemoryFraction: 0.5 });
  assert.equal(half.blocks, 500);
  const all = await sized(free, { maxNumTokens: 16, freeGpuMemoryFraction: 1 });
  assert.equal(all.blocks, 1000);
});

test("an explicit maxTokens and the fraction: the smaller wins", async () => {
  const limit = async (free: number, o: ExecutorOptions) => {
    const { sizing } = await sized(free * perBlock, o);
    return [sizing.numBlocks, sizing.limitedBy];
  };
  assert.deepEqual(await limit(1000, { maxTokens: 40 * BS + 3 }), [40, "max-tokens"]);
  assert.deepEqual(await limit(1000, { maxTokens: 960 * BS, freeGpuMemoryFraction: 0.1 }), [
    100,
    "free-memory",
  ]);
  assert.deepEqual(await limit(30, { maxTokens: 960 * BS }), [27, "free-memory"]);
  assert.deepEqual(await limit(30, { maxTokens: 27 * BS }), [27, "max-tokens"], "a tie names max-tokens");
});

test("capKvAtEngine: at most maxBatchSize × (⌈maxSeqLen / blockSize⌉ + 1) blocks, off by default", async () => {
  const engineCap = build.maxBatchSize * (Math.ceil(maxSeqLen / BS) + 1);
  const free = 10 * engineCap * perBlock;
  assert.deepEqual((await sized(free, { capKvAtEngine: true })).sizing, {
    numBlocks: engineCap,
    limitedBy: "engine",
    freeBlocks: 10 * engineCap,
  });
  assert.equal((await sized(free, {})).blocks, 9 * engineCap, "the whole fraction without the cap");
  const small = (await sized(engineCap * perBlock, { capKvAtEngine: true })).sizing;
  assert.deepEqual([small.numBlocks, small.limitedBy], [Math.floor(0.9 * engineCap), "free-memory"]);
  const capped = (await sized(free, { capKvAtEngine: true, maxTokens: 5 * BS })).sizing;
  assert.deepEqual([capped.numBlocks, capped.limitedBy], [5, "max-tokens"]);
  const big = (await sized(free, { capKvAtEngine: true, maxTokens: 3 * engineCap * BS })).sizing;
  assert.deepEqual([big.numBlocks, big.limitedBy], [engineCap, "engine"]);
});

test("a fraction outside (0, 1] is an InvalidArgumentError naming it; no room is KvCacheNoRoomError", () => {
  for (const f of [0, -0.5, 1.5, Number.NaN]) {
    const s = open(1 << 30);
    assert.throws(
      () => new Executor(s.session, { freeGpuMemoryFraction: f }),
      (e: unknown) =>
        e instanceof InvalidArgumentError &&
        e.message.includes(`freeGpuMemoryFraction ${f} is not in (0, 1]`) &&
        e.message.includes("--kv-cache-free-gpu-mem-fraction"),
    );
    s.session.dispose();
  }
  const s = open(perBlock); // one block free: 0.9 of it holds none
  assert.throws(
    () => new Executor(s.session, {}),
    (e: unknown) =>
      e instanceof KvCacheNoRoomError &&
      e.message.includes(`${(perBlock / 2 ** 20).toFixed(1)} MiB of device memory is free`) &&
      e.message.includes("freeGpuMemoryFraction 0.9 of it holds no") &&
      e.message.includes("--kv-cache-free-gpu-mem-fraction"),
  );
  assert.deepEqual(s.events, [`warmUp ${build.maxNumTokens}`, "freeMemoryBytes"], "nothing allocated");
  s.session.dispose();
  const t = open(perBlock); // maxTokens does not lift the fraction: still no block
  assert.throws(
    () => new Executor(t.session, { maxTokens: 8 * BS }),
    (e: unknown) => e instanceof KvCacheNoRoomError && e.message.includes("freeGpuMemoryFraction 0.9 of it"),
  );
  t.session.dispose();
});

test("without free-memory reports (the CPU): the engine's rule, the fraction checked but unused", async () => {
  const byEngine = Math.min(
    Math.ceil((maxSeqLen * build.maxBatchSize) / BS),
    Math.floor(DEFAULT_KV_BYTES / perBlock),
  );
  const plain = await sized(undefined, {});
  assert.equal(plain.blocks, Math.max(1, byEngine));
  assert.deepEqual(plain.sizing, { numBlocks: plain.blocks, limitedBy: "engine" });
  assert.deepEqual(plain.events, [`allocate ${plain.blocks}`]);
  assert.equal((await sized(undefined, { freeGpuMemoryFraction: 0.2 })).blocks, plain.blocks);
  assert.equal((await sized(undefined, { capKvAtEngine: true })).blocks, plain.blocks);
  assert.deepEqual((await sized(undefined, { maxTokens: 12 * BS })).sizing, {
    numBlocks: 12,
    limitedBy: "max-tokens",
  });
  // Blocks so large that the engine's tokens pass DEFAULT_KV_BYTES: capped there.
  const big = await sized(undefined, {}, DEFAULT_KV_BYTES / 5);
  assert.deepEqual(big.sizing, { numBlocks: 5, limitedBy: "default" });
});

test("decode graphs: captured once after the KV cache is allocated, for maxNumSeqs; not when told not to", async () => {
  const run = async (o: ExecutorOptions) => {
    const s = open(1000 * perBlock);
    s.session.backend.prepareDecodeGraphs = (maxSeqs: number) => {
      s.events.push(`graphs ${maxSeqs}`);
      return 7;
    };
    const ex = new Executor(s.session, o);
    try {
      const id = ex.enqueue({ prompt: [3, 5, 7], maxNewTokens: 2, greedy: true, endId: [] });
      assert.equal((await collect(ex, id)).tokens.length, 2);
      return { events: s.events, warm: ex.graphWarmUp };
    } finally {
      await ex.shutdown();
    }
  };
  const all = await run({ maxNumTokens: 16 });
  assert.deepEqual(all.events, ["warmUp 16", "freeMemoryBytes", "allocate 900", "graphs 4"]);
  assert.equal(all.warm.graphs, 7);
  assert.ok(all.warm.ms >= 0);
  assert.deepEqual((await run({ maxNumTokens: 16, maxNumSeqs: 2 })).events.at(-1), "graphs 2");
  const none = await run({ maxNumTokens: 16, captureGraphs: false });
  assert.deepEqual(none.events, ["warmUp 16", "freeMemoryBytes", "allocate 900"]);
  assert.deepEqual(none.warm, { graphs: 0, ms: none.warm.ms });
});
