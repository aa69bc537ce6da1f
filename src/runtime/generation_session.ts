// GenerationSession: TensorRT-LLM's runtime entry point in TypeScript idiom. The KV pool is sized
// once (kv_cache_pool.ts) and shared by every request; `setup` checks that (batch, context, new
// tokens, beams) fits it; `decode` runs a batch of token-id prompts to completion; `decodeStream`
// yields each step. Sampling and beam search share the logits pipeline and the backend's decoding
// ops; this file only moves tokens and KV blocks between them.

import type { SampleTicket, StepInput } from "../backends/backend.ts";
import type { SampleParams } from "../backends/decoding_ops.ts";
import { InvalidArgumentError } from "../errors.ts";
import { BeamSearch } from "../sampling/beam_search.ts";
import { processLogits, type Row, stepTransforms } from "../sampling/logits_pipeline.ts";
import type { LogitsProcessor, StoppingCriteria } from "../sampling/logits_processor.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import {
  InvalidSamplingConfigError,
  modelSamplingDefaults,
  type ResolvedSamplingConfig,
  resolveSamplingConfig,
  type SamplingConfig,
} from "../sampling/sampling_config.ts";
import { BuiltinStops } from "../sampling/stopping.ts";
import { BlockAllocator } from "./block_allocator.ts";
import {
  ContextWindowExceededError,
  InvalidTokenIdError,
  NonFiniteLogitsError,
  RunnerDisposedError,
} from "./errors.ts";
import { type KvCacheConfig, resolveKvCacheConfig } from "./kv_cache_config.ts";
import { KvCachePool, type KvPoolInfo, kvBlocksNeeded } from "./kv_cache_pool.ts";
import type { RequestOutput, SequenceOutput, StepOutput, TokenEvent } from "./outputs.ts";
import { RunnerLock } from "./runner_lock.ts";
import { type FinishReason, Sequence } from "./sequence.ts";
import type { Session } from "./session.ts";
import { buildChunkStep, buildStep } from "./step_builder.ts";
import { TextTracker } from "./text_tracker.ts";

export interface DecodeOptions {
  stoppingCriteria?: StoppingCriteria | readonly StoppingCriteria[];
  logitsProcessors?: LogitsProcessor | readonly LogitsProcessor[];
  signal?: AbortSignal;
}

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

const list = <T>(x: T | readonly T[] | undefined): readonly T[] =>
  x === undefined ? [] : Array.isArray(x) ? x : [x as T];

