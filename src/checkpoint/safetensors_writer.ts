// Writer of .safetensors files, for tests and tools (engine export, checkpoint conversion). Tensors go
// in name order with contiguous offsets; the JSON header is padded with spaces so the data section
// starts at a multiple of 8 bytes, as the reference implementation does.
import { closeSync, openSync, writeSync } from "node:fs";
import { SafetensorsError, showValue } from "./errors.ts";
import { TENSOR_DTYPE_BYTES, type TensorDType } from "./tensor_dtype.ts";

export interface TensorToWrite {
  dtype: TensorDType;
  /** Row-major dims; [] for a scalar. */
  shape: number[];
  /** Little-endian element bytes, [product(shape) × TENSOR_DTYPE_BYTES[dtype]]. */
  data: Uint8Array;
}

/** Writes `tensors` (and optional string metadata) to `path` as one safetensors file, replacing it. */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const { dtype, shape, data } = tensors[name];
    checkTensor(path, name, dtype, shape, data);
    header[name] = { dtype, shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }

  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20); // spaces pad the JSON
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);

  const fd = openSync(path, "w");
  try {
    writeAll(fd, head);
    for (const name of names) writeAll(fd, tensors[name].data);
  } finally {
    closeSync(fd);
  }
}

function checkTensor(
  path: string,
  name: string,
  dtype: TensorDType,
  shape: number[],
  data: Uint8Array,
): void {
  const fail = (problem: string) =>
    new SafetensorsError(path, `cannot write tensor "${name}": ${problem}`, "fix the caller");
  if (name === "__metadata__") throw fail("the name is reserved for the metadata entry");
  if (!Object.hasOwn(TENSOR_DTYPE_BYTES, dtype)) throw fail(`unsupported dtype ${showValue(dtype)}`);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw fail(`bad shape ${showValue(shape)}`);
  const expected = shape.reduce((a, b) => a * b, 1) * TENSOR_DTYPE_BYTES[dtype];
  if (data.byteLength !== expected) {
    throw fail(`shape ${showValue(shape)} of ${dtype} needs ${expected} bytes, data has ${data.byteLength}`);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength)
    done += writeSync(fd, bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
}
