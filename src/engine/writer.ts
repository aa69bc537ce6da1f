// Writes an engine directory atomically: everything goes to a temporary sibling, renamed at the end,
// so a crash never leaves a half-written engine where a reader (or the cache) would find it.
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { DType } from "../dtype.ts";
import { makeDirectory } from "../make_directory.ts";
import {
  type BlobEntry,
  ENGINE_FORMAT_VERSION,
  ENGINE_MAGIC,
  type EngineConfig,
  type EngineHeader,
  type Plan,
  PREAMBLE_BYTES,
  WEIGHT_ALIGNMENT,
  type WeightEntry,
} from "./format.ts";

export interface EngineWeight {
  name: string;
  dtype: DType;
  shape: number[];
  /** Produces the bytes when the writer reaches this weight (weights stream, one at a time). */
  bytes: () => Uint8Array;
  byteLength: number;
}

const align = (n: number) => Math.ceil(n / WEIGHT_ALIGNMENT) * WEIGHT_ALIGNMENT;

export function writeEngine(
  dir: string,
  config: EngineConfig,
  plan: Plan,
  weights: EngineWeight[],
  extraFiles: { from: string; name: string }[],
  blobs: { name: string; bytes: Uint8Array }[] = [],
): void {
  makeDirectory(dirname(dir));
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp);
  try {
    writeRankFile(join(tmp, "rank0.engine"), plan, weights, blobs);
    for (const f of extraFiles) copyFileSync(f.from, join(tmp, f.name));
    writeJson(join(tmp, "config.json"), config);
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function writeJson(path: string, value: unknown): void {
  const fd = openSync(path, "w");
  try {
    writeSync(fd, `${JSON.stringify(value, null, 2)}\n`);
  } finally {
    closeSync(fd);
  }
}

function writeRankFile(
  path: string,
  plan: Plan,
  weights: EngineWeight[],
  blobs: { name: string; bytes: Uint8Array }[],
): void {
  // The header's size depends on the offsets it lists; offsets are at most 16 digits, so lay out
  // with a generous bound first, then pad the header to that bound.
  const entries: WeightEntry[] = weights.map((w) => ({
    name: w.name,
    dtype: w.dtype,
    shape: w.shape,
    offset: 0,
    byteLength: w.byteLength,
  }));
  const blobEntries: BlobEntry[] = blobs.map((b) => ({
    name: b.name,
    offset: 0,
    byteLength: b.bytes.byteLength,
  }));
  const draft = JSON.stringify({
    plan,
    weights: entries.map((e) => ({ ...e, offset: 1e15 })),
    blobs: blobEntries.map((e) => ({ ...e, offset: 1e15 })),
  });
  const headerCapacity = Buffer.byteLength(draft);
  let offset = align(PREAMBLE_BYTES + headerCapacity);
  for (const e of [...entries, ...blobEntries]) {
    e.offset = offset;
    offset = align(offset + e.byteLength);
  }
  const header: EngineHeader = { plan, weights: entries, blobs: blobEntries };
  const json = Buffer.from(JSON.stringify(header).padEnd(headerCapacity, " "));
  const pre = Buffer.alloc(PREAMBLE_BYTES);
  pre.write(ENGINE_MAGIC, 0, "latin1");
  pre.writeUInt32LE(ENGINE_FORMAT_VERSION, 8);
  pre.writeBigUInt64LE(BigInt(json.length), 16);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, pre, 0, pre.length, 0);
    writeSync(fd, json, 0, json.length, PREAMBLE_BYTES);
    weights.forEach((w, i) => {
      const bytes = w.bytes();
      if (bytes.byteLength !== w.byteLength) {
        throw new Error(
          `internal: weight ${w.name} produced ${bytes.byteLength} bytes, declared ${w.byteLength}`,
        );
      }
      writeSync(fd, bytes, 0, bytes.byteLength, entries[i].offset);
    });
    blobs.forEach((b, i) => {
      writeSync(fd, b.bytes, 0, b.bytes.byteLength, blobEntries[i].offset);
    });
    // Pad the file to its aligned end so the last region is complete.
    const last = [...entries, ...blobEntries].at(-1);
    const dataEnd = last ? last.offset + last.byteLength : PREAMBLE_BYTES + json.length;
    if (align(dataEnd) > dataEnd) writeSync(fd, Buffer.alloc(1), 0, 1, align(dataEnd) - 1);
  } finally {
    closeSync(fd);
  }
}
