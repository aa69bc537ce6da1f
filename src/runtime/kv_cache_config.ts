// KvCacheConfig: how big the paged KV pool may grow, as TensorRT-LLM's KvCacheConfig. The pool is
// sized once (see kv_cache_pool.ts) and every request runs inside it. Validated once, here.
import { InvalidArgumentError } from "../errors.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";

export interface KvCacheConfig {
  /** Share of the device memory free after load (and warm-up) the pool may take, in (0, 1]. Only
   * backends that report free memory (CUDA) use it. */
  freeGpuMemoryFraction: number;
  /** Most tokens the pool holds (rounded down to whole blocks); undefined = no cap. */
  maxTokens?: number;
}

export const KV_CACHE_CONFIG_KEYS: KeySet<KvCacheConfig> = { freeGpuMemoryFraction: true, maxTokens: true };

export const KV_CACHE_DEFAULTS: KvCacheConfig = { freeGpuMemoryFraction: 0.9 };

/** A KvCacheConfig field has a value that cannot be used. */
export class InvalidKvCacheConfigError extends InvalidArgumentError {}

export function resolveKvCacheConfig(user: Partial<KvCacheConfig> = {}): KvCacheConfig {
  rejectUnknownKeys("KvCacheConfig", user, KV_CACHE_CONFIG_KEYS);
  const f = user.freeGpuMemoryFraction ?? KV_CACHE_DEFAULTS.freeGpuMemoryFraction;
  if (typeof f !== "number" || !(f > 0 && f <= 1)) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.freeGpuMemoryFraction must be in (0, 1], got ${f}; ` +
        "give the share of free GPU memory the KV cache may take, e.g. 0.9 (--kv-cache-free-gpu-mem-fraction)",
    );
  }
  const t = user.maxTokens;
  if (t !== undefined && (!Number.isSafeInteger(t) || t < 1)) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.maxTokens must be an integer ≥ 1, got ${t}; ` +
        "give the most tokens the KV cache may hold (--max-kv-tokens), or leave it out for no cap",
    );
  }
  return t === undefined ? { freeGpuMemoryFraction: f } : { freeGpuMemoryFraction: f, maxTokens: t };
}
