// Checks a tokenizer.json object before @huggingface/tokenizers sees it, and fills in what the library
// needs but Hugging Face allows to be absent. Never changes how a valid file tokenizes, with one
// exception that mirrors transformers: a file without a post-processor gets the BOS/EOS template that
// tokenizer_config's add_bos_token / add_eos_token ask for.
import { TokenizerError } from "./errors.ts";
import { isRecord, type TokenizerConfig } from "./tokenizer_config.ts";

export interface PreparedTokenizerJson {
  /** A shallow copy of the input, safe to hand to @huggingface/tokenizers. */
  json: Record<string, unknown>;
  /** `model.type` ("BPE", "WordPiece", "Unigram", ...), inferred for old files that omit it. */
  modelType: string;
}

// The library reads these keys unconditionally; a missing one means "none" in Hugging Face tokenizers.
const OPTIONAL_PARTS = ["normalizer", "pre_tokenizer", "post_processor", "decoder"] as const;

function modelTypeOf(model: Record<string, unknown>): string {
  if (typeof model.type === "string") return model.type;
  if (Array.isArray(model.vocab)) return "Unigram";
  if ("merges" in model) return "BPE";
  return "WordPiece";
}

/** Id of `token` in the file's added tokens or model vocabulary (BPE/WordPiece/WordLevel vocab maps). */
function lookupId(json: Record<string, unknown>, token: string): number | null {
  for (const added of json.added_tokens as unknown[]) {
    if (isRecord(added) && added.content === token && typeof added.id === "number") return added.id;
  }
  const model = json.model as Record<string, unknown>;
  if (isRecord(model.vocab) && typeof model.vocab[token] === "number") return model.vocab[token];
  return null;
}

// transformers' update_post_processor: "<bos>:0 $A:0 <eos>:0", pair "... <bos>:1 $B:1 <eos>:1".
function bosEosTemplate(json: Record<string, unknown>, bos: string | null, eos: string | null) {
  const special = (token: string, typeId: number) => ({ SpecialToken: { id: token, type_id: typeId } });
  const sequence = (id: "A" | "B", typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const part = (id: "A" | "B", typeId: number) => [
    ...(bos === null ? [] : [special(bos, typeId)]),
    sequence(id, typeId),
    ...(eos === null ? [] : [special(eos, typeId)]),
  ];
  const specialTokens: Record<string, { id: string; ids: number[]; tokens: string[] }> = {};
  for (const token of [bos, eos]) {
    if (token === null) continue;
    const id = lookupId(json, token);
    specialTokens[token] = { id: token, ids: id === null ? [] : [id], tokens: [token] };
  }
  return {
    type: "TemplateProcessing",
    single: part("A", 0),
    pair: [...part("A", 0), ...part("B", 1)],
    special_tokens: specialTokens,
  };
}

export function prepareTokenizerJson(
  input: unknown,
  config: TokenizerConfig,
  source: string,
): PreparedTokenizerJson {
  const hint =
    "it should be the tokenizer.json that Hugging Face tokenizers saves (tokenizer.save / save_pretrained)";
  if (!isRecord(input)) {
    throw new TokenizerError(
      `${source} must hold a JSON object, got ${Array.isArray(input) ? "an array" : typeof input}; ${hint}`,
    );
  }
  const model = input.model;
  if (!isRecord(model)) throw new TokenizerError(`${source} has no "model" object; ${hint}`);
  const vocab = model.vocab;
  if (!(isRecord(vocab) || Array.isArray(vocab))) {
    throw new TokenizerError(
      `${source}: "model" has no "vocab" (type ${JSON.stringify(model.type)}); ${hint}`,
    );
  }
  const json: Record<string, unknown> = { ...input };
  for (const key of OPTIONAL_PARTS) json[key] ??= null;
  json.added_tokens ??= [];
  if (!Array.isArray(json.added_tokens)) {
    throw new TokenizerError(
      `${source}: "added_tokens" must be a list of {id, content, special, ...}; ${hint}`,
    );
  }

  if (json.post_processor === null && (config.addBosToken === true || config.addEosToken === true)) {
    const bos = config.addBosToken === true ? config.bosToken : null;
    const eos = config.addEosToken === true ? config.eosToken : null;
    if ((config.addBosToken === true && bos === null) || (config.addEosToken === true && eos === null)) {
      throw new TokenizerError(
        `tokenizer_config.json sets add_bos_token/add_eos_token to true but names no bos_token/eos_token; ` +
          "add the token or set the flag to false",
      );
    }
    json.post_processor = bosEosTemplate(json, bos, eos);
  }
  return { json, modelType: modelTypeOf(model) };
}
