// The KV blocks themselves: a reference count per block, the free list, and the prefix cache
// (key → block, with an LRU list of cached blocks that no sequence holds).
//
// Every block is in exactly one state:
//   held      refCount > 0 (in some sequence's table; may also be cached under a key)
//   cached    refCount 0, has a key, on the LRU list: reusable by a prefix hit, evictable
//   free      refCount 0, no key: on the released stack, or a fresh id ≥ `fresh` never handed out
// so at idle (no held blocks) numFree + numCachedFree == numBlocks.
//
// A fresh block comes from the free list (released ids last-in first-out, then never-used ids in
// increasing order); only when that is empty is the least recently freed cached block evicted.
import type { BlockKey } from "./block_hash.ts";
import { invariant } from "./errors.ts";

export class BlockPool {
  private readonly refs: Int32Array; // [numBlocks]
  private readonly keys: (BlockKey | null)[]; // [numBlocks], null: not in the prefix cache
  private readonly byKey = new Map<BlockKey, number>();
  /** Cached blocks with refCount 0, least recently freed first (Map keeps insertion order). */
  private readonly lru = new Map<number, true>();
  private readonly released: number[] = [];
  /** Ids below this have been handed out at least once; lazy, so a pool of 100k+ blocks costs nothing. */
  private fresh = 0;
  /** Blocks with refCount > 0. */
  private held = 0;
  /** Cached blocks evicted to make room (for the metrics). */
  numEvictions = 0;

  constructor(readonly numBlocks: number) {
    invariant(Number.isInteger(numBlocks) && numBlocks > 0, `a block pool of ${numBlocks} blocks`);
    this.refs = new Int32Array(numBlocks);
    this.keys = new Array(numBlocks).fill(null);
  }

  /** Blocks with no key and no holder. */
  get numFree(): number {
    return this.released.length + this.numBlocks - this.fresh;
  }

  /** Cached blocks no sequence holds (evictable). */
  get numCachedFree(): number {
    return this.lru.size;
  }

  /** Blocks a fresh allocation can take: free ones plus evictable cached ones. */
  get numAvailable(): number {
    return this.numFree + this.lru.size;
  }

  /** Blocks in the prefix cache, held or not. */
  get numCached(): number {
    return this.byKey.size;
  }

  refCount(block: number): number {
    return this.refs[block];
  }

  keyOf(block: number): BlockKey | null {
    return this.keys[block];
  }

  /** The cached block under `key`, or undefined. */
  lookup(key: BlockKey): number | undefined {
    return this.byKey.get(key);
  }

  /** `n` fresh blocks (refCount 1, no key), evicting LRU cached blocks once the free list is empty;
   * null when fewer than n are available (nothing is taken). */
  allocate(n: number): number[] | null {
    if (n > this.numAvailable) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      let b: number;
      if (this.released.length > 0) b = this.released.pop() as number;
      else if (this.fresh < this.numBlocks) b = this.fresh++;
      else b = this.evictOldest();
      invariant(this.refs[b] === 0 && this.keys[b] === null, `allocating block ${b} in use or cached`);
      this.refs[b] = 1;
      this.held++;
      out.push(b);
    }
    return out;
  }

  /** One more holder of `block` (a prefix hit or a fork); a cached free block leaves the LRU list. */
  retain(block: number): void {
    if (this.refs[block] === 0) {
      invariant(this.lru.delete(block), `retaining block ${block}, which is neither held nor cached`);
      this.held++;
    }
    this.refs[block]++;
  }

  /** Drops one holder of each block, last first: a cached block whose last holder left joins the LRU
   * list, an uncached one the free list. Releasing a sequence's table tail first makes its tail blocks
   * (the least likely to be shared) the first evicted. */
  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i];
      invariant(this.refs[b] > 0, `releasing block ${b}, which has no holder`);
      if (--this.refs[b] > 0) continue;
      this.held--;
      if (this.keys[b] !== null) this.lru.set(b, true);
      else this.released.push(b);
    }
  }

  /** Puts a held, full, computed block in the prefix cache under `key`. Returns false (and leaves the
   * block uncached) when another block already holds that key: two sequences computed the same block. */
  cache(block: number, key: BlockKey): boolean {
    invariant(this.refs[block] > 0, `caching block ${block}, which has no holder`);
    const had = this.keys[block];
    if (had !== null) {
      invariant(had === key, `block ${block} cached under two keys`);
      return true;
    }
    if (this.byKey.has(key)) return false;
    this.keys[block] = key;
    this.byKey.set(key, block);
    return true;
  }

  private evictOldest(): number {
    const b = this.lru.keys().next().value as number;
    this.lru.delete(b);
    this.byKey.delete(this.keys[b] as BlockKey);
    this.keys[b] = null;
    this.numEvictions++;
    return b;
  }

  /** Checks the states above against `holders` (every block id in every live table, with repeats). */
  audit(holders: Iterable<number>): void {
    const count = new Int32Array(this.numBlocks);
    for (const b of holders) count[b]++;
    const free = new Set(this.released);
    invariant(free.size === this.released.length, "a block twice on the free list");
    for (let b = 0; b < this.numBlocks; b++) {
      invariant(count[b] === this.refs[b], `block ${b} has refCount ${this.refs[b]} but ${count[b]} holders`);
      const key = this.keys[b];
      if (key !== null) invariant(this.byKey.get(key) === b, `block ${b}'s key maps elsewhere`);
      const states = [this.refs[b] > 0, this.lru.has(b), free.has(b) || b >= this.fresh].filter(Boolean);
      invariant(states.length === 1, `block ${b} is in ${states.length} states`);
      if (this.lru.has(b)) invariant(key !== null, `uncached block ${b} on the LRU list`);
      if (free.has(b) || b >= this.fresh) invariant(key === null, `free block ${b} has a key`);
    }
    let held = 0;
    for (let b = 0; b < this.numBlocks; b++) if (this.refs[b] > 0) held++;
    invariant(held === this.held, `${held} blocks held, counted ${this.held}`);
    invariant(this.numFree + this.lru.size + held === this.numBlocks, "blocks lost");
  }

  /** Blocks with at least one holder. */
  get numHeld(): number {
    return this.held;
  }
}
