// The parts of a Hugging Face tokenizer_config.json that kiln reads, typed. The object itself is still
// handed to @huggingface/tokenizers (with special tokens flattened to strings), which reads a few more
// keys; anything else is ignored.
import { TokenizerError } from "./errors.ts";

export interface TokenizerConfig {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
  /** Every token the config calls special: bos/eos/unk/pad/sep/cls/mask and additional/extra tokens. */
  namedSpecialTokens: string[];
  /** Ids that `added_tokens_decoder` marks `"special": true`. */
  specialAddedTokenIds: number[];
  /** `add_bos_token` / `add_eos_token` where the config sets them, else null. */
  addBosToken: boolean | null;
  addEosToken: boolean | null;
  /** `clean_up_tokenization_spaces` where set, else null. */
  cleanUpTokenizationSpaces: boolean | null;
  /** transformers 5 skips the clean-up for BPE models unless this flag is set. */
  cleanUpForBpe: boolean;
  /** `chat_template`: the string, or the entry named "default" of a list of {name, template}. */
  chatTemplate: string | null;
  /** The object as read, with special tokens flattened to strings (what @huggingface/tokenizers expects). */
  raw: Record<string, unknown>;
}

const NAMED_SPECIAL_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "pad_token",
  "sep_token",
  "cls_token",
  "mask_token",
] as const;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object {content, ...}. */
function tokenContent(value: unknown, key: string, source: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (isRecord(value) && typeof value.content === "string") return value.content;
  throw new TokenizerError(
    `${source}: "${key}" must be a string or an object {"content": string}, got ${JSON.stringify(value)}; ` +
      "fix or remove that entry",
  );
}

function tokenList(value: unknown, key: string, source: string): string[] {
  if (value === undefined || value === null) return [];
  // transformers 5 writes extra_special_tokens as a list or as a {name: token} map.
  const items = Array.isArray(value) ? value : isRecord(value) ? Object.values(value) : null;
  if (items === null) {
    throw new TokenizerError(`${source}: "${key}" must be a list of tokens, got ${JSON.stringify(value)}`);
  }
  return items.flatMap((item, i) => tokenContent(item, `${key}[${i}]`, source) ?? []);
}

function optionalBoolean(config: Record<string, unknown>, key: string, source: string): boolean | null {
  const value = config[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== "boolean") {
    throw new TokenizerError(`${source}: "${key}" must be true or false, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseChatTemplate(value: unknown, source: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    for (const entry of value) {
      if (!isRecord(entry) || typeof entry.name !== "string" || typeof entry.template !== "string") {
        throw new TokenizerError(
          `${source}: "chat_template" lists ${JSON.stringify(entry)}; each entry must be {"name": string, "template": string}`,
        );
      }
      if (entry.name === "default") return entry.template;
    }
    return null; // named templates only (e.g. "tool_use"); none is the default
  }
  throw new TokenizerError(
    `${source}: "chat_template" must be a string or a list of {"name", "template"}, got ${typeof value}`,
  );
}

function parseAddedTokensDecoder(value: unknown, source: string): number[] {
  if (value === undefined || value === null) return [];
  if (!isRecord(value)) {
    throw new TokenizerError(`${source}: "added_tokens_decoder" must be an object {id: {content, special}}`);
  }
  const ids: number[] = [];
  for (const [key, token] of Object.entries(value)) {
    const id = Number(key);
    if (Number.isInteger(id) && id >= 0 && isRecord(token) && token.special === true) ids.push(id);
  }
  return ids;
}

/** Parses tokenizer_config.json (`{}` when the checkpoint has none). `source` names it in errors. */
export function parseTokenizerConfig(json: unknown, source: string): TokenizerConfig {
  if (!isRecord(json)) {
    throw new TokenizerError(
      `${source} must hold a JSON object, got ${Array.isArray(json) ? "an array" : typeof json}`,
    );
  }
  const raw: Record<string, unknown> = { ...json };
  const named = new Map<string, string | null>();
  for (const key of NAMED_SPECIAL_KEYS) {
    const content = tokenContent(json[key], key, source);
    named.set(key, content);
    if (key in json) raw[key] = content;
  }
  const additional = tokenList(json.additional_special_tokens, "additional_special_tokens", source);
  const extra = tokenList(json.extra_special_tokens, "extra_special_tokens", source);
  if ("additional_special_tokens" in json) raw.additional_special_tokens = additional;
  const namedSpecialTokens = [...new Set([...named.values(), ...additional, ...extra])].filter(
    (t): t is string => t !== null,
  );
  return {
    bosToken: named.get("bos_token") ?? null,
    eosToken: named.get("eos_token") ?? null,
    padToken: named.get("pad_token") ?? null,
    unkToken: named.get("unk_token") ?? null,
    namedSpecialTokens,
    specialAddedTokenIds: parseAddedTokensDecoder(json.added_tokens_decoder, source),
    addBosToken: optionalBoolean(json, "add_bos_token", source),
    addEosToken: optionalBoolean(json, "add_eos_token", source),
    cleanUpTokenizationSpaces: optionalBoolean(json, "clean_up_tokenization_spaces", source),
    cleanUpForBpe:
      optionalBoolean(
        json,
        "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output",
        source,
      ) ?? false,
    chatTemplate: parseChatTemplate(json.chat_template, source),
    raw,
  };
}
