// Hands out KV-cache block ids from a fixed pool. A sequence owns the blocks it was given until it
// frees them (prefix sharing and eviction arrive with the executor's KVCacheManager).
export class BlockAllocator {
  private readonly free: number[];

  constructor(readonly numBlocks: number) {
    // Pop from the end → blocks are handed out in increasing id order.
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  get numFree(): number {
    return this.free.length;
  }

  /** `n` block ids, or null when the pool cannot supply them all (nothing is taken then). */
  allocate(n: number): number[] | null {
    if (n > this.free.length) return null;
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.free.pop() as number);
    return out;
  }

  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.free.push(blocks[i]);
  }
}
