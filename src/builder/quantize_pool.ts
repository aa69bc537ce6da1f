// Quantizes a build's weights on worker threads ahead of the engine writer. The writer streams weights
// one at a time through synchronous `bytes()` calls (engine/writer.ts); quantizing the 8B's 7·10⁹ values
// there, one after another, took most of its fp8 build. Each quantized weight gets a thunk from `add`;
// the first thunk called queues its job and the next ones (LOOKAHEAD_PER_THREAD per worker, at most
// MAX_AHEAD_BYTES of source bytes) on the workers, then blocks (Atomics.wait) until its region is back.
//
//   writer ──bytes() of job k──▶ queue jobs k … k+n: source bytes (copied) ──▶ worker (k mod threads)
//          ◀── Atomics.wait(done changes) ── receiveMessageOnPort(each port) until job k is back
//
// The answer never depends on the workers: a job a worker could not do (it did not start within
// STARTUP_MS, its quantizer threw, or no result came for STALL_MS) is done on this thread, so errors
// throw as in a serial build; with `threads` 0 every job is.
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { type QuantizeSpec, quantizeRegion } from "./passes/quantize_weights.ts";
import { buildThreads } from "./targets/build_threads.ts";

const STARTUP_MS = 30_000;
/** Below this many source bytes in all, workers cost more to start than they save (tests' tiny models). */
const POOL_MIN_BYTES = 64 * 2 ** 20;
const STALL_MS = 120_000;
const LOOKAHEAD_PER_THREAD = 2;
const MAX_AHEAD_BYTES = 4 * 2 ** 30;

/** A job posted to a worker; its reply is { id, region } or { id, region: null } when it failed. */
export interface QuantizeJobMessage {
  id: number;
  source: Uint8Array;
  spec: QuantizeSpec;
}
export interface QuantizeReply {
  id: number;
  region: Uint8Array | null;
}

interface Job {
  source: () => Uint8Array;
  spec: QuantizeSpec;
  /** The worker it was posted to, or −1 (not posted, or done here). */
  worker: number;
  sourceBytes: number;
  taken: boolean;
}

export class QuantizePool {
  private readonly jobs: Job[] = [];
  private readonly done = new Map<number, Uint8Array | null>();
  private workers: { worker: Worker; port: MessagePort }[] | null = null;
  /** [0] replies posted, [1 + i] worker i: 0 starting, 1 started, −1 could not start. */
  private shared: Int32Array | null = null;
  private next = 0;
  private aheadBytes = 0;
  private startedAt = 0;
  private closed = false;

  /** A pool of `threads` workers (0: every job on the calling thread), started at the first job;
   * `entry` is the worker module (tests point it elsewhere to see a pool whose workers fail). */
  constructor(
    private readonly threads: number,
    private readonly entry = new URL(
      `./quantize_worker.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`,
      import.meta.url,
    ),
  ) {}

  /** Workers for quantizing `weights` (their source bytes): none under POOL_MIN_BYTES, else
   * targets/build_threads.ts's count (KILN_BUILD_THREADS or the cores) for that many jobs. */
  static threadsFor(weights: readonly { byteLength: number }[]): number {
    const bytes = weights.reduce((n, w) => n + w.byteLength, 0);
    return bytes < POOL_MIN_BYTES ? 0 : buildThreads(weights.length);
  }

  /** The thunk that returns the `spec.format` region of `source()`'s bytes, job number jobs.length. */
  add(source: () => Uint8Array, spec: QuantizeSpec): () => Uint8Array {
    const id = this.jobs.length;
    this.jobs.push({ source, spec, worker: -1, sourceBytes: 0, taken: false });
    return () => this.take(id);
  }

  /** Stops the workers; a thunk called afterwards quantizes on the calling thread. */
  close(): void {
    this.closed = true;
    for (const w of this.workers ?? []) {
      w.port.close();
      void w.worker.terminate();
    }
    this.workers = null;
    this.done.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private take(id: number): Uint8Array {
    const job = this.jobs[id];
    const here = () => quantizeRegion(job.source(), job.spec);
    if (job.taken || this.closed || this.threads < 1) return here(); // a second call: nothing kept
    job.taken = true;
    this.start();
    this.queueFrom(id);
    if (job.worker < 0) return here();
    const region = this.waitFor(id);
    this.aheadBytes -= job.sourceBytes;
    return region ?? quantizeRegion(job.source(), job.spec);
  }

  private start(): void {
    if (this.workers) return;
    const shared = new Int32Array(new SharedArrayBuffer(4 * (1 + this.threads)));
    const entry = this.entry;
    this.workers = Array.from({ length: this.threads }, (_, i) => {
      const { port1, port2 } = new MessageChannel();
      const worker = new Worker(new URL("../worker_boot.mjs", import.meta.url), {
        workerData: { port: port2, shared, slot: 1 + i, entry: entry.href },
        transferList: [port2],
      });
      worker.on("error", () => {}); // a failed worker shows as missing replies: its jobs are done here
      worker.unref();
      return { worker, port: port1 };
    });
    this.shared = shared;
    this.startedAt = Date.now();
  }

  /** Posts job `from` (always) and the ones after it while the lookahead allows. */
  private queueFrom(from: number): void {
    const limit = from + 1 + LOOKAHEAD_PER_THREAD * this.threads;
    for (; this.next < Math.min(limit, this.jobs.length); this.next++) {
      const id = this.next;
      if (id > from && this.aheadBytes >= MAX_AHEAD_BYTES) break;
      const w = id % this.threads;
      if (id < from || this.state(w) < 0) continue; // skipped ones (called early) are done here
      const job = this.jobs[id];
      const source = job.source().slice(); // a copy of its own, transferred: the source may be a view
      job.worker = w;
      job.sourceBytes = source.byteLength;
      this.aheadBytes += source.byteLength;
      const message: QuantizeJobMessage = { id, source, spec: job.spec };
      (this.workers as { port: MessagePort }[])[w].port.postMessage(message, [source.buffer]);
    }
  }

  /** Worker w's state; one still starting after STARTUP_MS counts as failed. */
  private state(w: number): number {
    const s = Atomics.load(this.shared as Int32Array, 1 + w);
    return s === 0 && Date.now() - this.startedAt > STARTUP_MS ? -1 : s;
  }

  /** Job `id`'s region from its worker, or null where the worker failed, stopped or stalled. */
  private waitFor(id: number): Uint8Array | null {
    const shared = this.shared as Int32Array;
    const w = this.jobs[id].worker;
    let last = Date.now();
    for (;;) {
      const seen = Atomics.load(shared, 0);
      for (const p of this.workers ?? []) {
        for (let m = receiveMessageOnPort(p.port); m; m = receiveMessageOnPort(p.port)) {
          const reply = m.message as QuantizeReply;
          this.done.set(reply.id, reply.region);
          last = Date.now();
        }
      }
      if (this.done.has(id)) {
        const region = this.done.get(id) ?? null;
        this.done.delete(id);
        return region;
      }
      if (this.state(w) < 0 || Date.now() - last > STALL_MS) return null;
      Atomics.wait(shared, 0, seen, 100);
    }
  }
}
