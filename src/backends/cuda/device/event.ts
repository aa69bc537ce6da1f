// CUDA events: markers in a stream, for timing (elapsedMs) and for waiting on the host.
import { CU_EVENT_DEFAULT, CU_EVENT_DISABLE_TIMING } from "../ffi/driver_enums.ts";
import type { CuEvent } from "../ffi/handles.ts";
import type { CudaDevice } from "./device.ts";
import type { Stream } from "./stream.ts";

export class Event implements Disposable {
  private event: CuEvent | null;

  private constructor(
    readonly device: CudaDevice,
    handle: CuEvent,
  ) {
    this.event = handle;
  }

  /** A new event; timing is on unless `timing: false` (cheaper for pure synchronization). */
  static create(device: CudaDevice, options: { timing?: boolean } = {}): Event {
    device.assertOpen();
    const flags = (options.timing ?? true) ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING;
    const handle = device.driver.eventCreate(flags);
    device.liveObjects++;
    return new Event(device, handle);
  }

  get handle(): CuEvent {
    if (this.event === null) throw new Error("Event is disposed");
    return this.event;
  }

  /** Marks the current end of `stream`'s queue. */
  record(stream: Stream): void {
    this.device.driver.eventRecord(this.handle, stream.handle);
  }

  /** Blocks until the work before the recorded point is done. */
  synchronize(): void {
    this.device.driver.eventSynchronize(this.handle);
  }

  /** Whether the work before the recorded point is done; never blocks. */
  query(): boolean {
    return this.device.driver.eventQuery(this.handle);
  }

  /** Milliseconds from `start` to this event (both recorded; waits for this one). */
  elapsedMsSince(start: Event): number {
    this.synchronize();
    return this.device.driver.eventElapsedTime(start.handle, this.handle);
  }

  dispose(): void {
    if (this.event === null) return;
    this.device.driver.eventDestroy(this.event);
    this.event = null;
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Runs `work` on `stream` between two events and returns the GPU time in milliseconds. */
export function timeOnStream(stream: Stream, work: () => void): number {
  const start = Event.create(stream.device);
  const end = Event.create(stream.device);
  try {
    start.record(stream);
    work();
    end.record(stream);
    return end.elapsedMsSince(start);
  } finally {
    start.dispose();
    end.dispose();
  }
}
