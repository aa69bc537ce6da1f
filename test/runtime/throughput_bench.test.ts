// `kiln bench --num-requests`'s KV cache: on a backend that reports free memory (a spy over the CPU
// backend stands in for CUDA) the executor sizes it from --kv-cache-free-gpu-mem-fraction after its
// warm-up, or from --max-kv-tokens when given; on the CPU it is what every request needs at once.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildEngine } from "../../src/builder/builder.ts";
import { Session } from "../../src/runtime/session.ts";
import { runThroughputBench } from "../../src/runtime/throughput_bench.ts";
import { writeTinyModel } from "../helpers/tiny_model.ts";

const BS = 4;
const model = writeTinyModel("llama", 9);
const dir = join(model.dir, "engine");
buildEngine(model.dir, dir, { kvBlockSize: BS, maxBatchSize: 4 });
after(model.cleanup);

async function kvBlocks(
  free: number | undefined,
  kvCache: { freeGpuMemoryFraction: number; maxTokens?: number },
) {
  const session = Session.open(dir, { backend: "cpu" });
  try {
    const perBlock = session.backend.kvBytesPerBlock;
    const warmed: (number | undefined)[] = [];
    if (free !== undefined) {
      session.backend.warmUp = (tokens?: number) => warmed.push(tokens);
      session.backend.freeMemoryBytes = () => free * perBlock;
    }
    const r = await runThroughputBench(session, {
      numRequests: 3,
      inputLen: 6,
      outputLen: 2,
      maxNumTokens: 8,
      kvCache,
    });
    assert.equal(r.outputTokens, 3 * 2);
    if (free !== undefined) assert.deepEqual(warmed, [8], "the executor warms up at its maxNumTokens");
    return [r.executor.kvBlocks, r.executor.kvLimitedBy];
  } finally {
    session.dispose();
  }
}

test("free memory: the fraction of it (not the requests' need), capped by --max-kv-tokens", async () => {
  assert.deepEqual(await kvBlocks(200, { freeGpuMemoryFraction: 0.9 }), [180, "free-memory"]);
  assert.deepEqual(await kvBlocks(200, { freeGpuMemoryFraction: 0.25 }), [50, "free-memory"]);
  assert.deepEqual(await kvBlocks(200, { freeGpuMemoryFraction: 0.25, maxTokens: 70 * BS }), [
    50,
    "free-memory",
  ]);
  assert.deepEqual(await kvBlocks(200, { freeGpuMemoryFraction: 0.9, maxTokens: 70 * BS }), [
    70,
    "max-tokens",
  ]);
  // No engine cap on the bench's executor: 180 blocks is far beyond 4 sequences of the engine's length.
});

test("no free-memory report (the CPU): every request at full length, capped at maxTokens", async () => {
  const need = 3 * Math.ceil(8 / BS);
  assert.deepEqual(await kvBlocks(undefined, { freeGpuMemoryFraction: 0.9 }), [need, "requests"]);
  assert.deepEqual(await kvBlocks(undefined, { freeGpuMemoryFraction: 0.9, maxTokens: 5 * BS }), [
    5,
    "max-tokens",
  ]);
});
