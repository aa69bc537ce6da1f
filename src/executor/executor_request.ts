// What a caller enqueues (TensorRT-LLM's Request) and the decoding state the executor keeps for each
// of its sequences: the resolved SamplingConfig (batch of one), its bad words as ids, its stop rules,
// its callbacks and its text. numReturnSequences > 1 samples that many sequences from one prefilled
// prompt; beamWidth > 1 runs beam search (sampling/beam_search.ts) over that many rows.
//
// TensorRT-LLM's excludeInputFromOutput has no counterpart: result events carry only generated tokens
// and their text, never the prompt.
import type { EngineConfig } from "../engine/format.ts";
import type { GenerationDefaults } from "../sampling/generation_config.ts";
import type { Row } from "../sampling/logits_pipeline.ts";
import type { LogitsProcessor, StoppingCriteria } from "../sampling/logits_processor.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import {
  InvalidSamplingConfigError,
  modelSamplingDefaults,
  type ResolvedSamplingConfig,
  resolveSamplingConfig,
  type SamplingConfig,
  type WordSpec,
} from "../sampling/sampling_config.ts";
import { BuiltinStops, type StopCheck } from "../sampling/stopping.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { InvalidRequestError, RequestCallbackError, UnsupportedRequestError } from "./errors.ts";
import { TextTracker } from "./text_tracker.ts";

export interface ExecutorRequest {
  /** Text (tokenized with the engine's tokenizer) or token ids. */
  prompt: string | readonly number[];
  maxNewTokens: number;
  /** Argmax decoding (temperature 0). */
  greedy?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** Seed of the counter-based sampler: the tokens do not depend on what else runs. */
  seed?: number;
  /** SamplingConfig's name for `seed` (seed wins when both are given, as in ModelRunner). */
  randomSeed?: number;
  /** After each token topP ← max(topP · topPDecay, topPMin) (TensorRT-LLM's decay); 1 = off. */
  topPDecay?: number;
  topPMin?: number;
  /** Generating this token resets topP to its first value; null = never. */
  topPResetIds?: number | null;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** End id(s); default the model's; [] never ends on a token. */
  endId?: number | readonly number[];
  /** Validated as a token id, as SamplingConfig.padId; results are never padded. */
  padId?: number | null;
  stopWords?: readonly WordSpec[];
  badWords?: readonly WordSpec[];
  /** Beams decoded together (beam search when > 1; default 1). */
  beamWidth?: number;
  /** Sequences returned: independent samples of the prompt, or the best beams (≤ beamWidth). */
  numReturnSequences?: number;
  /** Beam search: scores are cumLogProb / length ** lengthPenalty (HF). */
  lengthPenalty?: number;
  /** Beam search: true stops once beamWidth hypotheses finished; false / "never": HF's heuristics. */
  earlyStopping?: boolean | "never";
  /** Beam search: TensorRT-LLM's beamSearchDiversityRate (0: HF-exact). */
  beamSearchDiversityRate?: number;
  /** End ids are banned until this many tokens were generated. */
  minLength?: number;
  /** Ban any token that would repeat an n-gram of this size (HF no_repeat_ngram_size). */
  noRepeatNgramSize?: number;
  /** 0–1, higher first (default 0.5). */
  priority?: number;
  /** The request times out this long after enqueue, queued or running. */
  allottedTimeMs?: number;
  /** true: one result per token; false (default): one result when the request finishes. */
  streaming?: boolean;
  /** Add the tokenizer's special tokens (BOS) to a text prompt (default true). */
  addSpecialTokens?: boolean;
  /** Added to this request's logits every step: a dense [vocab] array or {tokenId: bias}. */
  embeddingBias?: SamplingConfig["embeddingBias"];
  /** Run on this request's logits row each step, after bias, penalties and bans, in order. A throw
   * ends only this request, with RequestCallbackError. */
  logitsProcessors?: LogitsProcessor | readonly LogitsProcessor[];
  /** Asked after each token of this request, after the built-in stops. A throw ends only this
   * request, with RequestCallbackError. */
  stoppingCriteria?: StoppingCriteria | readonly StoppingCriteria[];
  /** Each result event carries the raw logits of its tokens ([tokens × vocab], before bias,
   * penalties and processors), as ModelRunner.generate's generationLogits. */
  returnGenerationLogits?: boolean;
  /** The first result event carries the logits of every prompt position ([promptLen × vocab]), as
   * ModelRunner.generate's contextLogits. The prompt is then computed whole (no prefix-cache hits). */
  returnContextLogits?: boolean;
  /** SamplingConfig's output switches, validated and kept in the resolved config. Result events
   * always carry log-probs and cumLogProb; ModelRunner leaves them out of its outputs when false. */
  outputLogProbs?: boolean;
  outputCumLogProbs?: boolean;
  /** 0–20: each result event also carries, per token, this many most likely tokens with their
   * log-probs (the distribution its logProb comes from). > 0 brings the request's logits to the host. */
  topLogProbs?: number;
  /** Echoed on every result event of the request; the executor never reads it. */
  clientId?: string | number;
}

