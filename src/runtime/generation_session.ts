// GenerationSession: TensorRT-LLM's runtime entry point in TypeScript idiom, a client of one Executor
// (src/executor/) over a Session it borrows. The executor starts at the first request (or at
// allocatePool()) and sizes its KV cache once from the KvCacheConfig (executor/kv_cache_size.ts, capped
// at what the engine can use: a runner shares its GPU with the rest of the process); every
// call from then on is executor requests, one per prompt (batch_call.ts), so concurrent calls run in
// flight together. `decode` runs a batch of token-id prompts to completion; `decodeStream` yields each
// step. This file checks the request and resolves its SamplingConfig once for the whole batch (one
// value or one per prompt, checked against the batch's length), then hands each prompt its own values.

import { InvalidArgumentError } from "../errors.ts";
import { Executor, type ExecutorRequest, type ExecutorStats } from "../executor/executor.ts";
import type { LogitsProcessor, StoppingCriteria } from "../sampling/logits_processor.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import {
  InvalidSamplingConfigError,
  modelSamplingDefaults,
  type ResolvedSamplingConfig,
  resolveSamplingConfig,
  type SamplingConfig,
} from "../sampling/sampling_config.ts";
import { BatchCall, type DecodeOptions } from "./batch_call.ts";
import { ContextWindowExceededError, InvalidTokenIdError, RunnerDisposedError } from "./errors.ts";
import {
  checkKvCacheDtypeOf,
  checkMaxTokens,
  type KvCacheConfig,
  type KvPoolInfo,
  resolveKvCacheConfig,
} from "./kv_cache_config.ts";
import type { RequestOutput, StepOutput } from "./outputs.ts";
import type { Session } from "./session.ts";

export type { DecodeOptions };

export const DECODE_OPTION_KEYS: KeySet<DecodeOptions> = {
  stoppingCriteria: true,
  logitsProcessors: true,
  signal: true,
};

export interface GenerationSessionOptions {
  /** A stream not read for this long while other requests wait in the executor's queue is cancelled
   * (its iterator throws StreamIdleTimeoutError), so an abandoned stream cannot hold KV blocks and
   * compute that waiting requests need. */
  streamIdleTimeoutMs?: number;
}

export const GENERATION_SESSION_OPTION_KEYS: KeySet<GenerationSessionOptions> = { streamIdleTimeoutMs: true };

/** The clock of a session's executor (its requests' timeouts and RequestTiming): Date.now's epoch at
 * performance.now's resolution. Date.now counts whole milliseconds, too coarse to time a decode step
 * from the executor's token stamps (runtime/bench.ts). */
export const sessionClock = (): number => performance.timeOrigin + performance.now();

