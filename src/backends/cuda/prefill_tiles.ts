// How prefill attention tiles the query rows: which kernel runs (attention_prefill.cu, or
// attention_prefill_wgmma.cu where it applies), rows and threads per CTA (the rows set the grid:
// ceil(longest query / blockM), heads, sequences), and the dynamic shared memory each CTA takes.
// Mirrors the kernels' constants (kBlockM, kBlockN, kLds, kPrefillThreads; wg::kBlockM, kStages,
// kSmemElems); the runtime and the GPU tests launch by it.
import type { DTypeName } from "../../dtype.ts";
import { InvalidEnvironmentError } from "../../errors.ts";
import type { KvCacheDtype } from "../kv_cache_dtype.ts";

/** The prefill attention kernel (KILN_PREFILL_KERNEL) of the tensor-core path: `mma4` attention_prefill
 * (4 warps × 32 rows, mma.sync), `wgmma` attention_prefill_wgmma (sm_90a warpgroup MMA, warp-specialized:
 * a producer warpgroup and two consumer warpgroups × 64 rows). */
export type PrefillKernel = "mma4" | "wgmma";

export interface PrefillTiles {
  /** The export to launch (before the KV cache's `_kv8` suffix, kv_cache_kernels.ts). */
  kernel: "attention_prefill" | "attention_prefill_wgmma";
  /** Query rows per CTA (the kernel's kBlockM). */
  blockM: number;
  /** Threads per CTA. */
  threads: number;
  /** Dynamic shared memory per CTA, bytes (0: the generic path's static arrays only). */
  sharedBytes: number;
}

/** Whether a 16-bit engine of head `headDim` takes the tensor-core path (else the generic one). */
function tensorCores(dtype: DTypeName, headDim: number): boolean {
  return dtype !== "fp32" && (headDim === 64 || headDim === 128);
}

/**
 * Tensor-core path (fp16/bf16, head 64 or 128), by `kernel`:
 * - mma4: 128 rows per CTA (4 warps × 32 rows, 128 threads), key tiles of 64; shared memory holds
 *   Q [128][D+8] and two buffers each of K and V [64][D+8] (104,448 B at D = 128, 55,296 B at 64: two
 *   CTAs per SM).
 * - wgmma: 128 rows per CTA (a producer and two consumer warpgroups, 384 threads), key tiles of 128; Q
 *   [128][D] and `stages`
 *   buffers of K and V [128][D] (3 at D = 128: 229,376 B; 4 at 64: 147,456 B; one CTA per SM).
 * Generic path (fp32 or other heads): 16 rows (8 above head 128), 128 threads, static memory; `kernel`
 * does not apply.
 */
export function prefillTiles(dtype: DTypeName, headDim: number, kernel: PrefillKernel): PrefillTiles {
  if (!tensorCores(dtype, headDim))
    return { kernel: "attention_prefill", blockM: headDim <= 128 ? 16 : 8, threads: 128, sharedBytes: 0 };
  if (kernel === "wgmma") {
    const blockM = 128;
    const blockN = 128;
    const stages = headDim === 128 ? 3 : 4;
    return {
      kernel: "attention_prefill_wgmma",
      blockM,
      threads: 384,
      sharedBytes: (blockM + 2 * stages * blockN) * headDim * 2,
    };
  }
  const blockM = 128;
  const blockN = 64;
  return {
    kernel: "attention_prefill",
    blockM,
    threads: 128,
    sharedBytes: (blockM + 4 * blockN) * (headDim + 8) * 2,
  };
}

/** What decides whether the wgmma kernel applies to an engine on a device. */
export interface PrefillTarget {
  dtype: DTypeName;
  headDim: number;
  kvCacheDtype: KvCacheDtype;
  /** The device's compute capability: wgmma is sm_90a's (9.0 only; later GPUs lack it). */
  computeCapability: readonly [number, number];
}

/** Whether attention_prefill_wgmma can serve `t`: an sm_90 device (its cubins built for sm_90a), fp16 or
 * bf16, head 64 or 128, a 16-bit KV cache (no `_kv8` twin). */
export function wgmmaPrefillApplies(t: PrefillTarget): boolean {
  const [major, minor] = t.computeCapability;
  return major === 9 && minor === 0 && tensorCores(t.dtype, t.headDim) && t.kvCacheDtype !== "fp8";
}

/** The kernel a step runs: `requested` (the tuning) where it can. wgmma only where it applies
 * (wgmmaPrefillApplies) and the engine exports it (`hasKernel`, the plain name: an engine compiled
 * before it lacks it), else mma4, which every engine has — both compute the same attention. */
export function prefillKernelFor(
  requested: PrefillKernel,
  target: PrefillTarget,
  hasKernel: (name: string) => boolean,
): PrefillKernel {
  if (requested === "wgmma" && wgmmaPrefillApplies(target) && hasKernel("attention_prefill_wgmma"))
    return "wgmma";
  return "mma4";
}

/** KILN_PREFILL_KERNEL: unset or "mma4" attention_prefill, "wgmma" attention_prefill_wgmma where it
 * applies (tuning.ts refuses the removed "mma8" first, with what to use). */
export function parsePrefillKernel(env: string | undefined): PrefillKernel {
  if (env === undefined || env === "" || env === "mma4") return "mma4";
  if (env === "wgmma") return env;
  throw new InvalidEnvironmentError(`KILN_PREFILL_KERNEL must be mma4 or wgmma; got ${env}`);
}
