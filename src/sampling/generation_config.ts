// Defaults a checkpoint ships in generation_config.json (HF), read leniently: wrong-typed fields are
// ignored with no error since the file is advisory; ids and sampling defaults are what we use.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface GenerationDefaults {
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  doSample: boolean | null;
  temperature: number | null;
  topK: number | null;
  topP: number | null;
  minP: number | null;
  repetitionPenalty: number | null;
  numBeams: number | null;
  lengthPenalty: number | null;
  earlyStopping: boolean | "never" | null;
  noRepeatNgramSize: number | null;
  maxNewTokens: number | null;
  minNewTokens: number | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function readGenerationDefaults(dir: string): GenerationDefaults {
  const path = join(dir, "generation_config.json");
  let raw: Record<string, unknown> = {};
  if (existsSync(path)) {
    try {
      const parsed = JSON.parse(readFileSync(path, "utf8"));
      if (parsed && typeof parsed === "object") raw = parsed;
    } catch {
      raw = {};
    }
  }
  const eos = raw.eos_token_id;
  return {
    bosTokenId: num(raw.bos_token_id),
    eosTokenIds: Array.isArray(eos)
      ? eos.filter((x): x is number => typeof x === "number")
      : num(eos) !== null
        ? [eos as number]
        : [],
    padTokenId: num(raw.pad_token_id),
    doSample: typeof raw.do_sample === "boolean" ? raw.do_sample : null,
    temperature: num(raw.temperature),
    topK: num(raw.top_k),
    topP: num(raw.top_p),
    minP: num(raw.min_p),
    repetitionPenalty: num(raw.repetition_penalty),
    numBeams: num(raw.num_beams),
    lengthPenalty: num(raw.length_penalty),
    earlyStopping:
      raw.early_stopping === true || raw.early_stopping === false || raw.early_stopping === "never"
        ? raw.early_stopping
        : null,
    noRepeatNgramSize: num(raw.no_repeat_ngram_size),
    maxNewTokens: num(raw.max_new_tokens),
    minNewTokens: num(raw.min_new_tokens),
  };
}
