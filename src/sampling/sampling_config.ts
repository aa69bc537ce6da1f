// SamplingConfig: every decoding setting TensorRT-LLM's SamplingConfig has, in TypeScript idiom.
// Per-sequence fields take a scalar (all sequences) or an array with one value per prompt of the
// batch. `resolveSamplingConfig` validates once and expands everything to per-sequence arrays;
// nothing downstream re-validates.
import { KilnError } from "../errors.ts";
import type { GenerationDefaults } from "./generation_config.ts";
import { type KeySet, rejectUnknownKeys } from "./option_keys.ts";

/** A value for every sequence, or one per sequence of the batch. */
export type PerSeq<T> = T | readonly T[];

/** A word to stop at or ban: token ids, or text (stop words match the decoded text; banned text is tokenized). */
export type WordSpec = readonly number[] | string;

export interface SamplingConfig {
  /** Tokens to generate at most (per sequence). */
  maxNewTokens: number;
  /** End-of-sequence id(s); default: the model's (generation_config.json / config.json / tokenizer). */
  endId: number | readonly number[] | null;
  /** Id used to pad outputs of unequal length in padded views; default the model's pad or end id. */
  padId: number | null;
  /** Softmax temperature; 0 (or anything below GREEDY_TEMPERATURE) means greedy. */
  temperature: PerSeq<number>;
  /** Sample among the k most likely tokens; 0 = no limit; 1 = greedy. */
  topK: PerSeq<number>;
  /** Nucleus sampling: the smallest set of tokens whose mass reaches topP; 1 = off. */
  topP: PerSeq<number>;
  /** After each generated token topP ← max(topP · topPDecay, topPMin) (TensorRT-LLM's decay); 1 = off. */
  topPDecay: PerSeq<number>;
  topPMin: PerSeq<number>;
  /** Generating this token resets topP to its initial value; null = never. */
  topPResetIds: PerSeq<number | null>;
  /** Drop tokens whose probability is below minP × the top token's; 0 = off. */
  minP: PerSeq<number>;
  /** End ids are banned until this many tokens were generated. */
  minLength: PerSeq<number>;
  /** HF-style: logits of tokens already in the sequence (prompt included) are divided (>0) or multiplied (<0) by it; 1 = off. */
  repetitionPenalty: PerSeq<number>;
  /** OpenAI-style: subtracted once from tokens already generated; 0 = off. */
  presencePenalty: PerSeq<number>;
  /** OpenAI-style: subtracted per occurrence of tokens already generated; 0 = off. */
  frequencyPenalty: PerSeq<number>;
  /** Ban any token that would repeat an n-gram of this size (HF no_repeat_ngram_size); 0 = off. */
  noRepeatNgramSize: PerSeq<number>;
  /** Seed of the counter-based generator; a request gives the same tokens alone or in any batch. */
  randomSeed: PerSeq<number>;
  /** Beams per request; 1 = no beam search. */
  beamWidth: number;
  /** Beam scores are cumLogProb / generatedLength ** lengthPenalty (HF). */
  lengthPenalty: PerSeq<number>;
  /** Beam search stops: true as soon as beamWidth hypotheses finished; false when no better one can come
   * (HF heuristic); "never" only when provably none can. */
  earlyStopping: PerSeq<boolean | "never">;
  /** TensorRT-LLM's beamSearchDiversityRate: candidates are ranked with rate × their source beam's
   * index added (as TensorRT-LLM's beam kernels do), favouring children of lower-ranked beams; stored
   * scores stay raw. 0 = off (Hugging Face-exact beam search). */
  beamSearchDiversityRate: PerSeq<number>;
  /** Sequences returned per request (≤ beamWidth with beams; independent samples otherwise). */
  numReturnSequences: number;
  stopWords: PerSeq<readonly WordSpec[]>;
  badWords: PerSeq<readonly WordSpec[]>;
  /** Added to the logits every step: a dense [vocab] array or {tokenId: bias} (OpenAI logit_bias). */
  embeddingBias: Float32Array | Readonly<Record<number, number>> | null;
  outputLogProbs: boolean;
  outputCumLogProbs: boolean;
  returnContextLogits: boolean;
  returnGenerationLogits: boolean;
}

