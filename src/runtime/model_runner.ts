// ModelRunner: the high-level API. `fromDir` takes a checkpoint (built into a cached engine on the
// fly) or an engine; `generate` runs prompts (text or ids; a list, padded or packed) to completion;
// `stream` yields tokens as they are produced. Decoding settings are SamplingConfig fields. Every
// call is requests to the runner's one executor (through its GenerationSession, one request per
// prompt), so concurrent calls run in flight together.
import type { CudaTuning } from "../backends/open_backend.ts";
import type { ResolvedEngine } from "../builder/engine_cache.ts";
import { runSteps, runStepsUntil, type Steps } from "../builder/steps.ts";
import type { BuildConfig } from "../engine/build_config.ts";
import { InvalidArgumentError } from "../errors.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import { SAMPLING_CONFIG_KEYS, type SamplingConfig } from "../sampling/sampling_config.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import {
  ContextWindowExceededError,
  InvalidPromptError,
  InvalidTokenIdError,
  RunnerDisposedError,
} from "./errors.ts";
import {
  DECODE_OPTION_KEYS,
  type DecodeOptions,
  GENERATION_SESSION_OPTION_KEYS,
  GenerationSession,
  type GenerationSessionOptions,
} from "./generation_session.ts";
import { type KvCacheConfig, resolveKvCacheConfig } from "./kv_cache_config.ts";
import { adoptSession, BUILD_CONFIG_KEYS, openSessionSteps } from "./open_session.ts";
import type { RequestOutput, StepOutput, TokenEvent } from "./outputs.ts";
import type { FinishReason } from "./sequence.ts";
import { Session } from "./session.ts";

export interface RunnerOptions extends Partial<BuildConfig>, GenerationSessionOptions {
  /** Engine cache root (default: $KILN_CACHE_DIR, $XDG_CACHE_HOME/kiln or ~/.cache/kiln). */
  cacheDir?: string;
  /** How large the executor's KV cache may be (sized once, at the first request). */
  kvCache?: Partial<KvCacheConfig>;
  /** The CUDA backend's switches (default: the KILN_* environment, read once; see cudaTuning()). */
  cudaTuning?: CudaTuning;
}

/** RunnerOptions' own keys; the rest are BuildConfig's and GenerationSessionOptions'. */
const RUNNER_OWN_KEYS: KeySet<Omit<RunnerOptions, keyof BuildConfig | keyof GenerationSessionOptions>> = {
  cacheDir: true,
  kvCache: true,
  cudaTuning: true,
};
export type Prompt = string | { ids: readonly number[] };

/** A batch: a list of prompts, right/left-padded id rows, or packed ids with lengths. */
export type PromptBatch =
  | Prompt
  | readonly Prompt[]
  | { padded: readonly (readonly number[])[]; padId: number }
  | { packed: ArrayLike<number>; lengths: readonly number[] };

export interface GenerateOptions extends Partial<SamplingConfig>, DecodeOptions {
  /** Shorthand for temperature 0. */
  greedy?: boolean;
  /** Shorthand for randomSeed. */
  seed?: number;
  /** Keep generating past end ids (endId: []). */
  ignoreEos?: boolean;
  /** Add the tokenizer's special tokens (BOS) to text prompts (default true). */
  addSpecialTokens?: boolean;
}

/** GenerateOptions' own keys; the rest are SamplingConfig's and DecodeOptions'. */
const GENERATE_OWN_KEYS: KeySet<Omit<GenerateOptions, keyof SamplingConfig | keyof DecodeOptions>> = {
  greedy: true,
  seed: true,
  ignoreEos: true,
  addSpecialTokens: true,
};

export interface GenerationOutput extends RequestOutput {
  /** The first sequence's fields, for the common single-sequence case. */
  outputIds: number[];
  logProbs: number[];
  text: string;
  finishReason: FinishReason;
}

export class ModelRunner {
  readonly generation: GenerationSession;
  /** Set by dispose(): resolves once the backend's memory is freed. */
  private closing: Promise<void> | null = null;

