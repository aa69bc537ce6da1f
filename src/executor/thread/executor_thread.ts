// An executor on a thread of its own, seen from the thread that serves its requests (`kiln serve`'s
// HTTP thread). The executor's loop and the server's per-token work (JSON, SSE, sockets, accepting and
// parsing requests) then run side by side instead of taking turns on one event loop: with ~1,000
// streams the server's share per iteration outgrew the device's step (docs/PERFORMANCE.md), as vLLM v1
// separates its engine core from its API server.
//
// ExecutorThread has the surface the server uses (server_context.ts's ServedExecutor): enqueue answers
// with the id once the executor took the request (or rejects with its refusal, revived as its class:
// remote_error.ts); results() reads events posted once per executor iteration (executor_worker.ts)
// into an EventQueue per request, whose readers wake a slice per turn of this event loop
// (reader_wakeups.ts); cancel posts at once and its final "cancelled" event follows; stats() is the
// executor's as of its last message (one per iteration, and after each enqueue or cancel).
import { Worker } from "node:worker_threads";
import { ExecutorShutDownError, UnknownRequestError, UnsupportedRequestError } from "../errors.ts";
import { EventQueue } from "../event_queue.ts";
import type { ExecutorRequest, ExecutorStats, IterationStats } from "../executor.ts";
import { ReaderWakeups } from "../reader_wakeups.ts";
import type { ResultEvent } from "../request_results.ts";
import type { Batch, ExecutorThreadInfo, FromExecutor, ToExecutor } from "./messages.ts";
import { reviveError } from "./remote_error.ts";

export interface ExecutorThreadOptions {
  /** Module run on the worker: it calls runExecutorWorker (executor_worker.ts) with its opener. */
  entry: URL;
  /** What the entry's opener gets (structured-cloned: plain data). */
  args: unknown;
  /** Called with each iteration's stats, on this thread, as they arrive. */
  onIteration?: (s: IterationStats) => void;
}

interface Pending {
  resolve(id: number): void;
  reject(e: unknown): void;
}

