// Which kernels store and read the paged KV cache in the dtype the backend opened with
// (`--kv-cache-dtype`, backends/kv_cache_dtype.ts): `auto` the plain exports of rope_kv.cu,
// attention_prefill.cu and attention_decode.cu; `fp8` their `_kv8` twins (kernels/kv_fp8.cuh: E4M3
// bytes, a scale per (slot, kv head) row, two more pointer arguments at the end). Both are compiled
// into every engine, so the choice needs no rebuild; an engine built before the `_kv8` kernels existed
// is refused for fp8 with the fix, before the GPU is touched.

import { type KvCacheDtype, KvCacheDtypeUnsupportedError } from "../kv_cache_dtype.ts";
import { cubinBlobName, type ModuleKey } from "./kernel_modules.ts";

/** The name of kernel `name` (a KV-touching export) for a cache stored as `dtype`. */
export function kvKernel(name: string, dtype: KvCacheDtype): string {
  return dtype === "fp8" ? `${name}_kv8` : name;
}

/** The `_kv8` kernels an fp8 cache needs in every engine, per module (the cluster kernels, built only
 * for sm_90+, come with them). */
export const FP8_KV_KERNELS: Readonly<Partial<Record<ModuleKey, readonly string[]>>> = {
  rope: ["rope_qkv_fused_kv8", "rope_qkv_kv8"],
  attn_prefill: ["attention_prefill_kv8"],
  attn_decode: [
    "attention_decode_kv8",
    "attention_decode_rope_kv8",
    "attention_decode_batch_kv8",
    "attention_decode_batch_rope_kv8",
  ],
};

/** Whether an ELF cubin exports `name` (its string table holds "\0name\0"). */
export function cubinExports(cubin: Uint8Array, name: string): boolean {
  return Buffer.from(cubin.buffer, cubin.byteOffset, cubin.byteLength).includes(
    Buffer.from(`\0${name}\0`, "latin1"),
  );
}

/** Throws KvCacheDtypeUnsupportedError when the engine's cubins lack a kernel a cache stored as `dtype`
 * needs (an engine built before the `_kv8` kernels existed), naming the fix. */
export function assertKvCacheKernels(
  engine: { dir: string; readBlob(name: string): Uint8Array | null },
  dtype: KvCacheDtype,
): void {
  if (dtype !== "fp8") return;
  const missing: string[] = [];
  for (const [key, names] of Object.entries(FP8_KV_KERNELS) as [ModuleKey, readonly string[]][]) {
    const cubin = engine.readBlob(cubinBlobName(key));
    for (const n of names) if (!cubin || !cubinExports(cubin, n)) missing.push(n);
  }
  if (missing.length > 0)
    throw new KvCacheDtypeUnsupportedError(
      `--kv-cache-dtype fp8: engine ${engine.dir} was built without the FP8 KV-cache kernels ` +
        `(${missing.join(", ")}); rebuild it with kiln build --backend cuda, or use --kv-cache-dtype auto`,
    );
}
