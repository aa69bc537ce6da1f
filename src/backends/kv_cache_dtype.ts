// How a backend stores its paged KV cache (`--kv-cache-dtype`, KvCacheConfig.dtype): a run-time choice
// made when the backend opens, independent of the engine's weight format (no rebuild, no cache key).
//
//   auto   K and V in the activations' dtype: fp32 on the CPU, the engine dtype on CUDA.
//   fp8    K and V as FP8 E4M3 bytes (src/fp8_e4m3.ts), each (token, kv head) row of headDim values with
//          its own fp32 scale, stored beside the bytes in the same slot of the same block:
//
//            per layer, K and V each:  data  [numBlocks, blockSize, numKvHeads, headDim]  uint8 (E4M3)
//                                      scale [numBlocks, blockSize, numKvHeads]           fp32
//
//            written (kvCacheWrite):   s = fp32(max_d |x_d| / 448),  byte_d = e4m3(fp32(x_d / s))
//                                      (round to nearest even, saturating; s = 0 for an all-zero row,
//                                      whose bytes are then 0)
//            read (attention):         x_d = fp32(e4m3ToF32(byte_d) × s)
//
// Why a dynamic scale per (token, kv head), computed when the token is written, and not a static per-head
// or per-tensor scale: it needs no calibration set, it never saturates as later tokens arrive (a row's
// largest value maps to 448 exactly), and a row is written once and never re-scaled, so a token's bytes
// do not depend on which other tokens share its block. Blocks stay self-contained: a shared block
// (prefix caching) shares its scales, a copied one (copy on write for n > 1 and beams) copies them with
// its bytes, and recomputing a preempted sequence writes the same bytes again. The cost is 4 bytes per
// headDim values: per token and layer
//
//   auto (fp32):  2 × numKvHeads × headDim × 4          fp8:  2 × numKvHeads × (headDim + 4)
//
// i.e. 4·headDim/(headDim + 4) times the tokens of an fp32 cache in the same bytes (3.56× at headDim 32,
// 3.88× at 128; against a 2-byte cache 1.94× at 128).
//
// Attention reads every key and value through the cache, the new tokens' included, so a token's logits
// do not depend on how its prompt was chunked, shared or recomputed.
import type { BackendName } from "../engine/build_config.ts";
import { KilnError } from "../errors.ts";

export const KV_CACHE_DTYPES = ["auto", "fp8"] as const;
export type KvCacheDtype = (typeof KV_CACHE_DTYPES)[number];

/** Bytes of one fp8 cache row's scale. */
export const FP8_KV_SCALE_BYTES = 4;

/** The backend cannot store its KV cache in the dtype asked for. */
export class KvCacheDtypeUnsupportedError extends KilnError {}

/** The backends that store a KV cache as fp8 (CUDA: with an engine whose kernels include the `_kv8`
 * exports, which backends/cuda/kv_cache_kernels.ts checks when it opens). */
const FP8_BACKENDS: readonly BackendName[] = ["cpu", "cuda"];

/** Throws KvCacheDtypeUnsupportedError when `backend` cannot store a KV cache as `dtype`: checked
 * before the backend opens (for CUDA: before the GPU is touched). */
export function checkKvCacheDtype(backend: BackendName, dtype: KvCacheDtype): void {
  if (dtype === "fp8" && !FP8_BACKENDS.includes(backend))
    throw new KvCacheDtypeUnsupportedError(
      `--kv-cache-dtype fp8 runs on the ${FP8_BACKENDS.join(" and ")} backends, not on ${backend}; ` +
        "use --kv-cache-dtype auto there",
    );
}

/** Bytes of KV cache per token over all layers, K and V, when stored as `dtype` (`auto` at
 * `activationBytes` per value). */
export function kvBytesPerToken(
  dtype: KvCacheDtype,
  numLayers: number,
  numKvHeads: number,
  headDim: number,
  activationBytes: number,
): number {
  const perRow = dtype === "fp8" ? headDim + FP8_KV_SCALE_BYTES : headDim * activationBytes;
  return 2 * numLayers * numKvHeads * perRow;
}
