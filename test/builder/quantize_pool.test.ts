// Quantization on worker threads ahead of the engine writer (src/builder/quantize_pool.ts): every region
// equals the one quantized on this thread, whatever the format, source dtype, call order or worker
// failure; a quantizer error throws as in a serial build.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type QuantizeSpec, quantizeRegion } from "../../src/builder/passes/quantize_weights.ts";
import { QuantizePool } from "../../src/builder/quantize_pool.ts";
import { type DType, fromF32 } from "../../src/dtype.ts";
import { randn } from "../backends/cpu/helpers.ts";

/** Weights of every format and source dtype, with a row of zeros and an outlier. */
function jobs(): { source: Uint8Array; spec: QuantizeSpec }[] {
  const out: { source: Uint8Array; spec: QuantizeSpec }[] = [];
  const formats = [
    ["fp8", null],
    ["fp8", 0.02],
    ["int8-wo", null],
    ["int4-wo", null],
  ] as const;
  let seed = 1;
  for (const dtype of ["BF16", "F16", "F32"] as DType[]) {
    for (const [format, inputScale] of formats) {
      const shape = [24, 200 + seed];
      const values = randn(shape[0] * shape[1], seed++, 0.05);
      values.fill(0, 0, shape[1]);
      values[3 * shape[1] + 5] = 2.5;
      out.push({ source: fromF32(values, dtype), spec: { dtype, shape, format, inputScale } });
    }
  }
  return out;
}

describe("QuantizePool", () => {
  test("two workers: every region equals this thread's, taken in order, out of order and twice", () => {
    const all = jobs();
    const want = all.map((j) => quantizeRegion(j.source, j.spec));
    let reads = 0;
    const pool = new QuantizePool(2);
    try {
      const thunks = all.map((j) =>
        pool.add(() => {
          reads++;
          return j.source;
        }, j.spec),
      );
      for (let i = 0; i < 4; i++) assert.deepEqual(thunks[i](), want[i], `job ${i}`);
      assert.deepEqual(thunks[7](), want[7], "job 7 before 4…6");
      for (let i = 4; i < all.length; i++) if (i !== 7) assert.deepEqual(thunks[i](), want[i], `job ${i}`);
      assert.deepEqual(thunks[2](), want[2], "a second call quantizes again");
      assert.ok(reads >= all.length, `each source read (${reads})`);
    } finally {
      pool.close();
    }
  });

  test("no workers (threads 0): the regions, on this thread", () => {
    const all = jobs().slice(0, 4);
    const pool = new QuantizePool(0);
    const thunks = all.map((j) => pool.add(() => j.source, j.spec));
    thunks.forEach((t, i) => assert.deepEqual(t(), quantizeRegion(all[i].source, all[i].spec)));
    pool.close();
  });

  test("workers that cannot start: their jobs are done here, with the same regions", () => {
    const all = jobs().slice(0, 6);
    const pool = new QuantizePool(2, new URL("./no_such_worker_module.ts", import.meta.url));
    try {
      const thunks = all.map((j) => pool.add(() => j.source, j.spec));
      thunks.forEach((t, i) => assert.deepEqual(t(), quantizeRegion(all[i].source, all[i].spec)));
    } finally {
      pool.close();
    }
  });

  test("a job whose quantizer throws in the worker throws here as in a serial build; the rest go on", () => {
    const all = jobs().slice(0, 3);
    const bad = { source: new Uint8Array(6), spec: { ...all[0].spec, dtype: "F32" as DType } }; // 1.5 floats
    const pool = new QuantizePool(2);
    try {
      const thunks = [all[0], bad, all[1], all[2]].map((j) => pool.add(() => j.source, j.spec));
      assert.deepEqual(thunks[0](), quantizeRegion(all[0].source, all[0].spec));
      assert.throws(() => thunks[1](), RangeError);
      assert.throws(() => quantizeRegion(bad.source, bad.spec), RangeError, "serially: the same error");
      assert.deepEqual(thunks[2](), quantizeRegion(all[1].source, all[1].spec));
      assert.deepEqual(thunks[3](), quantizeRegion(all[2].source, all[2].spec));
    } finally {
      pool.close();
    }
  });

  test("a closed pool quantizes on the calling thread", () => {
    const [j] = jobs();
    const pool = new QuantizePool(2);
    const thunk = pool.add(() => j.source, j.spec);
    pool.close();
    assert.deepEqual(thunk(), quantizeRegion(j.source, j.spec));
  });

  test("threadsFor: none for small builds; for large ones at most one per job", () => {
    assert.equal(QuantizePool.threadsFor([{ byteLength: 2 ** 20 }, { byteLength: 2 ** 20 }]), 0);
    const big = Array.from({ length: 3 }, () => ({ byteLength: 2 ** 30 }));
    const n = QuantizePool.threadsFor(big);
    assert.ok(n >= 1 && n <= 3, `${n}`);
  });
});
