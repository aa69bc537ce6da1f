// A CUDA stream: the ordered queue every copy, kernel, GEMM and graph launch goes to.
import { CU_STREAM_DEFAULT, CU_STREAM_NON_BLOCKING } from "../ffi/driver_enums.ts";
import type { CuStream } from "../ffi/handles.ts";
import type { CudaDevice } from "./device.ts";
import type { Event } from "./event.ts";

export class Stream implements Disposable {
  private stream: CuStream | null;

  private constructor(
    readonly device: CudaDevice,
    handle: CuStream,
  ) {
    this.stream = handle;
  }

  /**
   * A new stream. By default it is a blocking stream: it is ordered with the legacy NULL stream that
   * the synchronous DeviceBuffer.upload/download use (a synchronous upload from pageable memory may
   * return before its DMA lands, so a non-blocking stream could read stale data). Pass
   * `nonBlocking: true` only for streams that see nothing but stream-ordered work.
   */
  static create(device: CudaDevice, options: { nonBlocking?: boolean } = {}): Stream {
    device.assertOpen();
    const flags = options.nonBlocking ? CU_STREAM_NON_BLOCKING : CU_STREAM_DEFAULT;
    const handle = device.driver.streamCreate(flags);
    device.liveObjects++;
    return new Stream(device, handle);
  }

  get handle(): CuStream {
    if (this.stream === null) throw new Error("Stream is disposed");
    return this.stream;
  }

  /** Blocks until all work queued on the stream is done. */
  synchronize(): void {
    this.device.driver.streamSynchronize(this.handle);
  }

  /** Makes later work on this stream wait (on the device, not the host) for `event`'s recorded point. */
  waitEvent(event: Event): void {
    this.device.driver.streamWaitEvent(this.handle, event.handle);
  }

  /** Destroys the stream (queued work still completes). Idempotent. */
  dispose(): void {
    if (this.stream === null) return;
    this.device.driver.streamDestroy(this.stream);
    this.stream = null;
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
