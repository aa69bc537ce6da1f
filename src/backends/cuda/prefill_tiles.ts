// How prefill attention (kernels/attention_prefill.cu) tiles the query rows: the export to launch, rows
// and threads per CTA (the rows set the grid: ceil(longest query / blockM), heads, sequences), and the
// dynamic shared memory each CTA takes. Mirrors the kernel's constants (kBlockM, kBlockN, kLds,
// kPrefillThreads); the runtime and the GPU tests launch by it.
import type { DTypeName } from "../../dtype.ts";

export interface PrefillTiles {
  /** The export to launch (before the KV cache's `_kv8` suffix, kv_cache_kernels.ts). */
  kernel: "attention_prefill";
  /** Query rows per CTA (the kernel's kBlockM). */
  blockM: number;
  /** Threads per CTA. */
  threads: number;
  /** Dynamic shared memory per CTA, bytes (0: the generic path's static arrays only). */
  sharedBytes: number;
}

/**
 * Tensor-core path (fp16/bf16, head 64 or 128): 128 rows per CTA (4 warps × 32 rows, 128 threads), key
 * tiles of 64; shared memory holds Q [128][D+8] and two buffers each of K and V [64][D+8] (104,448 B at
 * D = 128, 55,296 B at 64: two CTAs per SM).
 * Generic path (fp32 or other heads): 16 rows (8 above head 128), 128 threads, static memory.
 */
export function prefillTiles(dtype: DTypeName, headDim: number): PrefillTiles {
  if (dtype === "fp32" || (headDim !== 64 && headDim !== 128))
    return { kernel: "attention_prefill", blockM: headDim <= 128 ? 16 : 8, threads: 128, sharedBytes: 0 };
  const blockM = 128;
  const blockN = 64;
  return {
    kernel: "attention_prefill",
    blockM,
    threads: 128,
    sharedBytes: (blockM + 4 * blockN) * (headDim + 8) * 2,
  };
}
