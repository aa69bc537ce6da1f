// What one scheduler iteration decides: the only thing the step builder sees.
//
//   chunks (row order):   [ decode r3: 1 | decode r1: 1 | prefill r7: 6 of 20 | prefill r9: 4 ]
//   chunk.tokenIds = request.tokens[start, start + numTokens); positions start…; contextLen = start +
//   numTokens; slot(pos) = blockTable[pos / tokensPerBlock] · tokensPerBlock + pos % tokensPerBlock.
//   A chunk with `sample` reaches the end of its sequence's tokens: its last row's logits are sampled.
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
}

export interface SchedulerOutput {
  /** Running requests with one token to compute first (decodes), then prefill chunks. */
  chunks: ScheduledChunk[];
  /** Sum of the chunks' token counts; at most maxNumTokens. */
  numTokens: number;
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
  copies: BlockCopy[];
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
  for (const { request: r, sizes, copies } of grants) {
    sizes.forEach((n, seq) => {
      if (n === 0) return;
      const s = r.seqs[seq];
      const start = s.numComputedTokens;
      chunks.push({
        requestId: r.id,
        seq,
        start,
        tokenIds: s.tokens.slice(start, start + n),
        blockTable: Int32Array.from(kv.blockTable(s.kvId)),
        sample: start + n === s.tokens.length,
      });
      numTokens += n;
    });
    blockCopies.push(...copies);
  }
  return { chunks, numTokens, blockCopies, preempted, finished };
}
