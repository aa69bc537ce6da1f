// One sequence being generated: its tokens and its KV-cache blocks. The runtime only counts tokens:
// `numComputed` of `ids.length` tokens are in the KV cache; the next step computes the rest.
import type { BlockAllocator } from "./block_allocator.ts";
import { KvCacheExhaustedError } from "./errors.ts";

export type FinishReason = "length" | "stop" | "end";

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
