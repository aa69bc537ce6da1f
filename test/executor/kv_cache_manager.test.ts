// KvCacheManager and its BlockPool: exact block ids, prefix hits, LRU eviction order (tail blocks
// first), copy-on-write forks, all-or-nothing allocation, blocks in flight, and the idle invariant after
// every test.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { KvCacheManager } from "../../src/executor/kv_cache_manager.ts";
import { assertIdle, range } from "./kv_helpers.ts";

describe("KvCacheManager", () => {
  test("fresh blocks in id order, released ones reused first, null when out (nothing taken)", () => {
    const kv = new KvCacheManager(4, 4);
    assert.deepEqual(
      kv.allocate(1, range(0, 5), 5, "", { blocks: [], keys: [], numTokens: 0, nextInFlight: false }),
      {
        numCachedTokens: 0,
      },
    );
    assert.deepEqual(kv.blockTable(1), [0, 1]);
    assert.deepEqual(kv.appendSlots(1, 3), { copies: [] }, "5 + 3 tokens still fit two blocks");
    assert.deepEqual(kv.blockTable(1), [0, 1]);
    assert.ok(kv.appendSlots(1, 1));
    assert.deepEqual(kv.blockTable(1), [0, 1, 2]);
    assert.equal(kv.allocate(2, range(100, 9), 9), null, "3 blocks asked, 1 free");
    assert.equal(kv.has(2), false);
    assert.equal(kv.appendSlots(1, 8), null, "2 blocks asked, 1 free");
    assert.deepEqual(kv.blockTable(1), [0, 1, 2], "a failed append takes nothing");
    kv.free(1);
    assert.ok(kv.allocate(3, range(100, 2), 2));
    assert.deepEqual(kv.blockTable(3), [0], "released blocks (last in, first out) before fresh ones");
    kv.free(3);
    assertIdle(kv);
  });

  test("a freed prompt's full blocks are hit by the next request with the same prefix", () => {
    const kv = new KvCacheManager(8, 4);
    const a = range(0, 10); // blocks [0..3][4..7][8 9]
    assert.ok(kv.allocate(1, a, 10));
    kv.commit(1, a, 10);
    assert.equal(kv.stats().numCached, 2, "only the two full blocks are cached");
    kv.free(1);
    assert.deepEqual(kv.stats(), {
      ...kv.stats(),
      numFree: 6,
      numCachedFree: 2,
      numUsed: 0,
      usage: 0,
    });
    const b = [...range(0, 8), 50, 51, 52];
    const hit = kv.findPrefix(b);
    assert.deepEqual([hit.blocks, hit.numTokens], [[0, 1], 8]);
    assert.deepEqual(kv.allocate(2, b, 3, "", hit), { numCachedTokens: 8 });
    assert.deepEqual(kv.blockTable(2), [0, 1, 2], "the partial block of request 1 was not shared");
    assert.deepEqual(kv.seqStats(2), { numBlocks: 3, reused: 2, allocated: 1 });
    const s = kv.stats();
    assert.deepEqual([s.prefixQueryTokens, s.prefixHitTokens], [21, 8]);
    assert.deepEqual([s.numUsed, s.numCachedFree], [3, 0], "hit blocks leave the LRU list and are in use");
    kv.free(2);
    assertIdle(kv);
  });

  test("a fully cached prompt still computes its last token; another extra key misses", () => {
    const kv = new KvCacheManager(8, 4);
    const p = range(0, 8);
    assert.ok(kv.allocate(1, p, 8));
    kv.commit(1, p, 8);
    kv.free(1);
    assert.equal(kv.findPrefix(p).numTokens, 4, "block 1 holds the last token: recomputed");
    assert.equal(kv.findPrefix([...p, 9]).numTokens, 8);
    const memo: string[] = [];
    assert.equal(kv.findPrefix([...p, 9, 10, 11, 12, 13], "", memo).numTokens, 8);
    assert.equal(memo.length, 3, "keys up to the first miss are memoised (blocks 0, 1 hit, 2 missed)");
    assert.equal(kv.findPrefix([...p, 9], "", ["not the key"]).numTokens, 0, "a memoised key is reused");
    assert.equal(kv.findPrefix([...p, 9], "lora:a").numTokens, 0);
    assert.equal(new KvCacheManager(8, 4, false).findPrefix([...p, 9]).numTokens, 0);
    assertIdle(kv);
  });

  test("eviction only when the free list is empty, least recently freed first, tail blocks first", () => {
    const kv = new KvCacheManager(4, 4);
    const a = range(0, 8);
    const c = range(100, 8);
    for (const [id, t] of [[1, a] as const, [2, c] as const]) {
      assert.ok(kv.allocate(id, t, 8));
      kv.commit(id, t, 8);
    }
    assert.deepEqual(
      [kv.blockTable(1), kv.blockTable(2)],
      [
        [0, 1],
        [2, 3],
      ],
    );
    kv.free(1); // LRU: 1, 0 (tail first)
    kv.free(2); // LRU: 1, 0, 3, 2
    assertIdle(kv);
    assert.ok(kv.allocate(3, range(200, 12), 12));
    assert.deepEqual(kv.blockTable(3), [1, 0, 3], "evicted in LRU order");
    assert.equal(kv.stats().numEvictions, 3);
    assert.equal(kv.findPrefix([...a, 1]).numTokens, 0, "request 1's first block was evicted");
    assert.deepEqual(kv.findPrefix([...c, 1]).blocks, [2], "request 2's first block survived");
    kv.free(3);
    assertIdle(kv);
  });

  test("an allocation that fails takes no prefix hit", () => {
    const kv = new KvCacheManager(3, 4);
    const a = range(0, 8);
    assert.ok(kv.allocate(1, a, 8));
    kv.commit(1, a, 8);
    kv.free(1);
    assert.ok(kv.allocate(2, [7], 1));
    const hit = kv.findPrefix([...a, 5]);
    assert.equal(hit.blocks.length, 2);
    assert.equal(kv.blocksToAdmit(hit, 4 * 5), 5);
    assert.equal(kv.allocate(3, [...a, 5], 12, "", hit), null, "needs 3 fresh + 2 cached, 2 available");
    assert.equal(kv.stats().numCachedFree, 2);
    kv.free(2);
    assertIdle(kv);
  });

  test("two sequences computing the same block: the first caches it, the second's stays private", () => {
    const kv = new KvCacheManager(4, 4);
    const p = range(0, 5);
    assert.ok(kv.allocate(1, p, 5));
    assert.ok(kv.allocate(2, p, 5), "admitted before 1 committed: no hit");
    kv.commit(1, p, 5);
    kv.commit(2, p, 5);
    assert.equal(kv.stats().numCached, 1);
    kv.free(2);
    assert.equal(kv.stats().numFree, 2, "block 2 is uncached: back on the free list");
    kv.free(1);
    assert.deepEqual(kv.findPrefix(p).blocks, [0]);
    assertIdle(kv);
  });

  test("fork shares every block; the first write into the shared partial block copies it", () => {
    const kv = new KvCacheManager(6, 4);
    const p = range(0, 6); // [0..3] full, [4 5 . .] partial
    assert.ok(kv.allocate(1, p, 6));
    kv.commit(1, p, 6);
    kv.fork(1, 2);
    assert.deepEqual([kv.pool.refCount(0), kv.pool.refCount(1)], [2, 2]);
    assert.deepEqual(kv.appendSlots(2, 1), { copies: [{ src: 1, dst: 2 }] });
    assert.deepEqual(kv.blockTable(2), [0, 2]);
    assert.deepEqual(kv.appendSlots(1, 1), { copies: [] }, "the last holder writes in place");
    assert.deepEqual(kv.blockTable(1), [0, 1]);
    kv.audit();
    assert.deepEqual(kv.appendSlots(1, 2), { copies: [] });
    assert.deepEqual(kv.blockTable(1), [0, 1, 3]);
    kv.fork(1, 3); // parent's last block is partial again (9 tokens)
    kv.fork(1, 4);
    assert.equal(kv.pool.refCount(3), 3);
    assert.equal(kv.appendSlots(3, 1)?.copies.length, 1);
    assert.equal(kv.appendSlots(4, 1)?.copies.length, 1);
    assert.equal(kv.appendSlots(1, 1)?.copies.length, 0);
    assert.equal(kv.appendSlots(2, 4), null, "no block left for 2's next block");
    for (const id of [1, 2, 3, 4]) kv.free(id);
    assertIdle(kv);
  });

  test("forkPrefix shares whole leading blocks only; the child grows in blocks of its own", () => {
    const kv = new KvCacheManager(8, 4);
    const p = range(0, 10); // [0..3] [4..7] full, [8 9 . .] partial
    assert.ok(kv.allocate(1, p, 10));
    kv.commit(1, p, 10);
    kv.forkPrefix(1, 2, 8);
    assert.deepEqual(kv.blockTable(2), [0, 1]);
    assert.deepEqual([kv.pool.refCount(0), kv.pool.refCount(1), kv.pool.refCount(2)], [2, 2, 1]);
    assert.deepEqual(kv.appendSlots(2, 3), { copies: [] }, "no partial block is shared");
    assert.deepEqual(kv.blockTable(2), [0, 1, 3]);
    assert.throws(() => kv.forkPrefix(1, 3, 6), /fork of 6 tokens/, "a part of a block");
    kv.audit();
    kv.free(1);
    kv.free(2);
    assertIdle(kv);
  });

  test("blocks in flight: computing puts a chunk's full blocks there, commit keys them, free drops them", () => {
    const kv = new KvCacheManager(16, 4);
    const p = range(0, 14); // [0..3] [4..7] [8..11] full, [12 13] partial
    const q = [...range(0, 12), 90, 91]; // shares the 3 full blocks
    assert.ok(kv.allocate(1, p, 6));
    kv.computing(1, p, 6);
    assert.equal(kv.numInFlight, 1, "only the block the chunk fills");
    assert.deepEqual(kv.findPrefix(q).nextInFlight, true);
    assert.ok(kv.appendSlots(1, 8));
    kv.computing(1, p, 14);
    assert.equal(kv.numInFlight, 3);
    kv.commit(1, p, 6); // the first chunk's step ran: block 0 leaves the blocks in flight for the cache
    assert.equal(kv.numInFlight, 2);
    const hit = kv.findPrefix(q);
    assert.deepEqual([hit.numTokens, hit.nextInFlight], [4, true]);
    kv.audit();
    assert.equal(kv.findPrefix(q, "lora:x").nextInFlight, false, "another cache salt");
    assert.equal(kv.findPrefix(range(0, 4)).nextInFlight, false, "a full block holding the last token");
    kv.free(1); // preempted or cancelled before its second step ran
    assert.equal(kv.numInFlight, 0);
    const after = kv.findPrefix(q);
    assert.deepEqual([after.numTokens, after.nextInFlight], [4, false]);
    // The keys commit takes from computing are those findPrefix computes itself.
    assert.ok(kv.allocate(2, p, 10, "", { blocks: [], keys: [], numTokens: 0, nextInFlight: false }));
    kv.computing(2, p, 10);
    kv.commit(2, p, 10);
    assert.equal(kv.findPrefix(q).numTokens, 8);
    kv.free(2);
    assertIdle(kv);
    assert.equal(new KvCacheManager(16, 4, false).findPrefix(q).nextInFlight, false);
  });

  test("fork of a sequence whose blocks are all full copies nothing", () => {
    const kv = new KvCacheManager(4, 4);
    assert.ok(kv.allocate(1, range(0, 4), 4));
    kv.fork(1, 2);
    assert.deepEqual(kv.appendSlots(2, 1), { copies: [] });
    assert.deepEqual(kv.blockTable(2), [0, 1]);
    kv.free(1);
    kv.free(2);
    assertIdle(kv);
  });
});
