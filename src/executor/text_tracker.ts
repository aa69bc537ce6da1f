// The generated text of one sequence while it streams: incremental detokenization, plus a holdback
// of (longest stop string − 1) UTF-16 units so text that may turn out to start a stop string is not
// emitted before we know. A delta never ends inside a surrogate pair: the detokenizer gives whole
// characters, and a holdback edge that falls between a pair's halves keeps the high half back too.

import { IncrementalDetokenizer } from "../tokenizer/detokenizer.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";

export class TextTracker {
  text = "";
  private emitted = 0;
  private readonly detok: IncrementalDetokenizer | null;

  constructor(
    private readonly tokenizer: Tokenizer | null,
    private readonly promptIds: readonly number[],
    private readonly holdback: number,
  ) {
    this.detok = tokenizer
      ? new IncrementalDetokenizer(tokenizer, { skipSpecialTokens: true, promptIds: [...promptIds] })
      : null;
  }

  /** A new tracker of the same prompt and holdback, with no text yet. */
  fresh(): TextTracker {
    return new TextTracker(this.tokenizer, this.promptIds, this.holdback);
  }

  /** Appends a token; returns the index in `text` where the new text starts. */
  push(token: number): number {
    const from = this.text.length;
    if (this.detok) this.text += this.detok.push(token);
    return from;
  }

  /** Text that is safe to emit now. */
  delta(): string {
    let upTo = Math.max(this.emitted, this.text.length - this.holdback);
    if (upTo > this.emitted && isHighSurrogate(this.text.charCodeAt(upTo - 1))) upTo--;
    const out = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return out;
  }

  /** Ends the sequence: flushes the detokenizer, cuts at `stopAt` (a stop string's index), and
   * returns the rest of the text not yet emitted. */
  finish(stopAt?: number): string {
    if (this.detok) this.text += this.detok.flush();
    if (stopAt !== undefined) this.text = this.text.slice(0, stopAt);
    const out = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return out;
  }
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}
