// serve_device_sim.ts's executor thread, as `kiln serve` runs its executor: the Executor over a
// SimulatedDevice on a worker thread (src/executor/thread/). Once the executor stopped, its stats carry
// the device's log and this thread's performance.timeOrigin (the log's clock), for the report.
import { Executor } from "../../src/executor/executor.ts";
import { runExecutorWorker } from "../../src/executor/thread/executor_worker.ts";
import { MAX_TOKENS, type SimLoad, type SimThreadStats, servedKvTokens, simSessions } from "./sim_session.ts";

await runExecutorWorker(async (args, hooks) => {
  const a = args as SimLoad;
  const s = (await simSessions(a))();
  const ex = new Executor(s, { maxTokens: servedKvTokens(a), maxNumTokens: MAX_TOKENS, ...hooks });
  const stats = ex.stats.bind(ex);
  ex.stats = (): SimThreadStats =>
    ex.alive ? stats() : { ...stats(), sim: { log: s.device.log, timeOrigin: performance.timeOrigin } };
  return { executor: ex, engineDir: null };
});
