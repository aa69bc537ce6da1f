// The server's live generation work: admission (--max-concurrent → 429, shutting down → 503), the
// executor requests that are running for HTTP requests, and the open HTTP generation responses, so
// that shutdown can wait for them, cancel what is left after the grace period, and know when the last
// response went out.
import { HttpError } from "./http_errors.ts";
import type { ServedExecutor } from "./server_context.ts";

/** Why the server cancelled an executor request itself (a client gone is told by its AbortSignal). */
export type CancelCause = "shutdown";

export class InFlight {
  private closing = false;
  /** Executor requests admitted and not yet released. */
  private admitted = 0;
  private readonly live = new Set<number>();
  private readonly cancelled = new Map<number, CancelCause>();
  private openResponses = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly maxConcurrent: number) {}

  get shuttingDown(): boolean {
    return this.closing;
  }

  get numAdmitted(): number {
    return this.admitted;
  }

  /** Takes room for `count` executor requests, or throws 503 (shutting down) / 429 (full). */
  admit(count: number): void {
    if (this.closing)
      throw new HttpError(
        503,
        "the server is shutting down and takes no new requests",
        "service_unavailable",
      );
    if (this.admitted + count > this.maxConcurrent)
      throw new HttpError(
        429,
        `the server already runs ${this.admitted} requests (--max-concurrent ${this.maxConcurrent}); retry later`,
        "rate_limit_error",
        null,
        1,
      );
    this.admitted += count;
  }

  release(count: number): void {
    this.admitted -= count;
  }

  /** An executor request runs for an HTTP request until `untrack`. */
  track(id: number): void {
    this.live.add(id);
  }

  untrack(id: number): void {
    this.live.delete(id);
    this.cancelled.delete(id);
  }

  /** Why the server cancelled `id`, if it did. */
  cancelCause(id: number): CancelCause | undefined {
    return this.cancelled.get(id);
  }

  /** A generation response began; call the returned function once it ended (sent or aborted). */
  openResponse(): () => void {
    this.openResponses++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.openResponses--;
      if (this.openResponses === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
  }

  /** Refuses new work from now on. */
  beginShutdown(): void {
    this.closing = true;
  }

  /** Cancels every live executor request (each answers 503 or ends its stream with an error event). */
  cancelAll(executor: ServedExecutor, cause: CancelCause): void {
    for (const id of [...this.live]) {
      this.cancelled.set(id, cause);
      executor.cancel(id);
    }
  }

  /** Resolves once no generation response is open. */
  idle(): Promise<void> {
    if (this.openResponses === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