const REQUEST_KEYS: KeySet<ExecutorRequest> = {
  prompt: true,
  maxNewTokens: true,
  greedy: true,
  temperature: true,
  topK: true,
  topP: true,
  minP: true,
  seed: true,
  randomSeed: true,
  topPDecay: true,
  topPMin: true,
  topPResetIds: true,
  repetitionPenalty: true,
  presencePenalty: true,
  frequencyPenalty: true,
  endId: true,
  padId: true,
  stopWords: true,
  badWords: true,
  beamWidth: true,
  numReturnSequences: true,
  lengthPenalty: true,
  earlyStopping: true,
  beamSearchDiversityRate: true,
  minLength: true,
  noRepeatNgramSize: true,
  priority: true,
  allottedTimeMs: true,
  streaming: true,
  addSpecialTokens: true,
  embeddingBias: true,
  logitsProcessors: true,
  stoppingCriteria: true,
  returnGenerationLogits: true,
  returnContextLogits: true,
  outputLogProbs: true,
  outputCumLogProbs: true,
  topLogProbs: true,
  clientId: true,
};

/** The most top log-probs a request may ask for per token (OpenAI's limit). */
export const MAX_TOP_LOG_PROBS = 20;

/** What the executor knows of the engine when it resolves a request. */
export interface RequestContext {
  config: EngineConfig;
  tokenizer: Tokenizer | null;
  generationDefaults: GenerationDefaults;
  eosTokenIds: number[];
}

/** One sequence's decoding state besides its tokens (those are the scheduler's Sequence.tokens). */
export class DecodingState {
  /** Top-p now (it decays per token when topPDecay < 1). */
  topP: number;
  private readonly stops: BuiltinStops;

  constructor(
    readonly promptIds: readonly number[],
    readonly cfg: ResolvedSamplingConfig,
    readonly badWordIds: number[][],
    readonly text: TextTracker,
    readonly maxSeqLen: number,
    readonly processors: readonly LogitsProcessor[] = [],
    readonly criteria: readonly StoppingCriteria[] = [],
    /** The sample index (numReturnSequences) or beam slot; the sampler's RNG key uses it. */
    readonly sequenceIndex = 0,
    /** Top log-probs returned per token (ExecutorRequest.topLogProbs); 0 = none. */
    readonly topLogProbs = 0,
  ) {
    this.topP = cfg.topP[0];
    this.stops = new BuiltinStops(new Set(cfg.endIds), cfg.maxNewTokens, cfg.stopWords[0]);
  }

  /** The state of sequence `k` of the same request, before its first token. */
  forSequence(k: number): DecodingState {
    const { promptIds, cfg, badWordIds, maxSeqLen, processors, criteria, topLogProbs } = this;
    return new DecodingState(
      promptIds,
      cfg,
      badWordIds,
      this.text.fresh(),
      maxSeqLen,
      processors,
      criteria,
      k,
      topLogProbs,
    );
  }

  /** Sequences the request decodes at once: its beams, or its samples. */
  get width(): number {
    return this.cfg.beamWidth > 1 ? this.cfg.beamWidth : this.cfg.numReturnSequences;
  }

