// How many blocks the executor's KV cache gets, and what decided it: the one sizing rule (TensorRT-LLM's),
// applied once, in the Executor's constructor, after the backend's warm-up step at maxNumTokens (weights
// loaded, GEMM plans and activations at their peak). A backend that reports free memory (CUDA) already
// leaves out what its decode graphs will take (freeMemoryBytes, cuda/graph_reserve.ts):
//
//   reports free bytes:                ⌊fraction × free / kvBytesPerBlock⌋ ("free-memory"), and at most
//                                      ⌊maxTokens / blockSize⌋ ("max-tokens"): when both are given the
//                                      smaller wins, as in TensorRT-LLM's KvCacheConfig
//   reports free bytes, capAtEngine:   either, and at most maxBatchSize × (⌈maxSeqLen / blockSize⌉ + 1),
//                                      every sequence the engine runs at full length plus a block each
//                                      for forks                                      "engine"
//   no reports (the CPU):              ⌊maxTokens / blockSize⌋ ("max-tokens"), else the engine's
//                                      ⌈maxSeqLen × maxBatchSize / blockSize⌉ ("engine"), at most
//                                      DEFAULT_KV_BYTES ("default")
//
// The engine cap is off by default: an executor that owns its device (kiln serve) gives the cache the
// whole fraction, as TensorRT-LLM and vLLM do, because blocks beyond what the running sequences need
// keep prefixes cached. A ModelRunner (runtime/generation_session.ts) turns it on: a library runner
// shares the process and the GPU with its caller (often a second runner), so it takes only what its
// engine can use. On a tie the first of max-tokens, engine, free-memory is named.
import type { ExecutionBackend } from "../backends/backend.ts";
import type { EngineConfig } from "../engine/format.ts";
import { InvalidArgumentError } from "../errors.ts";
import { KvCacheNoRoomError } from "./errors.ts";

/** The KV cache's default cap on a backend without free-memory reports, when no maxTokens is given. */
export const DEFAULT_KV_BYTES = 256 * 2 ** 20;
/** Share of the free device memory the KV cache takes by default (TensorRT-LLM's default too). */
export const DEFAULT_FREE_GPU_MEMORY_FRACTION = 0.9;

export interface KvCacheSizeOptions {
  maxTokens?: number;
  freeGpuMemoryFraction?: number;
  capAtEngine?: boolean;
}

/** What set the KV cache's size (see above). */
export type KvCacheLimit = "free-memory" | "max-tokens" | "engine" | "default";

/** The executor's KV cache as sized at start. */
export interface KvCacheSizing {
  numBlocks: number;
  limitedBy: KvCacheLimit;
  /** Blocks that fitted in all of the free device memory reported after warm-up (CUDA only). */
  freeBlocks?: number;
}

/** The KV cache's size (see above). Throws InvalidArgumentError for a maxTokens below one block or a
 * fraction outside (0, 1], and KvCacheNoRoomError when free memory holds no block. */
export function kvCacheBlocks(
  backend: ExecutionBackend,
  config: EngineConfig,
  o: KvCacheSizeOptions,
): KvCacheSizing {
  const bs = backend.kvBlockSize;
  const fraction = o.freeGpuMemoryFraction ?? DEFAULT_FREE_GPU_MEMORY_FRACTION;
  if (!(typeof fraction === "number" && fraction > 0 && fraction <= 1))
    throw new InvalidArgumentError(
      `freeGpuMemoryFraction ${fraction} is not in (0, 1]; give the share of free GPU memory the KV cache ` +
        "may take, e.g. 0.9 (--kv-cache-free-gpu-mem-fraction)",
    );
  const t = o.maxTokens;
  if (t !== undefined && (!Number.isSafeInteger(t) || t < bs))
    throw new InvalidArgumentError(
      `maxTokens ${t} is less than one KV block (${bs} tokens); give at least ${bs} (--max-kv-tokens)`,
    );
  const { maxSeqLen } = config;
  const { maxBatchSize } = config.build;
  const caps: [number, KvCacheLimit][] = [];
  if (t !== undefined) caps.push([Math.floor(t / bs), "max-tokens"]);
  const free = backend.freeMemoryBytes?.();
  if (free !== undefined) {
    const perBlock = backend.kvBytesPerBlock;
    const fit = Math.floor((fraction * free) / perBlock);
    if (fit < 1) throw new KvCacheNoRoomError(free, fraction, perBlock);
    if (o.capAtEngine) caps.push([maxBatchSize * (Math.ceil(maxSeqLen / bs) + 1), "engine"]);
    caps.push([fit, "free-memory"]);
    return { ...smallest(caps), freeBlocks: Math.floor(free / perBlock) };
  }
  if (t === undefined) {
    const byEngine = Math.ceil((maxSeqLen * maxBatchSize) / bs);
    const byBytes = Math.max(1, Math.floor(DEFAULT_KV_BYTES / backend.kvBytesPerBlock));
    caps.push(byEngine <= byBytes ? [byEngine, "engine"] : [byBytes, "default"]);
  }
  return smallest(caps);
}

/** The smallest cap; the first one on a tie. */
function smallest(caps: [number, KvCacheLimit][]): KvCacheSizing {
  const [numBlocks, limitedBy] = caps.reduce((a, c) => (c[0] < a[0] ? c : a));
  return { numBlocks, limitedBy };
}
