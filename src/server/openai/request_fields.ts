// The OpenAI request fields both generation endpoints share, checked and mapped onto the executor's
// request (ExecutorRequest). Each numeric field is range-checked here, so a bad value is a 400 naming
// the field and its range before anything is queued.
import type { ExecutorRequest } from "../../executor/executor.ts";
import { badField, HttpError } from "../http_errors.ts";
import type { ServedModel } from "../server_context.ts";
import { type Fields, isPlainObject, type NumberRange, rangeText, shown } from "./fields.ts";

/** The executor request without its prompt and length, plus what the route itself does. */
export interface GenerationParams {
  /** Fields of every executor request of this HTTP request (prompt and maxNewTokens come later). */
  request: Omit<ExecutorRequest, "prompt" | "maxNewTokens">;
  /** max_tokens / max_completion_tokens; null: the route's default. */
  maxTokens: number | null;
  /** Choices per prompt. */
  n: number;
  beamSearch: boolean;
  stream: boolean;
  includeUsage: boolean;
  /** Stop strings (text), for include_stop_str_in_output. */
  stops: string[];
  includeStopStr: boolean;
}

const MAX_N = 64;
const MAX_STOPS = 16;
const SEED: NumberRange = { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true };

/** Reads the shared fields of `f` (model checked by the caller). `model` sizes the token ranges. */
export function readGenerationParams(
  f: Fields,
  model: ServedModel,
  maxTokensKeys: string[],
): GenerationParams {
  const V = model.vocabSize;
  const request: GenerationParams["request"] = { streaming: true };

  let maxTokens: number | null = null;
  for (const key of maxTokensKeys) {
    const v = f.number(key, { min: 1, max: model.maxModelLen, integer: true });
    if (v === undefined) continue;
    if (maxTokens !== null && v !== maxTokens)
      throw badField(key, `${maxTokensKeys.join(" and ")} differ (${maxTokens} and ${v}); give one of them`);
    maxTokens = v;
  }

  const temperature = f.number("temperature", { min: 0, max: 2 });
  if (temperature === 0) request.greedy = true;
  else if (temperature !== undefined) request.temperature = temperature;
  const topP = f.number("top_p", { min: 0, max: 1, minExclusive: true });
  if (topP !== undefined) request.topP = topP;
  const topK = f.number("top_k", { min: -1, max: V, integer: true });
  if (topK !== undefined) request.topK = topK === -1 ? 0 : topK;
  const minP = f.number("min_p", { min: 0, max: 1 });
  if (minP !== undefined) request.minP = minP;
  const seed = f.number("seed", SEED);
  if (seed !== undefined) request.seed = seed;
  const presence = f.number("presence_penalty", { min: -2, max: 2 });
  if (presence !== undefined) request.presencePenalty = presence;
  const frequency = f.number("frequency_penalty", { min: -2, max: 2 });
  if (frequency !== undefined) request.frequencyPenalty = frequency;
  const repetition = f.number("repetition_penalty", { min: 0, max: 10, minExclusive: true });
  if (repetition !== undefined) request.repetitionPenalty = repetition;
  const priority = f.number("priority", { min: 0, max: 1 });
  if (priority !== undefined) request.priority = priority;
  f.string("user"); // the caller's end-user tag: accepted, as OpenAI accepts it; kiln keeps no users

  const bias = readLogitBias(f.raw("logit_bias"), V);
  if (bias) request.embeddingBias = bias;

  const stops = readStops(f.raw("stop"));
  const stopTokenIds = readTokenIds(f.raw("stop_token_ids"), "stop_token_ids", V);
  const ignoreEos = f.bool("ignore_eos") ?? false;
  if (stops.length > 0) request.stopWords = stops;
  if (ignoreEos || stopTokenIds.length > 0) {
    // endId replaces the model's end ids: keep them unless ignore_eos, add stop_token_ids.
    const eos = ignoreEos ? [] : model.eosTokenIds;
    request.endId = [...new Set([...eos, ...stopTokenIds])];
  }
  const minTokens = f.number("min_tokens", { min: 0, max: model.maxModelLen, integer: true });
  if (minTokens !== undefined && maxTokens !== null && minTokens > maxTokens)
    throw badField("min_tokens", `min_tokens ${minTokens} is above max_tokens ${maxTokens}; lower it`);
  // The end ids (endId above, else the model's) are banned until min_tokens were generated; the
  // executor's minLength does it, so the request stays plain data for the executor's thread.
  if (minTokens) request.minLength = minTokens;

  const skipSpecial = f.bool("skip_special_tokens");
  if (skipSpecial === false)
    throw badField(
      "skip_special_tokens",
      "skip_special_tokens false is not supported: kiln's text always leaves special tokens out; leave it out or set it true",
    );
  const includeStopStr = f.bool("include_stop_str_in_output") ?? false;

  const n = f.number("n", { min: 1, max: MAX_N, integer: true }) ?? 1;
  const useBeamSearch = f.bool("use_beam_search") ?? false;
  const bestOf = f.number("best_of", { min: 1, max: MAX_N, integer: true });
  const lengthPenalty = f.number("length_penalty", { min: -10, max: 10 });
  if (bestOf !== undefined && bestOf < n)
    throw badField("best_of", `best_of ${bestOf} is below n ${n}; give best_of ≥ n`);
  if (!useBeamSearch) {
    if (bestOf !== undefined && bestOf !== n)
      throw badField(
        "best_of",
        `best_of ${bestOf} without use_beam_search: kiln ranks candidates only by beam search; set use_beam_search true or leave best_of out`,
      );
    if (lengthPenalty !== undefined)
      throw badField(
        "length_penalty",
        "length_penalty applies to beam search; set use_beam_search true or leave it out",
      );
  } else {
    // Beam search: best_of beams (at least n), the best n returned. Only its final events are read.
    request.beamWidth = Math.max(bestOf ?? n, n);
    request.streaming = false;
    if (lengthPenalty !== undefined) request.lengthPenalty = lengthPenalty;
    if (stops.length > 0)
      throw badField(
        "stop",
        "stop with use_beam_search: beams end only at end ids or max_tokens; drop stop or use_beam_search",
      );
  }
  if (n > 1) request.numReturnSequences = n;

  const stream = f.bool("stream") ?? false;
  const options = f.object("stream_options");
  let includeUsage = false;
  if (options) {
    if (!stream) throw badField("stream_options", "stream_options is only allowed when stream is true");
    includeUsage = options.bool("include_usage") ?? false;
    options.rejectUnread();
  }
  // As vLLM: beams are ranked only at the end, so there is no delta to stream (docs/SERVER.md).
  if (stream && useBeamSearch)
    throw badField(
      "stream",
      "stream with use_beam_search: beams are ranked only at the end, so there is nothing to stream; set stream false or drop use_beam_search",
    );
  return { request, maxTokens, n, beamSearch: useBeamSearch, stream, includeUsage, stops, includeStopStr };
}