export class InvalidSamplingConfigError extends KilnError {}

/** A token id in a SamplingConfig field (end ids, stop/bad words, bias keys...) outside the vocabulary. */
export class TokenIdOutOfRangeError extends InvalidSamplingConfigError {
  constructor(
    readonly field: string,
    readonly id: number,
    readonly vocabSize: number,
  ) {
    super(
      `SamplingConfig.${field}: token id ${id} is out of range for this model's vocabulary of ${vocabSize} ids; ` +
        `use ids in 0..${vocabSize - 1}`,
    );
  }
}

/** The configuration after validation, with every per-sequence field as an array of batch length. */
export interface ResolvedSamplingConfig {
  batchSize: number;
  maxNewTokens: number;
  endIds: number[];
  padId: number;
  temperature: number[];
  topK: number[];
  topP: number[];
  topPDecay: number[];
  topPMin: number[];
  topPResetIds: (number | null)[];
  minP: number[];
  minLength: number[];
  repetitionPenalty: number[];
  presencePenalty: number[];
  frequencyPenalty: number[];
  noRepeatNgramSize: number[];
  randomSeed: number[];
  beamWidth: number;
  lengthPenalty: number[];
  earlyStopping: (boolean | "never")[];
  beamSearchDiversityRate: number[];
  numReturnSequences: number;
  stopWords: WordSpec[][];
  badWords: WordSpec[][];
  embeddingBias: Float32Array | null;
  outputLogProbs: boolean;
  outputCumLogProbs: boolean;
  returnContextLogits: boolean;
  returnGenerationLogits: boolean;
  /** Per sequence: argmax decoding (temperature 0 or topK 1). */
  greedy: boolean[];
}

export const SAMPLING_DEFAULTS: SamplingConfig = {
  maxNewTokens: 64,
  endId: null,
  padId: null,
  temperature: 1,
  topK: 0,
  topP: 1,
  topPDecay: 1,
  topPMin: 1e-6,
  topPResetIds: null,
  minP: 0,
  minLength: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  noRepeatNgramSize: 0,
  randomSeed: 0,
  beamWidth: 1,
  lengthPenalty: 1,
  earlyStopping: false,
  beamSearchDiversityRate: 0,
  numReturnSequences: 1,
  stopWords: [],
  badWords: [],
  embeddingBias: null,
  outputLogProbs: true,
  outputCumLogProbs: true,
  returnContextLogits: false,
  returnGenerationLogits: false,
};

/** Every SamplingConfig key, from SAMPLING_DEFAULTS (which the type makes complete). */
export const SAMPLING_CONFIG_KEYS = Object.fromEntries(
  Object.keys(SAMPLING_DEFAULTS).map((k) => [k, true]),
) as KeySet<SamplingConfig>;

/** Temperatures below this decode greedily (as vLLM's _SAMPLING_EPS): dividing logits by a smaller
 * one overflows float32 (1e-300 is 0 in float32) and turns the softmax into NaN. Applied when the
 * config is resolved, so the CPU sampler and the CUDA kernels both see temperature 0. */
export const GREEDY_TEMPERATURE = 1e-5;

/** Defaults from the model's generation_config.json, under the user's settings. */
export function modelSamplingDefaults(d: GenerationDefaults): Partial<SamplingConfig> {
  const out: Partial<SamplingConfig> = {};
  if (d.doSample === false) out.temperature = 0;
  else if (d.temperature !== null) out.temperature = d.temperature;
  if (d.topK !== null) out.topK = d.topK;
  if (d.topP !== null) out.topP = d.topP;
  if (d.minP !== null) out.minP = d.minP;
  if (d.repetitionPenalty !== null) out.repetitionPenalty = d.repetitionPenalty;
  if (d.numBeams !== null) out.beamWidth = d.numBeams;
  if (d.lengthPenalty !== null) out.lengthPenalty = d.lengthPenalty;
  if (d.earlyStopping !== null) out.earlyStopping = d.earlyStopping;
  if (d.noRepeatNgramSize !== null) out.noRepeatNgramSize = d.noRepeatNgramSize;
  if (d.maxNewTokens !== null) out.maxNewTokens = d.maxNewTokens;
  if (d.minNewTokens !== null) out.minLength = d.minNewTokens;
  return out;
}

