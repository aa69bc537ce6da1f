import { KilnError } from "../errors.ts";

/**
 * A tokenizer file (tokenizer.json, tokenizer_config.json, chat_template.jinja) is missing, unreadable
 * or not what @huggingface/tokenizers accepts, or a token id does not exist in the vocabulary. The
 * message names the file or the value and says how to fix it.
 */
export class TokenizerError extends KilnError {}
