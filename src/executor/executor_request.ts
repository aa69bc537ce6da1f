// What a caller enqueues (TensorRT-LLM's Request, the fields that apply to one sampled sequence) and
// the per-request decoding state the executor keeps for it: the resolved SamplingConfig (batch of
// one), its bad words as ids, its stop rules and its text.
import type { EngineConfig } from "../engine/format.ts";
import type { GenerationDefaults } from "../sampling/generation_config.ts";
import type { Row } from "../sampling/logits_pipeline.ts";
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
import { InvalidRequestError, UnsupportedRequestError } from "./errors.ts";
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
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** End id(s); default the model's; [] never ends on a token. */
  endId?: number | readonly number[];
  stopWords?: readonly WordSpec[];
  badWords?: readonly WordSpec[];
  /** Not supported yet: anything but 1 is rejected with UnsupportedRequestError. */
  beamWidth?: number;
  numReturnSequences?: number;
  /** 0–1, higher first (default 0.5). */
  priority?: number;
  /** The request times out this long after enqueue, queued or running. */
  allottedTimeMs?: number;
  /** true: one result per token; false (default): one result when the request finishes. */
  streaming?: boolean;
  /** Add the tokenizer's special tokens (BOS) to a text prompt (default true). */
  addSpecialTokens?: boolean;
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
  repetitionPenalty: true,
  presencePenalty: true,
  frequencyPenalty: true,
  endId: true,
  stopWords: true,
  badWords: true,
  beamWidth: true,
  numReturnSequences: true,
  priority: true,
  allottedTimeMs: true,
  streaming: true,
  addSpecialTokens: true,
};

/** What the executor knows of the engine when it resolves a request. */
export interface RequestContext {
  config: EngineConfig;
  tokenizer: Tokenizer | null;
  generationDefaults: GenerationDefaults;
  eosTokenIds: number[];
}

/** A live request's decoding state besides its tokens (those are the scheduler's Request.tokens). */
export class DecodingState {
  /** Top-p now (it decays per token when topPDecay < 1). */
  topP: number;
  private readonly stops: BuiltinStops;

  constructor(
    readonly promptIds: readonly number[],
    readonly cfg: ResolvedSamplingConfig,
    readonly badWordIds: number[][],
    readonly text: TextTracker,
    private readonly maxSeqLen: number,
  ) {
    this.topP = cfg.topP[0];
    this.stops = new BuiltinStops(new Set(cfg.endIds), cfg.maxNewTokens, cfg.stopWords[0]);
  }

  /** The logits pipeline's view of the request: one row of prompt 0, sample 0. */
  row(tokens: readonly number[]): Row {
    return {
      promptIndex: 0,
      sequenceIndex: 0,
      promptIds: this.promptIds,
      outputIds: tokens.slice(this.promptIds.length),
      ids: tokens,
    };
  }

  /** After `token` joined `tokens`: top-p decays, the text grows, and the runtime's stop rules run
   * in its order (end ids, stop words, max tokens, then the context window). Returns the stop, if
   * any, and the text to emit now. */
  accept(tokens: readonly number[], token: number): { stop: StopCheck | null; text: string } {
    const c = this.cfg;
    this.topP = token === c.topPResetIds[0] ? c.topP[0] : Math.max(this.topP * c.topPDecay[0], c.topPMin[0]);
    const from = this.text.push(token);
    const output = tokens.slice(this.promptIds.length);
    let stop = this.stops.check(output, token, this.text.text, from);
    if (!stop && tokens.length >= this.maxSeqLen) stop = { reason: "length" };
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
  for (const [name, v] of [
    ["beamWidth", r.beamWidth],
    ["numReturnSequences", r.numReturnSequences],
  ] as const) {
    if (v !== undefined && v !== 1) {
      throw new UnsupportedRequestError(
        `${name} ${v}: the executor does not run ${name === "beamWidth" ? "beam search" : "several sequences per request"} ` +
          "yet; leave it at 1, or use ModelRunner.generate for it",
      );
    }
  }
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
    randomSeed: r.seed,
    repetitionPenalty: r.repetitionPenalty,
    presencePenalty: r.presencePenalty,
    frequencyPenalty: r.frequencyPenalty,
    endId: r.endId,
    stopWords: r.stopWords,
    badWords: r.badWords,
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
  return { promptIds, state: new DecodingState(promptIds, cfg, badWordIds, text, maxSeqLen) };
}