type Check = (v: number) => boolean;
const isInt: Check = Number.isInteger;

export function resolveSamplingConfig(
  user: Partial<SamplingConfig>,
  batchSize: number,
  model: { defaults: Partial<SamplingConfig>; endIds: number[]; padId: number | null; vocabSize: number },
): ResolvedSamplingConfig {
  rejectUnknownKeys("SamplingConfig", user, SAMPLING_CONFIG_KEYS);
  const explicit = Object.fromEntries(
    Object.entries(user).filter(([, v]) => v !== undefined),
  ) as Partial<SamplingConfig>;
  // Model defaults for sampling knobs apply only when the user chose no decoding mode at all.
  const c: SamplingConfig = { ...SAMPLING_DEFAULTS, ...model.defaults, ...explicit };
  const fail = (field: string, value: unknown, rule: string): never => {
    throw new InvalidSamplingConfigError(`SamplingConfig.${field} ${rule}, got ${show(value)}`);
  };
  const per = <T>(field: keyof SamplingConfig, check: (v: T) => boolean, rule: string): T[] => {
    const v = c[field] as PerSeq<T>;
    const arr = Array.isArray(v) ? (v as T[]) : Array.from({ length: batchSize }, () => v as T);
    if (Array.isArray(v) && v.length !== batchSize) {
      fail(
        field,
        v,
        `has ${v.length} values but the batch has ${batchSize} prompts (give one value or one per prompt)`,
      );
    }
    arr.forEach((x, i) => {
      if (!check(x)) fail(Array.isArray(v) ? `${field}[${i}]` : field, x, rule);
    });
    return [...arr];
  };
  const scalar = (field: keyof SamplingConfig, ok: boolean, rule: string) => {
    if (!ok) fail(field, c[field], rule);
  };
  const V = model.vocabSize;
  const isId = (x: number) => isInt(x) && x >= 0 && x < V;
  /** An integer outside the vocabulary is a named error with the id and the vocabulary size. */
  const checkRange = (field: string, x: unknown) => {
    if (isInt(x as number) && !isId(x as number)) throw new TokenIdOutOfRangeError(field, x as number, V);
  };

  scalar("maxNewTokens", isInt(c.maxNewTokens) && c.maxNewTokens >= 1, "must be an integer ≥ 1");
  const endIds = c.endId === null ? model.endIds : typeof c.endId === "number" ? [c.endId] : [...c.endId];
  endIds.forEach((id) => {
    checkRange("endId", id);
    if (!isId(id)) fail("endId", id, `must be a token id in 0..${V - 1}`);
  });
  if (c.padId !== null) checkRange("padId", c.padId);
  if (c.padId !== null && !isId(c.padId)) fail("padId", c.padId, `must be a token id in 0..${V - 1}`);
  const temperature = per<number>(
    "temperature",
    (x) => Number.isFinite(x) && x >= 0,
    `must be a finite number ≥ 0 (below ${GREEDY_TEMPERATURE} decodes greedily)`,
  ).map((t) => (t < GREEDY_TEMPERATURE ? 0 : t));
  const topK = per<number>("topK", (x) => isInt(x) && x >= 0, "must be an integer ≥ 0 (0 = off)");
  const topP = per<number>("topP", (x) => x > 0 && x <= 1, "must be in (0, 1]");
  const topPDecay = per<number>("topPDecay", (x) => x > 0 && x <= 1, "must be in (0, 1]");
  const topPMin = per<number>("topPMin", (x) => x > 0 && x <= 1, "must be in (0, 1]");
  const topPResetIds = per<number | null>(
    "topPResetIds",
    (x) => {
      checkRange("topPResetIds", x);
      return x === null || isId(x);
    },
    `must be null or a token id in 0..${V - 1}`,
  );
  const minP = per<number>("minP", (x) => x >= 0 && x < 1, "must be in [0, 1)");
  const minLength = per<number>("minLength", (x) => isInt(x) && x >= 0, "must be an integer ≥ 0");
  const repetitionPenalty = per<number>(
    "repetitionPenalty",
    (x) => Number.isFinite(x) && x > 0,
    "must be a finite number > 0 (1 = off)",
  );
  const presencePenalty = per<number>("presencePenalty", Number.isFinite, "must be a finite number");
  const frequencyPenalty = per<number>("frequencyPenalty", Number.isFinite, "must be a finite number");
  const noRepeatNgramSize = per<number>(
    "noRepeatNgramSize",
    (x) => isInt(x) && x >= 0,
    "must be an integer ≥ 0 (0 = off)",
  );
  const randomSeed = per<number>(
    "randomSeed",
    (x) => Number.isSafeInteger(x) && x >= 0,
    "must be an integer in 0..2^53-1",
  );
  scalar(
    "beamWidth",
    isInt(c.beamWidth) && c.beamWidth >= 1 && c.beamWidth <= 64,
    "must be an integer in 1..64",
  );
  const lengthPenalty = per<number>("lengthPenalty", Number.isFinite, "must be a finite number");
  const earlyStopping = per<boolean | "never">(
    "earlyStopping",
    (x) => x === true || x === false || x === "never",
    'must be true, false or "never"',
  );
  const beamSearchDiversityRate = per<number>(
    "beamSearchDiversityRate",
    (x) => Number.isFinite(x) && x >= 0,
    "must be a finite number ≥ 0",
  );
  scalar(
    "numReturnSequences",
    isInt(c.numReturnSequences) && c.numReturnSequences >= 1,
    "must be an integer ≥ 1",
  );
  const words = (field: "stopWords" | "badWords"): WordSpec[][] => {
    // A word list is itself an array: it is per-sequence only when every entry is a list of words
    // (an array whose entries are strings or arrays), never a token word (an array of numbers).
    const v = c[field] as unknown[];
    const perSeq =
      Array.isArray(v) &&
      v.length > 0 &&
      v.every((l) => Array.isArray(l) && l.every((w) => typeof w === "string" || Array.isArray(w)));
    const lists = perSeq ? (v as WordSpec[][]) : Array.from({ length: batchSize }, () => v as WordSpec[]);
    if (perSeq && lists.length !== batchSize) {
      fail(
        field,
        v,
        `has ${lists.length} word lists but the batch has ${batchSize} prompts (give one list or one per prompt)`,
      );
    }
    lists.forEach((list, i) => {
      if (Array.isArray(list)) {
        list.forEach((w, j) => {
          if (Array.isArray(w)) for (const id of w) checkRange(`${field}${perSeq ? `[${i}]` : ""}[${j}]`, id);
        });
      }
      if (!Array.isArray(list) || !list.every((w) => validWord(w, V))) {
        fail(
          perSeq ? `${field}[${i}]` : field,
          list,
          "must be a list of non-empty strings or non-empty token-id arrays",
        );
      }
    });
    return lists.map((l) => [...l]);
  };
  const stopWords = words("stopWords");
  const badWords = words("badWords");
  const embeddingBias = resolveBias(c.embeddingBias, V, fail);

  topP.forEach((p, i) => {
    if (topPMin[i] > p) fail("topPMin", topPMin[i], `must not exceed topP (${p})`);
  });
  minLength.forEach((m) => {
    if (m > c.maxNewTokens) fail("minLength", m, `must not exceed maxNewTokens (${c.maxNewTokens})`);
  });
  const greedy = temperature.map((t, i) => t === 0 || topK[i] === 1);
  if (c.beamWidth > 1) {
    if (c.numReturnSequences > c.beamWidth) {
      fail(
        "numReturnSequences",
        c.numReturnSequences,
        `must not exceed beamWidth (${c.beamWidth}) with beam search`,
      );
    }
    const sampling = ["temperature", "topK", "topP", "minP"].filter(
      (f) => f in explicit && !isOff(f, explicit),
    );
    if (sampling.length) {
      fail(
        sampling[0],
        explicit[sampling[0] as keyof SamplingConfig],
        "conflicts with beamWidth > 1 (beam search is deterministic; remove the sampling settings)",
      );
    }
  } else {
    if (beamSearchDiversityRate.some((r) => r > 0))
      fail("beamSearchDiversityRate", c.beamSearchDiversityRate, "needs beamWidth > 1");
    if (c.numReturnSequences > 1 && greedy.some((g) => g)) {
      fail(
        "numReturnSequences",
        c.numReturnSequences,
        "> 1 needs sampling (greedy decoding would return copies); set temperature > 0 or use beamWidth",
      );
    }
  }
  return {
    batchSize,
    maxNewTokens: c.maxNewTokens,
    endIds,
    padId: c.padId ?? model.padId ?? endIds[0] ?? 0,
    temperature,
    topK,
    topP,
    topPDecay,
    topPMin,
    topPResetIds,
    minP,
    minLength,
    repetitionPenalty,
    presencePenalty,
    frequencyPenalty,
    noRepeatNgramSize,
    randomSeed,
    beamWidth: c.beamWidth,
    lengthPenalty,
    earlyStopping,
    beamSearchDiversityRate,
    numReturnSequences: c.numReturnSequences,
    stopWords,
    badWords,
    embeddingBias,
    outputLogProbs: c.outputLogProbs,
    outputCumLogProbs: c.outputCumLogProbs,
    returnContextLogits: c.returnContextLogits,
    returnGenerationLogits: c.returnGenerationLogits,
    greedy: c.beamWidth > 1 ? greedy.map(() => true) : greedy,
  };
}

