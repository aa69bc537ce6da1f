// The step CudaBackend.warmUp runs: `tokens` prompt tokens split into sequences no longer than the
// context window (the RoPE table ends there), so every GEMM runs at its largest row count and the
// attention kernels at full length. It writes nothing to the KV cache (every slot −1) and reads only
// block 0 (every table entry 0: a pool of one block is enough); its outputs are discarded.
//
//   tokens 10, maxSeqLen 4, block 2:  seqs [0..3] [4..7] [8..9]   tables [0 0] [0 0] [0]
//   logit rows: the last min(tokens, maxLogitRows)
import type { StepInput } from "../backend.ts";

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
