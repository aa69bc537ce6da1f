// The paged KV pool: allocated once, then every request runs inside it (TensorRT-LLM's behaviour).
// Reallocating per request would cost the CUDA backend its captured graphs, which hold the pool's
// addresses, so a request only checks that it fits.
//
//   backend reports free memory (CUDA):
//     blocks = min(⌊fraction × maxKvBlocks()⌋, engine cap, ⌊maxTokens / blockSize⌋)
//     engine cap = maxBatchSize × (⌈maxSeqLen / blockSize⌉ + 1): every sequence the engine can run,
//                  at full length, plus one partial block each for forks — the most it can ever use
//   otherwise (CPU): the first request's blocks, grown (reallocated) when a request needs more,
//     never shrunk, at most ⌊maxTokens / blockSize⌋
//
// Free memory is read after warm-up: `backend.warmUp()` where a backend has one. The CUDA backend
// has none: its activation arena, step metadata, attention partials and sampling buffers are
// allocated at load, so free memory after load is the post-warm-up figure; what it creates on first
// use (cuBLASLt plans with ≤ 8 MiB of workspace each, CUDA graphs) lives in the 1 GiB that
// `maxKvBlocks()` keeps back.

import type { ExecutionBackend } from "../backends/backend.ts";
import { KvCacheExhaustedError } from "./errors.ts";
import { InvalidKvCacheConfigError, type KvCacheConfig } from "./kv_cache_config.ts";

/** What set the pool's size. */
export type KvPoolLimit = "free-memory" | "engine" | "max-tokens" | "request";

export interface KvPoolInfo {
  numBlocks: number;
  blockSize: number;
  /** numBlocks × blockSize. */
  tokens: number;
  /** Device bytes over all layers, K and V. */
  bytes: number;
  limitedBy: KvPoolLimit;
  /** Blocks that fitted in free device memory when the pool was sized (backends that report it). */
  freeBlocks?: number;
}

/** The engine's build limits that bound what a pool can ever be asked for. */
export interface EngineLimits {
  maxBatchSize: number;
  maxSeqLen: number;
}

/** KV blocks for `sequences` sequences of up to `tokens` tokens each: whole blocks plus one for the
 * partial block a fork copies. */
export function kvBlocksNeeded(sequences: number, tokens: number, blockSize: number): number {
  return sequences * (Math.ceil(tokens / blockSize) + 1);
}

export const gib = (bytes: number): string => {
  const g = bytes / 2 ** 30;
  return `${g >= 0.01 || g === 0 ? g.toFixed(2) : g.toPrecision(2)} GiB`;
};

export class KvCachePool {
  private current: KvPoolInfo | null = null;
  /** Sized from free memory once, never grown (the backend reports maxKvBlocks). */
  private readonly fixed: boolean;
  private readonly engineCap: number;
  private readonly tokenCap: number;

  constructor(
    private readonly backend: ExecutionBackend,
    private readonly engine: EngineLimits,
    readonly config: KvCacheConfig,
  ) {
    const bs = backend.kvBlockSize;
    const t = config.maxTokens;
    if (t !== undefined && t < bs) {
      throw new InvalidKvCacheConfigError(
        `KvCacheConfig.maxTokens ${t} is less than one KV block of ${bs} tokens; give at least ${bs} (--max-kv-tokens)`,
      );
    }
    this.fixed = backend.maxKvBlocks !== undefined;
    this.engineCap = kvBlocksNeeded(engine.maxBatchSize, engine.maxSeqLen, bs);
    this.tokenCap = t === undefined ? Number.POSITIVE_INFINITY : Math.floor(t / bs);
  }

  /** The pool, or null before the first request (or after someone else reallocated the backend's). */
  get info(): KvPoolInfo | null {
    // Another GenerationSession (or a test) over the same backend may have reallocated its pool.
    if (this.current && this.backend.numKvBlocks !== this.current.numBlocks) this.current = null;
    return this.current;
  }

