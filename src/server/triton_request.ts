// The body of a Triton generate request (the generate extension as TensorRT-LLM's Triton backend
// takes it) → an ExecutorRequest. Every field is checked here, so a bad one is a 400 naming the
// field as the client wrote it, with the allowed range; a field kiln does not know is refused, never
// ignored.
//
//   { text_input, max_tokens, bad_words, stop_words, end_id, pad_id, temperature, top_k, top_p,
//     beam_width, repetition_penalty, presence_penalty, frequency_penalty, random_seed,
//     return_log_probs, exclude_input_in_output, stream }
//
// Decoding follows TensorRT-LLM: top_k 0 and top_p 0 (their defaults) decode greedily, whatever the
// temperature; otherwise it samples at `temperature` (default 1) from top_k (0 = all) and top_p
// (0 = all). The model's generation_config.json does not apply, so a request means the same on any
// checkpoint.
import type { ExecutorRequest } from "../executor/executor.ts";
import { badField } from "./http_errors.ts";

export interface TritonRequest {
  textInput: string;
  /** The executor's request, less the prompt ids the route tokenizes. */
  request: Omit<ExecutorRequest, "prompt" | "streaming">;
  returnLogProbs: boolean;
  /** TensorRT-LLM's default false: /generate's text_output starts with text_input. */
  excludeInputInOutput: boolean;
  /** The `stream` field, when given. */
  stream: boolean | undefined;
}

const FIELDS = new Set([
  "text_input",
  "max_tokens",
  "bad_words",
  "stop_words",
  "end_id",
  "pad_id",
  "temperature",
  "top_k",
  "top_p",
  "beam_width",
  "repetition_penalty",
  "presence_penalty",
  "frequency_penalty",
  "random_seed",
  "return_log_probs",
  "exclude_input_in_output",
  "stream",
]);

export function parseTritonRequest(body: unknown, vocabSize: number, maxModelLen: number): TritonRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body))
    throw badField("body", "the request body must be a JSON object with text_input and max_tokens");
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!FIELDS.has(k))
      throw badField(
        k,
        `field ${k} is not supported by kiln's generate endpoint; drop it (kiln takes ${[...FIELDS].join(", ")})`,
      );

  const num = (name: string, ok: (x: number) => boolean, range: string): number | undefined => {
    const v = b[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v))
      throw badField(name, `${name} ${JSON.stringify(v)} is out of range; give ${range}`);
    return v;
  };
  const int = (name: string, lo: number, hi: number, range = `an integer in ${lo}..${hi}`) =>
    num(name, (x) => Number.isInteger(x) && x >= lo && x <= hi, range);
  const bool = (name: string): boolean | undefined => {
    const v = b[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") throw badField(name, `${name} ${JSON.stringify(v)} is not true or false`);
    return v;
  };
  const words = (name: string): string[] | undefined => {
    const v = b[name];
    if (v === undefined || v === null) return undefined;
    const list = typeof v === "string" ? [v] : v;
    if (!Array.isArray(list) || list.some((w) => typeof w !== "string"))
      throw badField(name, `${name} must be a string or a list of strings, got ${JSON.stringify(v)}`);
    const kept = (list as string[]).filter((w) => w !== "");
    return kept.length > 0 ? kept : undefined;
  };

  const text = b.text_input;
  if (typeof text !== "string" || text === "")
    throw badField("text_input", `text_input must be a non-empty string, got ${JSON.stringify(text)}`);
  if (b.max_tokens === undefined)
    throw badField("max_tokens", `max_tokens is required; give an integer in 1..${maxModelLen - 1}`);
  const maxTokens = int("max_tokens", 1, maxModelLen - 1) as number;
  const lastId = vocabSize - 1;
  const endId = int("end_id", 0, lastId, `a token id in 0..${lastId}`);
  int("pad_id", 0, lastId, `a token id in 0..${lastId}`); // checked; padding never shows in one sequence
  const temperature = num("temperature", (x) => x >= 0, "a number ≥ 0");
  const topK = int("top_k", 0, vocabSize, `an integer in 0..${vocabSize} (0: all tokens)`) ?? 0;
  const topP = num("top_p", (x) => x >= 0 && x <= 1, "a number in 0..1 (0: all tokens)") ?? 0;
  const beamWidth = int("beam_width", 1, 64);
  const repetitionPenalty = num("repetition_penalty", (x) => x > 0, "a number > 0 (1: off)");
  const presencePenalty = num("presence_penalty", () => true, "a finite number");
  const frequencyPenalty = num("frequency_penalty", () => true, "a finite number");
  const seed = int("random_seed", 0, Number.MAX_SAFE_INTEGER, "an integer in 0..2^53-1");
  const stopWords = words("stop_words");
  if (stopWords && (beamWidth ?? 1) > 1)
    throw badField(
      "stop_words",
      "stop_words with beam_width > 1: beams end only at end_id or max_tokens; drop one of them",
    );
  const badWords = words("bad_words");

  const sampled = topK > 1 || topP > 0;
  const request: TritonRequest["request"] = {
    maxNewTokens: maxTokens,
    ...(sampled
      ? {
          temperature: temperature ?? 1,
          topK,
          topP: topP === 0 ? 1 : topP,
          ...(seed !== undefined ? { seed } : {}),
        }
      : { greedy: true }),
    ...(endId !== undefined ? { endId } : {}),
    ...(stopWords ? { stopWords } : {}),
    ...(badWords ? { badWords } : {}),
    // Beam search returns every beam, best first, as TensorRT-LLM's Triton backend does.
    ...(beamWidth !== undefined && beamWidth > 1 ? { beamWidth, numReturnSequences: beamWidth } : {}),
    ...(repetitionPenalty !== undefined ? { repetitionPenalty } : {}),
    ...(presencePenalty !== undefined ? { presencePenalty } : {}),
    ...(frequencyPenalty !== undefined ? { frequencyPenalty } : {}),
  };
  return {
    textInput: text,
    request,
    returnLogProbs: bool("return_log_probs") ?? false,
    excludeInputInOutput: bool("exclude_input_in_output") ?? false,
    stream: bool("stream"),
  };
}