  /** The logits pipeline's view of the sequence: a row of prompt 0. */
  row(tokens: readonly number[]): Row {
    return {
      promptIndex: 0,
      sequenceIndex: this.sequenceIndex,
      promptIds: this.promptIds,
      outputIds: tokens.slice(this.promptIds.length),
      ids: tokens,
    };
  }

  /** Whether the row's logits must come to the host (bias, processors, generation logits or top
   * log-probs). */
  get needsHostLogits(): boolean {
    return (
      this.cfg.embeddingBias !== null ||
      this.processors.length > 0 ||
      this.cfg.returnGenerationLogits ||
      this.topLogProbs > 0
    );
  }

  /** After `token` joined `tokens`: top-p decays, the text grows, and the runtime's stop rules run
   * in its order (end ids, stop words, max tokens, the context window, then the user's criteria).
   * Returns the stop, if any, and the text to emit now. A criterion that throws → RequestCallbackError. */
  accept(
    requestId: number,
    tokens: readonly number[],
    token: number,
  ): { stop: StopCheck | null; text: string } {
    const c = this.cfg;
    this.topP = token === c.topPResetIds[0] ? c.topP[0] : Math.max(this.topP * c.topPDecay[0], c.topPMin[0]);
    const from = this.text.push(token);
    const output = tokens.slice(this.promptIds.length);
    let stop = this.stops.check(output, token, this.text.text, from);
    if (!stop && tokens.length >= this.maxSeqLen) stop = { reason: "length" };
    for (const [i, crit] of this.criteria.entries()) {
      if (stop) break;
      let v: ReturnType<StoppingCriteria["shouldStop"]>;
      try {
        const seq = {
          promptIndex: 0,
          sequenceIndex: this.sequenceIndex,
          promptIds: this.promptIds,
          outputIds: output,
        };
        v = crit.shouldStop({ ...seq, text: this.text.text }, output.length - 1);
      } catch (e) {
        throw new RequestCallbackError(requestId, `stoppingCriteria[${i}]`, e);
      }
      if (v) stop = { reason: v === true ? "stop" : v };
    }
    if (!stop) return { stop, text: this.text.delta() };
    return { stop, text: this.text.finish(stop.text === undefined ? undefined : stop.text.length) };
  }
}

