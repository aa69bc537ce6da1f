// Text ↔ token ids for a Hugging Face checkpoint. Encoding and decoding are done by
// @huggingface/tokenizers (a JS port of HF tokenizers) from tokenizer.json; this class adds what
// transformers adds on top: special-token ids from tokenizer_config.json merged with the model
// config's, skip-special-tokens by id, clean_up_tokenization_spaces, the chat template, and checks.
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { cleanUpTokenization } from "./clean_up.ts";
import { TokenizerError } from "./errors.ts";
import { parseTokenizerConfig, type TokenizerConfig } from "./tokenizer_config.ts";
import { readTokenizerFiles } from "./tokenizer_files.ts";
import { prepareTokenizerJson } from "./tokenizer_json.ts";

export interface TokenizerOptions {
  /** From the model config (config.json / generation_config.json); wins over tokenizer_config's. */
  bosTokenId?: number | null;
  /** From the model config; listed first, then tokenizer_config's eos_token is added if different. */
  eosTokenIds?: number[];
  padTokenId?: number | null;
  /** Replaces tokenizer_config's chat_template (fromDir passes chat_template.jinja when present). */
  chatTemplate?: string;
}

export interface EncodeOptions {
  /** Add what the post-processor adds (BOS for Llama-style tokenizers), as HF's add_special_tokens. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop ids in `specialTokenIds`, as HF's skip_special_tokens. */
  skipSpecialTokens?: boolean;
  /** Defaults to the tokenizer's `cleanUpTokenizationSpaces`. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface Encoding {
  ids: number[];
  tokens: string[];
}

interface Sources {
  tokenizerJson: string;
  tokenizerConfig: string;
}

function checkOptionalId(value: number | null | undefined, name: string): void {
  if (value === undefined || value === null) return;
  if (!Number.isInteger(value) || value < 0) {
    throw new TokenizerError(
      `${name} ${value} is not a token id; pass a non-negative integer from the model config`,
    );
  }
}

export class Tokenizer {
  /** Number of ids: highest id of the vocabulary or of an added token, plus one. */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  /** Model-config eos ids first, then tokenizer_config's eos_token; no duplicates. */
  readonly eosTokenIds: number[];
  readonly padTokenId: number | null;
  /** Added tokens marked special, plus every token tokenizer_config names as special. */
  readonly specialTokenIds: Set<number>;
  readonly chatTemplate: string | null;
  /** Whether decode applies transformers' clean_up_tokenization (config flag; off for BPE, as transformers 5). */
  readonly cleanUpTokenizationSpaces: boolean;
  private readonly hf: HfTokenizer;
  private readonly source: string;

  private constructor(
    tokenizerJson: unknown,
    tokenizerConfig: unknown,
    opts: TokenizerOptions,
    sources: Sources,
  ) {
    const config = parseTokenizerConfig(tokenizerConfig, sources.tokenizerConfig);
    const { json, modelType } = prepareTokenizerJson(tokenizerJson, config, sources.tokenizerJson);
    try {
      this.hf = new HfTokenizer(json, config.raw);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new TokenizerError(
        `${sources.tokenizerJson} could not be loaded by @huggingface/tokenizers (${reason}); ` +
          "check that it is a tokenizer.json saved by Hugging Face tokenizers and that its components are supported",
        { cause: err },
      );
    }
    this.source = sources.tokenizerJson;
    this.vocabSize = this.countIds();
    if (this.vocabSize === 0) throw new TokenizerError(`${this.source} has an empty vocabulary`);

    checkOptionalId(opts.bosTokenId, "bosTokenId");
    checkOptionalId(opts.padTokenId, "padTokenId");
    for (const id of opts.eosTokenIds ?? []) checkOptionalId(id, "eosTokenIds entry");
    const configEos = this.resolve(config.eosToken);
    this.bosTokenId = opts.bosTokenId ?? this.resolve(config.bosToken);
    this.eosTokenIds = [
      ...new Set([...(opts.eosTokenIds ?? []), ...(configEos === null ? [] : [configEos])]),
    ];
    this.padTokenId = opts.padTokenId ?? this.resolve(config.padToken);
    this.specialTokenIds = this.collectSpecialIds(config);
    this.chatTemplate = opts.chatTemplate ?? config.chatTemplate;
    this.cleanUpTokenizationSpaces =
      config.cleanUpTokenizationSpaces === true && (modelType !== "BPE" || config.cleanUpForBpe);
  }

