// The logits' pinned copy to the host (src/backends/cuda/logits_readback.ts), over a fake device that logs
// what happens: the pinned buffer is sized to the rows a step reads (a power of two of them), grows only
// when a larger step comes, and the old buffer is freed only after the copy queued into it is done;
// tickets are collected once, in order; dispose frees the buffer and the event.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { StepInput } from "../../../src/backends/backend.ts";
import type { ActivationArena } from "../../../src/backends/cuda/activations.ts";
import type { CudaDevice, PinnedBuffer, Stream } from "../../../src/backends/cuda/device/index.ts";
import { LogitsReadback } from "../../../src/backends/cuda/logits_readback.ts";

const VOCAB = 10;

function fake() {
  const log: string[] = [];
  let pins = 0;
  const memory = new Map<bigint, ArrayBuffer>();
  const driver = {
    memAllocHost(bytes: number) {
      const ptr = BigInt(++pins);
      memory.set(ptr, new ArrayBuffer(bytes));
      log.push(`pin ${bytes / (4 * VOCAB)} rows`);
      return ptr;
    },
    memFreeHost: (ptr: bigint) =>
      log.push(`free ${(memory.get(ptr) as ArrayBuffer).byteLength / (4 * VOCAB)} rows`),
    hostView: (ptr: bigint) => memory.get(ptr) as ArrayBuffer,
    eventCreate: () => 7n,
    eventRecord: () => log.push("record"),
    eventSynchronize: () => log.push("wait"),
    eventQuery: () => true,
    eventDestroy: () => log.push("destroy event"),
  };
  const device = { driver, assertOpen: () => {}, liveObjects: 0 } as unknown as CudaDevice;
  const arena = {
    downloadLogits(_s: Stream, into: PinnedBuffer, rows: number, vocab: number) {
      const view = new Float32Array(into.arrayBuffer(), 0, rows * vocab);
      for (let i = 0; i < view.length; i++) view[i] = rows * 1000 + i;
      log.push(`copy ${rows}`);
    },
  } as unknown as ActivationArena;
  const stream = { handle: 1n } as unknown as Stream;
  const readback = new LogitsReadback(device, stream, arena, VOCAB, 64, () => log.push("run"));
  return { readback, log };
}

const step = (rows: number) =>
  ({ logitRows: Array.from({ length: rows }, (_, i) => i) }) as unknown as StepInput;

test("pinned memory fits the largest step read so far, grown after the copy queued into the old one", () => {
  const { readback, log } = fake();
  const a = readback.collect(readback.queue(step(3)));
  assert.equal(a.length, 3 * VOCAB);
  assert.equal(a[5], 3005);
  readback.collect(readback.queue(step(2)));
  const t = readback.queue(step(9));
  assert.equal(readback.ready(t), true);
  assert.equal(readback.collect(t)[0], 9000);
  readback.queue(step(64));
  readback.dispose();
  assert.deepEqual(log, [
    "pin 4 rows",
    "run",
    "copy 3",
    "record",
    "wait",
    "run",
    "copy 2",
    "record",
    "wait",
    "wait",
    "free 4 rows",
    "pin 16 rows",
    "run",
    "copy 9",
    "record",
    "wait",
    "wait",
    "free 16 rows",
    "pin 64 rows",
    "run",
    "copy 64",
    "record",
    "free 64 rows",
    "destroy event",
  ]);
});

test("a ticket is collected once and only the latest; a step over maxLogitRows is refused", () => {
  const { readback } = fake();
  const first = readback.queue(step(1));
  const second = readback.queue(step(1));
  assert.throws(() => readback.collect(first), /not outstanding/);
  readback.collect(second);
  assert.throws(() => readback.collect(second), /not outstanding/);
  assert.throws(() => readback.queue(step(65)), /over the arena/);
});