  /** Allocates the pool now rather than at the first request; a pool already there is kept. Without
   * free-memory figures (CPU) it holds one sequence of the engine's maxSeqLen until a request grows it. */
  allocate(): KvPoolInfo {
    const bs = this.backend.kvBlockSize;
    return this.info ?? this.size(kvBlocksNeeded(1, this.engine.maxSeqLen, bs));
  }

  /** Makes sure the pool holds `need` blocks (allocating it at the first request; growing it where
   * the backend cannot report free memory) and returns its block count. `what` describes the request
   * for the error when it cannot fit. */
  reserve(need: number, what: () => string): number {
    let pool = this.info;
    if (!this.fixed && need > this.tokenCap) throw this.exhausted(need, what(), this.tokenCap, "max-tokens");
    if (!pool || (!this.fixed && need > pool.numBlocks)) pool = this.size(need);
    if (need > pool.numBlocks) throw this.exhausted(need, what(), pool.numBlocks, pool.limitedBy);
    return pool.numBlocks;
  }

  private size(need: number): KvPoolInfo {
    const b = this.backend;
    const f = this.config.freeGpuMemoryFraction;
    const caps: [number, KvPoolLimit][] = [];
    let freeBlocks: number | undefined;
    if (b.maxKvBlocks) {
      b.warmUp?.();
      freeBlocks = b.maxKvBlocks();
      caps.push([Math.floor(f * freeBlocks), "free-memory"], [this.engineCap, "engine"]);
    } else caps.push([Math.max(need, this.info?.numBlocks ?? 0), "request"]);
    caps.push([this.tokenCap, "max-tokens"]);
    const [numBlocks, limitedBy] = caps.reduce((a, c) => (c[0] < a[0] ? c : a));
    if (numBlocks < 1) {
      throw new KvCacheExhaustedError(
        `no KV cache block fits: ${freeBlocks} blocks (${gib((freeBlocks ?? 0) * b.kvBytesPerBlock)}) fit in ` +
          `free device memory and freeGpuMemoryFraction ${f} leaves ${numBlocks}; free device memory ` +
          "(other processes on the GPU), raise freeGpuMemoryFraction (--kv-cache-free-gpu-mem-fraction) or use a smaller dtype",
      );
    }
    b.allocateKvCache(numBlocks);
    this.current = {
      numBlocks,
      blockSize: b.kvBlockSize,
      tokens: numBlocks * b.kvBlockSize,
      bytes: numBlocks * b.kvBytesPerBlock,
      limitedBy,
      ...(freeBlocks !== undefined ? { freeBlocks } : {}),
    };
    return this.current;
  }

  private exhausted(need: number, what: string, pool: number, limit: KvPoolLimit): KvCacheExhaustedError {
    const { freeGpuMemoryFraction: f, maxTokens } = this.config;
    const { maxBatchSize, maxSeqLen } = this.engine;
    const bytes = (n: number) => gib(n * this.backend.kvBytesPerBlock);
    const why: Record<KvPoolLimit, [string, string]> = {
      "free-memory": [
        `freeGpuMemoryFraction ${f} of the ${this.current?.freeBlocks} blocks that fit in free device memory`,
        `, or raise freeGpuMemoryFraction (--kv-cache-free-gpu-mem-fraction, now ${f})`,
      ],
      engine: [
        `the engine runs at most maxBatchSize ${maxBatchSize} sequences of maxSeqLen ${maxSeqLen} tokens`,
        `: at most ${maxBatchSize} sequences (prompts × beams) at once, or rebuild with a larger --max-batch-size`,
      ],
      "max-tokens": [
        `capped by maxTokens ${maxTokens}`,
        `, or raise maxTokens (--max-kv-tokens, now ${maxTokens})`,
      ],
      request: ["sized for an earlier request", ""],
    };
    const [reason, fix] = why[limit];
    return new KvCacheExhaustedError(
      `${what} need ${need} KV blocks (${bytes(need)}) but the KV cache pool holds at most ${pool} blocks ` +
        `(${bytes(pool)}, ${pool * this.backend.kvBlockSize} tokens; ${reason}); ` +
        `lower the batch size, the beam width or maxNewTokens${fix}`,
    );
  }
}
