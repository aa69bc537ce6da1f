// The executor (TensorRT-LLM's Executor API): one loop owns a session's backend, one KV cache
// manager sized at start, the scheduler and every live request. Callers only enqueue, read results,
// cancel, ask for stats and shut down. One step:
//
//   schedule → build the step → forward + sample every logits row → each request's group turns its
//   rows into branches and events → scheduler.update → emit results
//
// Overlapped (overlap.ts), when the backend queues steps (enqueueSample) and every live request is
// sampled on the device: one iteration schedules, builds and queues step N+1 (its decodes fed on the
// device with N's tokens), then reads step N and does N's host work (stops, text, events) while N+1
// runs. When a request of step N needs its token on the host to build its next inputs, N is read
// before N+1 is scheduled; while a request that needs host logits or whose next inputs are not its
// own tokens (beams, a group before its fan-out) runs or is next in the queue, every step runs
// synchronously as above (overlap.ts's overlapMode has the rules). Either way the loop reads at most
// one step per iteration.
//
// A request is a group of sequences (rows of the same step): one, numReturnSequences samples
// (sampling_group.ts) or beamWidth beams (beam_group.ts); they share the prompt's KV blocks and fork
// on write. Context logits are gathered chunk by chunk (context_logits.ts).
//
// The loop runs while a request is live and otherwise waits on a promise that enqueue resolves (no
// polling, no timer: an idle executor keeps no process alive). It yields to the event loop between
// iterations, so an enqueue or cancel made meanwhile takes effect in the next one.
import type { ExecutionBackend, StepInput } from "../backends/backend.ts";
import type { EngineConfig } from "../engine/format.ts";
import type { GenerationDefaults } from "../sampling/generation_config.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { BeamGroup } from "./beam_group.ts";
import { ContextLogits } from "./context_logits.ts";
import { ExecutorShutDownError, invariant, UnknownRequestError } from "./errors.ts";
import { type ExecutorRequest, resolveRequest } from "./executor_request.ts";
import { IterationReporter, type IterationStats, type StepCounts } from "./iteration_stats.ts";
import { KvCacheManager, type KvCacheStats } from "./kv_cache_manager.ts";
import { type KvCacheSizing, kvCacheBlocks } from "./kv_cache_size.ts";
import { type LiveRequest, OutputProcessor } from "./output_processor.ts";
import { type Flight, feedFrom, overlapMode } from "./overlap.ts";
import { ResultChannel, type ResultEvent } from "./request_results.ts";
import { forwardAndSample, rowSampling, type SampledRow } from "./sample_rows.ts";
import { type RowSample, SamplingGroup } from "./sampling_group.ts";
import { type Branch, type CapacityPolicy, Scheduler } from "./scheduler.ts";
import type { SchedulerOutput } from "./scheduler_output.ts";
import { type SampleRow, stepFromSchedule } from "./step_from_schedule.ts";

export type { ExecutorRequest, IterationStats, ResultEvent };

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
   * maxBatchSize). */
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

export const EXECUTOR_OPTION_KEYS: KeySet<ExecutorOptions> = {
  maxTokens: true,
  freeGpuMemoryFraction: true,
  capKvAtEngine: true,
  maxNumTokens: true,
  maxNumSeqs: true,
  policy: true,
  maxQueueSize: true,
  enablePrefixCaching: true,
  clock: true,
  onIteration: true,
};

export type { KvCacheLimit, KvCacheSizing } from "./kv_cache_size.ts";
export { DEFAULT_KV_BYTES } from "./kv_cache_size.ts";

