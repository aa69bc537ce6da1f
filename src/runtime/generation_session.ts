// GenerationSession: TensorRT-LLM's runtime entry point in TypeScript idiom. The KV pool is sized
// once (kv_cache_pool.ts) and shared by every request; `setup` checks that (batch, context, new
// tokens, beams) fits it; `decode` runs a batch of token-id prompts to completion; `decodeStream`
// yields each step. This file checks the request and holds the runner's lock; the decoding itself is
// sampling_loop.ts (pipelined_decode.ts or sync_decode.ts per step) or beam_decode.ts.

import { InvalidArgumentError } from "../errors.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import {
  InvalidSamplingConfigError,
  modelSamplingDefaults,
  resolveSamplingConfig,
  type SamplingConfig,
} from "../sampling/sampling_config.ts";
import { runBeams } from "./beam_decode.ts";
import { BlockAllocator } from "./block_allocator.ts";
import type { DecodeContext, DecodeOptions } from "./decode_context.ts";
import { ContextWindowExceededError, InvalidTokenIdError, RunnerDisposedError } from "./errors.ts";
import { type KvCacheConfig, resolveKvCacheConfig } from "./kv_cache_config.ts";
import { KvCachePool, type KvPoolInfo, kvBlocksNeeded } from "./kv_cache_pool.ts";
import type { RequestOutput, StepOutput } from "./outputs.ts";
import { RunnerLock } from "./runner_lock.ts";
import { runSampling } from "./sampling_loop.ts";
import { Sequence } from "./sequence.ts";
import type { Session } from "./session.ts";

export type { DecodeOptions };

export const DECODE_OPTION_KEYS: KeySet<DecodeOptions> = {
  stoppingCriteria: true,
  logitsProcessors: true,
  signal: true,
};

export interface GenerationSessionOptions {
  /** A stream not read for this long while another request waits for the runner is cancelled
   * (its iterator throws StreamIdleTimeoutError), so an abandoned stream cannot block the runner. */
  streamIdleTimeoutMs?: number;
}

export const GENERATION_SESSION_OPTION_KEYS: KeySet<GenerationSessionOptions> = { streamIdleTimeoutMs: true };

/** How long an unread stream may keep a waiting request out, by default. */
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 10_000;

export class GenerationSession {
  /** Fresh over the pool for each request; null between requests. */
  private allocator: BlockAllocator | null = null;
  /** The KV pool, sized once and shared by every request (see kv_cache_pool.ts). */
  readonly kvCache: KvCachePool;