/** How long an unread stream may hold its blocks while requests wait, by default. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 10_000;

export class GenerationSession {
  /** The KvCacheConfig the executor's cache is sized from. */
  readonly kvCacheConfig: KvCacheConfig;
  readonly idleTimeoutMs: number;
  private exec: Executor | null = null;
  private info: KvPoolInfo | null = null;
  private readonly calls = new Set<BatchCall>();
  private closing: Promise<void> | null = null;

  /** Borrows `session`: shutdown() stops the executor and leaves the session to its owner. */
  constructor(
    readonly session: Session,
    kvCacheConfig: Partial<KvCacheConfig> = {},
    options: GenerationSessionOptions = {},
  ) {
    rejectUnknownKeys("GenerationSessionOptions", options, GENERATION_SESSION_OPTION_KEYS);
    const idle = options.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
    if (typeof idle !== "number" || !(idle > 0) || !Number.isSafeInteger(idle)) {
      throw new InvalidArgumentError(
        `streamIdleTimeoutMs must be a whole number of milliseconds ≥ 1, got ${String(idle)}; e.g. ${DEFAULT_STREAM_IDLE_TIMEOUT_MS}`,
      );
    }
    this.idleTimeoutMs = idle;
    this.kvCacheConfig = resolveKvCacheConfig(kvCacheConfig);
    checkMaxTokens(this.kvCacheConfig, session.backend.kvBlockSize); // now, not at the first request
    checkKvCacheDtypeOf(this.kvCacheConfig, session.backend.kvCacheDtype);
  }

  get maxSeqLen(): number {
    return this.session.config.maxSeqLen;
  }

  /** The executor, started at the first request: it sizes the KV cache once, after its warm-up. */
  get executor(): Executor {
    this.assertOpen();
    if (!this.exec) {
      const s = this.session;
      const borrowed = {
        backend: s.backend,
        config: s.config,
        tokenizer: s.tokenizer,
        generationDefaults: s.generationDefaults,
        eosTokenIds: s.eosTokenIds,
        dispose: () => {}, // the session's owner frees it
      };
      const { freeGpuMemoryFraction, maxTokens } = this.kvCacheConfig;
      // Graphs are captured on first use: one caller's batch needs only its own.
      const ex = new Executor(borrowed, {
        freeGpuMemoryFraction,
        maxTokens,
        capKvAtEngine: true,
        captureGraphs: false,
        clock: sessionClock,
      });
      const { numBlocks, limitedBy, freeBlocks } = ex.kvSizing;
      const bs = s.backend.kvBlockSize;
      this.info = {
        numBlocks,
        blockSize: bs,
        tokens: numBlocks * bs,
        bytes: numBlocks * s.backend.kvBytesPerBlock,
        dtype: s.backend.kvCacheDtype ?? "auto",
        limitedBy,
        ...(freeBlocks !== undefined ? { freeBlocks } : {}),
      };
      this.exec = ex;
    }
    return this.exec;
  }

  /** Starts the executor now, sizing its KV cache, instead of at the first request. */
  allocatePool(): KvPoolInfo {
    void this.executor;
    return this.info as KvPoolInfo;
  }

  /** The KV cache's size, or null before the executor started. */
  get pool(): KvPoolInfo | null {
    return this.info;
  }

  /** The executor's statistics (KV blocks used and free, iterations, queue), or null before it started. */
  stats(): ExecutorStats | null {
    return this.exec?.stats() ?? null;
  }

  /** Whether shutdown() was called: every request from then on rejects with RunnerDisposedError. */
  get closed(): boolean {
    return this.closing !== null;
  }

  /** Whether the executor has requests queued or running. */
  get busy(): boolean {
    const s = this.exec?.stats();
    return s !== undefined && s.numQueued + s.numRunning > 0;
  }

  /** Refuses new requests and cancels every call in flight (RunnerDisposedError); resolves once the
   * executor has stopped, when the backend may be freed. */
  shutdown(): Promise<void> {
    if (this.closing) return this.closing;
    for (const c of [...this.calls]) c.stop(new RunnerDisposedError());
    const ex = this.exec;
    // Deferred: shutdown may be called from a callback inside an executor step.
    this.closing = ex
      ? new Promise<void>((resolve, reject) => {
          queueMicrotask(() => ex.shutdown({ drain: false }).then(resolve, reject));
        })
      : Promise.resolve();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new RunnerDisposedError();
  }

  async decode(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig> = {},
    opts: DecodeOptions = {},
  ): Promise<RequestOutput[]> {
    const it = this.start(inputs, config, opts, false).run();
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /** Every step of the batch as it is generated; returns the outputs. Leaving it early (return(),
   * break) cancels the batch's requests. */
  async *decodeStream(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig> = {},
    opts: DecodeOptions = {},
  ): AsyncGenerator<StepOutput, RequestOutput[]> {
    return yield* this.start(inputs, config, opts, true).run();
  }

  private start(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig>,
    opts: DecodeOptions,
    streaming: boolean,
  ): BatchCall {
    this.assertOpen();
    rejectUnknownKeys("DecodeOptions", opts, DECODE_OPTION_KEYS);
    opts.signal?.throwIfAborted();
    const s = this.session;
    const V = s.backend.vocabSize;
    if (inputs.length === 0)
      throw new InvalidArgumentError("decode: the batch is empty; give at least one prompt");
    for (const ids of inputs) {
      if (ids.length === 0) throw new InvalidArgumentError("a prompt is empty: give at least one token");
      for (const id of ids)
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new InvalidTokenIdError(id, V);
      if (ids.length >= this.maxSeqLen) throw new ContextWindowExceededError(ids.length, this.maxSeqLen);
    }
    const cfg = resolveSamplingConfig(config, inputs.length, {
      defaults: modelSamplingDefaults(s.generationDefaults),
      endIds: s.eosTokenIds,
      padId: s.config.model.padTokenId,
      vocabSize: V,
    });
    if (!s.tokenizer && cfg.stopWords.some((ws) => ws.some((w) => typeof w === "string"))) {
      throw new InvalidSamplingConfigError(
        "SamplingConfig.stopWords has strings but the model has no tokenizer; give token ids",
      );
    }
    if (!s.tokenizer && cfg.badWords.some((ws) => ws.some((w) => typeof w === "string"))) {
      throw new InvalidSamplingConfigError(
        "SamplingConfig.badWords has text but the model has no tokenizer; give token ids",
      );
    }
    const requests = inputs.map((ids, p) => promptRequest(ids, p, cfg, opts, streaming));
    const host = {
      executor: this.executor,
      idleTimeoutMs: this.idleTimeoutMs,
      ended: (c: BatchCall) => this.calls.delete(c),
    };
    const call = new BatchCall(host, inputs, requests, cfg, streaming, opts.signal);
    this.calls.add(call);
    return call;
  }
}

