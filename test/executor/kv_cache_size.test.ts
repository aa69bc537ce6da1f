// The executor's KV cache is sized once, in its constructor (executor/kv_cache_size.ts): on a backend
// that reports free device memory (a spy over the CPU backend stands in for CUDA), after a warm-up at
// the executor's maxNumTokens, ⌊freeGpuMemoryFraction × free / kvBytesPerBlock⌋ blocks (default 0.9);
// an explicit maxTokens wins over the fraction but not over free memory; a fraction outside (0, 1] is
// an InvalidArgumentError; free memory that holds no block is a KvCacheNoRoomError; without reports,
// the engine's rule as before.
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
const probe = Session.open(dir, "cpu");
const perBlock = probe.backend.kvBytesPerBlock;
const { maxSeqLen, build } = probe.config;
probe.dispose();

/** A session whose backend reports `free` bytes of device memory (read after warm-up) and records the
 * order of warmUp, freeMemoryBytes and allocateKvCache. */
function open(free?: number) {
  const session = Session.open(dir, "cpu");
  const backend = session.backend;
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

async function sized(free: number | undefined, o: ExecutorOptions) {
  const s = open(free);
  const ex = new Executor(s.session, o);
  try {
    // The cache runs a request: it is the size the backend allocated.
    const id = ex.enqueue({ prompt: [3, 5, 7], maxNewTokens: 3, greedy: true, endId: [] });
    assert.equal((await collect(ex, id)).tokens.length, 3);
    assertIdle(ex);
    return { blocks: ex.kv.numBlocks, events: s.events };
  } finally {
    await ex.shutdown();
  }
}

test("free memory: warm-up at maxNumTokens first, then ⌊0.9 × free / kvBytesPerBlock⌋ blocks", async () => {
  const free = 1000 * perBlock + 7;
  const r = await sized(free, { maxNumTokens: 16 });
  assert.equal(r.blocks, 900);
  assert.deepEqual(r.events, ["warmUp 16", "freeMemoryBytes", "allocate 900"]);
  const half = await sized(free, { maxNumTokens: 16, freeGpuMemoryFraction: 0.5 });
  assert.equal(half.blocks, 500);
  const all = await sized(free, { maxNumTokens: 16, freeGpuMemoryFraction: 1 });
  assert.equal(all.blocks, 1000);
});

test("an explicit maxTokens wins over the fraction, capped at what fits in free memory", async () => {
  assert.equal((await sized(1000 * perBlock, { maxTokens: 40 * BS + 3 })).blocks, 40);
  assert.equal(
    (await sized(1000 * perBlock, { maxTokens: 960 * BS, freeGpuMemoryFraction: 0.1 })).blocks,
    960,
  );
  assert.equal((await sized(30 * perBlock, { maxTokens: 960 * BS })).blocks, 30);
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
  const s = open(100);
  assert.throws(() => new Executor(s.session, {}), KvCacheNoRoomError);
  s.session.dispose();
});

test("without free-memory reports (the CPU): the engine's rule, the fraction checked but unused", async () => {
  const byEngine = Math.min(
    Math.ceil((maxSeqLen * build.maxBatchSize) / BS),
    Math.floor(DEFAULT_KV_BYTES / perBlock),
  );
  const plain = await sized(undefined, {});
  assert.equal(plain.blocks, Math.max(1, byEngine));
  assert.deepEqual(plain.events, [`allocate ${plain.blocks}`]);
  assert.equal((await sized(undefined, { freeGpuMemoryFraction: 0.2 })).blocks, plain.blocks);
  assert.equal((await sized(undefined, { maxTokens: 12 * BS })).blocks, 12);
});
