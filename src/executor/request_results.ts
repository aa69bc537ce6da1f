// What a caller reads for one request: result events through an async iterator. A streaming request
// gets one event per token; otherwise one event when it finishes, with every token. The last event
// carries the finish reason; the iterator ends after it (or throws the error that ended the request).
import type { RequestFinishReason } from "./request.ts";

/** Milliseconds on the executor's clock (Date.now by default); null until it happened. */
export interface RequestTiming {
  arrival: number;
  firstScheduled: number | null;
  firstToken: number | null;
  last: number | null;
}

export interface ResultEvent {
  requestId: number;
  /** Tokens new in this event (all of them for a non-streaming request). */
  tokenIds: number[];
  /** Their log-probabilities (after penalties, bans and temperature; before truncation). */
  logProbs: number[];
  /** Sum of the request's log-probs so far, this event's included (added in order, as
   * ModelRunner.generate's cumLogProb). */
  cumLogProb: number;
  /** returnGenerationLogits: the raw logits of this event's tokens, [tokenIds.length × vocab]. */
  generationLogits?: Float32Array;
  /** The request's clientId, when it gave one. */
  clientId?: string | number;
  /** Text completed by these tokens (held back while it may still begin a stop string). */
  text: string;
  finishReason: RequestFinishReason | null;
  timing: RequestTiming;
}

/** The event queue of one request between the executor (writer) and its caller (reader). */
export class ResultChannel implements AsyncIterable<ResultEvent> {
  private readonly queue: ResultEvent[] = [];
  private done = false;
  private error: unknown = null;
  private waiter: (() => void) | null = null;
  private taken = false;
  /** Tokens gathered for a non-streaming request's single event. */
  private held: ResultEvent | null = null;
  /** Raw logits rows gathered for a non-streaming request's single event. */
  private heldLogits: Float32Array[] = [];
  private cumLogProb = 0;

  constructor(
    readonly requestId: number,
    readonly streaming: boolean,
    readonly timing: RequestTiming,
    private readonly clientId?: string | number,
    /** Whether every event carries generationLogits. */
    private readonly withLogits = false,
  ) {}

  get finished(): boolean {
    return this.done;
  }

  /** Whether results() was called for it. */
  get isTaken(): boolean {
    return this.taken;
  }

  take(): AsyncIterable<ResultEvent> {
    this.taken = true;
    return this;
  }

  /** New tokens (maybe none) and text; `finishReason` ends the request. `rawLogits`: one [V] row per
   * token when the request returns generation logits. */
  push(
    tokenIds: number[],
    logProbs: number[],
    text: string,
    finishReason: RequestFinishReason | null,
    rawLogits?: readonly Float32Array[],
  ): void {
    if (this.done) return;
    for (const lp of logProbs) this.cumLogProb += lp;
    const ev: ResultEvent = {
      requestId: this.requestId,
      tokenIds,
      logProbs,
      cumLogProb: this.cumLogProb,
      text,
      finishReason,
      timing: { ...this.timing },
    };
    if (this.clientId !== undefined) ev.clientId = this.clientId;
    if (this.withLogits) ev.generationLogits = concat(rawLogits ?? []);
    if (!this.streaming) {
      if (this.withLogits) this.heldLogits.push(...(rawLogits ?? []));
      if (this.held) {
        this.held.tokenIds.push(...tokenIds);
        this.held.logProbs.push(...logProbs);
        this.held.text += text;
      } else this.held = ev;
      if (finishReason === null) return;
      this.held.finishReason = finishReason;
      this.held.timing = ev.timing;
      this.held.cumLogProb = this.cumLogProb;
      if (this.withLogits) this.held.generationLogits = concat(this.heldLogits);
      this.queue.push(this.held);
    } else this.queue.push(ev);
    if (finishReason !== null) this.done = true;
    this.wake();
  }

  /** Ends the request with an error the reader's iterator throws. */
  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ResultEvent> {
    for (;;) {
      const ev = this.queue.shift();
      if (ev) {
        yield ev;
        continue;
      }
      if (this.done) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

/** [V] rows joined into [rows × V]. */
function concat(rows: readonly Float32Array[]): Float32Array {
  const V = rows[0]?.length ?? 0;
  const out = new Float32Array(rows.length * V);
  rows.forEach((r, i) => {
    out.set(r, i * V);
  });
  return out;
}
