// KvCacheConfig: how big the runner's KV cache may be, as TensorRT-LLM's KvCacheConfig. Validated
// once, here; `sizeKvCache` turns it into the block count the runner's executor starts with (sized
// once, at the first request, and shared by every request from then on).
import { InvalidArgumentError } from "../errors.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import { KvCacheExhaustedError } from "./errors.ts";

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

/** maxTokens must hold one block of `blockSize` tokens at least. */
export function checkMaxTokens(config: KvCacheConfig, blockSize: number): void {
  const t = config.maxTokens;
  if (t !== undefined && t < blockSize) {
    throw new InvalidKvCacheConfigError(
      `KvCacheConfig.maxTokens ${t} is less than one KV block of ${blockSize} tokens; give at least ${blockSize} (--max-kv-tokens)`,
    );
  }
}

/** What set the KV cache's size. */
export type KvPoolLimit = "free-memory" | "engine" | "max-tokens" | "default";

/** The runner's KV cache as its executor was given it. */
export interface KvPoolInfo {
  numBlocks: number;
  blockSize: number;
  /** numBlocks × blockSize. */
  tokens: number;
  /** Device bytes over all layers, K and V. */
  bytes: number;
  limitedBy: KvPoolLimit;
  /** Blocks that fitted in free device memory when the cache was sized (backends that report it). */
  freeBlocks?: number;
}

export const gib = (bytes: number): string => {
  const g = bytes / 2 ** 30;
  return `${g >= 0.01 || g === 0 ? g.toFixed(2) : g.toPrecision(2)} GiB`;
};

/** The backend and engine facts the KV cache is sized from. */
export interface KvSizingBackend {
  readonly kvBlockSize: number;
  readonly kvBytesPerBlock: number;
  maxKvBlocks?(): number;
  warmUp?(): void;
}

/** The executor's KV cache for `config`, sized once, before the executor starts:
 *
 *   backend reports free memory (CUDA), read after warm-up:
 *     blocks = min(⌊fraction × maxKvBlocks()⌋, engine cap, ⌊maxTokens / blockSize⌋)
 *     engine cap = maxBatchSize × (⌈maxSeqLen / blockSize⌉ + 1): every sequence the engine runs at
 *                  full length, plus a partial block each for forks
 *   otherwise (CPU): min(the executor's default (maxSeqLen × maxBatchSize tokens, at most
 *     `defaultBytes`), ⌊maxTokens / blockSize⌋)
 *
 * Throws InvalidKvCacheConfigError for maxTokens below one block, KvCacheExhaustedError when no
 * block fits in free memory. */
export function sizeKvCache(
  backend: KvSizingBackend,
  engine: { maxBatchSize: number; maxSeqLen: number },
  config: KvCacheConfig,
  defaultBytes: number,
): KvPoolInfo {
  const bs = backend.kvBlockSize;
  const t = config.maxTokens;
  checkMaxTokens(config, bs);
  const caps: [number, KvPoolLimit][] = [];
  let freeBlocks: number | undefined;
  if (backend.maxKvBlocks) {
    backend.warmUp?.();
    freeBlocks = backend.maxKvBlocks();
    const engineCap = engine.maxBatchSize * (Math.ceil(engine.maxSeqLen / bs) + 1);
    caps.push([Math.floor(config.freeGpuMemoryFraction * freeBlocks), "free-memory"], [engineCap, "engine"]);
  } else {
    const byEngine = Math.ceil((engine.maxSeqLen * engine.maxBatchSize) / bs);
    const byBytes = Math.max(1, Math.floor(defaultBytes / backend.kvBytesPerBlock));
    caps.push(byEngine <= byBytes ? [byEngine, "engine"] : [byBytes, "default"]);
  }
  if (t !== undefined) caps.push([Math.floor(t / bs), "max-tokens"]);
  const [numBlocks, limitedBy] = caps.reduce((a, c) => (c[0] < a[0] ? c : a));
  if (numBlocks < 1) {
    const f = config.freeGpuMemoryFraction;
    throw new KvCacheExhaustedError(
      `no KV cache block fits: ${freeBlocks} blocks (${gib((freeBlocks ?? 0) * backend.kvBytesPerBlock)}) fit in ` +
        `free device memory and freeGpuMemoryFraction ${f} leaves ${numBlocks}; free device memory ` +
        "(other processes on the GPU), raise freeGpuMemoryFraction (--kv-cache-free-gpu-mem-fraction) or use a smaller dtype",
    );
  }
  return {
    numBlocks,
    blockSize: bs,
    tokens: numBlocks * bs,
    bytes: numBlocks * backend.kvBytesPerBlock,
    limitedBy,
    ...(freeBlocks !== undefined ? { freeBlocks } : {}),
  };
}