  private constructor(
    readonly session: Session,
    readonly engine: ResolvedEngine,
    kvCache: KvCacheConfig,
    options: GenerationSessionOptions,
  ) {
    this.generation = new GenerationSession(session, kvCache, options);
  }

  static fromDir(dir: string, options: RunnerOptions = {}): ModelRunner {
    return runSteps(ModelRunner.openSteps(dir, options));
  }

  /** fromDir without blocking the event loop during a build: the build yields between weights, and
   * when `signal` aborts it stops, removes its partial engine and rejects with the signal's reason. */
  static async load(dir: string, options: RunnerOptions = {}, signal?: AbortSignal): Promise<ModelRunner> {
    return runStepsUntil(ModelRunner.openSteps(dir, options), signal);
  }

  private static *openSteps(dir: string, options: RunnerOptions): Steps<ModelRunner> {
    rejectUnknownKeys(
      "RunnerOptions",
      options,
      RUNNER_OWN_KEYS,
      BUILD_CONFIG_KEYS,
      GENERATION_SESSION_OPTION_KEYS,
    );
    const { cacheDir, kvCache, streamIdleTimeoutMs, cudaTuning, ...build } = options;
    const kv = resolveKvCacheConfig(kvCache); // before a build, which takes far longer than this check
    const { session, engine } = yield* openSessionSteps(dir, build, cacheDir, cudaTuning, kv.dtype);
    return adoptSession(session, (s) => new ModelRunner(s, engine, kv, { streamIdleTimeoutMs }));
  }

  static fromEngine(
    engineDir: string,
    backend?: BuildConfig["backend"],
    kvCache: Partial<KvCacheConfig> = {},
    options: GenerationSessionOptions = {},
  ): ModelRunner {
    rejectUnknownKeys("GenerationSessionOptions", options, GENERATION_SESSION_OPTION_KEYS);
    const kv = resolveKvCacheConfig(kvCache);
    return adoptSession(
      Session.open(engineDir, { backend, kvCacheDtype: kv.dtype }),
      (s) => new ModelRunner(s, { dir: engineDir, origin: "engine" }, kv, options),
    );
  }

  get tokenizer(): Tokenizer {
    const t = this.session.tokenizer;
    if (!t)
      throw new InvalidArgumentError(
        `engine ${this.session.dir} has no tokenizer.json; pass token ids instead of text`,
      );
    return t;
  }

  get maxSeqLen(): number {
    return this.session.config.maxSeqLen;
  }

  /** Prompt → token ids, validated against the vocabulary and the context window. */
  encode(prompt: Prompt, addSpecialTokens = true): number[] {
    checkPrompt(prompt);
    const ids =
      typeof prompt === "string" ? this.tokenizer.encode(prompt, { addSpecialTokens }).ids : [...prompt.ids];
    const V = this.session.config.model.vocabSize;
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new InvalidTokenIdError(id, V);
    if (ids.length === 0) throw new InvalidArgumentError("the prompt is empty: give at least one token");
    if (ids.length >= this.maxSeqLen) throw new ContextWindowExceededError(ids.length, this.maxSeqLen);
    return ids;
  }

  /** The batch as id lists. */
  encodeBatch(batch: PromptBatch, addSpecialTokens = true): number[][] {
    if (batch === null || (typeof batch !== "string" && typeof batch !== "object")) checkPrompt(batch);
    if (typeof batch === "string" || (!Array.isArray(batch) && "ids" in batch))
      return [this.encode(batch as Prompt, addSpecialTokens)];
    if (Array.isArray(batch))
      return (batch as readonly Prompt[]).map((p) => this.encode(p, addSpecialTokens));
    if ("padded" in batch) {
      return batch.padded.map((row) => {
        let a = 0;
        let b = row.length;
        while (a < b && row[a] === batch.padId) a++;
        while (b > a && row[b - 1] === batch.padId) b--;
        return this.encode({ ids: row.slice(a, b) });
      });
    }
    if ("packed" in batch) {
      const total = batch.lengths.reduce((x, y) => x + y, 0);
      if (total !== batch.packed.length) {
        throw new InvalidArgumentError(
          `packed batch: lengths sum to ${total} but there are ${batch.packed.length} ids`,
        );
      }
      let at = 0;
      return batch.lengths.map((n) => {
        const ids = Array.from({ length: n }, (_, i) => batch.packed[at + i]);
        at += n;
        return this.encode({ ids });
      });
    }
    throw new InvalidArgumentError("generate: unrecognised prompt batch");
  }