export class Executor {
  readonly kv: KvCacheManager;
  /** How the KV cache was sized at start: its blocks and what limited them (kv_cache_size.ts). */
  readonly kvSizing: KvCacheSizing;
  private readonly scheduler: Scheduler;
  private readonly backend: ExecutionBackend;
  private readonly clock: () => number;
  private readonly reporter: IterationReporter;
  /** Every request from enqueue until it ends (the output processor removes it then). */
  private readonly live = new Map<number, LiveRequest>();
  private readonly outputs: OutputProcessor;
  /** Channels not yet handed out by results(), finished or not. */
  private readonly channels = new Map<number, ResultChannel>();
  private nextId = 1;
  private iterations = 0;
  private contextTokens = 0;
  private wake: (() => void) | null = null;
  /** The queued step not read yet (overlapped loop). */
  private flight: Flight | null = null;
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
    this.kvSizing = sizing;
    this.clock = options.clock ?? Date.now;
    this.outputs = new OutputProcessor(this.live, scheduler, backend, this.clock);
    this.reporter = new IterationReporter(options.onIteration, scheduler, scheduler.kv);
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
        noPrefixHits: context !== null,
      },
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
    const group =
      state.cfg.beamWidth > 1
        ? new BeamGroup(state, maxNewTokens, this.session.tokenizer)
        : new SamplingGroup(state);
    this.live.set(id, { request, state, group, channel, context });
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

  private async run(): Promise<void> {
    for (;;) {
      if (!this.scheduler.hasWork) {
        if (this.flight) {
          this.reporter.begin();
          this.tryLand();
        }
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
        this.tryLand();
        this.outputs.failAll(e);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.session.dispose();
  }

  private iterate(): void {
    this.reporter.begin();
    const overlap = this.queueable();
    // Reading the queued step first is an iteration of its own: one step's events per iteration, so
    // a caller can cancel between any two (as in the synchronous loop).
    if (this.flight && (!overlap || this.needsRead(this.flight))) {
      this.land(this.flight);
      return;
    }
    const now = this.clock();
    const out = this.scheduler.schedule(now, overlap ? (r) => !this.isSync(r.id) : undefined);
    for (const f of out.finished) if (this.live.has(f.requestId)) this.outputs.close(f.requestId, f.reason);
    if (out.chunks.length === 0) {
      if (this.flight) this.land(this.flight);
      return;
    }
    this.iterations++;
    if (out.blockCopies.length > 0) {
      this.backend.copyKvBlocks(
        out.blockCopies.map((c) => c.src),
        out.blockCopies.map((c) => c.dst),
      );
    }
    const { step, sampled, context } = stepFromSchedule(
      out,
      this.kv.tokensPerBlock,
      (id) => this.live.get(id)?.context != null,
    );
    let numContext = 0;
    let contextTokens = 0;
    for (const c of out.chunks) {
      const l = this.live.get(c.requestId) as LiveRequest;
      if (l.channel.timing.firstScheduled === null) {
        l.channel.timing.firstScheduled = now;
        l.channel.setCachedTokens(l.request.numCachedTokens);
      }
      // A decode is the one token after the prompt's end; anything else is prompt or recompute.
      const decode = c.tokenIds.length === 1 && c.start >= l.request.promptLength;
      if (!decode) {
        numContext++;
        contextTokens += c.tokenIds.length;
      }
    }
    this.contextTokens += contextTokens;
    if (overlap) {
      const counts = { iteration: this.iterations, numContext, numContextTokens: contextTokens };
      this.queue(out, step, sampled, counts, now);
      return;
    }
    // Sampled rows (sampling groups) and the logits rows of beams, per request in row order.
    const rows: SampledRow[] = [];
    const mine = new Map<number, { rows: number[]; logitRows: number[] }>();
    for (const sr of sampled) {
      const l = this.live.get(sr.requestId) as LiveRequest;
      let m = mine.get(sr.requestId);
      if (!m) {
        m = { rows: [], logitRows: [] };
        mine.set(sr.requestId, m);
      }
      if (l.group instanceof BeamGroup) m.logitRows.push(sr.row);
      else {
        for (const row of l.group.rows(l.request, sr.seq, sr.row)) {
          m.rows.push(rows.length);
          rows.push(row);
        }
      }
    }
    const needLogits = context.length > 0 || [...mine.values()].some((m) => m.logitRows.length > 0);
    const waitStart = performance.now();
    const got = forwardAndSample(this.backend, step, rows, needLogits);
    const hostWaitMs = performance.now() - waitStart;
    const V = this.backend.vocabSize;
    for (const c of context) {
      const l = this.live.get(c.requestId) as LiveRequest;
      const done = l.context?.add(
        c.start,
        (got.logits as Float32Array).subarray(c.row * V, (c.row + c.count) * V),
      );
      if (done && l.context) {
        l.channel.setContextLogits(l.context.logits);
        l.context = null;
      }
    }
    const t = this.clock();
    const next = new Map<number, readonly Branch[]>();
    for (const [id, m] of mine) {
      const l = this.live.get(id) as LiveRequest;
      let branches: Branch[] | null;
      if (l.group instanceof BeamGroup) {
        const logits = new Float32Array(m.logitRows.length * V);
        m.logitRows.forEach((row, k) => {
          logits.set((got.logits as Float32Array).subarray(row * V, (row + 1) * V), k * V);
        });
        branches = this.outputs.advanceBeams(l, l.group, logits, t);
      } else {
        const samples: RowSample[] = m.rows.map((i) => ({
          token: got.tokens[i],
          logProb: got.logProbs[i],
          raw: got.rawLogits[i],
          failed: got.failed[i],
        }));
        branches = this.outputs.advanceSamples(l, l.group, samples, t);
      }
      if (branches) next.set(id, branches);
    }
    this.scheduler.update(out, next);
    // The scheduler ends a request at maxNewTokens; its group has said so already (same limit).
    for (const id of next.keys())
      if (this.live.has(id) && !this.scheduler.get(id)) this.outputs.close(id, "length");
    const counts = { iteration: this.iterations, numContext, numContextTokens: contextTokens };
    this.reporter.report(out, counts, t - now, false, hostWaitMs);
  }

  /** Whether the next step may be queued on the device: the backend queues steps, and no request
   * that needs the synchronous step (overlap.ts) runs or is the next to be admitted. Those further
   * back in the queue wait (schedule's `admits`) until one is next: then the loop turns synchronous. */
  private queueable(): boolean {
    if (!this.backend.enqueueSample || !this.backend.collectSample) return false;
    for (const l of this.live.values())
      if (l.request.status === "running" && this.modeOf(l) === "sync") return false;
    const next = this.scheduler.firstWaiting;
    return !(next && this.isSync(next.id));
  }

  private isSync(id: number): boolean {
    const l = this.live.get(id);
    return l !== undefined && this.modeOf(l) === "sync";
  }

  private modeOf(l: LiveRequest): ReturnType<typeof overlapMode> {
    return overlapMode(l.state, l.group instanceof SamplingGroup && l.group.fannedOut);
  }

  /** Whether a request of the step in flight builds its next inputs from its token on the host. */
  private needsRead(f: Flight): boolean {
    for (const { requestId } of f.pending.values()) {
      const l = this.live.get(requestId);
      if (l && this.modeOf(l) === "afterRead") return true;
    }
    return false;
  }

  /** Queues the step of `out` (fed from the step in flight), advances the scheduler past it with
   * placeholders, then reads the step in flight, if any. */
  private queue(
    out: SchedulerOutput,
    step: StepInput,
    sampled: readonly SampleRow[],
    counts: StepCounts,
    now: number,
  ): void {
    const rows: SampledRow[] = [];
    for (const sr of sampled) {
      const l = this.live.get(sr.requestId) as LiveRequest;
      rows.push(...(l.group as SamplingGroup).rows(l.request, sr.seq, sr.row));
    }
    const { params, transforms } = rowSampling(rows);
    const prev = this.flight;
    const kvIds = out.chunks.map((c) => (this.live.get(c.requestId) as LiveRequest).request.seqs[c.seq].kvId);
    const feed = feedFrom(prev, out, kvIds) ?? undefined;
    const enqueue = this.backend.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>;
    const ticket = enqueue.call(this.backend, step, params, transforms, feed);
    this.scheduler.advance(out);
    const pending: Flight["pending"] = new Map();
    out.chunks.forEach((c, i) => {
      if (c.sample)
        pending.set(kvIds[i], {
          requestId: c.requestId,
          row: pending.size,
          position: c.start + c.tokenIds.length,
        });
    });
    this.flight = { out, ticket, pending, ...counts, started: now, overlapped: prev !== null };
    if (prev) this.land(prev);
    else if (this.needsRead(this.flight)) this.land(this.flight); // nothing to overlap it with
  }

  /** Reads the queued step `f`: each request accepts its token (stops, text, events), then the
   * scheduler writes the tokens of those that go on over their placeholders. */
  private land(f: Flight): void {
    if (this.flight === f) this.flight = null;
    const collect = this.backend.collectSample as NonNullable<ExecutionBackend["collectSample"]>;
    const waitStart = performance.now();
    const got = collect.call(this.backend, f.ticket);
    const hostWaitMs = performance.now() - waitStart;
    const t = this.clock();
    const requests = new Set<number>();
    for (const p of f.pending.values()) requests.add(p.requestId);
    const next = new Map<number, number>(); // by KV table id: the token of each sequence that goes on
    const going: number[] = [];
    for (const id of requests) {
      const l = this.live.get(id);
      if (!l) continue; // cancelled, timed out or failed since: its tokens are dropped
      // The rows of the sequences still live, in Request.seqs order (the group's); a sequence that
      // ended when the step before was read has a row here too: it is dropped.
      const r = l.request;
      const rows = r.seqs.map((s) => {
        const p = f.pending.get(s.kvId);
        invariant(p !== undefined, `sequence ${s.kvId} of request ${id} has no row in the step read`);
        return p;
      });
      const samples: RowSample[] = rows.map(({ row }) => ({
        token: got.tokens[row],
        logProb: got.logProbs[row],
        raw: null,
        failed: null,
      }));
      const before = rows[0].position;
      const branches = this.outputs.advanceSamples(l, l.group as SamplingGroup, samples, t, before);
      if (!branches) continue;
      for (const b of branches) next.set(r.seqs[b.parent].kvId, b.token);
      going.push(id);
    }
    this.scheduler.resolve(f.out, next);
    for (const id of going)
      if (this.live.has(id) && !this.scheduler.get(id)) this.outputs.close(id, "length");
    this.reporter.report(f.out, f, t - f.started, f.overlapped, hostWaitMs);
  }

  /** Reads the step in flight, if any, after a failure or before the loop sleeps; a read that fails
   * too is dropped (the backend's queue is abandoned). */
  private tryLand(): void {
    const f = this.flight;
    if (!f) return;
    this.flight = null;
    try {
      this.land(f);
    } catch {
      // the device failed already; its requests have ended with that error
    }
  }

  private wakeLoop(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
