// The executor (TensorRT-LLM's Executor API): one loop owns a session's backend, one KV cache
// manager sized at start, the scheduler and every live request. Callers only enqueue, read results,
// cancel, ask for stats and shut down. One iteration:
//
//   schedule → build the step → forward + sample every logits row → scheduler.update → emit results
//
// The loop runs while a request is live and otherwise waits on a promise that enqueue resolves (no
// polling, no timer: an idle executor keeps no process alive). It yields to the event loop between
// iterations, so an enqueue or cancel made meanwhile takes effect in the next one.
import type { ExecutionBackend } from "../backends/backend.ts";
import type { EngineConfig } from "../engine/format.ts";
import type { GenerationDefaults } from "../sampling/generation_config.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import {
  ExecutorShutDownError,
  RequestCallbackError,
  RequestLogitsNotFiniteError,
  UnknownRequestError,
} from "./errors.ts";
import { type DecodingState, type ExecutorRequest, resolveRequest } from "./executor_request.ts";
import { KvCacheManager, type KvCacheStats } from "./kv_cache_manager.ts";
import { kvCacheBlocks } from "./kv_cache_size.ts";
import type { Request, RequestFinishReason } from "./request.ts";
import { ResultChannel, type ResultEvent } from "./request_results.ts";
import { forwardAndSample } from "./sample_rows.ts";
import { type CapacityPolicy, Scheduler } from "./scheduler.ts";
import { stepFromSchedule } from "./step_from_schedule.ts";

export type { ExecutorRequest, ResultEvent };

/** What the executor takes over: an opened engine (runtime/session.ts's Session is one). */
export interface ExecutorSession {
  readonly backend: ExecutionBackend;
  readonly config: EngineConfig;
  readonly tokenizer: Tokenizer | null;
  readonly generationDefaults: GenerationDefaults;
  readonly eosTokenIds: number[];
  dispose(): void;
}

export interface ExecutorOptions {
  /** Tokens the KV cache holds (rounded down to whole blocks), capped at what fits in free device
   * memory; wins over freeGpuMemoryFraction. Default: kv_cache_size.ts. */
  maxTokens?: number;
  /** Share of the device memory free after the warm-up step (less the graphs' reserve) that the KV
   * cache takes, in (0, 1] (default 0.9); backends without free-memory reports ignore it. */
  freeGpuMemoryFraction?: number;
  /** Tokens per iteration, decode and prefill together (default: the engine's maxNumTokens). */
  maxNumTokens?: number;
  /** Running requests at most (default: the engine's maxBatchSize). */
  maxNumSeqs?: number;
  /** guaranteedNoEvict (default) or maxUtilization (preempts and recomputes). */
  policy?: CapacityPolicy;
  /** Waiting requests at most; enqueue beyond it throws QueueFullError (default: unlimited). */
  maxQueueSize?: number;
  enablePrefixCaching?: boolean;
  /** The clock of timeouts and timings, in ms (default Date.now). */
  clock?: () => number;
  /** Called after every iteration that ran a step (TensorRT-LLM's per-iteration stats). */
  onIteration?: (s: IterationStats) => void;
}

export interface IterationStats {
  iteration: number;
  /** Host and device time of the iteration, schedule to results, on the executor's clock. */
  latencyMs: number;
  numScheduled: number;
  /** Of them, requests running prompt (or recompute) chunks and requests decoding one token. */
  numContext: number;
  numGeneration: number;
  numContextTokens: number;
  numQueued: number;
  /** Requests preempted in this iteration (they wait to recompute). */
  numPaused: number;
  kv: KvCacheStats;
}

export interface ExecutorStats {
  numQueued: number;
  numRunning: number;
  numIterations: number;
  /** Prompt and recomputed tokens run through the model, and tokens generated. */
  numContextTokens: number;
  numGeneratedTokens: number;
  numPreemptions: number;
  kv: KvCacheStats;
}

export const EXECUTOR_OPTION_KEYS: KeySet<ExecutorOptions> = {
  maxTokens: true,
  freeGpuMemoryFraction: true,
  maxNumTokens: true,
  maxNumSeqs: true,
  policy: true,
  maxQueueSize: true,
  enablePrefixCaching: true,
  clock: true,
  onIteration: true,
};

export { DEFAULT_KV_BYTES } from "./kv_cache_size.ts";

