// An executor thread's module for executor_thread.test.ts: the bundled model opened as `kiln serve`
// opens it, whose thread dies of an uncaught error (a kiln bug there) right after it takes a request
// with clientId "crash".
import { runExecutorWorker } from "../../src/executor/thread/executor_worker.ts";
import { openExecutor } from "../../src/runtime/open_executor.ts";
import type { ExecutorThreadArgs } from "../../src/runtime/open_executor_thread.ts";

await runExecutorWorker((args, hooks) => {
  const { dir, options } = args as ExecutorThreadArgs;
  const executor = openExecutor(dir, { ...options, ...hooks });
  const enqueue = executor.enqueue.bind(executor);
  executor.enqueue = (r) => {
    const id = enqueue(r);
    if (r.clientId === "crash")
      setImmediate(() => {
        throw new TypeError("the executor thread's bug");
      });
    return id;
  };
  return { executor, engineDir: null };
});
