// ModelRunner: the high-level API. `fromDir` takes a checkpoint (built into a cached engine on the
// fly) or an engine; `generate` runs prompts (text or ids, batched) to completion; `stream` yields
// tokens as they are produced.
import type { BuildConfig } from "../builder/build_config.ts";
import { type ResolvedEngine, resolveEngine } from "../builder/engine_cache.ts";
import { InvalidArgumentError } from "../errors.ts";
import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import { BlockAllocator } from "./block_allocator.ts";
import { type SamplingParams, sampleToken } from "./decoding/sampler.ts";
import { ContextWindowExceededError, InvalidTokenIdError } from "./errors.ts";
import { type FinishReason, Sequence } from "./sequence.ts";
import { Session } from "./session.ts";
import { buildStep } from "./step_builder.ts";

export interface RunnerOptions extends Partial<BuildConfig> {
  /** Engine cache root (default: $KILN_CACHE_DIR, $XDG_CACHE_HOME/kiln or ~/.cache/kiln). */
  cacheDir?: string;
}

export type Prompt = string | { ids: readonly number[] };

export interface GenerateOptions {
  maxNewTokens?: number;
  /** Greedy decoding; otherwise sampling with temperature / topK / topP (defaults from generation_config.json). */
  greedy?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Keep generating past end-of-sequence tokens (for tests and benchmarks). */
  ignoreEos?: boolean;
  /** Add the tokenizer's special tokens (BOS) to text prompts (default true). */
  addSpecialTokens?: boolean;
  signal?: AbortSignal;
}

export interface GenerationOutput {
  promptIds: number[];
  outputIds: number[];
  logProbs: number[];
  text: string;
  finishReason: FinishReason;
}

export interface StreamEvent {
  /** Which prompt of the batch this token belongs to. */
  index: number;
  tokenId: number;
  logProb: number;
  /** Text completed by this token (may be "" while a multi-byte character is incomplete). */
  text: string;
  finishReason: FinishReason | null;
}

export class ModelRunner {
  private constructor(
    readonly session: Session,
    readonly engine: ResolvedEngine,
  ) {}

  static fromDir(dir: string, options: RunnerOptions = {}): ModelRunner {
    const { cacheDir, ...build } = options;
    const engine = resolveEngine(dir, build, cacheDir);
    return new ModelRunner(Session.open(engine.dir, build.backend), engine);
  }

  static fromEngine(engineDir: string, backend?: BuildConfig["backend"]): ModelRunner {
    return new ModelRunner(Session.open(engineDir, backend), { dir: engineDir, origin: "engine" });
  }

  get tokenizer() {
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

  async generate(prompts: Prompt | Prompt[], options: GenerateOptions = {}): Promise<GenerationOutput[]> {
    const list = Array.isArray(prompts) ? prompts : [prompts];
    const outputs: { ids: number[]; logProbs: number[]; finish: FinishReason | null }[] = list.map(() => ({
      ids: [],
      logProbs: [],
      finish: null,
    }));
    let promptIds: number[][] = [];
    for await (const ev of this.run(list, options, (p) => (promptIds = p))) {
      const o = outputs[ev.index];
      o.ids.push(ev.tokenId);
      o.logProbs.push(ev.logProb);
      o.finish = ev.finishReason;
    }
    return outputs.map((o, i) => ({
      promptIds: promptIds[i],
      outputIds: o.ids,
      logProbs: o.logProbs,
      text: this.session.tokenizer ? this.session.tokenizer.decode(o.ids, { skipSpecialTokens: true }) : "",
      finishReason: o.finish ?? "length",
    }));
  }

  /** Streams tokens of every prompt as they are generated, with their incremental text. */
  stream(prompts: Prompt | Prompt[], options: GenerateOptions = {}): AsyncGenerator<StreamEvent> {
    return this.run(Array.isArray(prompts) ? prompts : [prompts], options, () => {});
  }

  private samplingParams(o: GenerateOptions): SamplingParams {
    const d = this.session.generationDefaults;
    const greedy = o.greedy ?? (o.temperature === undefined && d.doSample === false);
    const temperature = o.temperature ?? d.temperature ?? 1;
    const topK = o.topK ?? d.topK ?? 0;
    const topP = o.topP ?? d.topP ?? 1;
    const seed = o.seed ?? 0;
    if (!(temperature >= 0) || !Number.isFinite(temperature)) {
      throw new InvalidArgumentError(`temperature must be a finite number ≥ 0, got ${temperature}`);
    }
    if (!Number.isInteger(topK) || topK < 0)
      throw new InvalidArgumentError(`topK must be an integer ≥ 0, got ${topK}`);
    if (!(topP > 0 && topP <= 1)) throw new InvalidArgumentError(`topP must be in (0, 1], got ${topP}`);
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new InvalidArgumentError(`seed must be an integer ≥ 0, got ${seed}`);
    return { greedy: greedy || temperature === 0, temperature, topK, topP, seed };
  }

  private async *run(
    prompts: Prompt[],
    o: GenerateOptions,
    onPromptIds: (ids: number[][]) => void,
  ): AsyncGenerator<StreamEvent> {
    const maxNewTokens = o.maxNewTokens ?? 64;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
      throw new InvalidArgumentError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
    }
    const sampling = this.samplingParams(o);
    const ids = prompts.map((p) => this.encode(p, o.addSpecialTokens ?? true));
    onPromptIds(ids);
    const backend = this.session.backend;
    const blockSize = backend.kvBlockSize;
    const eos = new Set(o.ignoreEos ? [] : this.session.eosTokenIds);
    const limit = (p: number[]) => Math.min(p.length + maxNewTokens, this.maxSeqLen);
    const blocksNeeded = ids.reduce((s, p) => s + Math.ceil(limit(p) / blockSize), 0);
    if (backend.numKvBlocks < blocksNeeded) backend.allocateKvCache(blocksNeeded);
    const allocator = new BlockAllocator(backend.numKvBlocks);
    const seqs = ids.map((p, i) => new Sequence(i, p, blockSize));
    const detok = seqs.map(() =>
      this.session.tokenizer
        ? new IncrementalDetokenizer(this.session.tokenizer, { skipSpecialTokens: true })
        : null,
    );
    try {
      let active = seqs;
      let step = 0;
      while (active.length > 0) {
        o.signal?.throwIfAborted();
        for (const s of active) s.reserve(s.ids.length, allocator);
        const logits = backend.forward(buildStep(active)); // [active.length, vocab]
        const V = backend.vocabSize;
        for (let r = 0; r < active.length; r++) {
          const s = active[r];
          s.numComputed = s.ids.length;
          const { token, logProb } = sampleToken(logits.subarray(r * V, (r + 1) * V), sampling, 0, step);
          s.ids.push(token);
          if (eos.has(token)) s.finishReason = "end";
          else if (s.ids.length >= limit(s.promptIds as number[])) s.finishReason = "length";
          let text = detok[s.index]?.push(token) ?? "";
          if (s.finishReason) text += detok[s.index]?.flush() ?? "";
          yield { index: s.index, tokenId: token, logProb, text, finishReason: s.finishReason };
        }
        for (const s of active) if (s.finishReason) s.release(allocator);
        active = active.filter((s) => !s.finishReason);
        step++;
        // Let I/O and abort signals through between steps.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      for (const s of seqs) s.release(allocator);
    }
  }

  dispose(): void {
    this.session.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