/** A live sequence with its stream state. */
interface Live {
  seq: Sequence;
  promptIndex: number;
  sequenceIndex: number;
  text: TextTracker;
  topP: number;
  genLogits: Float32Array[];
}

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
    try {
      if (cfg.beamWidth > 1) return yield* this.runBeams(roots, cfg, badWordIds, opts);
      return yield* this.runSampling(roots, cfg, badWordIds, stopWords, opts);
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

  /** Prefill of every prompt at once; returns last-position logits [B, V] and (optionally) all prompt logits. */
  /** Reserves the prompts' KV blocks and, when the prompts exceed the backend's largest step, runs
   * them in chunks (chunked prefill) until the rest — every prompt's last token included — fits in
   * one step. Returns that final step. */
  private prefillStep(roots: Sequence[]): StepInput {
    const backend = this.session.backend;
    const alloc = this.allocator as BlockAllocator;
    for (const r of roots) r.reserve(r.ids.length, alloc);
    const budget = backend.maxStepTokens;
    if (budget !== undefined) {
      if (roots.length > budget) {
        throw new InvalidArgumentError(
          `a batch of ${roots.length} prompts exceeds the engine's ${budget} tokens per step; send fewer prompts at once`,
        );
      }
      const remaining = () => roots.reduce((n, r) => n + r.ids.length - r.numComputed, 0);
      while (remaining() > budget) {
        const chunk = buildChunkStep(roots, budget - roots.length);
        if (!chunk) break;
        backend.forward(chunk.step);
        roots.forEach((r, i) => {
          r.numComputed += chunk.taken[i];
        });
      }
    }
    return buildStep(roots);
  }

  /** Context logits need every prompt row in one step (no chunking). */
  private reserveAll(roots: Sequence[]): StepInput {
    for (const r of roots) r.reserve(r.ids.length, this.allocator as BlockAllocator);
    return buildStep(roots);
  }

  private prefill(
    roots: Sequence[],
    cfg: ResolvedSamplingConfig,
  ): { last: Float32Array; context: Float32Array[] } {
    const backend = this.session.backend;
    const V = backend.vocabSize;
    const step = cfg.returnContextLogits ? this.reserveAll(roots) : this.prefillStep(roots);
    if (cfg.returnContextLogits)
      step.logitRows = Int32Array.from({ length: step.tokenIds.length }, (_, i) => i);
    const logits = backend.forward(step).slice();
    for (const r of roots) r.numComputed = r.ids.length;
    if (!cfg.returnContextLogits) return { last: logits, context: [] };
    const last = new Float32Array(roots.length * V);
    const context = step.seqs.map((q, i) => {
      last.set(logits.subarray((q.queryStart + q.queryLen - 1) * V, (q.queryStart + q.queryLen) * V), i * V);
      return logits.slice(q.queryStart * V, (q.queryStart + q.queryLen) * V);
    });
    return { last, context };
  }

  private async *runSampling(
    roots: Sequence[],
    cfg: ResolvedSamplingConfig,
    badWordIds: number[][][],
    stopWords: ResolvedSamplingConfig["stopWords"],
    opts: DecodeOptions,
  ): AsyncGenerator<StepOutput, RequestOutput[]> {
    const s = this.session;
    const backend = s.backend;
    const V = backend.vocabSize;
    const alloc = this.allocator as BlockAllocator;
    const processors = list(opts.logitsProcessors);
    const criteria = list(opts.stoppingCriteria);
    const n = cfg.numReturnSequences;
    const endIds = new Set(cfg.endIds);
    const stops = roots.map((_, p) => new BuiltinStops(endIds, cfg.maxNewTokens, stopWords[p]));
    const holdback = (p: number) =>
      Math.max(0, ...stopWords[p].map((w) => (typeof w === "string" ? w.length - 1 : 0)));
    const copy = (a: number[], b: number[]) => backend.copyKvBlocks(a, b);
    const maxLen = this.maxSeqLen;

    opts.signal?.throwIfAborted();
    // Step 0 decodes every (prompt, sample) pair from its prompt's last logits; the samples fork from
    // the prompt's sequence once its KV is written.
    let live: Live[] = roots.flatMap((root, p) =>
      Array.from({ length: n }, (_, k) => ({
        seq: root,
        promptIndex: p,
        sequenceIndex: k,
        text: new TextTracker(s.tokenizer, root.promptIds, holdback(p)),
        topP: cfg.topP[p],
        genLogits: [],
      })),
    );
    let hostLogits: Float32Array | null = null;
    let pending: StepInput | null = null;
    let context: Float32Array[] = [];
    if (cfg.returnContextLogits) {
      const pre = this.prefill(roots, cfg);
      context = pre.context;
      hostLogits = new Float32Array(live.length * V);
      live.forEach((l, r) =>
        hostLogits?.set(pre.last.subarray(l.promptIndex * V, (l.promptIndex + 1) * V), r * V),
      );
    } else {
      pending = this.prefillStep(roots);
      pending.logitRows = Int32Array.from(live, (l) => pending?.logitRows[l.promptIndex] as number);
    }
    const forked = () => {
      for (const r of roots) r.numComputed = r.ids.length;
      live = live.map((l) =>
        l.sequenceIndex === n - 1 ? l : { ...l, seq: l.seq.fork(l.promptIndex, alloc, copy) },
      );
    };
    if (hostLogits) forked();
    const all: Live[] = [];
    const rowsOf = (ls: readonly Live[]): Row[] =>
      ls.map((l) => ({
        promptIndex: l.promptIndex,
        sequenceIndex: l.sequenceIndex,
        promptIds: l.seq.promptIds,
        outputIds: l.seq.generated,
        ids: l.seq.ids,
      }));
    const paramsOf = (ls: readonly Live[], step: number): SampleParams => ({
      greedy: Uint8Array.from(ls, (l) => (cfg.greedy[l.promptIndex] ? 1 : 0)),
      temperature: Float32Array.from(ls, (l) => cfg.temperature[l.promptIndex]),
      topK: Int32Array.from(ls, (l) => cfg.topK[l.promptIndex]),
      topP: Float32Array.from(ls, (l) => l.topP),
      minP: Float32Array.from(ls, (l) => cfg.minP[l.promptIndex]),
      seed: Float64Array.from(ls, (l) => cfg.randomSeed[l.promptIndex]),
      sequence: Int32Array.from(ls, (l) => l.sequenceIndex),
      step: Int32Array.from(ls, () => step),
    });
    const fast = !!backend.forwardSample && !cfg.returnGenerationLogits && processors.length === 0;
    // Pipelined decoding: step N+1 is queued, fed with step N's tokens on the device, before the host
    // reads them, so the host's bookkeeping overlaps the GPU. Only when the next step's inputs cannot
    // depend on the token being sampled (no penalties, n-gram or bad-word bans, top-p decay).
    const enqueue = backend.enqueueSample?.bind(backend);
    const collect = backend.collectSample?.bind(backend);
    const pipe =
      fast && enqueue && collect && !cfg.returnContextLogits && tokenIndependent(cfg, badWordIds)
        ? { enqueue, collect }
        : null;
    /** After a step's forward is queued: its tokens are in the KV cache (step 0 forks the samples). */
    const computed = (step: number) => {
      if (step === 0 && pending) forked();
      else for (const l of live) l.seq.numComputed = l.seq.ids.length;
    };
    /** The queued step whose tokens come next, and each live sequence's row in it. */
    let inflight: Inflight | null = null;
    try {
      for (let step = 0; live.length > 0; step++) {
        opts.signal?.throwIfAborted();
        const B = live.length;
        let tokens: Int32Array;
        let logProbs: Float32Array;
        let speculated = false;
        if (pipe) {
          if (!inflight) {
            const ticket = pipe.enqueue(
              pending as StepInput,
              paramsOf(live, step),
              stepTransforms(rowsOf(live), cfg, badWordIds),
            );
            inflight = { ticket, rowOf: live.map((_, r) => r) };
            computed(step);
          }
          let next: Inflight | null = null;
          const more = live.some(
            (l) => l.seq.generated.length + 1 < cfg.maxNewTokens && l.seq.ids.length + 1 < maxLen,
          );
          if (more) {
            // The token being sampled goes where the placeholder is; step N+1 reads it on the device.
            for (const l of live) {
              l.seq.ids.push(PLACEHOLDER_TOKEN);
              l.seq.reserve(l.seq.ids.length, alloc);
            }
            const nextStep = buildStep(live.map((l) => l.seq));
            for (const l of live) l.seq.numComputed = l.seq.ids.length;
            const ticket = pipe.enqueue(
              nextStep,
              paramsOf(live, step + 1),
              stepTransforms(rowsOf(live), cfg, badWordIds),
              {
                from: inflight.ticket,
                rows: Int32Array.from(inflight.rowOf),
              },
            );
            next = { ticket, rowOf: live.map((_, r) => r) };
            speculated = true;
          }
          const got = pipe.collect(inflight.ticket);
          const rowOf = inflight.rowOf;
          tokens = Int32Array.from(rowOf, (row) => got.tokens[row]);
          logProbs = Float32Array.from(rowOf, (row) => got.logProbs[row]);
          inflight = next;
        } else {
          const rows = rowsOf(live);
          const params = paramsOf(live, step);
          const transforms = stepTransforms(rows, cfg, badWordIds);
          if (pending && fast && backend.forwardSample) {
            // Fast path: bias, penalties, bans and sampling run on the device; only tokens and their
            // log-probs come back.
            ({ tokens, logProbs } = backend.forwardSample(pending, params, transforms));
          } else {
            const logits = hostLogits ?? backend.forward(pending as StepInput).slice();
            if (cfg.returnGenerationLogits)
              live.forEach((l, r) => l.genLogits.push(logits.slice(r * V, (r + 1) * V)));
            processLogits(backend.decoding, logits, V, rows, transforms, processors, step);
            ({ tokens, logProbs } = backend.decoding.sample(logits, B, V, params));
          }
          hostLogits = null;
          computed(step);
        }
        // NaN/inf logits make the log-probs NaN: checked on what the backend already returned (no
        // extra copy from the device).
        for (let r = 0; r < B; r++) {
          if (Number.isNaN(logProbs[r]) || logProbs[r] === Number.POSITIVE_INFINITY)
            throw new NonFiniteLogitsError(step, live[r].promptIndex, live[r].sequenceIndex);
        }
        if (step === 0) all.push(...live);
        const events: TokenEvent[] = [];
        for (let r = 0; r < B; r++) {
          const l = live[r];
          const p = l.promptIndex;
          const token = tokens[r];
          if (speculated) l.seq.ids[l.seq.ids.length - 1] = token;
          else l.seq.ids.push(token);
          l.seq.logProbs.push(logProbs[r]);
          l.topP =
            token === cfg.topPResetIds[p] ? cfg.topP[p] : Math.max(l.topP * cfg.topPDecay[p], cfg.topPMin[p]);
          const from = l.text.push(token);
          const out = l.seq.generated;
          let stop = stops[p].check(out, token, l.text.text, from);
          if (!stop && l.seq.ids.length >= maxLen) stop = { reason: "length" };
          if (!stop) {
            for (const c of criteria) {
              const v = c.shouldStop(
                {
                  promptIndex: p,
                  sequenceIndex: l.sequenceIndex,
                  promptIds: l.seq.promptIds,
                  outputIds: out,
                  text: l.text.text,
                },
                step,
              );
              if (v) {
                stop = { reason: v === true ? "stop" : v };
                break;
              }
            }
          }
          let text: string;
          if (stop) {
            l.seq.finishReason = stop.reason;
            text = l.text.finish(stop.text === undefined ? undefined : stop.text.length);
          } else text = l.text.delta();
          events.push({
            promptIndex: p,
            sequenceIndex: l.sequenceIndex,
            tokenId: token,
            logProb: logProbs[r],
            text,
            finishReason: l.seq.finishReason,
          });
        }
        yield { step, tokens: events };
        for (const l of live) if (l.seq.finishReason) l.seq.release(alloc);
        if (inflight) {
          const rowOf = inflight.rowOf;
          inflight.rowOf = rowOf.filter((_, r) => !live[r].seq.finishReason);
        }
        live = live.filter((l) => !l.seq.finishReason);
        if (live.length === 0) break;
        if (!inflight) {
          for (const l of live) l.seq.reserve(l.seq.ids.length, alloc);
          pending = buildStep(live.map((l) => l.seq));
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      // A step queued ahead for sequences that have all finished (or an abandoned generation): read
      // it so the backend's queue is empty for the next call.
      if (inflight) pipe?.collect(inflight.ticket);
    }
    return roots.map((root, p) => {
      const mine = all.filter((l) => l.promptIndex === p);
      const out: RequestOutput = {
        promptIds: [...root.promptIds],
        sequences: mine.map((l) =>
          this.sequenceOutput(
            l.seq.generated,
            l.seq.logProbs,
            l.seq.finishReason ?? "length",
            cfg,
            l.text.text,
          ),
        ),
      };
      if (cfg.returnContextLogits) out.contextLogits = context[p];
      if (cfg.returnGenerationLogits) out.generationLogits = mine.map((l) => concat(l.genLogits, V));
      return out;
    });
  }

  private sequenceOutput(
    ids: number[],
    logProbs: number[],
    finishReason: FinishReason,
    cfg: ResolvedSamplingConfig,
    text: string,
    score?: number,
  ): SequenceOutput {
    const cum = logProbs.reduce((a, b) => a + b, 0);
    return {
      outputIds: ids,
      text,
      logProbs: cfg.outputLogProbs ? logProbs : [],
      cumLogProb: cfg.outputCumLogProbs ? cum : 0,
      ...(score !== undefined ? { score } : {}),
      finishReason,
    };
  }

  private async *runBeams(
    roots: Sequence[],
    cfg: ResolvedSamplingConfig,
    badWordIds: number[][][],
    opts: DecodeOptions,
  ): AsyncGenerator<StepOutput, RequestOutput[]> {
    const s = this.session;
    const backend = s.backend;
    const V = backend.vocabSize;
    const W = cfg.beamWidth;
    const alloc = this.allocator as BlockAllocator;
    const processors = list(opts.logitsProcessors);
    const copy = (a: number[], b: number[]) => backend.copyKvBlocks(a, b);
    if (cfg.stopWords.some((w) => w.length > 0) || list(opts.stoppingCriteria).length > 0) {
      throw new InvalidSamplingConfigError(
        "stopWords and StoppingCriteria are not supported with beam search (beams end at end ids or maxNewTokens); use beamWidth 1",
      );
    }
    opts.signal?.throwIfAborted();
    const { last, context } = this.prefill(roots, cfg);
    const maxSteps = roots.map((r) => Math.min(cfg.maxNewTokens, this.maxSeqLen - r.promptIds.length));
    const searches = roots.map(
      (r, p) =>
        new BeamSearch({
          beamWidth: W,
          lengthPenalty: cfg.lengthPenalty[p],
          earlyStopping: cfg.earlyStopping[p],
          numReturnSequences: cfg.numReturnSequences,
          endIds: cfg.endIds,
          promptLen: r.promptIds.length,
          maxNewTokens: maxSteps[p],
          diversityRate: cfg.beamSearchDiversityRate[p],
        }),
    );
    // Every prompt starts with W identical beams (HF: the prompt repeated, beams > 0 scored −1e9).
    let beams: Sequence[][] = roots.map((root, p) =>
      Array.from({ length: W }, (_, k) => (k === W - 1 ? root : root.fork(p, alloc, copy))),
    );
    let logits = new Float32Array(roots.length * W * V);
    roots.forEach((_, p) => {
      for (let k = 0; k < W; k++) logits.set(last.subarray(p * V, (p + 1) * V), (p * W + k) * V);
    });
    let active = roots.map((_, p) => p);
    const genLogits: Float32Array[][] = roots.map(() => []);
    for (let step = 0; active.length > 0; step++) {
      opts.signal?.throwIfAborted();
      const rows: Row[] = active.flatMap((p) =>
        beams[p].map((b, k) => ({
          promptIndex: p,
          sequenceIndex: k,
          promptIds: b.promptIds,
          outputIds: b.generated,
          ids: b.ids,
        })),
      );
      const B = rows.length;
      if (cfg.returnGenerationLogits) {
        active.forEach((p, i) => {
          genLogits[p].push(logits.slice(i * W * V, i * W * V + V));
        });
      }
      // HF beam search: log-softmax first, then the processors act on the log-probs (no renormalising).
      const lp = new Float32Array(B * V);
      backend.decoding.logSoftmax(logits, B, V, new Float32Array(B).fill(1), new Uint8Array(B).fill(1), lp);
      processLogits(backend.decoding, lp, V, rows, stepTransforms(rows, cfg, badWordIds), processors, step);
      const stillActive: number[] = [];
      const beamsOut: { promptIndex: number; sequences: number[][] }[] = [];
      active.forEach((p, i) => {
        const search = searches[p];
        const { parents, tokens } = search.step(lp.subarray(i * W * V, (i + 1) * W * V), V);
        const old = beams[p];
        const taken = new Set<number>();
        const next = parents.map((parent) => {
          const src = old[parent];
          const child = taken.has(parent) ? src.fork(p, alloc, copy) : src;
          taken.add(parent);
          return child;
        });
        // Children forked before any token is appended; now append.
        next.forEach((b, k) => {
          const logProb = lp[(i * W + parents[k]) * V + tokens[k]];
          if (Number.isNaN(logProb)) throw new NonFiniteLogitsError(step, p, k);
          b.ids.push(tokens[k]);
          b.logProbs.push(logProb);
        });
        old.forEach((b, k) => {
          if (!taken.has(k)) b.release(alloc);
        });
        beams[p] = next;
        beamsOut.push({ promptIndex: p, sequences: next.map((b) => b.generated) });
        if (!search.done && step + 1 < maxSteps[p]) stillActive.push(p);
      });
      yield { step, tokens: [], beams: beamsOut };
      for (const p of active) if (!stillActive.includes(p)) for (const b of beams[p]) b.release(alloc);
      active = stillActive;
      if (active.length === 0) break;
      const seqs = active.flatMap((p) => beams[p]);
      for (const b of seqs) b.reserve(b.ids.length, alloc);
      logits = backend.forward(buildStep(seqs)).slice();
      for (const b of seqs) b.numComputed = b.ids.length;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    beams = [];
    const tok = s.tokenizer;
    return roots.map((root, p) => {
      const finals = searches[p].finalize();
      const out: RequestOutput = {
        promptIds: [...root.promptIds],
        sequences: finals.map((f) =>
          this.sequenceOutput(
            f.tokens,
            f.logProbs,
            f.finishReason,
            cfg,
            tok ? tok.decode(f.tokens, { skipSpecialTokens: true }) : "",
            f.score,
          ),
        ),
      };
      if (cfg.returnContextLogits) out.contextLogits = context[p];
      if (cfg.returnGenerationLogits) out.generationLogits = [concat(genLogits[p], V)];
      return out;
    });
  }
}

/** A queued step whose tokens the host has not read yet, and each live sequence's row in it. */
type Inflight = { ticket: SampleTicket; rowOf: number[] };

/** The token id a speculatively queued step carries until the device feeds it the sampled one. */
const PLACEHOLDER_TOKEN = 0;

/** Whether a step's decoding inputs (penalties, bans, top-p) are known before the previous step's
 * token: then the step may be queued before that token is read (pipelined decoding). Min length
 * only counts tokens, so it does not stand in the way. */
function tokenIndependent(
  cfg: ResolvedSamplingConfig,
  badWordIds: readonly (readonly (readonly number[])[])[],
): boolean {
  const all = <T>(xs: readonly T[], ok: (x: T, i: number) => boolean) => xs.every(ok);
  return (
    all(cfg.repetitionPenalty, (x) => x === 1) &&
    all(cfg.presencePenalty, (x) => x === 0) &&
    all(cfg.frequencyPenalty, (x) => x === 0) &&
    all(cfg.noRepeatNgramSize, (x) => x === 0) &&
    all(badWordIds, (x) => x.length === 0) &&
    all(cfg.topPDecay, (x, i) => x === 1 && cfg.topPMin[i] <= cfg.topP[i])
  );
}

function concat(parts: Float32Array[], V: number): Float32Array {
  const out = new Float32Array(parts.length * V);
  parts.forEach((p, i) => {
    out.set(p, i * V);
  });
  return out;
}
