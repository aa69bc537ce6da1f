// Device memory with an explicit lifetime: DeviceBuffer (cuMemAlloc) and PinnedBuffer (page-locked
// host memory for truly asynchronous copies). Offsets and sizes are in bytes.
import type { HostArray } from "../ffi/driver.ts";
import { type DevicePtr, type HostPtr, offsetPtr } from "../ffi/handles.ts";
import type { CudaDevice } from "./device.ts";
import type { Stream } from "./stream.ts";

export type { HostArray };

export class DeviceBuffer implements Disposable {
  private address: DevicePtr | null;

  private constructor(
    readonly device: CudaDevice,
    address: DevicePtr,
    /** Size in bytes. */
    readonly bytes: number,
  ) {
    this.address = address;
  }

  /** `bytes` of uninitialized device memory (0 bytes gives a null pointer and allocates nothing). */
  static alloc(device: CudaDevice, bytes: number): DeviceBuffer {
    device.assertOpen();
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`cannot allocate ${bytes} bytes`);
    const ptr = bytes === 0 ? (0n as DevicePtr) : device.driver.memAlloc(bytes);
    device.liveBytes += bytes;
    device.liveObjects++;
    return new DeviceBuffer(device, ptr, bytes);
  }

  /** A device buffer holding a copy of `src` (synchronous). */
  static from(device: CudaDevice, src: HostArray): DeviceBuffer {
    const buf = DeviceBuffer.alloc(device, src.byteLength);
    try {
      buf.upload(src);
    } catch (e) {
      buf.dispose();
      throw e;
    }
    return buf;
  }

  get ptr(): DevicePtr {
    if (this.address === null) throw new Error("DeviceBuffer is disposed");
    return this.address;
  }

  get disposed(): boolean {
    return this.address === null;
  }

  /** The device address `offset` bytes in (checked against the size). */
  at(offset: number): DevicePtr {
    this.check(offset, 0);
    return offsetPtr(this.ptr, offset);
  }

  /**
   * Copy of all of `src` to `offset` on the legacy NULL stream: `src` may be reused on return, and
   * work queued afterwards on blocking streams (Stream's default) sees the data.
   */
  upload(src: HostArray, offset = 0): void {
    if (src.byteLength === 0) return;
    this.check(offset, src.byteLength);
    this.device.driver.memcpyHtoD(offsetPtr(this.ptr, offset), src);
  }

  /** Synchronous copy from `offset` filling all of `into` (after work queued on blocking streams); returns `into`. */
  download<T extends HostArray>(into: T, offset = 0): T {
    if (into.byteLength === 0) return into;
    this.check(offset, into.byteLength);
    this.device.driver.memcpyDtoH(into, offsetPtr(this.ptr, offset));
    return into;
  }

  /** Stream-ordered upload of `bytes` (default: all) of `src`; from a typed array the driver stages `src`
   * before returning, and may first wait for the stream (see driver.ts); from pinned memory it does not. */
  uploadAsync(stream: Stream, src: HostArray | PinnedBuffer, offset = 0, bytes = src.byteLength): void {
    if (bytes > src.byteLength) throw new RangeError(`upload of ${bytes} bytes from ${src.byteLength}`);
    if (bytes === 0) return;
    this.check(offset, bytes);
    const host = src instanceof PinnedBuffer ? src.ptr : src;
    this.device.driver.memcpyHtoDAsync(offsetPtr(this.ptr, offset), host, stream.handle, bytes);
  }

  /** Stream-ordered download of `bytes` (default: all of `into`); into a typed array it completes before
   * returning, into pinned memory it does not. */
  downloadAsync(stream: Stream, into: HostArray | PinnedBuffer, offset = 0, bytes = into.byteLength): void {
    if (bytes > into.byteLength) throw new RangeError(`download of ${bytes} bytes into ${into.byteLength}`);
    if (bytes === 0) return;
    this.check(offset, bytes);
    const host = into instanceof PinnedBuffer ? into.ptr : into;
    this.device.driver.memcpyDtoHAsync(host, offsetPtr(this.ptr, offset), stream.handle, bytes);
  }

  /** Stream-ordered device-to-device copy of `bytes` from `src` (+srcOffset) to this (+offset). */
  copyFromAsync(stream: Stream, src: DeviceBuffer, bytes: number, offset = 0, srcOffset = 0): void {
    if (bytes === 0) return;
    this.check(offset, bytes);
    src.check(srcOffset, bytes);
    this.device.driver.memcpyDtoDAsync(
      offsetPtr(this.ptr, offset),
      offsetPtr(src.ptr, srcOffset),
      bytes,
      stream.handle,
    );
  }

  /** Sets `count` bytes from `offset` (default: to the end) to `byte`. */
  fillBytes(stream: Stream, byte: number, offset = 0, count = this.bytes - offset): void {
    if (count === 0) return;
    this.check(offset, count);
    this.device.driver.memsetD8Async(offsetPtr(this.ptr, offset), byte & 0xff, count, stream.handle);
  }

  /** Sets `count` 32-bit words from `offset` (4-byte aligned; default: to the end) to `value`. */
  fillU32(stream: Stream, value: number, offset = 0, count = Math.floor((this.bytes - offset) / 4)): void {
    if (offset % 4 !== 0) throw new RangeError(`fillU32 offset ${offset} is not 4-byte aligned`);
    if (count === 0) return;
    this.check(offset, 4 * count);
    this.device.driver.memsetD32Async(offsetPtr(this.ptr, offset), value >>> 0, count, stream.handle);
  }

  /** Sets `count` fp32 values from `offset` to `value` (through its bit pattern). */
  fillF32(stream: Stream, value: number, offset = 0, count?: number): void {
    const bits = new Uint32Array(Float32Array.of(value).buffer)[0];
    this.fillU32(stream, bits, offset, count);
  }

  private check(offset: number, bytes: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || bytes < 0 || offset + bytes > this.bytes) {
      throw new RangeError(
        `access of ${bytes} bytes at offset ${offset} is outside a ${this.bytes}-byte DeviceBuffer`,
      );
    }
  }

  /** Frees the memory. Idempotent. */
  dispose(): void {
    if (this.address === null) return;
    if (this.bytes > 0) this.device.driver.memFree(this.address);
    this.address = null;
    this.device.liveBytes -= this.bytes;
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Page-locked host memory; `view()` gives a typed array over it. */
export class PinnedBuffer implements Disposable {
  private address: HostPtr | null;
  private constructor(
    readonly device: CudaDevice,
    address: HostPtr,
    readonly byteLength: number,
  ) {
    this.address = address;
  }

  static alloc(device: CudaDevice, bytes: number): PinnedBuffer {
    device.assertOpen();
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`cannot pin ${bytes} bytes`);
    const ptr = device.driver.memAllocHost(bytes);
    device.liveObjects++;
    return new PinnedBuffer(device, ptr, bytes);
  }

  get ptr(): HostPtr {
    if (this.address === null) throw new Error("PinnedBuffer is disposed");
    return this.address;
  }

  /** An ArrayBuffer over the pinned memory (invalid after dispose). */
  arrayBuffer(): ArrayBuffer {
    return this.device.driver.hostView(this.ptr, this.byteLength);
  }

  dispose(): void {
    if (this.address === null) return;
    this.device.driver.memFreeHost(this.address);
    this.address = null;
    this.device.liveObjects--;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
