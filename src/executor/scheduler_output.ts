// What one scheduler iteration decides: the only thing the step builder sees.
//
//   chunks (row order):   [ decode r3: 1 | decode r1: 1 | prefill r7: 6 of 20 | prefill r9: 4 ]
//   chunk.tokenIds = request.tokens[start, start + numTokens); positions start…; contextLen = start +
//   numTokens; slot(pos) = blockTable[pos / tokensPerBlock] · tokensPerBlock + pos % tokensPerBlock.
//   A chunk with `sample` reaches the end of its sequence's tokens: its last row's logits are sampled.
//   A chunk with `contextLogits` returns the logits of every row (its last one also sampled): the
//   step's logits rows, numLogitRows, are at most the backend's maxLogitRows.
//   A sequence group's sequences are chunks of their own (seq = row order in request.seqs); they all
//   sample in the same iteration or none does.
import type { BlockCopy, KvCacheManager } from "./kv_cache_manager.ts";
import type { Request, RequestFinishReason } from "./request.ts";

export interface ScheduledChunk {
  requestId: number;
  /** Which of the request's sequences (index in Request.seqs; 0 for a single-sequence request). */
  seq: number;
  /** Position of the first token of the chunk (= the sequence's numComputedTokens). */
  start: number;
  tokenIds: readonly number[]; // [numTokens]
  /** The sequence's block table, covering at least start + numTokens tokens. */
  blockTable: Int32Array;
  sample: boolean;
  /** Its request wants context logits: a logits row for every token of the chunk. */
  contextLogits: boolean;
}

export interface SchedulerOutput {
  /** Running requests with one token to compute first (decodes), then prefill chunks. */
  chunks: ScheduledChunk[];
  /** Sum of the chunks' token counts; at most maxNumTokens. */
  numTokens: number;
  /** Logits rows the step returns (chunkLogitRows over the chunks); at most maxLogitRows. */
  numLogitRows: number;
  /** Copy-on-write copies the backend must run before the step (copyKvBlocks). */
  blockCopies: BlockCopy[];
  /** Requests preempted in this iteration (blocks freed; they recompute later). */
  preempted: number[];
  /** Requests that left since the previous output (finished, cancelled, timed out): drop their state. */
  finished: { requestId: number; reason: RequestFinishReason }[];
}

/** One request's share of the iteration being scheduled (before its numComputedTokens advances). */
export interface Grant {
  request: Request;
  /** Tokens of each of its sequences (0: none this iteration). */
  sizes: number[];
  numTokens: number;
  numLogitRows: number;
  copies: BlockCopy[];
}

/** Logits rows a chunk of `n` tokens takes: all of them for a context-logits request, else one when it
 * samples. */
export function chunkLogitRows(n: number, sample: boolean, contextLogits: boolean): number {
  return contextLogits ? n : Number(sample);
}

/** Logits rows r's chunks of `sizes` tokens per sequence take, each starting at its sequence's
 * numComputedTokens. */
export function grantLogitRows(r: Request, sizes: readonly number[]): number {
  let rows = 0;
  sizes.forEach((n, i) => {
    const s = r.seqs[i];
    if (n > 0) rows += chunkLogitRows(n, s.numComputedTokens + n === s.tokens.length, r.contextLogits);
  });
  return rows;
}

export function buildSchedulerOutput(
  grants: Iterable<Grant>,
  kv: KvCacheManager,
  preempted: number[],
  finished: SchedulerOutput["finished"],
): SchedulerOutput {
  const chunks: ScheduledChunk[] = [];
  const blockCopies: BlockCopy[] = [];
  let numTokens = 0;
  let numLogitRows = 0;
  for (const { request: r, sizes, copies } of grants) {
    sizes.forEach((n, seq) => {
      if (n === 0) return;
      const s = r.seqs[seq];
      const start = s.numComputedTokens;
      const sample = start + n === s.tokens.length;
      chunks.push({
        requestId: r.id,
        seq,
        start,
        tokenIds: s.tokens.slice(start, start + n),
        blockTable: Int32Array.from(kv.blockTable(s.kvId)),
        sample,
        contextLogits: r.contextLogits,
      });
      numTokens += n;
      numLogitRows += chunkLogitRows(n, sample, r.contextLogits);
    });
    blockCopies.push(...copies);
  }
  return { chunks, numTokens, numLogitRows, blockCopies, preempted, finished };
}
