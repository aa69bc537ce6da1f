// Shared checks of the executor tests: the pool's invariants, and the idle invariant
// free + cached-unreferenced == total once no sequence holds a block.
import assert from "node:assert/strict";
import type { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";

export function assertIdle(kv: KvCacheManager): void {
  kv.audit();
  const s = kv.stats();
  assert.equal(s.numUsed, 0, "a block is still held at idle");
  assert.equal(s.numFree + s.numCachedFree, s.numBlocks, "free + cached-unreferenced == total at idle");
}

/** Token ids start, start+1, …, start+n−1. */
export const range = (start: number, n: number): number[] => Array.from({ length: n }, (_, i) => start + i);
