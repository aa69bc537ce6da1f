import { KilnError } from "../errors.ts";

/** The prompt does not fit the engine's context window (web-llm's ContextWindowSizeExceededError). */
export class ContextWindowExceededError extends KilnError {
  constructor(
    readonly promptTokens: number,
    readonly contextWindow: number,
  ) {
    super(
      `the prompt has ${promptTokens} tokens but the model's context window is ${contextWindow} tokens ` +
        `(room is needed for at least one generated token); shorten the prompt to at most ${contextWindow - 1} tokens`,
    );
  }
}

/** A prompt token id outside the vocabulary. */
export class InvalidTokenIdError extends KilnError {
  constructor(id: number, vocabSize: number) {
    super(
      `token id ${id} is out of range for this model's vocabulary of ${vocabSize} ids (valid: 0..${vocabSize - 1})`,
    );
  }
}

/** The KV cache has too few free blocks for what was asked. */
export class KvCacheExhaustedError extends KilnError {}
