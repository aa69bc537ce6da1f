// What every route of `kiln serve` reads: the one served model (its executor, tokenizer, chat template
// and limits), the metrics sink, and the server's settings. Built once at start (server/open_server.ts)
// and passed to each route module as `register(app, ctx)`; routes keep no state of their own.
import type { ExecutorRequest, ExecutorStats, IterationStats, ResultEvent } from "../executor/executor.ts";
import type { RequestFinishReason } from "../executor/request.ts";
import type { RequestTiming } from "../executor/request_results.ts";
import type { ChatTemplate } from "../runtime/chat_template.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { InFlight } from "./in_flight.ts";

/** The executor's public surface the server uses: the Executor class, the proxy of one on its own
 * thread (executor/thread/executor_thread.ts, what `kiln serve` runs), or a test's scripted one. */
export interface ServedExecutor {
  /** The request's id, or the executor's refusal (thrown or rejected). */
  enqueue(r: ExecutorRequest): number | Promise<number>;
  results(id: number): AsyncIterable<ResultEvent>;
  cancel(id: number): boolean;
  stats(): ExecutorStats;
  shutdown(o?: { drain?: boolean }): Promise<void>;
  /** Whether the executor's loop is alive (GET /health and Triton's ready answer 200 only then). */
  readonly alive: boolean;
}

export interface ServedModel {
  /** --served-model-name, else the model directory's base name. */
  name: string;
  executor: ServedExecutor;
  /** The engine's tokenizer; null when it has none (text endpoints then answer 400). */
  tokenizer: Tokenizer | null;
  /** The checkpoint's chat template or --chat-template FILE; null when there is none. */
  chatTemplate: ChatTemplate | null;
  /** The engine's context window (prompt + completion tokens). */
  maxModelLen: number;
  vocabSize: number;
  /** The model's end ids (stop_token_ids and ignore_eos edit this list). */
  eosTokenIds: readonly number[];
  /** Unix seconds at which the model was loaded (OpenAI's `created`). */
  created: number;
  backend: "cpu" | "cuda";
  /** Tokens the KV cache holds (printed in the ready line). */
  kvCapacityTokens: number;
}

/** One finished generation request (or one sequence group) as the metrics count it. */
export interface FinishedRequest {
  finishReason: RequestFinishReason | "error";
  promptTokens: number;
  generationTokens: number;
  /** Executor clock (ms): arrival, first scheduled, first token, last token. */
  timing: RequestTiming;
  /** Times (ms, executor clock) at which each streamed token event arrived, in order (for ITL). */
  tokenTimes: readonly number[];
}

/** Where routes report what they did; server/metrics.ts implements it with prom-client. */
export interface ServerMetrics {
  requestFinished(r: FinishedRequest): void;
  /** The executor's per-iteration callback (iteration_tokens_total and the like). */
  iteration(s: IterationStats): void;
  /** Prometheus text exposition of every metric (GET /metrics). */
  render(): Promise<{ contentType: string; body: string }>;
}

export interface ServerSettings {
  /** Compared in constant time with the bearer token; null: no authentication. */
  apiKey: string | null;
  /** Longest prompt in tokens accepted (default: the model's context window). */
  maxPromptTokens: number;
  /** Running + waiting generation requests at most; more get 429 (default: unlimited). */
  maxConcurrent: number;
  /** A request is cancelled this long after arrival (ms; Infinity: never). */
  requestTimeoutMs: number;
  /** Body size limit in bytes (413 beyond it). */
  bodyLimit: number;
}

export interface ServerContext {
  model: ServedModel;
  metrics: ServerMetrics;
  settings: ServerSettings;
  /** kiln's version (GET /version, Triton's model_version is "1"). */
  version: string;
  /** Set when shutdown began: new generation requests get 503. */
  readonly shuttingDown: boolean;
  /** Admission (429/503) and the live generation work shutdown waits for (server/in_flight.ts). */
  inFlight: InFlight;
}
