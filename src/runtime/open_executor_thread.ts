// openExecutor on a thread of its own (executor/thread/): the checkpoint is built into an engine (or the
// engine opened) and the executor runs on a worker thread, while this thread serves its requests
// through an ExecutorThread. The tokenizer is read here too, from the engine directory the worker
// opened, for the serving thread's own encoding and decoding.
import type { IterationStats } from "../executor/executor.ts";
import { ExecutorThread } from "../executor/thread/executor_thread.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { OpenExecutorOptions } from "./open_executor.ts";
import { engineTokenizer } from "./session.ts";

/** OpenExecutorOptions that cross to the worker: plain data, no callbacks. */
export type ThreadExecutorOptions = Omit<OpenExecutorOptions, "clock" | "onIteration" | "resultSink">;

/** What the worker's entry (executor_thread_entry.ts) opens. */
export interface ExecutorThreadArgs {
  dir: string;
  options: ThreadExecutorOptions;
}

export interface OpenedExecutorThread {
  executor: ExecutorThread;
  /** The engine's tokenizer, read on this thread; null when the engine has none. */
  tokenizer: Tokenizer | null;
}

/** Opens `dir` (checkpoint or engine) on an executor thread; rejects with the open's error, as
 * openExecutor throws it (its class kept where the caller may test for it: remote_error.ts). */
export async function openExecutorThread(
  dir: string,
  options: ThreadExecutorOptions = {},
  onIteration?: (s: IterationStats) => void,
  /** The worker's module (default executor_thread_entry.ts); another opens ExecutorThreadArgs its own
   * way (a test's device double) and calls runExecutorWorker as that one does. */
  entry: URL = defaultEntry(),
): Promise<OpenedExecutorThread> {
  const args: ExecutorThreadArgs = { dir, options };
  const executor = await ExecutorThread.start({
    entry,
    args,
    ...(onIteration ? { onIteration } : {}),
  });
  const { engineDir, config } = executor.info;
  let tokenizer: Tokenizer | null;
  try {
    tokenizer = engineDir !== null ? engineTokenizer(engineDir, config) : null;
  } catch (e) {
    await executor.shutdown({ drain: false });
    throw e;
  }
  return { executor, tokenizer };
}

function defaultEntry(): URL {
  const ext = import.meta.url.endsWith(".ts") ? "ts" : "js";
  return new URL(`./executor_thread_entry.${ext}`, import.meta.url);
}
