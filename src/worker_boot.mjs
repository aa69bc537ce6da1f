// Entry of kiln's worker threads (parallel_compile.ts, region_check.ts, quantize_pool.ts,
// executor/thread/executor_thread.ts): loads the worker module `workerData.entry` through tsx's tsImport
// where kiln runs as TypeScript (a worker does not inherit the main thread's tsx loader), else imports
// it as is. A failure to load marks the worker's slot −1 in `workerData.shared` where there is one, so
// the main thread does the worker's jobs itself at once; without one it is thrown (the worker's
// 'error' event).
import { workerData } from "node:worker_threads";

try {
  if (workerData.entry.endsWith(".ts")) {
    const { tsImport } = await import("tsx/esm/api");
    await tsImport(workerData.entry, import.meta.url);
  } else await import(workerData.entry);
} catch (e) {
  if (!workerData.shared) throw e;
  Atomics.store(workerData.shared, workerData.slot, -1);
  Atomics.notify(workerData.shared, 0);
}
