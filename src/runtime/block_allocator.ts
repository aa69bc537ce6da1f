// Hands out KV-cache block ids from a fixed pool, with reference counts so sequences can share
// blocks (beam search forks share their parent's full blocks; prefix caching will share prompts).
// A block returns to the free list when its last holder releases it.
export class BlockAllocator {
  /** Released blocks, reused last-in first-out before any fresh one. */
  private readonly released: number[] = [];
  /** Blocks below this id have been handed out at least once. Lazy, so that a pool of 100k+ blocks
   * (sized from free GPU memory) costs nothing per request. */
  private fresh = 0;
  private readonly refs: Int32Array; // [numBlocks]

  constructor(readonly numBlocks: number) {
    this.refs = new Int32Array(numBlocks);
  }

  get numFree(): number {
    return this.released.length + this.numBlocks - this.fresh;
  }

  /** `n` block ids (refcount 1): released ones first, then fresh ones in increasing id order; null
   * when the pool cannot supply them all (nothing is taken). */
  allocate(n: number): number[] | null {
    if (n > this.numFree) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.released.length > 0 ? (this.released.pop() as number) : this.fresh++;
      this.refs[b] = 1;
      out.push(b);
    }
    return out;
  }

  /** One more holder of each block (a fork sharing them). */
  share(blocks: readonly number[]): void {
    for (const b of blocks) {
      if (this.refs[b] <= 0) throw new Error(`internal: sharing free block ${b}`);
      this.refs[b]++;
    }
  }

  refCount(block: number): number {
    return this.refs[block];
  }

  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i];
      if (this.refs[b] <= 0) throw new Error(`internal: double release of block ${b}`);
      if (--this.refs[b] === 0) this.released.push(b);
    }
  }
}
