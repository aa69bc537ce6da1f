// The executor thread's module for an executor opened from a directory (open_executor_thread.ts starts
// it): opens the checkpoint or engine there with openExecutor, as the serving thread asked.
import { runExecutorWorker } from "../executor/thread/executor_worker.ts";
import { openExecutor } from "./open_executor.ts";
import type { ExecutorThreadArgs } from "./open_executor_thread.ts";
import { Session } from "./session.ts";

await runExecutorWorker((args, hooks) => {
  const { dir, options } = args as ExecutorThreadArgs;
  const executor = openExecutor(dir, { ...options, ...hooks });
  return { executor, engineDir: executor.session instanceof Session ? executor.session.dir : null };
});
