// Errors of the executor's public boundary: a request that can never run, a full queue, bad fields.
import { KilnError } from "../errors.ts";

/** A request whose prompt plus maxNewTokens (for each of its `width` sequences: beams or samples, the
 * prompt's full blocks shared) needs more KV blocks than the whole cache holds: it could never
 * finish, under either capacity policy, so it is rejected when it is added. */
export class RequestTooLargeError extends KilnError {
  constructor(
    readonly requestId: number,
    readonly promptTokens: number,
    readonly maxNewTokens: number,
    readonly blocksNeeded: number,
    readonly totalBlocks: number,
    readonly tokensPerBlock: number,
    readonly width = 1,
  ) {
    const capacity = totalBlocks * tokensPerBlock;
    const fix =
      width > 1
        ? `ask for fewer than ${width} beams or sequences, lower maxNewTokens, shorten the prompt`
        : promptTokens < capacity
          ? `lower maxNewTokens to at most ${capacity - promptTokens}, shorten the prompt`
          : `shorten the prompt to fewer than ${capacity} tokens`;
    const each = width > 1 ? `${width} sequences of ` : "";
    super(
      `request ${requestId} needs ${blocksNeeded} KV blocks (${each}prompt ${promptTokens} + maxNewTokens ` +
        `${maxNewTokens} tokens at ${tokensPerBlock} tokens per block) but the KV cache holds ${totalBlocks} ` +
        `blocks (${capacity} tokens); ${fix}, or give the KV cache more memory ` +
        "(--kv-cache-free-gpu-mem-fraction, --max-kv-tokens)",
    );
  }
}

/** The waiting queue already holds maxQueueSize requests; the request is rejected at once. */
export class QueueFullError extends KilnError {
  constructor(readonly maxQueueSize: number) {
    super(
      `the executor's queue is full (${maxQueueSize} waiting requests); retry later or raise maxQueueSize`,
    );
  }
}

/** A request field the scheduler cannot use (empty prompt, maxNewTokens < 1, priority outside 0–1). */
export class InvalidRequestError extends KilnError {}

/** Internal invariant check: a failure is a bug in kiln, never a user error. */
export function invariant(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`internal: ${what}`);
}

/** A request option the executor does not run (generation logits of beams): rejected, never
 * approximated. */
export class UnsupportedRequestError extends KilnError {}

/** enqueue after shutdown() began. */
export class ExecutorShutDownError extends KilnError {
  constructor() {
    super("the executor is shut down and takes no more requests; create a new Executor");
  }
}

/** results() or cancel() of an id that was never enqueued, or whose results were already taken. */
export class UnknownRequestError extends KilnError {
  constructor(id: number, what: string) {
    super(`request ${id} ${what}; use the id enqueue() returned, and call results() once per request`);
  }
}

/** A request's logits row was NaN or infinite: no token can be chosen; the request ends with it. */
export class RequestLogitsNotFiniteError extends KilnError {
  constructor(
    readonly requestId: number,
    readonly step: number,
    /** The request's sequence (sample index or beam) whose row it was. */
    readonly sequenceIndex = 0,
  ) {
    super(
      `the model's logits for request ${requestId} at generation step ${step} are NaN or infinite, so no token ` +
        "can be chosen; the checkpoint's weights probably hold NaN/inf values (check them) or the dtype " +
        "overflows (build with --dtype fp32 or bf16 instead of fp16)",
    );
  }
}

/** A request's own LogitsProcessor or StoppingCriteria threw: that request ends with this error (the
 * callback's error is its cause); the loop and every other request go on. */
export class RequestCallbackError extends KilnError {
  constructor(
    readonly requestId: number,
    readonly callback: string,
    cause: unknown,
  ) {
    const what = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(
      `request ${requestId}: its ${callback} threw (${what}), so the request ended; fix the callback ` +
        "(the executor and the other requests went on)",
      { cause },
    );
  }
}

/** The free device memory the executor may give its KV cache holds no block (after the weights, the
 * warm-up step and the CUDA graphs' reserve), so no request could ever run. The runtime's name for it,
 * KvCacheExhaustedError, is the same class (src/index.ts). */
export class KvCacheNoRoomError extends KilnError {
  constructor(
    readonly freeBytes: number,
    readonly fraction: number,
    readonly kvBytesPerBlock: number,
  ) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    const share = `freeGpuMemoryFraction ${fraction} of it`;
    super(
      `no KV cache block fits: ${mib(freeBytes)} of device memory is free after the weights, the warm-up ` +
        `step and the CUDA graphs' reserve, and ${share} holds no ${mib(kvBytesPerBlock)} block; free GPU ` +
        "memory (other processes), raise freeGpuMemoryFraction (--kv-cache-free-gpu-mem-fraction), " +
        "lower maxNumTokens or build with a smaller dtype",
    );
  }
}
