// Hugging Face config.json → ModelConfig, validated once. Defaults mirror transformers' LlamaConfig,
// MistralConfig, Qwen2Config and Qwen3Config (other model types get Llama's). Unknown keys are ignored,
// as mlx-lm's ModelArgs.from_dict does; the whole object stays available as `raw`.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigFields } from "./config_fields.ts";
import { ConfigError, showValue } from "./errors.ts";
import type { HiddenAct, ModelConfig } from "./model_config.ts";
import { parseRope } from "./rope_config.ts";

export const SUPPORTED_HIDDEN_ACTS: readonly HiddenAct[] = [
  "silu",
  "gelu",
  "gelu_pytorch_tanh",
  "gelu_new",
  "relu",
];

/** Names the norm epsilon goes by, first found wins. */
const NORM_EPS_KEYS = ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon"];

/** What transformers assumes for a field the config leaves out, per model_type. */
interface FamilyDefaults {
  maxPositionEmbeddings: number;
  /** null: hidden_size / num_attention_heads. */
  headDim: number | null;
  /** null: num_attention_heads. */
  numKvHeads: number | null;
  /** Window when `sliding_window` is absent (not when it is null). */
  slidingWindow: number | null;
  /** Qwen2/Qwen3: sliding_window applies only when use_sliding_window is true. */
  slidingWindowNeedsFlag: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

const LLAMA: FamilyDefaults = {
  maxPositionEmbeddings: 2048,
  headDim: null,
  numKvHeads: null,
  slidingWindow: null,
  slidingWindowNeedsFlag: false,
  bosTokenId: 1,
  eosTokenId: 2,
};
const QWEN2: FamilyDefaults = {
  ...LLAMA,
  maxPositionEmbeddings: 32768,
  slidingWindow: 4096,
  slidingWindowNeedsFlag: true,
  bosTokenId: null,
  eosTokenId: null,
};
const FAMILY_DEFAULTS: Record<string, FamilyDefaults> = {
  llama: LLAMA,
  mistral: { ...LLAMA, maxPositionEmbeddings: 4096 * 32, numKvHeads: 8, slidingWindow: 4096 },
  qwen2: QWEN2,
  qwen3: { ...QWEN2, headDim: 128 },
};

/** Reads and parses `dir/config.json`; ConfigError if it is missing, unreadable or invalid. */
export function readHfConfig(dir: string): ModelConfig {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const problem = code === "ENOENT" ? "the file does not exist" : `cannot read the file (${code ?? e})`;
    throw new ConfigError(
      path,
      null,
      problem,
      "point at a Hugging Face checkpoint directory that has config.json",
      {
        cause: e,
      },
    );
  }
  return parseHfConfigJson(text, path);
}

/** Parses config.json text; ConfigError naming `source` if it is not JSON or not a valid config. */
export function parseHfConfigJson(text: string, source: string): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(
      source,
      null,
      `not valid JSON (${(e as Error).message})`,
      "fix or re-download config.json",
      {
        cause: e,
      },
    );
  }
  return parseHfConfig(raw, source);
}

