// Built-in stopping criteria: end ids, max length, stop words (token sequences on ids, strings on
// the decoded text). They run after each token, before user criteria.

import type { WordSpec } from "./sampling_config.ts";
import { endsWith } from "./word_filters.ts";

/** Why a sequence finished: its token budget, a stop word or criterion, or an end id. */
export type FinishReason = "length" | "stop" | "end";

export interface StopCheck {
  reason: FinishReason;
  /** For a stop string: the generated text up to (not including) the stop string. */
  text?: string;
}

export class BuiltinStops {
  private readonly tokenWords: number[][];
  private readonly textWords: string[];

  constructor(
    private readonly endIds: ReadonlySet<number>,
    private readonly maxNewTokens: number,
    stopWords: readonly WordSpec[],
  ) {
    this.tokenWords = stopWords
      .filter((w): w is readonly number[] => typeof w !== "string")
      .map((w) => [...w]);
    this.textWords = stopWords.filter((w): w is string => typeof w === "string");
  }

  get usesText(): boolean {
    return this.textWords.length > 0;
  }

  /** After `token` was appended to `output` (generated ids) whose decoded text is `text`. */
  check(output: readonly number[], token: number, text: string, newTextFrom: number): StopCheck | null {
    if (this.endIds.has(token)) return { reason: "end" };
    for (const w of this.tokenWords) if (endsWith(output, w)) return { reason: "stop" };
    for (const w of this.textWords) {
      // Only look where the new text could complete a match.
      const at = text.indexOf(w, Math.max(0, newTextFrom - w.length + 1));
      if (at >= 0) return { reason: "stop", text: text.slice(0, at) };
    }
    if (output.length >= this.maxNewTokens) return { reason: "length" };
    return null;
  }
}
