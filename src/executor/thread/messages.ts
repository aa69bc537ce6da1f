// What the thread that serves requests (executor_thread.ts) and the executor's own thread
// (executor_worker.ts) say to each other over the worker's port. Requests and cancels go one message
// each, at once; everything coming back is gathered and posted once per turn of the executor thread's
// event loop (a Batch: an iteration's events for every request in one structured clone), with the
// executor's stats of that moment.
//
//   serving thread ── enqueue / cancel / shutdown ──▶ executor thread
//   serving thread ◀── ready | openFailed, then Batch … , closed ── executor thread
import type { EngineConfig } from "../../engine/format.ts";
import type { ExecutorRequest, ExecutorStats } from "../executor.ts";
import type { IterationStats } from "../iteration_stats.ts";
import type { KvCacheSizing } from "../kv_cache_size.ts";
import type { ResultEvent } from "../request_results.ts";
import type { ErrorRecord } from "./remote_error.ts";

export type ToExecutor =
  /** `seq` pairs the reply (Batch.enqueued or Batch.refused) with the caller's promise. */
  | { t: "enqueue"; seq: number; request: ExecutorRequest }
  | { t: "cancel"; id: number }
  | { t: "shutdown"; drain: boolean };

/** What the serving thread knows of the opened executor from its start. */
export interface ExecutorThreadInfo {
  config: EngineConfig;
  eosTokenIds: number[];
  /** The engine directory the session opened (its tokenizer is read there); null for none. */
  engineDir: string | null;
  /** The KV cache's element type on the device ("fp8" when it is stored in FP8). */
  kvCacheDtype: string;
  kvSizing: KvCacheSizing;
  graphWarmUp: { graphs: number; ms: number };
}

export interface Batch {
  t: "batch";
  /** [seq, id] of accepted requests, in the order they were enqueued. */
  enqueued: [number, number][];
  /** [seq, error] of refused requests. */
  refused: [number, ErrorRecord][];
  /** Result events in the order the executor made them (each request's in its own order). */
  events: ResultEvent[];
  /** [id, error] of requests that ended with an error (after their events of this batch). */
  failed: [number, ErrorRecord][];
  iterations: IterationStats[];
  stats: ExecutorStats;
  /** Whether the executor's loop still runs. */
  alive: boolean;
}

export type FromExecutor =
  | { t: "ready"; info: ExecutorThreadInfo; stats: ExecutorStats }
  | { t: "openFailed"; error: ErrorRecord }
  | Batch
  /** The executor stopped and its session is disposed (the reply to shutdown). */
  | { t: "closed" };
