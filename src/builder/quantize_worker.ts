// One worker of quantize_pool.ts: quantizes the jobs posted on its port as they come, posting each
// region (transferred) or null (its quantizer threw: the builder redoes the job, and throws there),
// then bumps the shared counter the builder waits on.
import { type MessagePort, workerData } from "node:worker_threads";
import { quantizeRegion } from "./passes/quantize_weights.ts";
import type { QuantizeJobMessage, QuantizeReply } from "./quantize_pool.ts";

const { port, shared, slot } = workerData as { port: MessagePort; shared: Int32Array; slot: number };
port.on("message", ({ id, source, spec }: QuantizeJobMessage) => {
  let reply: QuantizeReply;
  try {
    reply = { id, region: quantizeRegion(source, spec) };
  } catch {
    reply = { id, region: null };
  }
  port.postMessage(reply, reply.region ? [reply.region.buffer as ArrayBuffer] : []);
  Atomics.add(shared, 0, 1);
  Atomics.notify(shared, 0);
});
Atomics.store(shared, slot, 1);
Atomics.notify(shared, 0);