/** Validates a parsed config.json object (`source` names it in errors) and normalizes it. */
export function parseHfConfig(raw: unknown, source: string): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      source,
      null,
      `must be a JSON object, got ${showValue(raw)}`,
      "fix or re-download config.json",
    );
  }
  const f = new ConfigFields(raw as Record<string, unknown>, source);
  const architecture = readArchitecture(f);
  const modelType = f.has("model_type")
    ? f.string("model_type")
    : architecture.replace(/ForCausalLM$/, "").toLowerCase();
  const d = FAMILY_DEFAULTS[modelType] ?? LLAMA;

  const hiddenSize = f.positiveInt("hidden_size");
  const numHeads = f.positiveInt("num_attention_heads");
  // An explicit null means "same as num_attention_heads"; only an absent key takes the family default.
  const kvDefault = f.obj.num_key_value_heads === undefined ? d.numKvHeads : null;
  const numKvHeads = f.positiveInt("num_key_value_heads", kvDefault ?? numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw f.error(
      "num_key_value_heads",
      `${numKvHeads} does not divide num_attention_heads ${numHeads}`,
      "grouped-query attention needs num_attention_heads to be a multiple of num_key_value_heads",
    );
  }
  const headDim = readHeadDim(f, hiddenSize, numHeads, d);
  const maxPositionEmbeddings = f.positiveInt("max_position_embeddings", d.maxPositionEmbeddings);

  return {
    architecture,
    modelType,
    vocabSize: f.positiveInt("vocab_size"),
    hiddenSize,
    intermediateSize: f.positiveInt("intermediate_size"),
    numLayers: f.positiveInt("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    maxPositionEmbeddings,
    normEps: f.positiveNumber(NORM_EPS_KEYS.find((k) => f.has(k)) ?? "rms_norm_eps", 1e-6),
    hiddenAct: readHiddenAct(f),
    rope: parseRope(f, headDim, maxPositionEmbeddings),
    tieWordEmbeddings: f.boolean("tie_word_embeddings", false),
    attentionBias: f.boolean("attention_bias", false),
    mlpBias: f.boolean("mlp_bias", false),
    slidingWindow: readSlidingWindow(f, d),
    bosTokenId: f.tokenId("bos_token_id", d.bosTokenId),
    eosTokenIds: readEosTokenIds(f, d),
    padTokenId: f.tokenId("pad_token_id", null),
    checkpointDtype: f.has("torch_dtype")
      ? f.string("torch_dtype")
      : f.has("dtype")
        ? f.string("dtype")
        : null,
    raw: f.obj,
  };
}

function readArchitecture(f: ConfigFields): string {
  const v = f.obj.architectures;
  if (!Array.isArray(v) || v.length === 0 || !v.every((a) => typeof a === "string" && a.length > 0)) {
    if (!f.has("architectures")) {
      throw f.error(
        "architectures",
        "required field is missing",
        'add e.g. "architectures": ["LlamaForCausalLM"]; it selects the model implementation',
      );
    }
    throw f.wrong("architectures", v, 'a non-empty array of class names, e.g. ["LlamaForCausalLM"]');
  }
  return v[0] as string;
}

function readHeadDim(f: ConfigFields, hiddenSize: number, numHeads: number, d: FamilyDefaults): number {
  if (f.has("head_dim")) return f.positiveInt("head_dim");
  if (d.headDim !== null && f.obj.head_dim === undefined) return d.headDim;
  if (hiddenSize % numHeads !== 0) {
    throw f.error(
      "head_dim",
      `is not set and hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`,
      "set head_dim explicitly or fix hidden_size / num_attention_heads",
    );
  }
  return hiddenSize / numHeads;
}

function readHiddenAct(f: ConfigFields): HiddenAct {
  const act = f.string("hidden_act", "silu");
  if (!(SUPPORTED_HIDDEN_ACTS as readonly string[]).includes(act)) {
    throw f.error(
      "hidden_act",
      `activation "${act}" is not supported; kiln supports ${SUPPORTED_HIDDEN_ACTS.join(", ")}`,
      "use a checkpoint with one of those activations",
    );
  }
  return act as HiddenAct;
}

function readSlidingWindow(f: ConfigFields, d: FamilyDefaults): number | null {
  if (d.slidingWindowNeedsFlag && !f.boolean("use_sliding_window", false)) return null;
  if (f.obj.sliding_window === null) return null;
  return f.has("sliding_window") ? f.positiveInt("sliding_window") : d.slidingWindow;
}

/** `eos_token_id` may be one id, a list of ids (Llama 3) or null. */
function readEosTokenIds(f: ConfigFields, d: FamilyDefaults): number[] {
  const v = f.obj.eos_token_id;
  if (Array.isArray(v)) {
    if (!v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
      throw f.wrong("eos_token_id", v, "a token id or a list of token ids (integers ≥ 0)");
    }
    return [...v] as number[];
  }
  const one = f.tokenId("eos_token_id", d.eosTokenId);
  return one === null ? [] : [one];
}