interface Live {
  request: Request;
  state: DecodingState;
  channel: ResultChannel;
}

export class Executor {
  readonly kv: KvCacheManager;
  private readonly scheduler: Scheduler;
  private readonly backend: ExecutionBackend;
  private readonly clock: () => number;
  private readonly onIteration: ((s: IterationStats) => void) | undefined;
  private readonly live = new Map<number, Live>();
  /** Channels not yet handed out by results(), finished or not. */
  private readonly channels = new Map<number, ResultChannel>();
  private nextId = 1;
  private iterations = 0;
  private contextTokens = 0;
  private generatedTokens = 0;
  private wake: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private readonly loop: Promise<void>;

  /** Takes ownership of `session`: shutdown() disposes it. */
  constructor(
    readonly session: ExecutorSession,
    options: ExecutorOptions = {},
  ) {
    rejectUnknownKeys("ExecutorOptions", options, EXECUTOR_OPTION_KEYS);
    const backend = session.backend;
    const { config } = session;
    const bs = backend.kvBlockSize;
    const maxNumTokens =
      options.maxNumTokens ?? Math.min(config.build.maxNumTokens, backend.maxStepTokens ?? Infinity);
    backend.warmUp?.(maxNumTokens);
    const blocks = kvCacheBlocks(backend, config, options);
    const scheduler = new Scheduler(new KvCacheManager(blocks, bs, options.enablePrefixCaching ?? true), {
      maxNumTokens,
      maxNumSeqs: options.maxNumSeqs ?? Math.min(config.build.maxBatchSize, maxNumTokens),
      policy: options.policy,
      maxQueueSize: options.maxQueueSize,
    });
    backend.allocateKvCache(blocks);
    this.backend = backend;
    this.scheduler = scheduler;
    this.kv = scheduler.kv;
    this.clock = options.clock ?? Date.now;
    this.onIteration = options.onIteration;
    this.loop = this.run();
  }

  /** Queues a request; returns its id. Its result events are kept until results(id) takes them.
   * Throws at once (nothing queued) on a bad request, a full
   * queue (QueueFullError), one that can never fit the KV cache, or after shutdown. */
  enqueue(r: ExecutorRequest): number {
    if (this.closing) throw new ExecutorShutDownError();
    const { promptIds, state } = resolveRequest(r, this.session);
    const id = this.nextId++;
    const now = this.clock();
    const maxNewTokens = Math.min(state.cfg.maxNewTokens, this.session.config.maxSeqLen - promptIds.length);
    const request = this.scheduler.add(
      { id, promptIds, maxNewTokens, priority: r.priority, allottedTimeMs: r.allottedTimeMs },
      now,
    );
    const timing = { arrival: now, firstScheduled: null, firstToken: null, last: null };
    const channel = new ResultChannel(
      id,
      r.streaming ?? false,
      timing,
      r.clientId,
      state.cfg.returnGenerationLogits,
    );
    this.live.set(id, { request, state, channel });
    this.channels.set(id, channel);
    this.wakeLoop();
    return id;
  }

  /** The request's result events; call once per request (before or after it finished). */
  results(id: number): AsyncIterable<ResultEvent> {
    const ch = this.channels.get(id);
    if (!ch)
      throw new UnknownRequestError(id, "has no results to take (unknown id, or results() was called)");
    this.channels.delete(id);
    return ch.take();
  }

  /** Cancels a queued or running request: its blocks are freed now and its results end with
   * "cancelled". False if it is not live (unknown or already finished). */
  cancel(id: number): boolean {
    if (!this.live.has(id)) return false;
    this.scheduler.cancel(id);
    this.close(id, "cancelled");
    return true;
  }

  /** Refuses new requests; with drain (default) lets the live ones finish, else cancels them. Resolves
   * once the loop stopped and the session is disposed. */
  shutdown({ drain = true }: { drain?: boolean } = {}): Promise<void> {
    if (!this.closing) {
      this.closing = this.loop;
      this.wakeLoop();
    }
    if (!drain) for (const id of [...this.live.keys()]) this.cancel(id);
    return this.closing;
  }

  stats(): ExecutorStats {
    const s = this.scheduler.stats();
    return {
      numQueued: s.numWaiting,
      numRunning: s.numRunning,
      numIterations: this.iterations,
      numContextTokens: this.contextTokens,
      numGeneratedTokens: this.generatedTokens,
      numPreemptions: s.numPreemptions,
      kv: this.kv.stats(),
    };
  }