/** Prompt p's executor request: the batch's resolved settings at p, and the caller's callbacks, which
 * see the prompt's index in the batch (the executor's rows are each a batch of one). */
function promptRequest(
  ids: readonly number[],
  p: number,
  c: ResolvedSamplingConfig,
  opts: DecodeOptions,
  streaming: boolean,
): ExecutorRequest {
  const list = <T>(x: T | readonly T[] | undefined): readonly T[] =>
    x === undefined ? [] : Array.isArray(x) ? x : [x as T];
  const processors: LogitsProcessor[] = list(opts.logitsProcessors).map((proc) => ({
    process: (logits, V, rows, step) =>
      proc.process(
        logits,
        V,
        rows.map((r) => ({ ...r, promptIndex: p })),
        step,
      ),
  }));
  const criteria: StoppingCriteria[] = list(opts.stoppingCriteria).map((crit) => ({
    shouldStop: (seq, step) => crit.shouldStop({ ...seq, promptIndex: p }, step),
  }));
  return {
    prompt: ids,
    maxNewTokens: c.maxNewTokens,
    temperature: c.temperature[p],
    topK: c.topK[p],
    topP: c.topP[p],
    topPDecay: c.topPDecay[p],
    topPMin: c.topPMin[p],
    topPResetIds: c.topPResetIds[p],
    minP: c.minP[p],
    randomSeed: c.randomSeed[p],
    repetitionPenalty: c.repetitionPenalty[p],
    presencePenalty: c.presencePenalty[p],
    frequencyPenalty: c.frequencyPenalty[p],
    endId: c.endIds,
    padId: c.padId,
    stopWords: c.stopWords[p],
    badWords: c.badWords[p],
    embeddingBias: c.embeddingBias,
    beamWidth: c.beamWidth,
    numReturnSequences: c.numReturnSequences,
    lengthPenalty: c.lengthPenalty[p],
    earlyStopping: c.earlyStopping[p],
    beamSearchDiversityRate: c.beamSearchDiversityRate[p],
    minLength: c.minLength[p],
    noRepeatNgramSize: c.noRepeatNgramSize[p],
    outputLogProbs: c.outputLogProbs,
    outputCumLogProbs: c.outputCumLogProbs,
    returnContextLogits: c.returnContextLogits,
    returnGenerationLogits: c.returnGenerationLogits,
    streaming,
    ...(processors.length > 0 ? { logitsProcessors: processors } : {}),
    ...(criteria.length > 0 ? { stoppingCriteria: criteria } : {}),
  };
}
