// The executor (TensorRT-LLM's Executor API): one loop owns a session's backend, one KV cache
// manager sized at start, the scheduler and every live request. Callers only enqueue, read results,
// cancel, ask for stats and shut down. One iteration of the loop (iterate):
//
//   scheduler.schedule → stepFromSchedule (the backend's StepInput) → pipeline: queue it, then read
//   it (synchronous) or the step queued before (overlapped) once the device has it → outputs: each
//   request's group turns its rows into events and branches → scheduler.update / resolve →
//   reporter: IterationStats
//
// The detail lives beside it: step_pipeline.ts runs and reads steps (synchronously, or overlapped
// with the host: overlap.ts has the rules); output_processor.ts applies a read step's tokens to its
// requests and ends them; iteration_stats.ts counts and times each step; scheduler.ts decides what
// runs and kv_cache_manager.ts where its KV lives. The loop reads at most one step per iteration,
// so a caller can cancel between any two steps' events.
//
// A request is a group of sequences (rows of the same step): one, numReturnSequences samples
// (sampling_group.ts) or beamWidth beams (beam_group.ts); they share the prompt's KV blocks and fork
// on write. Context logits are gathered chunk by chunk (context_logits.ts).
//
// The loop runs while a request is live and otherwise waits on a promise that enqueue resolves (no
// polling, no timer: an idle executor keeps no process alive). It yields to the event loop between
// iterations, so an enqueue or cancel made meanwhile takes effect in the next one.
import type { ExecutionBackend } from "../backends/backend.ts";
import type { EngineConfig } from "../engine/format.ts";
import type { GenerationDefaults } from "../sampling/generation_config.ts";
import { rejectUnknownKeys } from "../sampling/option_keys.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { BeamGroup } from "./beam_group.ts";
import { ContextLogits } from "./context_logits.ts";
import { ExecutorShutDownError, UnknownRequestError } from "./errors.ts";
import { EventQueue, type ResultSink } from "./event_queue.ts";
import { EXECUTOR_OPTION_KEYS, type ExecutorOptions } from "./executor_options.ts";
import { type ExecutorRequest, resolveRequest } from "./executor_request.ts";
import { IterationReporter, type IterationStats, stepCounts } from "./iteration_stats.ts";
import { KvCacheManager, type KvCacheStats } from "./kv_cache_manager.ts";
import { type KvCacheSizing, kvCacheBlocks } from "./kv_cache_size.ts";
import { type LiveRequest, OutputProcessor } from "./output_processor.ts";
import { ReaderWakeups } from "./reader_wakeups.ts";
import { ResultChannel, type ResultEvent } from "./request_results.ts";
import { SamplingGroup } from "./sampling_group.ts";
import { Scheduler } from "./scheduler.ts";
import { stepFromSchedule } from "./step_from_schedule.ts";
import { StepPipeline } from "./step_pipeline.ts";

export type { ExecutorOptions, ExecutorRequest, IterationStats, ResultEvent };
export { EXECUTOR_OPTION_KEYS };

/** What the executor takes over: an opened engine (runtime/session.ts's Session is one). */
export interface ExecutorSession {
  readonly backend: ExecutionBackend;
  readonly config: EngineConfig;
  readonly tokenizer: Tokenizer | null;
  readonly generationDefaults: GenerationDefaults;
  readonly eosTokenIds: number[];
  dispose(): void;
}

export interface ExecutorStats {
  numQueued: number;
  numRunning: number;
  /** The running requests' live sequences (rows): beams and samples count one each. */
  numRunningSequences: number;
  numIterations: number;
  /** Prompt and recomputed tokens run through the model, and tokens generated (every sequence's). */
  numContextTokens: number;
  numGeneratedTokens: number;
  numPreemptions: number;
  kv: KvCacheStats;
}

export type { KvCacheLimit, KvCacheSizing } from "./kv_cache_size.ts";
export { DEFAULT_KV_BYTES } from "./kv_cache_size.ts";

