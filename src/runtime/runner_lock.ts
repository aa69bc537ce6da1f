// RunnerLock: a runner serves one request at a time (the KV pool and the backend are shared;
// batching concurrent requests is the executor's job), so requests take turns in a queue. No
// request may hold its turn in a way that only its consumer can end:
// - a queued request whose AbortSignal fires leaves the queue and rejects at once;
// - a running stream whose consumer has not pulled for `idleTimeoutMs` while another request waits
//   is cancelled (its iterator then throws StreamIdleTimeoutError) and the turn passes on;
// - `shutdown()` rejects every queued request and cancels the running one (RunnerDisposedError),
//   and resolves once nothing runs, so the caller may free the backend.
import { RunnerDisposedError, StreamIdleTimeoutError } from "./errors.ts";

/** The running request's hold on the runner. */
export interface Turn {
  /** Aborted (reason: the error to throw) by the user's signal, the idle limit or shutdown; the
   * request checks it at every step. */
  readonly signal: AbortSignal;
  /** The request handed a result to its consumer and waits to be pulled; `stop` ends its work
   * (runs its cleanup) should it be cancelled meanwhile. */
  park(stop: () => Promise<unknown>): void;
  /** The consumer pulled: the request runs again. */
  resume(): void;
  /** Gives the turn to the next request (idempotent). */
  release(): void;
}

interface Waiter {
  grant(): void;
  fail(e: unknown): void;
}

export class RunnerLock {
  private holder: Holder | null = null;
  private readonly queue: Waiter[] = [];
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly onIdle: (() => void)[] = [];
  private closed = false;

  /** `idleTimeoutMs`: how long a parked stream may keep a waiting request out. */
  constructor(readonly idleTimeoutMs: number) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether a request holds the turn. */
  get busy(): boolean {
    return this.holder !== null;
  }

  /** Waits for this request's turn; rejects at once when `signal` aborts or the lock is shut down. */
  acquire(signal?: AbortSignal): Promise<Turn> {
    if (this.closed) return Promise.reject(new RunnerDisposedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.holder && this.queue.length === 0) return Promise.resolve(this.grant(signal));
    return new Promise<Turn>((resolve, reject) => {
      const onAbort = () => {
        this.leave(waiter);
        reject(signal?.reason);
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.grant(signal));
        },
        fail: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
      this.armIdle();
    });
  }

  /** Refuses new requests, rejects queued ones and cancels the running one; resolves when none runs. */
  shutdown(): Promise<void> {
    this.closed = true;
    for (const w of this.queue.splice(0)) w.fail(new RunnerDisposedError());
    if (!this.holder) return Promise.resolve();
    this.holder.cancel(new RunnerDisposedError());
    return new Promise((resolve) => this.onIdle.push(resolve));
  }

  private grant(signal: AbortSignal | undefined): Turn {
    const h = new Holder(signal, {
      parked: () => this.armIdle(),
      resumed: () => this.disarmIdle(),
      released: () => {
        if (this.holder !== h) return;
        this.holder = null;
        this.disarmIdle();
        const next = this.queue.shift();
        if (next) next.grant();
        else for (const f of this.onIdle.splice(0)) f();
      },
    });
    this.holder = h;
    return h;
  }

  private leave(w: Waiter): void {
    const i = this.queue.indexOf(w);
    if (i >= 0) this.queue.splice(i, 1);
    if (this.queue.length === 0) this.disarmIdle();
  }

  /** Starts the idle clock when the holder is parked and someone waits. */
  private armIdle(): void {
    const h = this.holder;
    if (!h?.parked || this.queue.length === 0 || this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.holder === h && h.parked && this.queue.length > 0)
        h.cancel(new StreamIdleTimeoutError(this.idleTimeoutMs));
    }, this.idleTimeoutMs);
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}

class Holder implements Turn {
  private readonly controller = new AbortController();
  readonly signal: AbortSignal;
  /** Set while parked: ends the parked request's work. */
  parked: (() => Promise<unknown>) | null = null;
  private released = false;

  constructor(
    user: AbortSignal | undefined,
    private readonly events: { parked(): void; resumed(): void; released(): void },
  ) {
    this.signal = user ? AbortSignal.any([user, this.controller.signal]) : this.controller.signal;
  }

  // A released turn (cancelled while parked) no longer touches the lock: another request holds it.
  park(stop: () => Promise<unknown>): void {
    if (this.released) return;
    this.parked = stop;
    this.events.parked();
  }

  resume(): void {
    this.parked = null;
    if (!this.released) this.events.resumed();
  }

  /** Aborts the request; a parked one is stopped now (it cannot see the signal until pulled). */
  cancel(reason: Error): void {
    this.controller.abort(reason);
    const stop = this.parked;
    if (!stop) return;
    this.parked = null;
    const release = () => this.release();
    stop().then(release, release);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.events.released();
  }
}
