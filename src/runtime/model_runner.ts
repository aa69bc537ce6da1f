// ModelRunner: the high-level API. `fromDir` takes a checkpoint (built into a cached engine on the
// fly) or an engine; `generate` runs prompts (text or ids; a list, padded or packed) to completion;
// `stream` yields tokens as they are produced. Decoding settings are SamplingConfig fields.
import type { BuildConfig } from "../builder/build_config.ts";
import { type ResolvedEngine, resolveEngine } from "../builder/engine_cache.ts";
import { EngineCorruptError } from "../engine/errors.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { ContextWindowExceededError, InvalidTokenIdError } from "./errors.ts";
import { type DecodeOptions, GenerationSession } from "./generation_session.ts";
import { type KvCacheConfig, resolveKvCacheConfig } from "./kv_cache_config.ts";
import type { RequestOutput, StepOutput, TokenEvent } from "./outputs.ts";
import type { SamplingConfig } from "./sampling_config.ts";
import type { FinishReason } from "./sequence.ts";
import { Session } from "./session.ts";

export interface RunnerOptions extends Partial<BuildConfig> {
  /** Engine cache root (default: $KILN_CACHE_DIR, $XDG_CACHE_HOME/kiln or ~/.cache/kiln). */
  cacheDir?: string;
  /** How large the KV pool may grow (sized once, at the first request). */
  kvCache?: Partial<KvCacheConfig>;
}

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

export interface GenerationOutput extends RequestOutput {
  /** The first sequence's fields, for the common single-sequence case. */
  outputIds: number[];
  logProbs: number[];
  text: string;
  finishReason: FinishReason;
}

export class ModelRunner {
  readonly generation: GenerationSession;

  private constructor(
    readonly session: Session,
    readonly engine: ResolvedEngine,
    kvCache: KvCacheConfig,
  ) {
    this.generation = new GenerationSession(session, kvCache);
  }

  static fromDir(dir: string, options: RunnerOptions = {}): ModelRunner {
    const { cacheDir, kvCache, ...build } = options;
    const kv = resolveKvCacheConfig(kvCache); // before a build, which takes far longer than this check
    const engine = resolveEngine(dir, build, cacheDir);
    try {
      return ModelRunner.open(engine, build.backend, kv);
    } catch (e) {
      // Weight regions are verified as the backend loads them: a damaged cache entry is rebuilt.
      if (engine.origin !== "hit" || !(e instanceof EngineCorruptError)) throw e;
      return ModelRunner.open(resolveEngine(dir, build, cacheDir, e), build.backend, kv);
    }
  }

  static fromEngine(
    engineDir: string,
    backend?: BuildConfig["backend"],
    kvCache: Partial<KvCacheConfig> = {},
  ): ModelRunner {
    return ModelRunner.open({ dir: engineDir, origin: "engine" }, backend, resolveKvCacheConfig(kvCache));
  }

  private static open(
    engine: ResolvedEngine,
    backend: BuildConfig["backend"] | undefined,
    kvCache: KvCacheConfig,
  ): ModelRunner {
    const session = Session.open(engine.dir, backend);
    try {
      return new ModelRunner(session, engine, kvCache);
    } catch (e) {
      session.dispose(); // e.g. maxTokens below one KV block of this engine
      throw e;
    }
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

  dispose(): void {
    this.session.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
