// Causal attention over the paged KV cache (paged_kv.ts), for prefill, chunked prefill and decode
// alike, several sequences packed in one call. It computes what HF's eager attention computes:
//   scores = (q · kᵀ) * scale   (fp32), masked; softmax over keys; out = weights · v.
// Here the dot products, the softmax (with max subtraction) and the weighted sum of v run in double,
// and each score is rounded to fp32 as HF's fp32 matmul result and scaled product are.
//
// Sequence s holds queryLen new tokens packed at rows [queryStart, queryStart + queryLen) of q and
// out, and contextLen cached tokens (the new ones included: write them with kvCacheWrite first).
// Row i of it has position p = contextLen - queryLen + i and attends to cached positions j with
//   j <= p                                  (causal)
//   j >  p - slidingWindow                  (sliding window, if any)
// i.e. the last `slidingWindow` positions, itself included. This is transformers masking_utils'
// `sliding_window_causal_mask_function` = causal_mask_function (kv_idx <= q_idx) AND
// sliding_window_overlay (kv_idx > q_idx - sliding_window), the mask HF uses for Mistral.
// GQA/MQA: query head h reads kv head floor(h / (numHeads / numKvHeads)) (HF repeat_kv).
// An FP8 pool (kv_fp8.ts) is read as its dequantized values, fp32(e4m3 × scale): each sequence's
// cached rows are dequantized once per call into a contiguous [contextLen, numKvHeads, headDim]
// buffer, and attention runs over that exactly as over an fp32 pool.

import { checkSize } from "./check.ts";
import { type Fp8KvPool, type KvPool, poolSlots, readFp8Slot } from "./kv_fp8.ts";

const f32 = Math.fround;

export interface AttentionSequence {
  /** First row of this sequence's queries in q and out. */
  queryStart: number;
  /** Number of query rows (new tokens) of this sequence in this call; 1 in decode. */
  queryLen: number;
  /** Number of tokens in the cache for this sequence, the new ones included. */
  contextLen: number;
  blockTable: Int32Array; // [ceil(contextLen / blockSize)] or more
}

export interface PagedAttentionArgs {
  q: Float32Array; // [numTokens, numHeads, headDim]
  kCache: KvPool; // [numBlocks, blockSize, numKvHeads, headDim]
  vCache: KvPool; // [numBlocks, blockSize, numKvHeads, headDim]
  blockSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  seqs: readonly AttentionSequence[];
  /** Multiplies q · k; HF uses head_dim ** -0.5. Rounded to fp32 as torch rounds a Python float. */
  scale: number;
  /** Attend to the last `slidingWindow` positions only (Mistral); null = full causal attention. */
  slidingWindow: number | null;
  out: Float32Array; // [numTokens, numHeads, headDim]; must not overlap q
}

export function pagedAttention(args: PagedAttentionArgs): void {
  const { q, kCache, vCache, blockSize, numHeads, numKvHeads, headDim, seqs, slidingWindow, out } = args;
  if (numHeads % numKvHeads !== 0) {
    throw new RangeError(`numHeads ${numHeads} is not a multiple of numKvHeads ${numKvHeads}`);
  }
  if (slidingWindow !== null && !(slidingWindow >= 1)) {
    throw new RangeError(`slidingWindow must be at least 1 or null, got ${slidingWindow}`);
  }
  const groupSize = numHeads / numKvHeads;
  const slotLen = numKvHeads * headDim;
  const numSlots = poolSlots(kCache, numKvHeads, headDim);
  if (poolSlots(vCache, numKvHeads, headDim) < numSlots) {
    throw new RangeError(`pagedAttention: vCache has fewer slots than kCache's ${numSlots}`);
  }
  const scale = f32(args.scale);

  let maxContext = 0;
  for (const seq of seqs) {
    if (seq.queryLen < 0 || seq.queryLen > seq.contextLen) {
      throw new RangeError(`queryLen ${seq.queryLen} must be between 0 and contextLen ${seq.contextLen}`);
    }
    checkSize("pagedAttention q", q, (seq.queryStart + seq.queryLen) * numHeads * headDim);
    checkSize("pagedAttention out", out, (seq.queryStart + seq.queryLen) * numHeads * headDim);
    checkSize("pagedAttention blockTable", seq.blockTable, Math.ceil(seq.contextLen / blockSize));
    maxContext = Math.max(maxContext, seq.contextLen);
  }
  const slotBase = new Int32Array(maxContext); // [contextLen]: element offset of position j's slot
  const weights = new Float64Array(maxContext); // [contextLen]: scores, then exp(score - max)
  const acc = new Float64Array(headDim);
  // FP8 pools: the sequence's rows dequantized, [maxContext, numKvHeads, headDim] each.
  const kRows = kCache instanceof Float32Array ? null : new Float32Array(maxContext * slotLen);
  const vRows = vCache instanceof Float32Array ? null : new Float32Array(maxContext * slotLen);
  const kv = kCache instanceof Float32Array ? kCache : (kRows as Float32Array);
  const vv = vCache instanceof Float32Array ? vCache : (vRows as Float32Array);

  for (const seq of seqs) {
    const { queryStart, queryLen, contextLen, blockTable } = seq;
    const firstRead = slidingWindow === null ? 0 : Math.max(0, contextLen - queryLen - slidingWindow + 1);
    for (let j = 0; j < contextLen; j++) {
      const slot = blockTable[Math.floor(j / blockSize)] * blockSize + (j % blockSize);
      if (!(slot >= 0 && slot < numSlots)) {
        throw new RangeError(`position ${j} maps to slot ${slot}, outside the pool's ${numSlots} slots`);
      }
      slotBase[j] = slot * slotLen;
      if (j < firstRead) continue; // outside every row's window: never read
      if (kRows) readFp8Slot(kCache as Fp8KvPool, slot, numKvHeads, headDim, kRows, j * slotLen);
      if (vRows) readFp8Slot(vCache as Fp8KvPool, slot, numKvHeads, headDim, vRows, j * slotLen);
    }
    for (let i = 0; i < queryLen; i++) {
      const p = contextLen - queryLen + i;
      const first = slidingWindow === null ? 0 : Math.max(0, p - slidingWindow + 1);
      const row = queryStart + i;
      for (let h = 0; h < numHeads; h++) {
        const qOff = (row * numHeads + h) * headDim;
        const headOff = Math.floor(h / groupSize) * headDim;

        let max = Number.NEGATIVE_INFINITY;
        for (let j = first; j <= p; j++) {
          const kOff = (kRows ? j * slotLen : slotBase[j]) + headOff;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qOff + d] * kv[kOff + d];
          const score = f32(f32(dot) * scale);
          weights[j] = score;
          if (score > max) max = score;
        }

        let sum = 0;
        for (let j = first; j <= p; j++) {
          const e = Math.exp(weights[j] - max);
          weights[j] = e;
          sum += e;
        }

        acc.fill(0);
        for (let j = first; j <= p; j++) {
          const wj = weights[j] / sum;
          const vOff = (vRows ? j * slotLen : slotBase[j]) + headOff;
          for (let d = 0; d < headDim; d++) acc[d] += wj * vv[vOff + d];
        }
        for (let d = 0; d < headDim; d++) out[qOff + d] = acc[d];
      }
    }
  }
}
