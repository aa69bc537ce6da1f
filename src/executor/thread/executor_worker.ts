// The executor's side of an executor on its own thread (the serving side: executor_thread.ts). The
// worker's entry module (runtime/executor_thread_entry.ts; a script's own for a simulated device) calls
// runExecutorWorker with how to open the executor from workerData.args; this then owns the executor:
// requests, cancels and shutdown arrive as messages, and the executor's events (through a resultSink),
// refusals, failures and iteration stats are gathered and posted once per turn of this thread's event
// loop, so the serving thread gets one message per executor iteration however many requests run.
import { parentPort, workerData } from "node:worker_threads";
import type { ResultSink } from "../event_queue.ts";
import type { Executor, IterationStats } from "../executor.ts";
import type { ResultEvent } from "../request_results.ts";
import type { Batch, FromExecutor, ToExecutor } from "./messages.ts";
import { type ErrorRecord, errorRecord } from "./remote_error.ts";

/** The hooks the opened executor must be given (ExecutorOptions' onIteration and resultSink). */
export interface ExecutorThreadHooks {
  onIteration: (s: IterationStats) => void;
  resultSink: (requestId: number) => ResultSink;
}

/** The opened executor; engineDir: where the serving thread reads its tokenizer (null: none). */
export interface OpenedOnThread {
  executor: Executor;
  engineDir: string | null;
}

/** Opens the executor from the serving thread's arguments (at once or through a promise). */
export type OpenOnThread = (
  args: unknown,
  hooks: ExecutorThreadHooks,
) => OpenedOnThread | Promise<OpenedOnThread>;

export async function runExecutorWorker(open: OpenOnThread): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("runExecutorWorker runs on a worker thread (executor_thread.ts starts it)");
  const post = (m: FromExecutor) => port.postMessage(m);

  let enqueued: [number, number][] = [];
  let refused: [number, ErrorRecord][] = [];
  let events: ResultEvent[] = [];
  let failed: [number, ErrorRecord][] = [];
  let iterations: IterationStats[] = [];
  let scheduled = false;
  let executor: Executor | null = null;
  const flush = () => {
    scheduled = false;
    if (!executor) return;
    const batch: Batch = {
      t: "batch",
      enqueued,
      refused,
      events,
      failed,
      iterations,
      stats: executor.stats(),
      alive: executor.alive,
    };
    [enqueued, refused, events, failed, iterations] = [[], [], [], [], []];
    post(batch);
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  const hooks: ExecutorThreadHooks = {
    onIteration: (s) => {
      iterations.push(s);
      schedule();
    },
    resultSink: (id) => ({
      push: (ev) => {
        events.push(ev);
        schedule();
      },
      fail: (e) => {
        failed.push([id, errorRecord(e)]);
        schedule();
      },
    }),
  };

  let opened: OpenedOnThread;
  try {
    opened = await open(workerData.args, hooks);
  } catch (e) {
    post({ t: "openFailed", error: errorRecord(e) });
    port.close();
    return;
  }
  const ex = opened.executor;
  executor = ex;
  post({
    t: "ready",
    info: {
      config: ex.session.config,
      eosTokenIds: ex.session.eosTokenIds,
      engineDir: opened.engineDir,
      kvCacheDtype: ex.session.backend.kvCacheDtype ?? "auto",
      kvSizing: ex.kvSizing,
      graphWarmUp: ex.graphWarmUp,
    },
    stats: ex.stats(),
  });
  // The loop's end (shutdown, or an error that escaped it) is news to the serving side: alive false.
  void ex.whenStopped().then(schedule);

  port.on("message", (m: ToExecutor) => {
    if (m.t === "enqueue") {
      try {
        enqueued.push([m.seq, ex.enqueue(m.request)]);
      } catch (e) {
        refused.push([m.seq, errorRecord(e)]);
      }
    } else if (m.t === "cancel") ex.cancel(m.id);
    else {
      const closed = () => {
        flush();
        post({ t: "closed" });
        port.close();
      };
      ex.shutdown({ drain: m.drain }).then(closed, closed);
      return;
    }
    schedule();
  });
}
