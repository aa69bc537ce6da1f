// The KV cache manager: one block table per sequence over a shared BlockPool, prefix caching, forks
// with copy-on-write. It only counts blocks; the backend owns the memory they name.
//
//   tokensPerBlock 4, sequence of 10 tokens (numSlots 10):
//     positions  0 1 2 3 | 4 5 6 7 | 8 9 . .
//     table      [  b5   |   b2    |  b7   ]     slot(pos) = table[pos / 4] * 4 + pos % 4
//                 full, keyed  full  partial: never shared through the cache
//
// Lifecycle of a sequence: allocate (takes its cached prefix, then fresh blocks) → appendSlots before
// each step that writes more tokens → commit after each step (keys its newly computed full blocks) →
// free. allocate and appendSlots return null when the pool runs out; the caller preempts, nothing is
// taken. Forks share every block (refCount++); the first write into a shared partial block copies it
// (appendSlots returns the copy the caller must run before the step, as backend.copyKvBlocks does).
// forkPrefix shares only leading whole blocks (a preempted group's sequences taking back the prompt).
// computing (when a step is scheduled) puts the full blocks its chunk completes in flight
// (inflight_blocks.ts) until commit keys them or free drops them; findPrefix says whether the block
// after a hit is in flight (the scheduler then defers the request, which will find it cached).
import { type BlockKey, blockKey } from "./block_hash.ts";
import { BlockPool } from "./block_pool.ts";
import { invariant } from "./errors.ts";
import { InflightBlocks } from "./inflight_blocks.ts";

/** The leading cached blocks of a token sequence. */
export interface PrefixHit {
  blocks: readonly number[];
  keys: readonly BlockKey[];
  /** blocks.length × tokensPerBlock: tokens whose keys/values need no computing. */
  numTokens: number;
  /** The full block after the hit (one the request would reuse, not its last token's) is being
   * computed by a running sequence: admitted once it is keyed, the request would reuse it too. */
  nextInFlight: boolean;
}

/** Copy block `src` to `dst` in every layer before the step runs. */
export interface BlockCopy {
  src: number;
  dst: number;
}

export interface KvCacheStats {
  numBlocks: number;
  tokensPerBlock: number;
  /** Blocks with no holder and no key. */
  numFree: number;
  /** Blocks in the prefix cache (held or not) and those of them no sequence holds (evictable). */
  numCached: number;
  numCachedFree: number;
  /** Blocks held by live sequences; usage = numUsed / numBlocks (cached free blocks are not in use). */
  numUsed: number;
  usage: number;
  /** Prompt tokens looked up at admission and those found cached (hit rate = hits / queries). */
  prefixQueryTokens: number;
  prefixHitTokens: number;
  numEvictions: number;
}

interface SeqBlocks {
  table: number[];
  /** Keys of table[0..keys.length), the blocks known to be full and computed. */
  keys: BlockKey[];
  /** Keys of the blocks after those, up to the end of the chunks scheduled so far, in flight until
   * commit moves them to `keys` (computed once, by computing()). */
  pending: BlockKey[];
  /** Tokens the table has room for (written or about to be): table.length == ⌈numSlots / tokensPerBlock⌉. */
  numSlots: number;
  extraKey: string;
  numReused: number;
  numAllocated: number;
}

export class KvCacheManager {
  readonly pool: BlockPool;
  private readonly seqs = new Map<number, SeqBlocks>();
  private readonly inflight = new InflightBlocks();
  private queryTokens = 0;
  private hitTokens = 0;

  constructor(
    numBlocks: number,
    readonly tokensPerBlock: number,
    readonly enablePrefixCaching = true,
  ) {
    invariant(Number.isInteger(tokensPerBlock) && tokensPerBlock > 0, `tokensPerBlock ${tokensPerBlock}`);
    this.pool = new BlockPool(numBlocks);
  }

