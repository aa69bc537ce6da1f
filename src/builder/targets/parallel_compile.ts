// Compiles an engine's kernel modules on worker threads, one per module (at most the machine's cores,
// KILN_BUILD_THREADS caps it; 1 compiles here, one after another). NVRTC is thread-safe for separate
// programs, and each module takes seconds to compile, so a build waits for the slowest module instead of
// their sum. The call stays synchronous (the builder is): this thread blocks on a shared counter the
// workers bump (Atomics.wait) and then takes their results off their ports (receiveMessageOnPort).
//
//   builder ──job i──▶ worker i: compileCuda(source, name, options) ──cubin──▶ port i, done += 1
//           ◀── Atomics.wait(done == jobs) ── receiveMessageOnPort(port i) for each i
//
// A worker that does not start within STARTUP_MS (no worker support, a loader problem), or a compile that
// fails in a worker, is redone here, so errors (NvrtcError with its log) are thrown as a serial build
// throws them.

import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { type CompileOptions, compileCuda } from "../../backends/cuda/ffi/nvrtc.ts";
import { buildThreads } from "./build_threads.ts";

export interface CompileJob {
  source: string;
  name: string;
  options: CompileOptions;
}

/** A worker's reply on its port: the job's cubin, or null when it failed (this thread then redoes it). */
export type CompileReply = Uint8Array | null;

/** Slots of the shared Int32Array: [0] compiles finished, [1 + i] worker i: 0 starting, 1 started, −1
 * could not start. A worker still starting after STARTUP_MS is given up on. */
const STARTUP_MS = 30_000;

/** The cubins of `jobs`, in order; compiled on worker threads where there is more than one. */
export function compileAll(jobs: readonly CompileJob[], threads = buildThreads(jobs.length)): Uint8Array[] {
  if (threads <= 1 || jobs.length <= 1)
    return jobs.map((j) => compileCuda(j.source, j.name, j.options).cubin);
  const shared = new Int32Array(new SharedArrayBuffer(4 * (1 + threads)));
  const workers: { worker: Worker; port: MessagePort; jobs: number[] }[] = [];
  for (let w = 0; w < threads; w++) {
    const mine = jobs.map((_, i) => i).filter((i) => i % threads === w);
    const { port1, port2 } = new MessageChannel();
    const entry = new URL(
      `./compile_worker.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`,
      import.meta.url,
    );
    const worker = new Worker(new URL("../../worker_boot.mjs", import.meta.url), {
      workerData: { jobs: mine.map((i) => jobs[i]), port: port2, shared, slot: 1 + w, entry: entry.href },
      transferList: [port2],
    });
    worker.on("error", () => {}); // a worker's failure shows as its missing replies: this thread redoes them
    worker.unref();
    workers.push({ worker, port: port1, jobs: mine });
  }
  try {
    // Wait for the compiles of every started worker; workers that cannot start (or not in time) give
    // up their jobs to this thread.
    const t0 = Date.now();
    for (;;) {
      const done = Atomics.load(shared, 0);
      const state = workers.map((_, i) => Atomics.load(shared, 1 + i));
      const pending = state.some((x) => x === 0) && Date.now() - t0 < STARTUP_MS;
      const expected = workers.reduce((n, w, i) => n + (state[i] === 1 ? w.jobs.length : 0), 0);
      if (!pending && done >= expected) break;
      Atomics.wait(shared, 0, done, 100);
    }
    const cubins: (Uint8Array | undefined)[] = new Array(jobs.length);
    workers.forEach((w) => {
      for (const i of w.jobs) {
        const reply = receiveMessageOnPort(w.port)?.message as CompileReply | undefined;
        if (!reply) break; // not started, or failed: this thread compiles the rest of its jobs
        cubins[i] = reply;
      }
    });
    // Jobs without a cubin: compile here (a compile error then throws as in a serial build).
    return jobs.map((j, i) => cubins[i] ?? compileCuda(j.source, j.name, j.options).cubin);
  } finally {
    for (const w of workers) {
      w.port.close();
      void w.worker.terminate();
    }
  }
}
