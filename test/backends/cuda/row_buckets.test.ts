// Row buckets (gemm_algorithms.ts rowBucket): the rows a step's GEMMs and a decode graph's batch are
// padded to. Powers of two up to 64, then eight buckets per octave: never fewer rows than asked, at most
// 1/8 more above 64, each bucket its own bucket, and rowBuckets lists exactly the buckets reachable.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nextPow2, rowBucket, rowBuckets } from "../../../src/backends/cuda/gemm_algorithms.ts";

test("buckets: powers of two to 64, then at most 1/8 padding", () => {
  assert.deepEqual(
    [1, 3, 17, 64, 65, 128, 129, 260, 300, 4300, 8192].map((r) => rowBucket(r)),
    [1, 4, 32, 64, 72, 128, 144, 288, 320, 4608, 8192],
  );
  let last = 0;
  for (let r = 1; r <= 8192; r++) {
    const b = rowBucket(r);
    assert.ok(b >= r && b >= last, `rows ${r}: bucket ${b}`);
    if (r > 64) assert.ok(b <= r + r / 8, `rows ${r}: bucket ${b} pads more than 1/8`);
    else assert.equal(b, nextPow2(r));
    assert.equal(rowBucket(b), b, `bucket ${b} is its own`);
    last = b;
  }
});

test("rowBuckets: every bucket of 1 … max rows once, ascending", () => {
  for (const max of [1, 5, 64, 100, 300, 1024, 8192]) {
    const reached = new Set<number>();
    for (let r = 1; r <= max; r++) reached.add(rowBucket(r));
    assert.deepEqual(rowBuckets(max), [...reached], `up to ${max}`);
  }
  assert.equal(rowBuckets(1024).length, 7 + 4 * 8);
});
