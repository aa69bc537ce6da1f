// BlockAllocator: ids in increasing order, released blocks reused first (last in, first out), shared
// blocks freed by their last holder, all-or-nothing allocation, and a pool sized from GPU memory
// (hundreds of thousands of blocks) whose ids are handed out lazily.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BlockAllocator } from "../../src/runtime/block_allocator.ts";

describe("BlockAllocator", () => {
  test("fresh ids in order, released ids reused last-in first-out, refcounts", () => {
    const a = new BlockAllocator(6);
    assert.deepEqual(a.allocate(3), [0, 1, 2]);
    a.release([1]);
    a.release([2]);
    assert.equal(a.numFree, 5);
    assert.deepEqual(a.allocate(3), [2, 1, 3]);
    a.share([0]);
    a.release([0]);
    assert.equal(a.refCount(0), 1, "a shared block stays held by its other holder");
    a.release([0]);
    assert.equal(a.refCount(0), 0);
    assert.equal(a.numFree, 3);
    assert.equal(a.allocate(4), null, "more than is free: nothing is taken");
    assert.equal(a.numFree, 3);
    assert.deepEqual(a.allocate(3), [0, 4, 5]);
    assert.equal(a.numFree, 0);
    assert.throws(() => a.release([9 - 9, 0]), /double release/);
  });

  test("a pool of millions of blocks hands out its first and last ids", () => {
    const a = new BlockAllocator(3_000_000);
    assert.deepEqual(a.allocate(2), [0, 1]);
    assert.equal(a.numFree, 2_999_998);
    assert.equal(a.allocate(2_999_998)?.at(-1), 2_999_999);
    assert.equal(a.allocate(1), null);
  });
});
