export { cleanUpTokenization, StreamingCleanUp } from "./clean_up.ts";
export { type DetokenizerOptions, IncrementalDetokenizer } from "./detokenizer.ts";
export { TokenizerError } from "./errors.ts";
export {
  type DecodeOptions,
  type EncodeOptions,
  type Encoding,
  Tokenizer,
  type TokenizerOptions,
} from "./tokenizer.ts";
export { parseTokenizerConfig, type TokenizerConfig } from "./tokenizer_config.ts";
