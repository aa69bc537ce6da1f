// Where a request's result events go once the executor made them (request_results.ts's ResultChannel
// writes them): a ResultSink. In-process it is an EventQueue, which keeps them until the caller's
// async iterator takes them; on an executor thread (thread/executor_worker.ts) it posts them to the
// thread that serves the request, which puts them in an EventQueue of its own.
import type { ReaderWakeups } from "./reader_wakeups.ts";
import type { ResultEvent } from "./request_results.ts";

export interface ResultSink {
  /** One event; the request's last has isFinal. */
  push(ev: ResultEvent): void;
  /** Ends the request with an error (no event after it). */
  fail(error: unknown): void;
}

/** A request's events between the writer and one reader; the iterator ends after the final event
 * (or throws the error that ended the request). */
export class EventQueue implements ResultSink, AsyncIterable<ResultEvent> {
  private readonly queue: ResultEvent[] = [];
  private head = 0;
  private done = false;
  private error: unknown = null;
  private waiter: (() => void) | null = null;

  /** `wakeups`: where a waiting reader is resumed from (a slice of readers per turn of the event
   * loop); absent: at once. */
  constructor(private readonly wakeups?: ReaderWakeups) {}

  push(ev: ResultEvent): void {
    if (this.done) return;
    this.queue.push(ev);
    if (ev.isFinal) this.done = true;
    this.wake();
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ResultEvent> {
    for (;;) {
      if (this.head < this.queue.length) {
        const ev = this.queue[this.head++];
        if (this.head === this.queue.length) {
          this.queue.length = 0;
          this.head = 0;
        }
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
    if (!w) return;
    this.waiter = null;
    if (this.wakeups) this.wakeups.wake(w);
    else w();
  }
}