  /** Loads DIR/tokenizer.json (required), DIR/tokenizer_config.json and DIR/chat_template.jinja. */
  static fromDir(dir: string, opts: TokenizerOptions = {}): Tokenizer {
    const files = readTokenizerFiles(dir);
    const chatTemplate = opts.chatTemplate ?? files.chatTemplate ?? undefined;
    return new Tokenizer(
      files.tokenizerJson,
      files.tokenizerConfig,
      { ...opts, chatTemplate },
      { tokenizerJson: files.tokenizerJsonPath, tokenizerConfig: files.tokenizerConfigPath },
    );
  }

  /** From the parsed contents of tokenizer.json and tokenizer_config.json (`{}` if there is none). */
  static fromJson(
    tokenizerJson: unknown,
    tokenizerConfig: unknown = {},
    opts: TokenizerOptions = {},
  ): Tokenizer {
    return new Tokenizer(tokenizerJson, tokenizerConfig, opts, {
      tokenizerJson: "tokenizer.json",
      tokenizerConfig: "tokenizer_config.json",
    });
  }

  /** Same ids and tokens as Python `tokenizer(text, add_special_tokens=...)`. */
  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): Encoding {
    const { ids, tokens } = this.hf.encode(text, { add_special_tokens: addSpecialTokens });
    ids.forEach((id, i) => {
      if (!Number.isInteger(id)) {
        throw new TokenizerError(
          `${this.source}: token ${JSON.stringify(tokens[i])} has no id (the post-processor or an added token ` +
            "names a token missing from the vocabulary, and there is no unk_token); fix the tokenizer.json",
        );
      }
    });
    return { ids, tokens };
  }

  /** Same text as Python `tokenizer.decode(ids, skip_special_tokens=...)`. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const { skipSpecialTokens = false, cleanUpTokenizationSpaces = this.cleanUpTokenizationSpaces } = opts;
    const kept: number[] = [];
    for (const id of ids) {
      this.checkId(id);
      if (!(skipSpecialTokens && this.specialTokenIds.has(id))) kept.push(id);
    }
    if (kept.length === 0) return ""; // the library throws on an empty list
    const text = this.hf.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    return cleanUpTokenizationSpaces ? cleanUpTokenization(text) : text;
  }

  idToToken(id: number): string | null {
    return Number.isInteger(id) && id >= 0 ? (this.hf.id_to_token(id) ?? null) : null;
  }

  tokenToId(token: string): number | null {
    return this.hf.token_to_id(token) ?? null;
  }

  private checkId(id: number): void {
    if (this.idToToken(id) === null) {
      throw new TokenizerError(
        `token id ${id} is not in the vocabulary of ${this.source} (vocab size ${this.vocabSize}); ` +
          "the ids must come from this tokenizer's model (a model whose vocab_size is padded beyond the " +
          "tokenizer must not sample the padding ids)",
      );
    }
  }

  private countIds(): number {
    let size = 0;
    for (const [token, id] of this.hf.get_vocab(true)) {
      if (token !== undefined && id >= size) size = id + 1;
    }
    return size;
  }

  private resolve(token: string | null): number | null {
    return token === null ? null : this.tokenToId(token);
  }

  private collectSpecialIds(config: TokenizerConfig): Set<number> {
    const ids = new Set<number>();
    for (const [id, token] of this.hf.get_added_tokens_decoder()) if (token.special) ids.add(id);
    for (const id of config.specialAddedTokenIds) if (this.idToToken(id) !== null) ids.add(id);
    for (const token of config.namedSpecialTokens) {
      const id = this.tokenToId(token);
      if (id !== null) ids.add(id);
    }
    return ids;
  }
}
