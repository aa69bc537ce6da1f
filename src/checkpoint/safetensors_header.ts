// Parsing and validation of a safetensors header. File layout:
//
//   [0, 8)            u64 little-endian N: header length in bytes
//   [8, 8 + N)        UTF-8 JSON: { name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {k: v} }
//   [8 + N, EOF)      data section; each tensor's bytes are data[begin, end), row-major, little-endian
//
// Everything a reader later trusts (sizes, bounds, no overlap) is checked here, once, at open.
import { SafetensorsError, showValue } from "./errors.ts";
import { TENSOR_DTYPE_BYTES, type TensorDType } from "./tensor_dtype.ts";

/** Where one tensor lives in its file. */
export interface TensorInfo {
  /** Float types for plain weights; the packed ones only inside quantized linears (tensor_dtype.ts). */
  dtype: TensorDType;
  /** Row-major dims; [] for a scalar. */
  shape: number[];
  /** Absolute offset of the first byte in the file (8 + N + begin). */
  byteOffset: number;
  /** end − begin = product(shape) × TENSOR_DTYPE_BYTES[dtype]. */
  byteLength: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Offset of the data section: 8 + N. */
  dataStart: number;
}

/** Headers larger than this are treated as corruption (real ones are a few hundred KiB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const SUPPORTED = Object.keys(TENSOR_DTYPE_BYTES).join(", ");

/** Reads N from the first 8 bytes and checks it against the file size. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8) {
    throw new SafetensorsError(
      path,
      `file is ${fileSize} bytes, shorter than the 8-byte header length prefix`,
      "the file is empty or truncated (incomplete download?); re-download it",
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n === 0n) throw new SafetensorsError(path, "header length is 0; a header needs at least `{}`");
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      path,
      `header length ${n} bytes is absurd (limit ${MAX_HEADER_BYTES}); the first 8 bytes are not a safetensors prefix`,
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsError(
      path,
      `header length ${len} bytes is larger than the file (${fileSize} bytes, ${fileSize - 8} after the prefix)`,
      "the file is truncated (incomplete download?) or not safetensors; re-download it",
    );
  }
  return len;
}

/** Decodes and validates the JSON header. `headerBytes` are the N bytes after the prefix. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, path: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch (e) {
    throw new SafetensorsError(path, "header is not valid UTF-8", undefined, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`, undefined, {
      cause: e,
    });
  }
  if (!isObject(json)) {
    throw new SafetensorsError(path, `header must be a JSON object, got ${showValue(json)}`);
  }

  const dataStart = 8 + headerBytes.byteLength;
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(entry, path);
    else tensors.set(name, parseEntry(name, entry, dataStart, dataSize, path));
  }
  checkNoOverlap(tensors, dataStart, path);
  return { tensors, metadata, dataStart };
}

function parseEntry(
  name: string,
  entry: unknown,
  dataStart: number,
  dataSize: number,
  path: string,
): TensorInfo {
  const bad = (problem: string, fix?: string) =>
    new SafetensorsError(path, `tensor "${name}": ${problem}`, fix);
  if (!isObject(entry))
    throw bad(`entry must be an object {dtype, shape, data_offsets}, got ${showValue(entry)}`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (dtype === undefined) throw bad("entry has no dtype");
  if (shape === undefined) throw bad("entry has no shape");
  if (offsets === undefined) throw bad("entry has no data_offsets");
  if (typeof dtype !== "string") throw bad(`dtype must be a string, got ${showValue(dtype)}`);
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw bad(`shape must be an array of non-negative integers, got ${showValue(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    throw bad(`data_offsets must be [begin, end] of non-negative integers, got ${showValue(offsets)}`);
  }
  if (!Object.hasOwn(TENSOR_DTYPE_BYTES, dtype)) {
    throw bad(
      `unsupported dtype "${dtype}"; kiln reads ${SUPPORTED}`,
      "convert the checkpoint's weights to F32, F16 or BF16 (e.g. save it with torch_dtype=bfloat16)",
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw bad(`data_offsets [${begin}, ${end}] have begin > end`);
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * TENSOR_DTYPE_BYTES[dtype as TensorDType];
  if (expected !== end - begin) {
    throw bad(
      `wrong dtype size: shape ${showValue(shape)} of ${dtype} needs ${expected} bytes ` +
        `but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  if (end > dataSize) {
    throw bad(
      `data_offsets [${begin}, ${end}] reach beyond the data section, which is ${dataSize} bytes ` +
        `(file ${dataStart + dataSize} bytes, data starts at ${dataStart})`,
      "the file is truncated (incomplete download?) or corrupt; re-download it",
    );
  }
  return {
    dtype: dtype as TensorDType,
    shape: shape as number[],
    byteOffset: dataStart + begin,
    byteLength: end - begin,
  };
}

function parseMetadata(entry: unknown, path: string): Record<string, string> {
  if (entry === null) return {};
  if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
    throw new SafetensorsError(
      path,
      `"__metadata__" must be an object of string values, got ${showValue(entry)}`,
    );
  }
  return { ...(entry as Record<string, string>) };
}

/** Two non-empty tensors must not share bytes (the spec also wants full coverage; we do not require it). */
function checkNoOverlap(tensors: Map<string, TensorInfo>, dataStart: number, path: string): void {
  const spans = [...tensors]
    .filter(([, t]) => t.byteLength > 0)
    .sort((a, b) => a[1].byteOffset - b[1].byteOffset);
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1];
    const [name, t] = spans[i];
    if (t.byteOffset < prev.byteOffset + prev.byteLength) {
      const range = (x: TensorInfo) =>
        `[${x.byteOffset - dataStart}, ${x.byteOffset - dataStart + x.byteLength}]`;
      throw new SafetensorsError(
        path,
        `tensors "${prevName}" ${range(prev)} and "${name}" ${range(t)} overlap in the data section`,
      );
    }
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}
