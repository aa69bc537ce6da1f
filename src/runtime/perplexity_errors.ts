// What `kiln eval --perplexity` rejects: a text it cannot read or score, and window options that
// would leave tokens unscored or exceed the engine.
import { KilnError } from "../errors.ts";

/** The --perplexity file is missing, unreadable or empty. */
export class EvalTextError extends KilnError {}

/** Fewer than two tokens: the first token is never scored, so there is nothing to measure. */
export class TextTooShortError extends KilnError {
  constructor(readonly tokens: number) {
    super(
      `the text has ${tokens} token${tokens === 1 ? "" : "s"} but perplexity needs at least 2 (the first is never scored); pass a longer text`,
    );
  }
}

/** --max-length / --stride out of range (stride > max-length, max-length > the context window). */
export class PerplexityOptionsError extends KilnError {}
