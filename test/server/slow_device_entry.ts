// The executor thread's module for serve_admission.test.ts: the bundled model opened as `kiln serve`
// opens it (openExecutor on the thread), its device made slow — sampleReady and forwardReady say no
// until SLOW_STEP_MS after a step was queued — and what the test checks reported through stats(),
// which the thread posts after every iteration, enqueue and cancel: the iteration at which each request
// reached the executor, and how often the executor polled the device.
import type { ExecutionBackend, ForwardTicket, SampleTicket } from "../../src/backends/backend.ts";
import type { ExecutorRequest } from "../../src/executor/executor.ts";
import { runExecutorWorker } from "../../src/executor/thread/executor_worker.ts";
import { openExecutor } from "../../src/runtime/open_executor.ts";
import type { ExecutorThreadArgs } from "../../src/runtime/open_executor_thread.ts";
import { Session } from "../../src/runtime/session.ts";
import { SLOW_STEP_MS, type SlowDeviceStats } from "./slow_device.ts";

await runExecutorWorker((args, hooks) => {
  const { dir, options } = args as ExecutorThreadArgs;
  const ex = openExecutor(dir, { ...options, ...hooks });
  const slow = { admittedAt: [] as number[], samplePolls: 0, forwardPolls: 0 };
  const b: ExecutionBackend = ex.session.backend;
  const enqueueSample = (b.enqueueSample as NonNullable<ExecutionBackend["enqueueSample"]>).bind(b);
  const enqueueForward = (b.enqueueForward as NonNullable<ExecutionBackend["enqueueForward"]>).bind(b);
  const queuedAt = new Map<string, number>();
  b.enqueueSample = (step, p, t, feed) => {
    const ticket = enqueueSample(step, p, t, feed);
    queuedAt.set(`s${ticket.id}`, performance.now());
    return ticket;
  };
  b.enqueueForward = (step) => {
    const ticket = enqueueForward(step);
    queuedAt.set(`f${ticket.id}`, performance.now());
    return ticket;
  };
  const ready = (key: string) => performance.now() - (queuedAt.get(key) ?? 0) >= SLOW_STEP_MS;
  b.sampleReady = (ticket: SampleTicket) => {
    slow.samplePolls++;
    return ready(`s${ticket.id}`);
  };
  b.forwardReady = (ticket: ForwardTicket) => {
    slow.forwardPolls++;
    return ready(`f${ticket.id}`);
  };
  const enqueue = ex.enqueue.bind(ex);
  ex.enqueue = (r: ExecutorRequest) => {
    const id = enqueue(r);
    slow.admittedAt.push(ex.stats().numIterations);
    return id;
  };
  const stats = ex.stats.bind(ex);
  ex.stats = (): SlowDeviceStats => ({
    ...stats(),
    slow: { ...slow, admittedAt: [...slow.admittedAt] },
  });
  return { executor: ex, engineDir: ex.session instanceof Session ? ex.session.dir : null };
});
