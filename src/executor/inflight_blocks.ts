// Full KV blocks in flight: scheduled to be computed by a running sequence (in this iteration's step or
// a queued one) and not yet keyed in the prefix cache. Blocks are keyed only after the step that
// computes them (KvCacheManager.commit), so requests sharing a prefix that arrive together would each
// compute it; the scheduler defers a waiting request whose next uncached block is in flight, and it
// finds that block cached once it is keyed (cache-aware admission, SGLang's idea in its simplest form).
//
//   key → number of live sequences computing it      (two sequences may compute the same block)
//
// An entry lives exactly as long as a sequence's pending key (KvCacheManager): it goes when commit
// keys the block or when the sequence is freed (finished, cancelled, timed out, preempted), so a
// deferred request never waits on a block nobody is going to compute. Updated per chunk scheduled
// and per block keyed: no work over all running sequences.
import type { BlockKey } from "./block_hash.ts";
import { invariant } from "./errors.ts";

export class InflightBlocks {
  private readonly counts = new Map<BlockKey, number>();

  /** Keys in flight (distinct). */
  get size(): number {
    return this.counts.size;
  }

  has(key: BlockKey): boolean {
    return this.counts.has(key);
  }

  add(key: BlockKey): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** One sequence fewer computes each of `keys` (keyed or freed). */
  remove(keys: readonly BlockKey[]): void {
    for (const key of keys) {
      const n = this.counts.get(key);
      invariant(n !== undefined, "removing a block that is not in flight");
      if (n > 1) this.counts.set(key, n - 1);
      else this.counts.delete(key);
    }
  }

  /** Checks the counts against `pending`: every sequence's pending keys, with repeats (tests). */
  audit(pending: Iterable<BlockKey>): void {
    const want = new Map<BlockKey, number>();
    for (const key of pending) want.set(key, (want.get(key) ?? 0) + 1);
    invariant(want.size === this.counts.size, `${this.counts.size} keys in flight, ${want.size} pending`);
    for (const [key, n] of want)
      invariant(
        this.counts.get(key) === n,
        `a block in flight counted ${this.counts.get(key)}, pending ${n}`,
      );
  }
}
