// One sequence being generated: its tokens and its KV-cache blocks. The runtime only counts tokens:
// `numComputed` of `ids.length` tokens are in the KV cache; the next step computes the rest.

import type { FinishReason } from "../sampling/stopping.ts";
import type { BlockAllocator } from "./block_allocator.ts";
import { KvCacheExhaustedError } from "./errors.ts";

export type { FinishReason };

export class Sequence {
  readonly ids: number[]; // prompt + generated
  readonly blockTable: number[] = [];
  numComputed = 0;
  finishReason: FinishReason | null = null;
  readonly logProbs: number[] = [];

  constructor(
    readonly index: number,
    readonly promptIds: readonly number[],
    private readonly blockSize: number,
  ) {
    this.ids = [...promptIds];
  }

  /** A copy that shares this sequence's full KV blocks and gets its own copy of the partial last
   * block (the next token of each fork is written there). Call when ids.length === numComputed.
   *
   *   parent: [b3 full][b7 full][b9 partial]      child: [b3][b7][b12 = copy of b9]   (b3, b7 refcount 2)
   */
  fork(
    index: number,
    allocator: BlockAllocator,
    copyBlocks: (src: number[], dst: number[]) => void,
  ): Sequence {
    const child = new Sequence(index, this.promptIds, this.blockSize);
    child.ids.length = 0;
    child.ids.push(...this.ids);
    child.numComputed = this.numComputed;
    child.logProbs.push(...this.logProbs);
    const partial = this.numComputed % this.blockSize !== 0;
    const full = partial ? this.blockTable.slice(0, -1) : [...this.blockTable];
    allocator.share(full);
    child.blockTable.push(...full);
    if (partial) {
      const fresh = allocator.allocate(1);
      if (!fresh) {
        allocator.release(full);
        throw new KvCacheExhaustedError(
          `the KV cache has no free block to fork sequence ${this.index}; lower the batch size, beam width or --max-new-tokens`,
        );
      }
      copyBlocks([this.blockTable[this.blockTable.length - 1]], fresh);
      child.blockTable.push(fresh[0]);
    }
    return child;
  }

  get generated(): number[] {
    return this.ids.slice(this.promptIds.length);
  }

  /** Grows the block table to hold `numTokens` tokens. */
  reserve(numTokens: number, allocator: BlockAllocator): void {
    const need = Math.ceil(numTokens / this.blockSize) - this.blockTable.length;
    if (need <= 0) return;
    const blocks = allocator.allocate(need);
    if (!blocks) {
      throw new KvCacheExhaustedError(
        `the KV cache has ${allocator.numFree} free blocks of ${this.blockSize} tokens but sequence ${this.index} ` +
          `needs ${need} more; lower the batch size or --max-new-tokens`,
      );
    }
    this.blockTable.push(...blocks);
  }

  /** Slot of the token at `pos` in the paged pool. */
  slot(pos: number): number {
    return this.blockTable[Math.floor(pos / this.blockSize)] * this.blockSize + (pos % this.blockSize);
  }

  release(allocator: BlockAllocator): void {
    allocator.release(this.blockTable);
    this.blockTable.length = 0;
  }
}
