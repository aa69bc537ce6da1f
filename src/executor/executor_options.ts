// What a caller may set when it creates an Executor, and the set of those keys: the constructor rejects
// any other (with a "did you mean"), and open_executor.ts routes its own options' keys by it.
import type { KeySet } from "../sampling/option_keys.ts";
import type { ResultSink } from "./event_queue.ts";
import type { IterationStats } from "./iteration_stats.ts";
import type { CapacityPolicy } from "./scheduler.ts";

export interface ExecutorOptions {
  /** Most tokens the KV cache holds (rounded down to whole blocks); with freeGpuMemoryFraction the
   * smaller of the two wins (TensorRT-LLM's rule). Default: kv_cache_size.ts. */
  maxTokens?: number;
  /** Share of the device memory free after the warm-up step (less the graphs' reserve) that the KV
   * cache takes, in (0, 1] (default 0.9); backends without free-memory reports ignore it. */
  freeGpuMemoryFraction?: number;
  /** Caps a free-memory-sized KV cache at what the engine can use at once (maxBatchSize sequences of
   * maxSeqLen, a block each for forks), leaving the rest of the GPU to the process's other users
   * (default false: every block of the fraction, for prefix caching). ModelRunner sets it. */
  capKvAtEngine?: boolean;
  /** Tokens per iteration, decode and prefill together (default: the engine's maxNumTokens). */
  maxNumTokens?: number;
  /** Running sequences at most, a request counting its beams or samples (default: the engine's
   * maxBatchSize); at most the backend's maxLogitRows (every one may sample in the same step). */
  maxNumSeqs?: number;
  /** guaranteedNoEvict (default) or maxUtilization (preempts and recomputes). */
  policy?: CapacityPolicy;
  /** Waiting requests at most; enqueue beyond it throws QueueFullError (default: unlimited). */
  maxQueueSize?: number;
  enablePrefixCaching?: boolean;
  /** Capture the backend's decode graphs for every batch size up to maxNumSeqs when the executor starts
   * (ExecutionBackend.prepareDecodeGraphs), so no request waits on a capture mid-run (default true:
   * an executor serves many batch sizes; ModelRunner's sets false, its caller waits on its own). */
  captureGraphs?: boolean;
  /** The clock of timeouts and timings, in ms (default Date.now). */
  clock?: () => number;
  /** Called after every iteration that ran a step (TensorRT-LLM's per-iteration stats). */
  onIteration?: (s: IterationStats) => void;
  /** Where each request's result events go instead of results() (an executor on its own thread posts
   * them to the thread that serves the request: thread/executor_worker.ts). */
  resultSink?: (requestId: number) => ResultSink;
}

export const EXECUTOR_OPTION_KEYS: KeySet<ExecutorOptions> = {
  maxTokens: true,
  freeGpuMemoryFraction: true,
  capKvAtEngine: true,
  maxNumTokens: true,
  maxNumSeqs: true,
  policy: true,
  maxQueueSize: true,
  enablePrefixCaching: true,
  captureGraphs: true,
  clock: true,
  onIteration: true,
  resultSink: true,
};
