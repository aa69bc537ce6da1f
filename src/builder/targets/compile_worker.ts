// One worker of parallel_compile.ts: compiles its jobs in order, posting each cubin (or null: failed) on
// its port and bumping the shared counter the builder waits on.
import { type MessagePort, workerData } from "node:worker_threads";
import { compileCuda } from "../../backends/cuda/ffi/nvrtc.ts";
import type { CompileJob, CompileReply } from "./parallel_compile.ts";

const { jobs, port, shared, slot } = workerData as {
  jobs: CompileJob[];
  port: MessagePort;
  shared: Int32Array;
  slot: number;
};
Atomics.store(shared, slot, 1);
Atomics.notify(shared, 0);
for (const [k, job] of jobs.entries()) {
  let reply: CompileReply;
  try {
    reply = compileCuda(job.source, job.name, job.options).cubin;
  } catch {
    reply = null;
  }
  port.postMessage(reply);
  // A failure ends this worker: the builder redoes this job and the rest in its own thread (where the
  // error is thrown as a serial build throws it), so they all count as finished here.
  Atomics.add(shared, 0, reply ? 1 : jobs.length - k);
  Atomics.notify(shared, 0);
  if (!reply) break;
}
port.close();
