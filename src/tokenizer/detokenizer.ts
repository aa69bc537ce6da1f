// Streaming detokenization: text out as ids come in, so that the concatenation of every push() and
// the final flush() equals tokenizer.decode(allIds) exactly.
//
// Decoding one id alone is wrong in two ways: a character may be split over several byte tokens
// (byte fallback `<0xE2><0x82><0xAC>`, or byte-level BPE), and SentencePiece decoders strip the
// leading space of the first token they see. So, as vLLM and TGI do, we decode a short window:
//
//   window:  [ ids already emitted ... | ids not yet emitted ]
//            ^ 0                       ^ readOffset          ^ end
//   prefixText = decode(window[0:readOffset])   (its text was emitted before)
//   text       = decode(window)                 → emit text.slice(prefixText.length)
//
// Both decodes start at the same token, so start-of-sequence effects cancel. While `text` ends in
// U+FFFD (an incomplete UTF-8 sequence) or has not grown, nothing is emitted and the window grows.
// After an emission the window keeps only the ids just emitted, so each push costs O(window).
// This relies on decode(a ++ b) starting with decode(a) when decode(a) ends on a whole character,
// which holds for every HF decoder (each works per token, per byte run, or on the first token only).
import { StreamingCleanUp } from "./clean_up.ts";
import type { Tokenizer } from "./tokenizer.ts";

export interface DetokenizerOptions {
  skipSpecialTokens?: boolean;
  /** Ids before the first pushed id. Their last few are decoding context (so the first generated
   * token keeps its leading space) and are never emitted. */
  promptIds?: readonly number[];
}

/** Prompt ids kept as context, as vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET. */
const PROMPT_CONTEXT_IDS = 5;
/** Further prompt ids taken while the context decodes to nothing (e.g. only skipped special tokens). */
const MAX_PROMPT_CONTEXT_IDS = 64;
const REPLACEMENT_CHARACTER = "\uFFFD";

export class IncrementalDetokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly skipSpecialTokens: boolean;
  /** Set when the tokenizer cleans up spaces: the window works on raw text, clean-up runs after. */
  private readonly cleanUp: StreamingCleanUp | null;
  private window: number[];
  private readOffset: number;
  private prefixText: string;

  constructor(tokenizer: Tokenizer, { skipSpecialTokens = false, promptIds = [] }: DetokenizerOptions = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecialTokens = skipSpecialTokens;
    this.cleanUp = tokenizer.cleanUpTokenizationSpaces ? new StreamingCleanUp() : null;
    let start = Math.max(0, promptIds.length - PROMPT_CONTEXT_IDS);
    const limit = Math.max(0, promptIds.length - MAX_PROMPT_CONTEXT_IDS);
    while (start > limit && this.decodeRaw(promptIds.slice(start)) === "") start--;
    this.window = promptIds.slice(start);
    this.readOffset = this.window.length;
    this.prefixText = this.decodeRaw(this.window);
  }

  /** Adds one id; returns the text it completes (often "", e.g. inside a multi-byte character). */
  push(id: number): string {
    const text = this.decodeRaw([...this.window, id]); // throws on an unknown id before any state changes
    this.window.push(id);
    if (text.length <= this.prefixText.length || text.endsWith(REPLACEMENT_CHARACTER)) return "";
    return this.emit(text);
  }

  /** Returns whatever is still held back (e.g. an incomplete character). Call once, at the end. */
  flush(): string {
    let out = "";
    if (this.window.length > this.readOffset) out = this.emit(this.decodeRaw(this.window));
    return this.cleanUp === null ? out : out + this.cleanUp.flush();
  }

  private emit(text: string): string {
    const raw = text.slice(this.prefixText.length);
    this.window = this.window.slice(this.readOffset);
    this.readOffset = this.window.length;
    this.prefixText = this.decodeRaw(this.window);
    return this.cleanUp === null ? raw : this.cleanUp.push(raw);
  }

  private decodeRaw(ids: readonly number[]): string {
    return this.tokenizer.decode(ids, {
      skipSpecialTokens: this.skipSpecialTokens,
      cleanUpTokenizationSpaces: false,
    });
  }
}
