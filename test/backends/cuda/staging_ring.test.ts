// The pinned staging of step metadata (staging_ring.ts), over a fake device that logs what happens: each
// upload lands in the next of three slots, a slot is written again only after the event behind its
// last copy was waited for, slots grow to the largest upload (the old one freed after its copy), and
// dispose waits for every copy before freeing.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type StagingDevice, StagingRing } from "../../../src/backends/cuda/staging_ring.ts";

function fakeDevice() {
  const log: string[] = [];
  let pins = 0;
  let events = 0;
  const device: StagingDevice<number> = {
    allocPinned(bytes) {
      const id = pins++;
      log.push(`alloc ${id} ${bytes}`);
      return { pinned: id, memory: new ArrayBuffer(bytes), dispose: () => log.push(`free ${id}`) };
    },
    createEvent() {
      const id = events++;
      return {
        record: () => log.push(`record e${id}`),
        wait: () => log.push(`wait e${id}`),
        dispose: () => log.push(`destroy e${id}`),
      };
    },
  };
  return { device, log };
}

test("uploads rotate over three pinned slots, each reused only after its last copy is done", () => {
  const { device, log } = fakeDevice();
  const ring = new StagingRing(device, 3);
  const copies: string[] = [];
  for (let k = 0; k < 5; k++) {
    const data = Int32Array.from({ length: 4 }, (_, i) => 10 * k + i);
    ring.upload(data, (pinned, bytes) => copies.push(`${pinned}:${bytes}`));
  }
  assert.deepEqual(copies, ["0:16", "1:16", "2:16", "0:16", "1:16"]);
  assert.deepEqual(log, [
    "alloc 0 65536",
    "record e0",
    "alloc 1 65536",
    "record e1",
    "alloc 2 65536",
    "record e2",
    "wait e0", // slot 0 again: its first copy must have left it
    "record e0",
    "wait e1",
    "record e1",
  ]);
});

test("the copy reads the bytes just staged, and a larger upload replaces its slot after the old copy", () => {
  const { device, log } = fakeDevice();
  const ring = new StagingRing(device, 3);
  let seen: Int32Array | null = null;
  const memories = new Map<number, ArrayBuffer>();
  const track: StagingDevice<number> = {
    allocPinned(bytes) {
      const r = device.allocPinned(bytes);
      memories.set(r.pinned, r.memory);
      return r;
    },
    createEvent: () => device.createEvent(),
  };
  const tracked = new StagingRing(track, 3);
  tracked.upload(Int32Array.of(7, 8, 9), (p, bytes) => {
    seen = new Int32Array(memories.get(p) as ArrayBuffer, 0, bytes / 4).slice();
  });
  assert.deepEqual(seen, Int32Array.of(7, 8, 9));
  for (let k = 0; k < 2; k++) tracked.upload(Int32Array.of(1), () => {});
  log.length = 0;
  const big = new Int32Array(40_000).fill(3); // 160,000 bytes: past the 64 KiB slot
  tracked.upload(big, (p, bytes) => {
    seen = new Int32Array(memories.get(p) as ArrayBuffer, 0, bytes / 4).slice();
  });
  assert.equal((seen as unknown as Int32Array).length, 40_000);
  assert.deepEqual(log, ["wait e0", "destroy e0", "free 0", "alloc 3 160000", "record e3"]);
  ring.dispose();
});

test("dispose waits for every slot's copy, then frees it", () => {
  const { device, log } = fakeDevice();
  const ring = new StagingRing(device, 3);
  ring.upload(Int32Array.of(1), () => {});
  ring.upload(Int32Array.of(2), () => {});
  log.length = 0;
  ring.dispose();
  assert.deepEqual(log, ["wait e0", "destroy e0", "free 0", "wait e1", "destroy e1", "free 1"]);
});

test("any typed view is staged byte for byte (a Float32Array bias, a view at an offset)", () => {
  const memories: ArrayBuffer[] = [];
  const ring = new StagingRing<number>(
    {
      allocPinned(bytes) {
        memories.push(new ArrayBuffer(bytes));
        return { pinned: memories.length - 1, memory: memories[memories.length - 1], dispose: () => {} };
      },
      createEvent: () => ({ record() {}, wait() {}, dispose() {} }),
    },
    2,
  );
  const got: number[][] = [];
  const bias = Float32Array.of(0.5, -2, 1e-3);
  ring.upload(bias, (p, bytes) => got.push([...new Float32Array(memories[p], 0, bytes / 4)]));
  const whole = Int32Array.of(1, 2, 3, 4, 5);
  ring.upload(whole.subarray(2), (p, bytes) => got.push([...new Int32Array(memories[p], 0, bytes / 4)]));
  assert.deepEqual(got, [[...bias], [3, 4, 5]]);
  ring.dispose();
});
