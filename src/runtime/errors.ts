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
  constructor(
    readonly id: number,
    readonly vocabSize: number,
  ) {
    super(
      `token id ${id} is out of range for this model's vocabulary of ${vocabSize} ids (valid: 0..${vocabSize - 1})`,
    );
  }
}

// Thrown by sampling/option_keys.ts for every options object of the public API.
export { UnknownOptionError } from "../sampling/option_keys.ts";

/** A prompt that is neither text nor token ids. */
export class InvalidPromptError extends KilnError {}

/** The runner was disposed: before this request, or while it was in flight (its executor requests
 * are cancelled at the next step and the runner's memory is freed once the executor has stopped). */
export class RunnerDisposedError extends KilnError {
  constructor() {
    super("the model runner was disposed; create a new one (ModelRunner.fromDir) to generate again");
  }
}

/** A stream was not read for longer than the idle limit while other requests waited in the executor's
 * queue; it was cancelled so that a consumer that went away does not hold KV blocks and compute. */
export class StreamIdleTimeoutError extends KilnError {
  constructor(readonly idleMs: number) {
    super(
      `this stream was not read for ${idleMs} ms while other requests waited for room in the KV cache, so it was ` +
        "cancelled; read a stream to its end or stop it early with return() (break out of for await), " +
        "or raise RunnerOptions.streamIdleTimeoutMs for slow consumers",
    );
  }
}

/** The model produced NaN or infinite logits: its weights hold NaN/inf or a dtype overflowed. */
export class NonFiniteLogitsError extends KilnError {
  constructor(
    readonly step: number,
    readonly promptIndex: number,
    readonly sequenceIndex: number,
  ) {
    super(
      `the model's logits at generation step ${step} (prompt ${promptIndex}, sequence ${sequenceIndex}) are NaN or ` +
        "infinite, so no token can be chosen; the checkpoint's weights probably hold NaN/inf values (check them) " +
        "or the dtype overflows (build with --dtype fp32 or bf16 instead of fp16)",
    );
  }
}
