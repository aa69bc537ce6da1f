// The steps the CUDA backend warms up with. warmUpStep (CudaBackend.warmUp): `tokens` prompt tokens
// split into sequences no longer than the context window (the RoPE table ends there), so every GEMM
// runs at its largest row count and the attention kernels at full length. It writes nothing to the KV
// cache (every slot −1) and reads only block 0 (every table entry 0: a pool of one block is enough);
// its outputs are discarded. graphWarmUpSteps: the decode steps of every graph (below).
//
//   tokens 10, maxSeqLen 4, block 2:  seqs [0..3] [4..7] [8..9]   tables [0 0] [0 0] [0]
//   logit rows: the last min(tokens, maxLogitRows)
import type { StepInput } from "../backend.ts";
import { graphSplits, MIN_SPLIT_KEYS, type SplitTarget } from "./attention_splits.ts";
import { rowBuckets } from "./gemm_algorithms.ts";

export interface WarmUpLimits {
  maxSeqLen: number;
  /** Most sequences of a step (decode attention's scratch is sized for them). */
  maxSeqs: number;
  blockSize: number;
  maxLogitRows: number;
}

export function warmUpStep(tokens: number, limits: WarmUpLimits): StepInput {
  const L = Math.max(1, Math.min(tokens, limits.maxSeqLen));
  const T = Math.max(1, Math.min(tokens, L * Math.max(1, limits.maxSeqs)));
  const positions = new Int32Array(T);
  const seqs: StepInput["seqs"] = [];
  for (let start = 0; start < T; start += L) {
    const len = Math.min(L, T - start);
    for (let i = 0; i < len; i++) positions[start + i] = i;
    seqs.push({
      queryStart: start,
      queryLen: len,
      contextLen: len,
      blockTable: new Int32Array(Math.ceil(len / limits.blockSize)),
    });
  }
  const R = Math.min(T, limits.maxLogitRows);
  return {
    tokenIds: new Int32Array(T),
    positions,
    slotMapping: new Int32Array(T).fill(-1),
    seqs,
    logitRows: Int32Array.from({ length: R }, (_, i) => T - R + i),
  };
}

/** The decode steps whose graphs CudaBackend.prepareDecodeGraphs captures ahead of any request: per batch
 * bucket (gemm_algorithms.ts rowBucket) up to maxSeqs' (at most maxLogitRows), one step for each attention split
 * count (graphSplits) a context of up to maxSeqLen keys can give, its longest context the shortest
 * that gives it. Sequence 0 holds that context, the others one key; every table entry is block 0 and
 * every slot −1, so the steps write no KV.
 *
 *   maxSeqs 3, maxSeqLen 300, a GPU whose splits are 1 up to 64 keys and 2 beyond for < 4 sequences:
 *     bucket 1: longest 1 (1 split), 128 (2)   bucket 2: 1, 128   bucket 4: 1 */
export function graphWarmUpSteps(limits: WarmUpLimits, target: SplitTarget): StepInput[] {
  const { maxSeqs, maxLogitRows, maxSeqLen, blockSize } = limits;
  const longests = [1];
  for (let L = MIN_SPLIT_KEYS; L < maxSeqLen; L *= 2) longests.push(L);
  if (maxSeqLen > 1) longests.push(maxSeqLen);
  const steps: StepInput[] = [];
  for (const bucket of rowBuckets(Math.min(Math.max(1, maxSeqs), maxLogitRows))) {
    const seen = new Set<number>();
    for (const longest of longests) {
      const splits = graphSplits(target, bucket, longest);
      if (seen.has(splits)) continue;
      seen.add(splits);
      const context = (i: number) => (i === 0 ? longest : 1);
      steps.push({
        tokenIds: new Int32Array(bucket),
        positions: Int32Array.from({ length: bucket }, (_, i) => context(i) - 1),
        slotMapping: new Int32Array(bucket).fill(-1),
        seqs: Array.from({ length: bucket }, (_, i) => ({
          queryStart: i,
          queryLen: 1,
          contextLen: context(i),
          blockTable: new Int32Array(Math.ceil(context(i) / blockSize)),
        })),
        logitRows: Int32Array.from({ length: bucket }, (_, i) => i),
      });
    }
  }
  return steps;
}
