// The in-memory engine the CUDA backend calibrates over (memory_engine.ts): every weight readable at its
// virtual offset, in pieces as DeviceWeights.upload reads them, its blobs by name, and an fp32 build of
// one sequence sized to the calibration window; a read across two weights is refused.
import assert from "node:assert/strict";
import { test } from "node:test";
import { memoryEngine } from "../../../src/backends/cuda/memory_engine.ts";
import { BUNDLED_MODEL_DIR } from "../../../src/bundled_model.ts";
import { readHfConfig } from "../../../src/checkpoint/hf_config.ts";

test("memoryEngine: weights at virtual offsets, blobs, an fp32 one-sequence build", () => {
  const weights = new Map([
    ["a", Float32Array.of(1, 2, 3)],
    ["empty", new Float32Array(0)],
    ["b", Float32Array.of(4, 5)],
  ]);
  const cubin = Uint8Array.of(9, 8, 7);
  const model = readHfConfig(BUNDLED_MODEL_DIR);
  const plan = { ops: [], output: "logits" };
  const e = memoryEngine({
    model,
    plan,
    weights,
    blobs: new Map([["cubin/rmsnorm", cubin]]),
    kvBlockSize: 16,
    maxTokens: 512,
  });
  assert.deepEqual(
    e.header.weights.map((w) => [w.name, w.dtype, w.offset, w.byteLength]),
    [
      ["a", "F32", 0, 12],
      ["empty", "F32", 12, 0],
      ["b", "F32", 12, 8],
    ],
  );
  const b = e.header.weights[2];
  assert.deepEqual(new Float32Array(e.readWeight(b).buffer), Float32Array.of(4, 5));
  const piece = new Uint8Array(4);
  e.readInto(4, piece); // the second float of a
  assert.deepEqual(new Float32Array(piece.buffer), Float32Array.of(2));
  assert.throws(() => e.readInto(8, new Uint8Array(8)), /crosses an in-memory weight/);
  assert.equal(e.readBlob("cubin/rmsnorm"), cubin);
  assert.equal(e.readBlob("cubin/gemv"), null);
  assert.equal(e.header.plan, plan);
  const { build } = e.config;
  assert.deepEqual(
    [build.backend, build.dtype, build.kvBlockSize, build.maxNumTokens, build.maxBatchSize],
    ["cuda", "fp32", 16, 512, 1],
  );
  assert.equal(e.config.maxSeqLen, 512);
  e.checkRegions(e.header.weights).wait();
});