  /** One request at a time; queued requests, idle streams and shutdown (see runner_lock.ts). */
  private readonly lock: RunnerLock;

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
    this.lock = new RunnerLock(idle);
    const limits = { maxBatchSize: session.config.build.maxBatchSize, maxSeqLen: session.config.maxSeqLen };
    this.kvCache = new KvCachePool(session.backend, limits, resolveKvCacheConfig(kvCacheConfig));
  }

  get maxSeqLen(): number {
    return this.session.config.maxSeqLen;
  }

  /** Allocates the KV pool now instead of at the first request (a pool already there is kept). */
  allocatePool(): KvPoolInfo {
    this.assertOpen();
    return this.kvCache.allocate();
  }

  /** Whether shutdown() was called: every request from then on rejects with RunnerDisposedError. */
  get closed(): boolean {
    return this.lock.isClosed;
  }

  /** Whether a request is running (holds the runner). */
  get busy(): boolean {
    return this.lock.busy;
  }

  /** Refuses new requests, rejects queued ones and cancels the running one at its next step (all
   * with RunnerDisposedError); resolves once no request runs, when the backend may be freed. */
  shutdown(): Promise<void> {
    return this.lock.shutdown();
  }

  private assertOpen(): void {
    if (this.lock.isClosed) throw new RunnerDisposedError();
  }

  /** The KV pool's size, or null before it is allocated. */
  get pool(): KvPoolInfo | null {
    return this.kvCache.info;
  }

  /** Checks that `batchSize` prompts of up to `maxContextLength` tokens, `maxNewTokens` new tokens
   * each, and `beamWidth` beams (or returned samples) per prompt fit the KV pool (allocating it at
   * the first call), and starts a fresh block allocator over it. */
  setup(batchSize: number, maxContextLength: number, maxNewTokens: number, beamWidth = 1): void {
    this.assertOpen();
    for (const [name, v] of Object.entries({ batchSize, maxContextLength, maxNewTokens, beamWidth })) {
      if (!Number.isInteger(v) || v < 1)
        throw new InvalidArgumentError(`setup: ${name} must be an integer ≥ 1, got ${v}`);
    }
    if (maxContextLength >= this.maxSeqLen)
      throw new ContextWindowExceededError(maxContextLength, this.maxSeqLen);
    const bs = this.session.backend.kvBlockSize;
    const need = kvBlocksNeeded(
      batchSize * beamWidth,
      Math.min(maxContextLength + maxNewTokens, this.maxSeqLen),
      bs,
    );
    const blocks = this.kvCache.reserve(
      need,
      () =>
        `${batchSize} prompt(s) × ${beamWidth} beam(s) of up to ${maxContextLength} + ${maxNewTokens} tokens`,
    );
    this.allocator = new BlockAllocator(blocks);
  }

  async decode(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig> = {},
    opts: DecodeOptions = {},
  ) {
    const it = this.decodeStream(inputs, config, opts);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  /** Runs one batch at a time: a call made while another is generating waits for it (the KV pool
   * and the backend are shared). Batching concurrent requests together is the executor's job. While
   * a step's result waits for the consumer to pull it, the request is parked: the lock may cancel
   * it then (idle limit, shutdown) and run its cleanup without the consumer. */
  async *decodeStream(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig> = {},
    opts: DecodeOptions = {},
  ): AsyncGenerator<StepOutput, RequestOutput[]> {
    rejectUnknownKeys("DecodeOptions", opts, DECODE_OPTION_KEYS);
    const turn = await this.lock.acquire(opts.signal);
    const work = this.decodeExclusive(inputs, config, { ...opts, signal: turn.signal });
    try {
      for (;;) {
        const r = await work.next();
        if (r.done) return r.value;
        turn.park(() => work.return([]));
        try {
          yield r.value;
        } finally {
          turn.resume();
        }
        turn.signal.throwIfAborted();
      }
    } finally {
      await work.return([]); // the work's own cleanup, when it was left before its end
      turn.release();
    }
  }

  private async *decodeExclusive(
    inputs: readonly (readonly number[])[],
    config: Partial<SamplingConfig>,
    opts: DecodeOptions,
  ): AsyncGenerator<StepOutput, RequestOutput[]> {
    const s = this.session;
    const V = s.backend.vocabSize;
    if (inputs.length === 0)
      throw new InvalidArgumentError("decode: the batch is empty; give at least one prompt");
    inputs.forEach((ids) => {
      if (ids.length === 0) throw new InvalidArgumentError("a prompt is empty: give at least one token");
      for (const id of ids)
        if (!Number.isInteger(id) || id < 0 || id >= V) throw new InvalidTokenIdError(id, V);
      if (ids.length >= this.maxSeqLen) throw new ContextWindowExceededError(ids.length, this.maxSeqLen);
    });
    const cfg = resolveSamplingConfig(config, inputs.length, {
      defaults: modelSamplingDefaults(s.generationDefaults),
      endIds: s.eosTokenIds,
      padId: s.config.model.padTokenId,
      vocabSize: V,
    });
    const width = cfg.beamWidth > 1 ? cfg.beamWidth : cfg.numReturnSequences;
    const longest = Math.max(...inputs.map((p) => p.length));
    this.setup(inputs.length, longest, cfg.maxNewTokens, width);
    const badWordIds = cfg.badWords.map((words) =>
      words.map((w) => (typeof w === "string" ? this.tokenize(w, "badWords") : [...w])),
    );
    const stopWords = cfg.stopWords.map((words) => words.map((w) => w));
    if (!s.tokenizer && stopWords.some((ws) => ws.some((w) => typeof w === "string"))) {
      throw new InvalidSamplingConfigError(
        "SamplingConfig.stopWords has strings but the model has no tokenizer; give token ids",
      );
    }
    const roots = inputs.map((ids, i) => new Sequence(i, ids, s.backend.kvBlockSize));
    const ctx: DecodeContext = {
      backend: s.backend,
      tokenizer: s.tokenizer,
      alloc: this.allocator as BlockAllocator,
      maxSeqLen: this.maxSeqLen,
    };
    try {
      if (cfg.beamWidth > 1) return yield* runBeams(ctx, roots, cfg, badWordIds, opts);
      return yield* runSampling(ctx, roots, cfg, badWordIds, stopWords, opts);
    } finally {
      // Every block goes back, whatever happened (abort, error, done): the next request starts a
      // fresh allocator over the same pool.
      this.allocator = null;
    }
  }

  private tokenize(text: string, field: string): number[] {
    const t = this.session.tokenizer;
    if (!t)
      throw new InvalidSamplingConfigError(
        `SamplingConfig.${field} has text but the model has no tokenizer; give token ids`,
      );
    return t.encode(text, { addSpecialTokens: false }).ids;
  }
}
