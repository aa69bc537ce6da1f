// Reader of one .safetensors file (the format is drawn in safetensors_header.ts). Opening reads and
// validates only the header; each tensor's bytes are read on demand with a positioned read, so a
// checkpoint of many GiB costs nothing until its weights are asked for.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { toF32 } from "../dtype.ts";
import { closestNames } from "./closest_names.ts";
import { MissingTensorError, PackedTensorError, SafetensorsError } from "./errors.ts";
import { parseHeader, parseHeaderLength, type TensorInfo } from "./safetensors_header.ts";
import { isFloatDType } from "./tensor_dtype.ts";

export type { TensorInfo } from "./safetensors_header.ts";
export { MAX_HEADER_BYTES } from "./safetensors_header.ts";
export { type TensorToWrite, writeSafetensors } from "./safetensors_writer.ts";

/** Largest single readSync; Node rejects lengths beyond 2 GiB − 1. */
const MAX_READ = 1 << 30;

export class SafetensorsFile implements Disposable {
  /** Open file descriptor; null once closed. */
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    /** Size of the file in bytes at open. */
    readonly fileSize: number,
    /** Header length N (the JSON bytes after the 8-byte prefix, padding included). */
    readonly headerLength: number,
    /** name → where the tensor lives; in header order. */
    readonly tensors: ReadonlyMap<string, TensorInfo>,
    /** The header's "__metadata__" (string → string), {} when absent. */
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and validates its header; throws SafetensorsError if the file cannot be read as safetensors. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new SafetensorsError(
        path,
        `cannot open the file (${code})`,
        "check the path and its permissions",
        {
          cause: e,
        },
      );
    }
    try {
      const fileSize = fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      if (fileSize >= 8) readFully(fd, prefix, 0, path);
      const headerLength = parseHeaderLength(prefix, fileSize, path);
      const headerBytes = new Uint8Array(headerLength);
      readFully(fd, headerBytes, 8, path);
      const { tensors, metadata } = parseHeader(headerBytes, fileSize, path);
      return new SafetensorsFile(path, fd, fileSize, headerLength, tensors, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Where `name` lives; throws MissingTensorError (with similar names) if it is not in this file. */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined)
      throw new MissingTensorError(name, [this.path], closestNames(name, this.tensors.keys()));
    return t;
  }

  /** The raw little-endian bytes of one tensor, [product(shape) × dtype bytes]; reads only those bytes. */
  read(name: string): Uint8Array {
    const t = this.info(name);
    const out = new Uint8Array(t.byteLength);
    readFully(this.openFd(), out, t.byteOffset, this.path);
    return out;
  }

  /** One float tensor converted to fp32, [product(shape)] in row-major order; a tensor of a packed
   * dtype (F8_E4M3, I32, ...) is a SafetensorsError: those are read only as parts of a quantized linear. */
  readF32(name: string): Float32Array {
    const { dtype } = this.info(name);
    if (!isFloatDType(dtype)) throw new PackedTensorError(this.path, name, dtype);
    return toF32(this.read(name), dtype);
  }

  /** Closes the file; later reads throw. Closing twice is harmless. */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`SafetensorsFile ${this.path} is closed`);
    return this.fd;
  }
}

/** Fills `dst` from `position`, looping over short reads; a file that ends early is a SafetensorsError. */
function readFully(fd: number, dst: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < dst.byteLength) {
    const len = Math.min(dst.byteLength - done, MAX_READ);
    const n = readSync(fd, dst, done, len, position + done);
    if (n === 0) {
      throw new SafetensorsError(
        path,
        `file ended at byte ${position + done} while reading ${dst.byteLength} bytes at ${position}`,
        "the file shrank or was truncated after it was opened; re-download it",
      );
    }
    done += n;
  }
}