  private split(o: GenerateOptions): {
    config: Partial<SamplingConfig>;
    opts: DecodeOptions;
    addSpecialTokens: boolean;
  } {
    if (this.closing) throw new RunnerDisposedError();
    rejectUnknownKeys("GenerateOptions", o, GENERATE_OWN_KEYS, SAMPLING_CONFIG_KEYS, DECODE_OPTION_KEYS);
    const {
      greedy,
      seed,
      ignoreEos,
      addSpecialTokens,
      stoppingCriteria,
      logitsProcessors,
      signal,
      ...config
    } = o;
    if (greedy) config.temperature = 0;
    if (seed !== undefined) config.randomSeed = seed;
    if (ignoreEos) config.endId = [];
    return {
      config,
      opts: { stoppingCriteria, logitsProcessors, signal },
      addSpecialTokens: addSpecialTokens ?? true,
    };
  }

  async generate(prompts: PromptBatch, options: GenerateOptions = {}): Promise<GenerationOutput[]> {
    const { config, opts, addSpecialTokens } = this.split(options);
    const outs = await this.generation.decode(this.encodeBatch(prompts, addSpecialTokens), config, opts);
    return outs.map((o) => {
      const first = o.sequences[0];
      return {
        ...o,
        outputIds: first.outputIds,
        logProbs: first.logProbs,
        text: first.text,
        finishReason: first.finishReason,
      };
    });
  }

  /** Every step's output (tokens with their text deltas; whole beams for beam search). */
  steps(prompts: PromptBatch, options: GenerateOptions = {}): AsyncGenerator<StepOutput, RequestOutput[]> {
    const { config, opts, addSpecialTokens } = this.split(options);
    return this.generation.decodeStream(this.encodeBatch(prompts, addSpecialTokens), config, opts);
  }

  /** Tokens as they are generated, with incremental text. */
  async *stream(prompts: PromptBatch, options: GenerateOptions = {}): AsyncGenerator<TokenEvent> {
    for await (const step of this.steps(prompts, options)) yield* step.tokens;
  }

  /** Frees the backend's memory. Safe to call at any time and more than once: requests after it
   * reject with RunnerDisposedError; requests in flight are cancelled at the executor's next step
   * (same error) and the memory is freed once it has stopped, so an idle runner is freed before this
   * returns. `await close()` to wait for that. */
  dispose(): void {
    if (this.closing) return;
    const stopped = this.generation.shutdown();
    if (!this.generation.busy) {
      this.session.dispose();
      this.closing = Promise.resolve();
    } else this.closing = stopped.then(() => this.session.dispose());
  }

  /** dispose(), then waits until the requests in flight (if any) have stopped and the memory is freed. */
  close(): Promise<void> {
    this.dispose();
    return this.closing as Promise<void>;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** A prompt is text or `{ ids: number[] }`; anything else is a named error, not a TypeError. */
function checkPrompt(p: unknown): void {
  if (typeof p === "string") return;
  if (p !== null && typeof p === "object" && "ids" in p && Array.isArray((p as { ids: unknown }).ids)) return;
  const got =
    p === null
      ? "null"
      : Array.isArray(p)
        ? "a nested list"
        : typeof p === "object"
          ? "an object without an ids array"
          : `${typeof p} ${String(p)}`;
  throw new InvalidPromptError(
    `a prompt must be text or { ids: number[] } (a list of them for a batch), got ${got}; e.g. runner.generate("Hello") or runner.generate({ ids: [1, 2, 3] })`,
  );
}