  get numBlocks(): number {
    return this.pool.numBlocks;
  }

  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.tokensPerBlock);
  }

  has(seqId: number): boolean {
    return this.seqs.has(seqId);
  }

  blockTable(seqId: number): readonly number[] {
    return this.get(seqId).table;
  }

  /** Blocks the sequence holds, of which `reused` came from the prefix cache and `allocated` fresh. */
  seqStats(seqId: number): { numBlocks: number; reused: number; allocated: number } {
    const s = this.get(seqId);
    return { numBlocks: s.table.length, reused: s.numReused, allocated: s.numAllocated };
  }

  /** The longest run of cached leading full blocks of `tokens`, leaving at least the last token to
   * compute (its logits are needed). Takes nothing. `memo` holds the keys of tokens' leading full blocks
   * computed so far and is extended in place (a waiting request retries every iteration; its tokens
   * only grow, so its keys stay valid). */
  findPrefix(tokens: readonly number[], extraKey = "", memo: BlockKey[] = []): PrefixHit {
    const blocks: number[] = [];
    const keys: BlockKey[] = [];
    let nextInFlight = false;
    if (this.enablePrefixCaching) {
      const bs = this.tokensPerBlock;
      const most = Math.floor((tokens.length - 1) / bs);
      for (let i = 0; i < most; i++) {
        memo[i] ??= blockKey(i > 0 ? memo[i - 1] : null, tokens.slice(i * bs, (i + 1) * bs), extraKey);
        const b = this.pool.lookup(memo[i]);
        if (b === undefined) {
          nextInFlight = this.inflight.has(memo[i]);
          break;
        }
        blocks.push(b);
        keys.push(memo[i]);
      }
    }
    return { blocks, keys, numTokens: blocks.length * this.tokensPerBlock, nextInFlight };
  }

  /** Available blocks that admitting a sequence of `numTokens` tokens with `hit` would take: its fresh
   * blocks plus the cached hits no one holds (which stop being evictable). */
  blocksToAdmit(hit: PrefixHit, numTokens: number): number {
    const fresh = Math.max(0, this.blocksFor(numTokens) - hit.blocks.length);
    return fresh + hit.blocks.filter((b) => this.pool.refCount(b) === 0).length;
  }

  /** Admits sequence `seqId` of `tokens`: takes `hit` (default: findPrefix now) and fresh blocks for
   * `numNewTokens` more tokens. Returns the cached token count, or null when blocks run out. */
  allocate(
    seqId: number,
    tokens: readonly number[],
    numNewTokens: number,
    extraKey = "",
    hit: PrefixHit = this.findPrefix(tokens, extraKey),
  ): { numCachedTokens: number } | null {
    invariant(!this.seqs.has(seqId), `sequence ${seqId} allocated twice`);
    hit.blocks.forEach((b, i) =>
      invariant(this.pool.keyOf(b) === hit.keys[i], `stale prefix hit block ${b}`),
    );
    const numSlots = hit.numTokens + numNewTokens;
    if (this.blocksToAdmit(hit, numSlots) > this.pool.numAvailable) return null;
    for (const b of hit.blocks) this.pool.retain(b);
    const fresh = this.pool.allocate(this.blocksFor(numSlots) - hit.blocks.length);
    invariant(fresh, "blocks counted available were not");
    this.seqs.set(seqId, {
      table: [...hit.blocks, ...fresh],
      keys: [...hit.keys],
      pending: [],
      numSlots,
      extraKey,
      numReused: hit.blocks.length,
      numAllocated: fresh.length,
    });
    if (this.enablePrefixCaching) {
      this.queryTokens += tokens.length;
      this.hitTokens += hit.numTokens;
    }
    return { numCachedTokens: hit.numTokens };
  }

  /** Room for `numNewTokens` more tokens: new blocks, and a private copy of a shared partial last block
   * (copy-on-write). Returns the copies to run before the step, or null when blocks run out. */
  appendSlots(seqId: number, numNewTokens: number): { copies: BlockCopy[] } | null {
    const s = this.get(seqId);
    if (numNewTokens <= 0) return { copies: [] };
    const last = s.table.length - 1;
    const cow = s.numSlots % this.tokensPerBlock !== 0 && this.pool.refCount(s.table[last]) > 1;
    const need = this.blocksFor(s.numSlots + numNewTokens) - s.table.length;
    if (need + (cow ? 1 : 0) > this.pool.numAvailable) return null;
    const copies: BlockCopy[] = [];
    if (cow) {
      const [dst] = this.pool.allocate(1) as number[];
      copies.push({ src: s.table[last], dst });
      this.pool.release([s.table[last]]);
      s.table[last] = dst;
      s.numAllocated++;
    }
    const fresh = this.pool.allocate(need);
    invariant(fresh, "blocks counted available were not");
    s.table.push(...fresh);
    s.numAllocated += fresh.length;
    s.numSlots += numNewTokens;
    return { copies };
  }

  /** The step being scheduled computes the sequence's tokens up to `numTokens`, every one of them real
   * (no placeholder): the full blocks it completes are in flight until commit keys them, or free. */
  computing(seqId: number, tokens: readonly number[], numTokens: number): void {
    if (!this.enablePrefixCaching) return;
    const s = this.get(seqId);
    invariant(numTokens <= s.numSlots && numTokens <= tokens.length, `computing past the slots of ${seqId}`);
    const bs = this.tokensPerBlock;
    for (let i = s.keys.length + s.pending.length; i < Math.floor(numTokens / bs); i++) {
      const k = s.keys.length;
      const parent = i === 0 ? null : i - 1 < k ? s.keys[i - 1] : s.pending[i - 1 - k];
      const key = blockKey(parent, tokens.slice(i * bs, (i + 1) * bs), s.extraKey);
      s.pending.push(key);
      this.inflight.add(key);
    }
  }

  /** After a step: tokens[0, numComputed) of the sequence are in the cache; its newly full blocks
   * join the prefix cache (a block another sequence already cached under the same key stays private),
   * and leave the blocks in flight (their keys computed then are taken, not hashed again). */
  commit(seqId: number, tokens: readonly number[], numComputed: number): void {
    const s = this.get(seqId);
    invariant(numComputed <= s.numSlots && numComputed <= tokens.length, `commit past the slots of ${seqId}`);
    if (!this.enablePrefixCaching) return;
    const bs = this.tokensPerBlock;
    const first = s.keys.length;
    const end = Math.floor(numComputed / bs);
    if (end <= first) return;
    const taken = s.pending.length > 0 ? s.pending.splice(0, end - first) : [];
    this.inflight.remove(taken);
    for (let i = first; i < end; i++) {
      const key =
        taken[i - first] ??
        blockKey(i > 0 ? s.keys[i - 1] : null, tokens.slice(i * bs, (i + 1) * bs), s.extraKey);
      this.pool.cache(s.table[i], key);
      s.keys.push(key);
    }
  }

  /** A new sequence `childId` sharing every block of `parentId` (beams, numReturnSequences). */
  fork(parentId: number, childId: number): void {
    this.forkPrefix(parentId, childId, this.get(parentId).numSlots);
  }

  /** A new sequence `childId` sharing the blocks of `parentId`'s first `numTokens` tokens (all of
   * them, or a whole number of blocks): a preempted group's sequences take the prompt they share
   * from the first one instead of computing it again. */
  forkPrefix(parentId: number, childId: number, numTokens: number): void {
    const p = this.get(parentId);
    invariant(!this.seqs.has(childId), `fork into live sequence ${childId}`);
    invariant(
      numTokens === p.numSlots || (numTokens % this.tokensPerBlock === 0 && numTokens <= p.numSlots),
      `fork of ${numTokens} tokens of sequence ${parentId}`,
    );
    const n = this.blocksFor(numTokens);
    const table = p.table.slice(0, n);
    for (const b of table) this.pool.retain(b);
    const keys = p.keys.slice(0, n);
    // The parent alone computes its pending blocks; the child keys its own when it commits.
    const child = { ...p, table, keys, pending: [], numSlots: numTokens, numReused: 0, numAllocated: 0 };
    this.seqs.set(childId, child);
  }

  /** Releases the sequence's blocks (tail first); false if it holds none. */
  free(seqId: number): boolean {
    const s = this.seqs.get(seqId);
    if (!s) return false;
    this.inflight.remove(s.pending);
    this.pool.release(s.table);
    this.seqs.delete(seqId);
    return true;
  }

  stats(): KvCacheStats {
    const p = this.pool;
    return {
      numBlocks: p.numBlocks,
      tokensPerBlock: this.tokensPerBlock,
      numFree: p.numFree,
      numCached: p.numCached,
      numCachedFree: p.numCachedFree,
      numUsed: p.numHeld,
      usage: p.numHeld / p.numBlocks,
      prefixQueryTokens: this.queryTokens,
      prefixHitTokens: this.hitTokens,
      numEvictions: p.numEvictions,
    };
  }

  /** Full blocks some running sequence is computing, not keyed yet (distinct keys). */
  get numInFlight(): number {
    return this.inflight.size;
  }

  /** Checks every invariant of the pool and the tables (tests; a failure is a bug). */
  audit(): void {
    const holders: number[] = [];
    const pending: BlockKey[] = [];
    for (const [id, s] of this.seqs) {
      invariant(
        s.table.length === this.blocksFor(s.numSlots),
        `sequence ${id}'s table does not fit its slots`,
      );
      invariant(
        s.keys.length <= Math.floor(s.numSlots / this.tokensPerBlock),
        `sequence ${id} keys a partial block`,
      );
      invariant(
        s.keys.length + s.pending.length <= Math.floor(s.numSlots / this.tokensPerBlock),
        `sequence ${id} computes a partial block`,
      );
      holders.push(...s.table);
      pending.push(...s.pending);
    }
    this.pool.audit(holders);
    this.inflight.audit(pending);
  }

  private get(seqId: number): SeqBlocks {
    const s = this.seqs.get(seqId);
    invariant(s, `unknown sequence ${seqId}`);
    return s;
  }
}
