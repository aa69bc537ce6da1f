// One worker of region_check.ts: checks its share of the regions, posts the damage it found on its port
// and bumps the shared counter the caller waits on.
import { type MessagePort, workerData } from "node:worker_threads";
import { checkRegionsHere, type Region } from "./region_hash.ts";

const { path, regions, port, shared, slot } = workerData as {
  path: string;
  regions: Region[];
  port: MessagePort;
  shared: Int32Array;
  slot: number;
};
Atomics.store(shared, slot, 1);
Atomics.notify(shared, 0);
try {
  port.postMessage(checkRegionsHere(path, regions));
} finally {
  // A failure posts nothing: the caller checks this share itself.
  Atomics.add(shared, 0, 1);
  Atomics.notify(shared, 0);
  port.close();
}
