// How attention_prefill (kernels/attention_prefill.cu) tiles the query rows: which of its variants runs,
// rows and threads per CTA (the rows set the grid: ceil(longest query / blockM), heads, sequences), and
// the dynamic shared memory each CTA takes. Mirrors the kernel's constants (kBlockM, kBlockN, kLds,
// kPrefillThreads); the runtime and the GPU tests launch by it.
import type { DTypeName } from "../../dtype.ts";
import { InvalidEnvironmentError } from "../../errors.ts";

/** Warps per CTA of the tensor-core path (KILN_PREFILL_WARPS): 4 × 32 rows or 8 × 16 rows. */
export type PrefillWarps = 4 | 8;

export interface PrefillTiles {
  /** The export to launch (before the KV cache's `_kv8` suffix, kv_cache_kernels.ts). */
  kernel: "attention_prefill" | "attention_prefill_w8";
  /** Query rows per CTA (the kernel's kBlockM). */
  blockM: number;
  /** Threads per CTA (kPrefillThreads<warps>). */
  threads: number;
  /** Dynamic shared memory per CTA, bytes (0: the generic path's static arrays only). */
  sharedBytes: number;
}

/**
 * Tensor-core path (fp16/bf16, head 64 or 128): 128 rows per CTA, key tiles of 64; shared memory holds
 * Q [128][D+8] and two buffers each of K and V [64][D+8] (104,448 B at D = 128, 55,296 B at 64: two
 * CTAs per SM), whichever the variant: 4 warps × 32 rows (attention_prefill, 128 threads) or 8 warps ×
 * 16 rows (attention_prefill_w8, 256 threads). Generic path (fp32 or other heads): 16 rows (8 above
 * head 128), 128 threads, static memory; `warps` does not apply.
 */
export function prefillTiles(dtype: DTypeName, headDim: number, warps: PrefillWarps): PrefillTiles {
  if (dtype !== "fp32" && (headDim === 64 || headDim === 128)) {
    const blockM = 128;
    const blockN = 64;
    return {
      kernel: warps === 8 ? "attention_prefill_w8" : "attention_prefill",
      blockM,
      threads: warps * 32,
      sharedBytes: (blockM + 4 * blockN) * (headDim + 8) * 2,
    };
  }
  return { kernel: "attention_prefill", blockM: headDim <= 128 ? 16 : 8, threads: 128, sharedBytes: 0 };
}

/** The variant a step runs: `requested` (the tuning), unless the engine lacks its kernel — one compiled
 * before attention_prefill_w8 existed has only the 4-warp kernel, which computes the same attention. */
export function prefillWarpsFor(requested: PrefillWarps, hasKernel: (name: string) => boolean): PrefillWarps {
  return requested === 8 && !hasKernel("attention_prefill_w8") ? 4 : requested;
}

/** KILN_PREFILL_WARPS: unset or "8" the 8-warp variant, "4" the 4-warp one (A/B switch). */
export function parsePrefillWarps(env: string | undefined): PrefillWarps {
  if (env === undefined || env === "" || env === "8") return 8;
  if (env === "4") return 4;
  throw new InvalidEnvironmentError(`KILN_PREFILL_WARPS must be 4 or 8; got ${env}`);
}
