import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { kvCacheWrite, slotOf } from "../../../src/backends/cpu/kernels/paged_kv.ts";
import { randn } from "./helpers.ts";

describe("slotOf", () => {
  it("follows the diagram: block table [5, 2, 7], block size 4", () => {
    const table = new Int32Array([5, 2, 7]);
    const slots = Array.from({ length: 10 }, (_, p) => slotOf(table, 4, p));
    assert.deepEqual(slots, [20, 21, 22, 23, 8, 9, 10, 11, 28, 29]);
  });

  it("refuses a position beyond the block table", () => {
    assert.throws(() => slotOf(new Int32Array([0]), 4, 4), RangeError);
  });
});

describe("kvCacheWrite", () => {
  const numKvHeads = 3;
  const headDim = 5;
  const row = numKvHeads * headDim;
  const numSlots = 4 * 4; // 4 blocks of 4

  it("copies each token's K and V row into its slot and leaves other slots alone", () => {
    const k = randn(4 * row, 81);
    const v = randn(4 * row, 82);
    const kCache = new Float32Array(numSlots * row).fill(-7);
    const vCache = new Float32Array(numSlots * row).fill(-9);
    const slots = new Int32Array([13, 2, -1, 6]); // token 2 is padding
    kvCacheWrite(k, v, slots, 4, numKvHeads, headDim, kCache, vCache);
    for (let s = 0; s < numSlots; s++) {
      const t = Array.from(slots).indexOf(s);
      const kRow = Array.from(kCache.subarray(s * row, (s + 1) * row));
      const vRow = Array.from(vCache.subarray(s * row, (s + 1) * row));
      if (t === -1) {
        assert.ok(kRow.every((x) => x === -7) && vRow.every((x) => x === -9), `slot ${s} untouched`);
      } else {
        assert.deepEqual(kRow, Array.from(k.subarray(t * row, (t + 1) * row)), `K of token ${t}`);
        assert.deepEqual(vRow, Array.from(v.subarray(t * row, (t + 1) * row)), `V of token ${t}`);
      }
    }
  });

  it("refuses a slot outside the pool", () => {
    const kCache = new Float32Array(numSlots * row);
    const vCache = new Float32Array(numSlots * row);
    const k = new Float32Array(row);
    assert.throws(
      () => kvCacheWrite(k, k, new Int32Array([numSlots]), 1, numKvHeads, headDim, kCache, vCache),
      RangeError,
    );
  });
});