export class Executor {
  readonly kv: KvCacheManager;
  /** How the KV cache was sized at start: its blocks and what limited them (kv_cache_size.ts). */
  readonly kvSizing: KvCacheSizing;
  /** Decode graphs captured at start (ExecutorOptions.captureGraphs) and the host ms they took. */
  readonly graphWarmUp: { graphs: number; ms: number };
  private readonly scheduler: Scheduler;
  private readonly backend: ExecutionBackend;
  private readonly clock: () => number;
  private readonly reporter: IterationReporter;
  /** Every request from enqueue until it ends (the output processor removes it then). */
  private readonly live = new Map<number, LiveRequest>();
  private readonly outputs: OutputProcessor;
  private readonly pipeline: StepPipeline;
  /** Event queues not yet handed out by results(), finished or not (none with a resultSink). */
  private readonly channels = new Map<number, EventQueue>();
  private readonly resultSink: ((requestId: number) => ResultSink) | null;
  /** Resumes the channels' readers a slice per turn of the event loop (reader_wakeups.ts). */
  private readonly wakeups = new ReaderWakeups();
  private nextId = 1;
  private iterations = 0;
  private contextTokens = 0;
  private wake: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private readonly loop: Promise<void>;
  private loopRunning = true;

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
    const sizing = kvCacheBlocks(backend, config, {
      maxTokens: options.maxTokens,
      freeGpuMemoryFraction: options.freeGpuMemoryFraction,
      capAtEngine: options.capKvAtEngine,
    });
    const blocks = sizing.numBlocks;
    const maxNumSeqs =
      options.maxNumSeqs ?? Math.min(config.build.maxBatchSize, maxNumTokens, backend.maxLogitRows);
    const scheduler = new Scheduler(new KvCacheManager(blocks, bs, options.enablePrefixCaching ?? true), {
      maxNumTokens,
      maxNumSeqs,
      policy: options.policy,
      maxQueueSize: options.maxQueueSize,
      maxLogitRows: backend.maxLogitRows,
    });
    backend.allocateKvCache(blocks);
    const t0 = performance.now();
    const graphs = (options.captureGraphs ?? true) ? (backend.prepareDecodeGraphs?.(maxNumSeqs) ?? 0) : 0;
    this.graphWarmUp = { graphs, ms: performance.now() - t0 };
    this.backend = backend;
    this.scheduler = scheduler;
    this.kv = scheduler.kv;
    this.kvSizing = sizing;
    this.clock = options.clock ?? Date.now;
    this.resultSink = options.resultSink ?? null;
    this.outputs = new OutputProcessor(this.live, scheduler, backend, this.clock);
    this.reporter = new IterationReporter(options.onIteration, scheduler, scheduler.kv);
    this.pipeline = new StepPipeline(this.live, scheduler, backend, this.outputs, this.reporter, this.clock);
    this.loop = this.run();
    const ended = () => {
      this.loopRunning = false;
    };
    this.loop.then(ended, ended);
  }

  /** Whether the loop runs: false once it ended, by shutdown or by an error that escaped it (a
   * server's health check answers 503 then). */
  get alive(): boolean {
    return this.loopRunning;
  }

  /** Resolves once the loop ended, however it ended. */
  whenStopped(): Promise<void> {
    return this.loop.then(
      () => {},
      () => {},
    );
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
    const context = state.cfg.returnContextLogits
      ? new ContextLogits(promptIds.length, this.backend.vocabSize)
      : null;
    const request = this.scheduler.add(
      {
        id,
        promptIds,
        maxNewTokens,
        priority: r.priority,
        allottedTimeMs: r.allottedTimeMs,
        width: state.width,
        contextLogits: context !== null,
      },
      now,
    );
    const timing = { arrival: now, firstScheduled: null, firstToken: null, last: null };
    let sink: ResultSink;
    if (this.resultSink) sink = this.resultSink(id);
    else {
      const queue = new EventQueue(this.wakeups);
      this.channels.set(id, queue);
      sink = queue;
    }
    const channel = new ResultChannel(
      id,
      r.streaming ?? false,
      timing,
      sink,
      r.clientId,
      state.cfg.returnGenerationLogits,
      state.topLogProbs > 0,
    );
    const group =
      state.cfg.beamWidth > 1
        ? new BeamGroup(state, maxNewTokens, this.session.tokenizer)
        : new SamplingGroup(state);
    this.live.set(id, { request, state, group, channel, context });
    this.wakeLoop();
    return id;
  }

  /** The request's result events; call once per request (before or after it finished). */
  results(id: number): AsyncIterable<ResultEvent> {
    const queue = this.channels.get(id);
    if (!queue)
      throw new UnknownRequestError(
        id,
        "has no results to take (unknown id, results() was called, or the executor has a resultSink)",
      );
    this.channels.delete(id);
    return queue;
  }

  /** Cancels a queued or running request: its blocks are freed now and its results end with
   * "cancelled". False if it is not live (unknown or already finished). */
  cancel(id: number): boolean {
    if (!this.live.has(id)) return false;
    this.scheduler.cancel(id);
    this.outputs.close(id, "cancelled");
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
      numRunningSequences: s.numRunningSequences,
      numIterations: this.iterations,
      numContextTokens: this.contextTokens,
      numGeneratedTokens: this.outputs.generatedTokens,
      numPreemptions: s.numPreemptions,
      kv: this.kv.stats(),
    };
  }

  /** The loop: iterates while there is work, else reads what is in flight and sleeps until woken. */
  private async run(): Promise<void> {
    for (;;) {
      if (!this.scheduler.hasWork) {
        if (this.pipeline.inFlight) {
          this.reporter.begin();
          this.pipeline.tryLand();
        }
        if (this.closing) break;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      try {
        this.iterate();
        await this.readWhenReady();
      } catch (e) {
        // The step failed (a backend error): every live request ends with it; the loop goes on.
        this.pipeline.tryLand();
        this.outputs.failAll(e);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.session.dispose();
  }

  /** Reads the step the iteration left to read (a queued step, or a synchronous one: host logits)
   * once the device has it. Until then the event loop turns (one setImmediate per poll): sockets,
   * timers and callers' enqueue and cancel are served while the device computes. Blocking in the read instead starves a server, which accepts one
   * connection per turn of the event loop (libuv): 1,024 clients took 1,024 iterations to admit. */
  private async readWhenReady(): Promise<void> {
    if (!this.pipeline.readPending) return;
    const t0 = performance.now();
    while (!this.pipeline.readReady()) await new Promise<void>((resolve) => setImmediate(resolve));
    this.pipeline.readNow(performance.now() - t0);
  }

  /** Leaves the step in flight for the loop to read, or schedules, builds and runs (or queues) the
   * next one. */
  private iterate(): void {
    this.reporter.begin();
    const overlap = this.pipeline.queueable();
    // Reading the queued step first is an iteration of its own: one step's events per iteration, so
    // a caller can cancel between any two (as in the synchronous loop).
    if (this.pipeline.landFirst(overlap)) {
      this.pipeline.readInFlight();
      return;
    }
    const now = this.clock();
    const out = this.scheduler.schedule(now, overlap ? (r) => !this.pipeline.isSync(r.id) : undefined);
    this.outputs.closeFinished(out.finished);
    if (out.chunks.length === 0) {
      this.pipeline.readInFlight();
      return;
    }
    this.iterations++;
    if (out.blockCopies.length > 0) {
      this.backend.copyKvBlocks(
        out.blockCopies.map((c) => c.src),
        out.blockCopies.map((c) => c.dst),
      );
    }
    const built = stepFromSchedule(out, this.kv.tokensPerBlock);
    this.outputs.scheduled(out, now);
    const promptLength = (id: number) => (this.live.get(id) as LiveRequest).request.promptLength;
    const counts = stepCounts(this.iterations, out, promptLength);
    this.contextTokens += counts.numContextTokens;
    if (overlap) this.pipeline.queue(out, built, counts, now);
    else this.pipeline.runNow(out, built, counts, now);
  }

  private wakeLoop(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