/** Validates `r` and returns its prompt ids and decoding state. */
export function resolveRequest(
  r: ExecutorRequest,
  ctx: RequestContext,
): { promptIds: number[]; state: DecodingState } {
  const bad = (what: string) => new InvalidRequestError(what);
  if (r === null || typeof r !== "object")
    throw bad("a request must be an object with prompt and maxNewTokens");
  rejectUnknownKeys("ExecutorRequest", r, REQUEST_KEYS);
  const V = ctx.config.model.vocabSize;
  const maxSeqLen = ctx.config.maxSeqLen;
  const tok = ctx.tokenizer;
  let promptIds: number[];
  if (typeof r.prompt === "string") {
    if (!tok) throw bad("the prompt is text but the engine has no tokenizer.json; give token ids");
    promptIds = tok.encode(r.prompt, { addSpecialTokens: r.addSpecialTokens ?? true }).ids;
  } else if (Array.isArray(r.prompt)) promptIds = [...r.prompt];
  else throw bad(`the prompt must be text or an array of token ids, got ${typeof r.prompt}`);
  if (promptIds.length === 0) throw bad("the prompt is empty; give at least one token");
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw bad(`prompt token id ${id} is outside the vocabulary; use ids in 0..${V - 1}`);
  }
  if (promptIds.length >= maxSeqLen) {
    throw bad(
      `the prompt has ${promptIds.length} tokens but the engine's context window is ${maxSeqLen}; shorten it`,
    );
  }
  const user: Partial<SamplingConfig> = {
    maxNewTokens: r.maxNewTokens,
    temperature: r.greedy ? 0 : r.temperature,
    topK: r.topK,
    topP: r.topP,
    minP: r.minP,
    topPDecay: r.topPDecay,
    topPMin: r.topPMin,
    topPResetIds: r.topPResetIds,
    randomSeed: r.seed ?? r.randomSeed,
    repetitionPenalty: r.repetitionPenalty,
    presencePenalty: r.presencePenalty,
    frequencyPenalty: r.frequencyPenalty,
    endId: r.endId,
    padId: r.padId,
    stopWords: r.stopWords,
    badWords: r.badWords,
    embeddingBias: r.embeddingBias,
    returnGenerationLogits: r.returnGenerationLogits,
    returnContextLogits: r.returnContextLogits,
    outputLogProbs: r.outputLogProbs,
    outputCumLogProbs: r.outputCumLogProbs,
    beamWidth: r.beamWidth,
    numReturnSequences: r.numReturnSequences,
    lengthPenalty: r.lengthPenalty,
    earlyStopping: r.earlyStopping,
    beamSearchDiversityRate: r.beamSearchDiversityRate,
    minLength: r.minLength,
    noRepeatNgramSize: r.noRepeatNgramSize,
  };
  const cfg = resolveSamplingConfig(user, 1, {
    defaults: modelSamplingDefaults(ctx.generationDefaults),
    endIds: ctx.eosTokenIds,
    padId: ctx.config.model.padTokenId,
    vocabSize: V,
  });
  const words = cfg.stopWords[0];
  const needsText =
    words.some((w) => typeof w === "string") || cfg.badWords[0].some((w) => typeof w === "string");
  if (needsText && !tok) {
    throw new InvalidSamplingConfigError(
      "stopWords or badWords has text but the engine has no tokenizer; give token ids",
    );
  }
  const badWordIds = cfg.badWords[0].map((w) =>
    typeof w === "string" ? (tok as Tokenizer).encode(w, { addSpecialTokens: false }).ids : [...w],
  );
  const holdback = Math.max(0, ...words.map((w) => (typeof w === "string" ? w.length - 1 : 0)));
  const text = new TextTracker(tok, promptIds, holdback);
  if (r.clientId !== undefined && typeof r.clientId !== "string" && typeof r.clientId !== "number")
    throw bad(`clientId must be a string or a number, got ${typeof r.clientId}`);
  const list = <T>(x: T | readonly T[] | undefined): T[] =>
    x === undefined ? [] : Array.isArray(x) ? [...x] : [x as T];
  const processors = list(r.logitsProcessors);
  const criteria = list(r.stoppingCriteria);
  for (const [name, xs, method] of [
    ["logitsProcessors", processors, "process"],
    ["stoppingCriteria", criteria, "shouldStop"],
  ] as const) {
    if (xs.some((x) => typeof (x as unknown as Record<string, unknown>)?.[method] !== "function"))
      throw bad(`every entry of ${name} must be an object with a ${method}() method`);
  }
  const topLogProbs = r.topLogProbs ?? 0;
  if (!Number.isInteger(topLogProbs) || topLogProbs < 0 || topLogProbs > MAX_TOP_LOG_PROBS)
    throw bad(`topLogProbs must be an integer in 0..${MAX_TOP_LOG_PROBS}, got ${topLogProbs}`);
  if (cfg.beamWidth > 1) {
    if (topLogProbs > 0) {
      throw new UnsupportedRequestError(
        `topLogProbs ${topLogProbs} with beamWidth > 1: beams' top log-probs are not returned; leave ` +
          "topLogProbs out (beams come with their tokens' log-probs) or use beamWidth 1",
      );
    }
    if (cfg.stopWords[0].length > 0 || criteria.length > 0) {
      throw new InvalidSamplingConfigError(
        "stopWords and stoppingCriteria are not supported with beam search (beams end at end ids or " +
          "maxNewTokens); use beamWidth 1",
      );
    }
    if (cfg.returnGenerationLogits) {
      throw new UnsupportedRequestError(
        "returnGenerationLogits with beamWidth > 1: beams' logits are not returned; leave it out (beams " +
          "come with their tokens, log-probs and scores) or use beamWidth 1",
      );
    }
  }
  const state = new DecodingState(
    promptIds,
    cfg,
    badWordIds,
    text,
    maxSeqLen,
    processors,
    criteria,
    0,
    topLogProbs,
  );
  return { promptIds, state };
}
