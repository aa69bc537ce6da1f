// Page-locked staging for the per-step metadata upload. A copy from pageable memory (a typed array) may
// make the driver wait for the stream to drain before it stages the data (CUDA's "API synchronization
// behavior"): the host would then wait for the step in flight before it could queue the next one, so an
// overlapped loop would not overlap. Each upload copies the bytes into the next of `slots` pinned slots
// and queues a truly asynchronous copy from it; a slot is written again only after the event recorded
// behind its last copy has passed. With `slots` ≥ 2 × the uploads of one step, that copy belongs to a
// step already collected (the loop reads step N before it builds step N + 2), so the wait is free.
//
//   upload k → slot k % slots:  wait(event[slot]) → write bytes → copy(slot) → record(event[slot])
//
// The slots grow to the largest upload seen (old ones are freed once their copies are done).

/** What the ring needs from the device (the CUDA backend passes PinnedBuffer and Event; tests fakes). */
export interface StagingDevice<P> {
  /** Page-locked host memory of `bytes`, with an ArrayBuffer over it. */
  allocPinned(bytes: number): { pinned: P; memory: ArrayBuffer; dispose(): void };
  /** An event on the upload stream: record() marks the stream's current end, wait() blocks until it passes. */
  createEvent(): { record(): void; wait(): void; dispose(): void };
}

interface Slot<P> {
  pinned: P;
  memory: ArrayBuffer;
  bytes: number;
  free(): void;
  done: ReturnType<StagingDevice<P>["createEvent"]>;
  used: boolean;
}

export class StagingRing<P> {
  private readonly slots: (Slot<P> | null)[];
  private next = 0;

  constructor(
    private readonly device: StagingDevice<P>,
    slots: number,
  ) {
    this.slots = new Array(slots).fill(null);
  }

  /** Stages `data` in the next slot and calls `copy(pinned, byteLength)`, which must queue the
   * asynchronous copy out of it on the stream the events are recorded on. */
  upload(data: ArrayBufferView, copy: (pinned: P, byteLength: number) => void): void {
    const i = this.next;
    this.next = (i + 1) % this.slots.length;
    let slot = this.slots[i];
    if (slot && slot.bytes < data.byteLength) {
      const bytes = Math.max(data.byteLength, 2 * slot.bytes);
      this.release(slot); // after its last copy
      slot = this.allocate(bytes);
      this.slots[i] = slot;
    } else if (slot) {
      if (slot.used) slot.done.wait(); // its previous copy has left the slot
    } else {
      slot = this.allocate(Math.max(data.byteLength, 64 * 1024));
      this.slots[i] = slot;
    }
    new Uint8Array(slot.memory, 0, data.byteLength).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    copy(slot.pinned, data.byteLength);
    slot.done.record();
    slot.used = true;
  }

  /** Waits for every copy still reading a slot, then frees them all. */
  dispose(): void {
    for (const [i, slot] of this.slots.entries()) {
      if (slot) this.release(slot);
      this.slots[i] = null;
    }
  }

  private allocate(bytes: number): Slot<P> {
    const { pinned, memory, dispose } = this.device.allocPinned(bytes);
    return { pinned, memory, bytes, free: dispose, done: this.device.createEvent(), used: false };
  }

  private release(slot: Slot<P>): void {
    if (slot.used) slot.done.wait();
    slot.done.dispose();
    slot.free();
  }
}
