// Checks an engine's weight and blob regions against its manifest on worker threads, each reading its
// share straight from the rank file, while the caller does something else with the same bytes (the
// CUDA backend uploads them). Hashing 16 GB on the uploading thread would add seconds to every load;
// spread over workers it hides behind the upload (the file is in the page cache after the first read).
//
//   caller ──start(regions)──▶ worker i: read + xxhash64 its regions ──damage list──▶ port i, done += 1
//          ◀── wait(): Atomics.wait(done == workers) ── receiveMessageOnPort(port i) for each i
//
// A worker that does not start (no worker support, a loader problem) leaves its regions to wait(),
// which checks them on the calling thread, so the answer never depends on the workers.
import { availableParallelism } from "node:os";
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import { checkRegionsHere, type Region } from "./region_hash.ts";

export type { Region };

/** Waits for the check; returns one description per damaged region (empty: all intact). */
export interface RegionCheck {
  wait(): string[];
}

/** Slots of the shared Int32Array: [0] workers finished, [1 + i] worker i: 0 starting, 1 started, −1
 * could not start. */
const STARTUP_MS = 30_000;

/** Starts checking `regions` of the file at `path` on up to `threads` workers (default: the machine's
 * cores less one for the caller, at most 8). */
export function startRegionCheck(
  path: string,
  regions: readonly Region[],
  threads = Math.min(8, Math.max(1, availableParallelism() - 1)),
): RegionCheck {
  const shares = splitByBytes(regions, Math.min(threads, regions.length));
  const shared = new Int32Array(new SharedArrayBuffer(4 * (1 + shares.length)));
  const entry = new URL(
    `./region_check_worker.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`,
    import.meta.url,
  );
  const workers: { worker: Worker; port: MessagePort }[] = shares.map((share, i) => {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(new URL("../worker_boot.mjs", import.meta.url), {
      workerData: { path, regions: share, port: port2, shared, slot: 1 + i, entry: entry.href },
      transferList: [port2],
    });
    worker.on("error", () => {}); // a failed worker shows as its missing reply: wait() checks its share
    worker.unref();
    return { worker, port: port1 };
  });
  return {
    wait() {
      try {
        const t0 = Date.now();
        for (;;) {
          const done = Atomics.load(shared, 0);
          const state = workers.map((_, i) => Atomics.load(shared, 1 + i));
          const starting = state.some((x) => x === 0) && Date.now() - t0 < STARTUP_MS;
          if (!starting && done >= state.filter((x) => x === 1).length) break;
          Atomics.wait(shared, 0, done, 100);
        }
        return workers.flatMap((w, i) => {
          const reply = receiveMessageOnPort(w.port)?.message as string[] | undefined;
          return reply ?? checkRegionsHere(path, shares[i]);
        });
      } finally {
        for (const w of workers) {
          w.port.close();
          void w.worker.terminate();
        }
      }
    },
  };
}

/** `n` shares of about equal bytes: the largest regions first, each to the least-loaded share. */
function splitByBytes(regions: readonly Region[], n: number): Region[][] {
  const shares: { bytes: number; regions: Region[] }[] = Array.from({ length: n }, () => ({
    bytes: 0,
    regions: [],
  }));
  for (const r of [...regions].sort((a, b) => b.byteLength - a.byteLength)) {
    const least = shares.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    least.regions.push(r);
    least.bytes += r.byteLength;
  }
  return shares.map((s) => s.regions);
}