/** response_format: only {"type": "text"} (structured output does not exist yet). */
export function readResponseFormat(f: Fields): void {
  const v = f.raw("response_format");
  if (v === undefined) return;
  if (!isPlainObject(v) || v.type !== "text" || Object.keys(v).length !== 1)
    throw badField(
      "response_format",
      `response_format ${shown(v)} is not supported: kiln has no structured output yet; leave it out or give {"type": "text"}`,
    );
}

function readStops(v: unknown): string[] {
  if (v === undefined) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > MAX_STOPS || list.some((s) => typeof s !== "string" || s === ""))
    throw badField(
      "stop",
      `stop must be a non-empty string or a list of at most ${MAX_STOPS} of them, got ${shown(v)}`,
    );
  return list as string[];
}

function readTokenIds(v: unknown, name: string, V: number): number[] {
  if (v === undefined) return [];
  const id: NumberRange = { min: 0, max: V - 1, integer: true };
  if (
    !Array.isArray(v) ||
    v.some((x) => typeof x !== "number" || !Number.isSafeInteger(x) || x < 0 || x >= V)
  )
    throw badField(name, `${name} must be a list of token ids, each ${rangeText(id)}, got ${shown(v)}`);
  return v as number[];
}

const BIAS: NumberRange = { min: -100, max: 100 };

function readLogitBias(v: unknown, V: number): Record<number, number> | null {
  if (v === undefined) return null;
  if (!isPlainObject(v))
    throw badField("logit_bias", `logit_bias must be an object of token id → bias, got ${shown(v)}`);
  const out: Record<number, number> = {};
  for (const [k, b] of Object.entries(v)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || id >= V)
      throw badField("logit_bias", `logit_bias key ${shown(k)} is not a token id in 0..${V - 1}`);
    if (typeof b !== "number" || !(b >= BIAS.min && b <= BIAS.max))
      throw badField("logit_bias", `logit_bias[${k}] must be ${rangeText(BIAS)}, got ${shown(b)}`);
    out[id] = b;
  }
  return Object.keys(out).length > 0 ? out : null;
}

/** min_tokens: the end ids get -inf until `min` tokens were generated. */
/** The model field: required, and the served name (404 otherwise, as OpenAI answers). */
export function readModel(f: Fields, model: ServedModel): void {
  const name = f.raw("model");
  if (typeof name !== "string")
    throw badField("model", `model must be a string naming the served model "${model.name}"`);
  if (name !== model.name)
    throw new HttpError(
      404,
      `the model "${name}" does not exist; this server serves "${model.name}"`,
      "not_found_error",
      "model",
    );
}
