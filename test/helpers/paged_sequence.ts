// A minimal paged-KV harness for tests that drive a backend step by step without the executor: a
// block allocator, a sequence with its block table, and the packing of uncomputed tokens into one
// StepInput (each sequence's last query token gives a logits row).
import type { SeqStep, StepInput } from "../../src/backends/backend.ts";

/** Block ids from a fixed pool: released ones first (last in, first out), then fresh ones in order. */
export class BlockAllocator {
  private readonly released: number[] = [];
  private fresh = 0;

  constructor(readonly numBlocks: number) {}

  allocate(n: number): number[] {
    if (n > this.released.length + this.numBlocks - this.fresh) throw new Error(`no ${n} free KV blocks`);
    return Array.from({ length: n }, () =>
      this.released.length > 0 ? (this.released.pop() as number) : this.fresh++,
    );
  }

  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.released.push(blocks[i]);
  }
}

/** A sequence's tokens, and how many of them (`numComputed`) are in its blocks. */
export class Sequence {
  readonly ids: number[];
  readonly blockTable: number[] = [];
  numComputed = 0;

  constructor(
    readonly index: number,
    ids: readonly number[],
    private readonly blockSize: number,
  ) {
    this.ids = [...ids];
  }

  /** Grows the block table to hold `numTokens` tokens. */
  reserve(numTokens: number, alloc: BlockAllocator): void {
    const need = Math.ceil(numTokens / this.blockSize) - this.blockTable.length;
    if (need > 0) this.blockTable.push(...alloc.allocate(need));
  }

  slot(pos: number): number {
    return this.blockTable[Math.floor(pos / this.blockSize)] * this.blockSize + (pos % this.blockSize);
  }

  release(alloc: BlockAllocator): void {
    alloc.release(this.blockTable);
    this.blockTable.length = 0;
  }
}

/** The uncomputed tokens of `seqs` packed into one step. */
export function buildStep(seqs: readonly Sequence[]): StepInput {
  let total = 0;
  for (const s of seqs) total += s.ids.length - s.numComputed;
  const tokenIds = new Int32Array(total);
  const positions = new Int32Array(total);
  const slotMapping = new Int32Array(total);
  const logitRows = new Int32Array(seqs.length);
  const steps: SeqStep[] = [];
  let t = 0;
  seqs.forEach((s, i) => {
    const start = t;
    for (let pos = s.numComputed; pos < s.ids.length; pos++, t++) {
      tokenIds[t] = s.ids[pos];
      positions[t] = pos;
      slotMapping[t] = s.slot(pos);
    }
    steps.push({
      queryStart: start,
      queryLen: t - start,
      contextLen: s.ids.length,
      blockTable: Int32Array.from(s.blockTable),
    });
    logitRows[i] = t - 1;
  });
  return { tokenIds, positions, slotMapping, seqs: steps, logitRows };
}
