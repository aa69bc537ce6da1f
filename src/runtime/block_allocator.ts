// Hands out KV-cache block ids from a fixed pool, with reference counts so sequences can share
// blocks (beam search forks share their parent's full blocks; prefix caching will share prompts).
// A block returns to the free list when its last holder releases it.
export class BlockAllocator {
  private readonly free: number[];
  private readonly refs: Int32Array; // [numBlocks]

  constructor(readonly numBlocks: number) {
    // Pop from the end → blocks are handed out in increasing id order.
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.refs = new Int32Array(numBlocks);
  }

  get numFree(): number {
    return this.free.length;
  }

  /** `n` fresh block ids (refcount 1), or null when the pool cannot supply them all (nothing is taken). */
  allocate(n: number): number[] | null {
    if (n > this.free.length) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.free.pop() as number;
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
      if (--this.refs[b] === 0) this.free.push(b);
    }
  }
}