export class ExecutorThread {
  /** Requests from their id until their final event or error: where their events go. */
  private readonly live = new Map<number, EventQueue>();
  /** Queues results() has not handed out yet. */
  private readonly untaken = new Map<number, EventQueue>();
  private readonly pending = new Map<number, Pending>();
  private readonly wakeups = new ReaderWakeups();
  private nextSeq = 1;
  private lastStats: ExecutorStats;
  private running = true;
  private closing: Promise<void> | null = null;
  /** Resolves shutdown's wait; set from shutdown() until the executor said it stopped (or its thread
   * ended). */
  private closed: (() => void) | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly info: ExecutorThreadInfo,
    stats: ExecutorStats,
    private readonly onIteration: ((s: IterationStats) => void) | undefined,
  ) {
    this.lastStats = stats;
    // Like an in-process executor, an idle one keeps no process alive: the worker counts for the event
    // loop only while a request is pending or live (holdProcess).
    worker.unref();
    worker.on("message", (m: FromExecutor) => this.receive(m));
    worker.on("error", (e) => this.died(e));
    worker.on("exit", (code) => this.died(new Error(`the executor thread exited (code ${code})`)));
  }

  /** Starts the worker and opens the executor there; rejects with the opener's error (revived). */
  static start(o: ExecutorThreadOptions): Promise<ExecutorThread> {
    const worker = new Worker(new URL("../../worker_boot.mjs", import.meta.url), {
      workerData: { entry: o.entry.href, args: o.args },
    });
    return new Promise((resolve, reject) => {
      // A worker given up on may still report: its 'error' must not go unheard (it would throw here).
      const dispose = () => {
        worker.on("error", () => {});
        void worker.terminate();
      };
      const fail = (e: unknown) => {
        worker.off("message", first);
        dispose();
        reject(e);
      };
      const onError = (e: unknown) => fail(e);
      const onExit = (code: number) =>
        fail(new Error(`the executor thread exited (code ${code}) before it opened`));
      const first = (m: FromExecutor) => {
        worker.off("message", first);
        worker.off("error", onError);
        worker.off("exit", onExit);
        if (m.t === "ready") resolve(new ExecutorThread(worker, m.info, m.stats, o.onIteration));
        else if (m.t === "openFailed") {
          dispose();
          reject(reviveError(m.error));
        } else fail(new Error(`the executor thread sent ${m.t} before it opened`));
      };
      worker.on("message", first);
      worker.once("error", onError);
      worker.once("exit", onExit);
    });
  }

  get alive(): boolean {
    return this.running;
  }

  /** Resolves with the request's id once the executor queued it; rejects with its refusal. */
  enqueue(request: ExecutorRequest): Promise<number> {
    if (this.closing || !this.running) return Promise.reject(new ExecutorShutDownError());
    const seq = this.nextSeq++;
    return new Promise((resolve, reject) => {
      try {
        this.send({ t: "enqueue", seq, request });
      } catch (e) {
        // A structured clone refused it: a callback (logitsProcessors, stoppingCriteria) or other
        // non-data value.
        reject(
          new UnsupportedRequestError(
            `the request cannot cross to the executor's thread (${(e as Error).message}); requests there are ` +
              "plain data: run logitsProcessors and stoppingCriteria callbacks on an in-process executor (openExecutor)",
            { cause: e },
          ),
        );
        return;
      }
      this.pending.set(seq, { resolve, reject });
      this.holdProcess();
    });
  }

  /** The request's result events; call once per request (before or after it finished). */
  results(id: number): AsyncIterable<ResultEvent> {
    const queue = this.untaken.get(id);
    if (!queue)
      throw new UnknownRequestError(id, "has no results to take (unknown id, or results() was called)");
    this.untaken.delete(id);
    return queue;
  }

  /** Cancels a live request; its events end with "cancelled" once the executor did it. False if it is
   * not live here (unknown, or its final event arrived). */
  cancel(id: number): boolean {
    if (!this.live.has(id) || !this.running) return false;
    this.send({ t: "cancel", id });
    return true;
  }

  /** The executor's stats as of its last message. */
  stats(): ExecutorStats {
    return this.lastStats;
  }

  /** Refuses new requests; with drain (default) lets the live ones finish, else cancels them. Resolves
   * once the executor stopped, its session was disposed and the thread ended. */
  shutdown({ drain = true }: { drain?: boolean } = {}): Promise<void> {
    if (this.closing) return this.closing;
    const stopped = new Promise<void>((resolve) => {
      this.closed = resolve;
    });
    this.closing = stopped.then(() => this.worker.terminate().then(() => {}));
    if (this.running) this.send({ t: "shutdown", drain });
    else this.settleClose();
    this.holdProcess(); // the process waits for the executor to stop
    return this.closing;
  }

  private send(m: ToExecutor): void {
    this.worker.postMessage(m);
  }

  private receive(m: FromExecutor): void {
    if (m.t === "batch") this.apply(m);
    else if (m.t === "closed") {
      this.running = false;
      this.failLive(new ExecutorShutDownError());
      this.holdProcess();
      this.settleClose();
    }
  }

  /** Replies first (a request's queue exists before its first event), then events, then failures. */
  private apply(b: Batch): void {
    for (const [seq, id] of b.enqueued) {
      const queue = new EventQueue(this.wakeups);
      this.live.set(id, queue);
      this.untaken.set(id, queue);
      this.pending.get(seq)?.resolve(id);
      this.pending.delete(seq);
    }
    for (const [seq, error] of b.refused) {
      this.pending.get(seq)?.reject(reviveError(error));
      this.pending.delete(seq);
    }
    for (const ev of b.events) {
      const queue = this.live.get(ev.requestId);
      if (!queue) continue;
      if (ev.isFinal) this.live.delete(ev.requestId);
      queue.push(ev);
    }
    for (const [id, error] of b.failed) {
      const queue = this.live.get(id);
      if (!queue) continue;
      this.live.delete(id);
      queue.fail(reviveError(error));
    }
    this.lastStats = b.stats;
    if (this.onIteration) for (const s of b.iterations) this.onIteration(s);
    if (!b.alive) this.running = false;
    this.holdProcess();
  }

  /** Keeps the process alive through the worker while requests are pending or live, or while shutdown
   * waits for the executor to stop; not longer (ref and unref are idempotent). */
  private holdProcess(): void {
    if (this.closed !== null || this.pending.size > 0 || this.live.size > 0) this.worker.ref();
    else this.worker.unref();
  }

  /** The worker failed or ended: every waiting caller and live request gets `e`. */
  private died(e: unknown): void {
    if (!this.running && this.live.size === 0 && this.pending.size === 0) {
      this.settleClose();
      return;
    }
    this.running = false;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.failLive(e);
    this.holdProcess();
    this.settleClose();
  }

  /** Shutdown's wait is over. */
  private settleClose(): void {
    const done = this.closed;
    this.closed = null;
    done?.();
  }

  private failLive(e: unknown): void {
    for (const queue of this.live.values()) queue.fail(e);
    this.live.clear();
  }
}
