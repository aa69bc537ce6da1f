// How many blocks the executor's KV cache gets: decided once, in its constructor, after the backend's
// warm-up step at maxNumTokens (issue 17: weights loaded, a warm-up step to reach the activation and
// GEMM-plan peak, then freeGpuMemoryFraction of what is free, less the graphs' needs — the backend's
// freeMemoryBytes already leaves those out, cuda/graph_reserve.ts):
//
//   maxTokens given:               ⌊maxTokens / blockSize⌋, capped at what fits in free memory at all
//   the backend reports free bytes: ⌊fraction × free / kvBytesPerBlock⌋
//   otherwise (the CPU):           the engine's maxSeqLen × maxBatchSize, capped at DEFAULT_KV_BYTES
//                                  and at backend.maxKvBlocks() where there is one
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
}

/** Blocks of the KV cache (see above). Throws InvalidArgumentError for a maxTokens below one block or
 * a fraction outside (0, 1], and KvCacheNoRoomError when free memory holds no block. */
export function kvCacheBlocks(
  backend: ExecutionBackend,
  config: EngineConfig,
  o: KvCacheSizeOptions,
): number {
  const bs = backend.kvBlockSize;
  const fraction = o.freeGpuMemoryFraction ?? DEFAULT_FREE_GPU_MEMORY_FRACTION;
  if (!(typeof fraction === "number" && fraction > 0 && fraction <= 1))
    throw new InvalidArgumentError(
      `freeGpuMemoryFraction ${fraction} is not in (0, 1]; give the share of free GPU memory the KV cache ` +
        "may take, e.g. 0.9 (--kv-cache-free-gpu-mem-fraction)",
    );
  if (o.maxTokens !== undefined && (!Number.isSafeInteger(o.maxTokens) || o.maxTokens < bs))
    throw new InvalidArgumentError(
      `maxTokens ${o.maxTokens} is less than one KV block (${bs} tokens); give at least ${bs}`,
    );
  const free = backend.freeMemoryBytes?.();
  if (free !== undefined) {
    const perBlock = backend.kvBytesPerBlock;
    const share = o.maxTokens !== undefined ? 1 : fraction;
    const fit = Math.floor((share * free) / perBlock);
    if (fit < 1) throw new KvCacheNoRoomError(free, share, perBlock);
    return o.maxTokens !== undefined ? Math.min(Math.floor(o.maxTokens / bs), fit) : fit;
  }
  let blocks: number;
  if (o.maxTokens !== undefined) blocks = Math.floor(o.maxTokens / bs);
  else {
    const byEngine = Math.ceil((config.maxSeqLen * config.build.maxBatchSize) / bs);
    blocks = Math.max(1, Math.min(byEngine, Math.floor(DEFAULT_KV_BYTES / backend.kvBytesPerBlock)));
  }
  return backend.maxKvBlocks ? Math.min(blocks, backend.maxKvBlocks()) : blocks;
}
