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

  constructor(
    readonly requestId: number,
    readonly streaming: boolean,
    readonly timing: RequestTiming,
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

  /** New tokens (maybe none) and text; `finishReason` ends the request. */
  push(tokenIds: number[], logProbs: number[], text: string, finishReason: RequestFinishReason | null): void {
    if (this.done) return;
    const ev: ResultEvent = {
      requestId: this.requestId,
      tokenIds,
      logProbs,
      text,
      finishReason,
      timing: { ...this.timing },
    };
    if (!this.streaming) {
      if (this.held) {
        this.held.tokenIds.push(...tokenIds);
        this.held.logProbs.push(...logProbs);
        this.held.text += text;
      } else this.held = ev;
      if (finishReason === null) return;
      this.held.finishReason = finishReason;
      this.held.timing = ev.timing;
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