  private async run(): Promise<void> {
    for (;;) {
      if (!this.scheduler.hasWork) {
        if (this.closing) break;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      try {
        this.iterate();
      } catch (e) {
        // The step failed (a backend error): every live request ends with it; the loop goes on.
        for (const [id, l] of [...this.live]) {
          this.scheduler.finish(id, "cancelled");
          this.live.delete(id);
          l.channel.fail(e);
        }
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.session.dispose();
  }

  private iterate(): void {
    const now = this.clock();
    const out = this.scheduler.schedule(now);
    for (const f of out.finished) if (this.live.has(f.requestId)) this.close(f.requestId, f.reason);
    if (out.chunks.length === 0) return;
    this.iterations++;
    if (out.blockCopies.length > 0) {
      this.backend.copyKvBlocks(
        out.blockCopies.map((c) => c.src),
        out.blockCopies.map((c) => c.dst),
      );
    }
    const { step, sampled } = stepFromSchedule(out, this.kv.tokensPerBlock);
    let numContext = 0;
    let contextTokens = 0;
    for (const c of out.chunks) {
      const l = this.live.get(c.requestId) as Live;
      l.channel.timing.firstScheduled ??= now;
      // A decode is the one token after the prompt's end; anything else is prompt or recompute.
      const decode = c.tokenIds.length === 1 && c.start >= l.request.promptLength;
      if (!decode) {
        numContext++;
        contextTokens += c.tokenIds.length;
      }
    }
    this.contextTokens += contextTokens;
    const rows = sampled.map((id) => {
      const l = this.live.get(id) as Live;
      return { requestId: id, state: l.state, tokens: l.request.tokens };
    });
    let tokens: Int32Array = new Int32Array(0);
    let logProbs: Float32Array = new Float32Array(0);
    let rawLogits: (Float32Array | null)[] = [];
    let failed: (RequestCallbackError | null)[] = [];
    if (rows.length > 0)
      ({ tokens, logProbs, rawLogits, failed } = forwardAndSample(this.backend, step, rows));
    else this.backend.forward(step);
    this.scheduler.update(out, new Map(sampled.map((id, i) => [id, tokens[i]])));
    const t = this.clock();
    sampled.forEach((id, i) => {
      const l = this.live.get(id) as Live;
      /** Ends this request alone with `error`; its blocks are freed now. */
      const fail = (error: unknown) => {
        this.scheduler.finish(id, "cancelled");
        this.live.delete(id);
        l.channel.fail(error);
      };
      if (failed[i]) return fail(failed[i]);
      if (Number.isNaN(logProbs[i]) || logProbs[i] === Number.POSITIVE_INFINITY)
        return fail(new RequestLogitsNotFiniteError(id, l.request.numOutputTokens - 1));
      let accepted: ReturnType<DecodingState["accept"]>;
      try {
        accepted = l.state.accept(id, l.request.tokens, tokens[i]);
      } catch (e) {
        if (e instanceof RequestCallbackError) return fail(e);
        throw e;
      }
      const { stop, text } = accepted;
      this.generatedTokens++;
      l.channel.timing.firstToken ??= t;
      l.channel.timing.last = t;
      const reason = stop?.reason ?? l.request.finishReason;
      if (reason) {
        this.scheduler.finish(id, reason); // no-op when update finished it at maxNewTokens
        this.live.delete(id);
      }
      const raw = rawLogits[i];
      l.channel.push([tokens[i]], [logProbs[i]], text, reason, raw ? [raw] : undefined);
    });
    this.onIteration?.({
      iteration: this.iterations,
      latencyMs: t - now,
      numScheduled: out.chunks.length,
      numContext,
      numGeneration: out.chunks.length - numContext,
      numContextTokens: contextTokens,
      numQueued: this.scheduler.numWaiting,
      numPaused: out.preempted.length,
      kv: this.kv.stats(),
    });
  }

  /** Ends a live request that left the scheduler (cancelled, timed out): flushes its text. */
  private close(id: number, reason: RequestFinishReason): void {
    const l = this.live.get(id) as Live;
    this.live.delete(id);
    l.channel.timing.last = this.clock();
    l.channel.push([], [], l.state.text.finish(), reason);
  }

  private wakeLoop(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
