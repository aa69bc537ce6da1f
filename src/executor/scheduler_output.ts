// What one scheduler iteration decides: the only thing the step builder sees.
//
//   chunks (row order):   [ decode r3: 1 | decode r1: 1 | prefill r7: 6 of 20 | prefill r9: 4 ]
//   chunk.tokenIds = request.tokens[start, start + numTokens); positions start…; contextLen = start +
//   numTokens; slot(pos) = blockTable[pos / tokensPerBlock] · tokensPerBlock + pos % tokensPerBlock.
//   A chunk with `sample` reaches the end of its request's tokens: its last row's logits are sampled.
import type { BlockCopy } from "./kv_cache_manager.ts";
import type { RequestFinishReason } from "./request.ts";

export interface ScheduledChunk {
  requestId: number;
  /** Position of the first token of the chunk (= the request's numComputedTokens). */
  start: number;
  tokenIds: readonly number[]; // [numTokens]
  /** The request's block table, covering at least start + numTokens tokens. */
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
