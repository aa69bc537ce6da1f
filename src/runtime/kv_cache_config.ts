// KvCacheConfig: how big the runner's KV cache may be, as TensorRT-LLM's KvCacheConfig. Validated
// once, here, when the runner is made; the runner's executor sizes its cache from it when it starts
// (executor/kv_cache_size.ts has the rule) and KvPoolInfo reports what it decided.
import { KV_CACHE_DTYPES, type KvCacheDtype } from "../backends/kv_cache_dtype.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { KvCacheLimit } from "../executor/kv_cache_size.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";

export interface KvCacheConfig {
  /** Share of the device memory free after load and the warm-up step (less the CUDA graphs' reserve)
   * the pool may take, in (0, 1]. Only backends that report free memory (CUDA) use it. */
  freeGpuMemoryFraction: number;
  /** Tokens the pool holds (rounded down to whole blocks), capped at what fits in free memory; wins
   * over freeGpuMemoryFraction. undefined = no cap. */
  maxTokens?: number;
  /** How the pool stores K and V (backends/kv_cache_dtype.ts): "auto" (the activations' dtype) or
   * "fp8" (E4M3 with a scale per token and kv head; CPU and CUDA). Set when the backend opens.
   * undefined = "auto". */
  dtype?: KvCacheDtype;
}

export type { KvCacheDtype };
export { KV_CACHE_DTYPES };

export const KV_CACHE_CONFIG_KEYS: KeySet<KvCacheConfig> = {
  freeGpuMemoryFraction: true,
  maxTokens: true,
  dtype: true,
};

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
  const d = user.dtype;
  if (d !== undefined && !KV_CACHE_DTYPES.includes(d)) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.dtype must be one of ${KV_CACHE_DTYPES.join(", ")}, got ${JSON.stringify(d)}; ` +
        "give fp8 for an FP8 KV cache (--kv-cache-dtype fp8) or leave it out",
    );
  }
  return {
    freeGpuMemoryFraction: f,
    ...(t !== undefined ? { maxTokens: t } : {}),
    ...(d !== undefined && d !== "auto" ? { dtype: d } : {}),
  };
}

/** The session's backend must store its KV cache as `config` asks: the dtype is chosen when the
 * backend opens (Session.open's kvCacheDtype), so a config cannot change it afterwards. */
export function checkKvCacheDtypeOf(config: KvCacheConfig, backendDtype: KvCacheDtype | undefined): void {
  const want = config.dtype ?? "auto";
  const have = backendDtype ?? "auto";
  if (want !== have) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.dtype is ${want} but the session's backend was opened with KV cache dtype ${have}; ` +
        `open it with Session.open(dir, { kvCacheDtype: "${want}" }) or give dtype ${have}`,
    );
  }
}

/** maxTokens must hold one block of `blockSize` tokens at least. */
export function checkMaxTokens(config: KvCacheConfig, blockSize: number): void {
  const t = config.maxTokens;
  if (t !== undefined && t < blockSize) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.maxTokens ${t} is less than one KV block of ${blockSize} tokens; give at least ${blockSize} (--max-kv-tokens)`,
    );
  }
}

/** What set the KV cache's size (executor/kv_cache_size.ts). */
export type KvPoolLimit = KvCacheLimit;

/** The runner's KV cache as its executor sized it (executor.kvSizing, with tokens and bytes). */
export interface KvPoolInfo {
  numBlocks: number;
  blockSize: number;
  /** numBlocks × blockSize. */
  tokens: number;
  /** Device bytes over all layers, K and V (an FP8 cache's scales included). */
  bytes: number;
  /** How K and V are stored (backends/kv_cache_dtype.ts). */
  dtype: KvCacheDtype;
  limitedBy: KvPoolLimit;
  /** Blocks that fitted in free device memory when the cache was sized (backends that report it). */
  freeBlocks?: number;
}

export const gib = (bytes: number): string => {
  const g = bytes / 2 ** 30;
  return `${g >= 0.01 || g === 0 ? g.toFixed(2) : g.toPrecision(2)} GiB`;
};