function isOff(field: string, c: Partial<SamplingConfig>): boolean {
  const v = c[field as keyof SamplingConfig];
  const off: Record<string, number[]> = { temperature: [0, 1], topK: [0, 1], topP: [1], minP: [0] };
  const vals = Array.isArray(v) ? v : [v];
  return vals.every((x) => off[field].includes(x as number));
}

function validWord(w: unknown, V: number): boolean {
  if (typeof w === "string") return w.length > 0;
  return Array.isArray(w) && w.length > 0 && w.every((id) => Number.isInteger(id) && id >= 0 && id < V);
}

function resolveBias(
  bias: SamplingConfig["embeddingBias"],
  V: number,
  fail: (f: string, v: unknown, r: string) => never,
): Float32Array | null {
  if (bias === null) return null;
  if (bias instanceof Float32Array) {
    if (bias.length !== V)
      fail("embeddingBias", `Float32Array(${bias.length})`, `must have one value per vocabulary id (${V})`);
    if (!bias.every(Number.isFinite)) fail("embeddingBias", "a non-finite value", "must hold finite numbers");
    return bias;
  }
  const dense = new Float32Array(V);
  for (const [k, v] of Object.entries(bias)) {
    const id = Number(k);
    if (Number.isInteger(id) && (id < 0 || id >= V)) throw new TokenIdOutOfRangeError("embeddingBias", id, V);
    if (!Number.isInteger(id) || id < 0 || id >= V)
      fail("embeddingBias", k, `keys must be token ids in 0..${V - 1}`);
    if (typeof v !== "number" || !Number.isFinite(v))
      fail(`embeddingBias[${k}]`, v, "must be a finite number");
    dense[id] = v;
  }
  return dense;
}

/** A value as the user wrote it: numbers print as themselves (NaN, Infinity; JSON would say null),
 * long values are cut at 80 characters. */
function show(v: unknown): string {
  const s = format(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function format(v: unknown): string {
  if (typeof v === "number" || typeof v === "bigint" || v === undefined) return String(v);
  if (Array.isArray(v)) return `[${v.map(format).join(",")}]`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
