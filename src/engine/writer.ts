// Writes an engine directory: everything goes to a temporary sibling, checksummed as it is written,
// the manifest last, then published with one rename, so no reader (or the cache) ever finds a
// half-written engine. Writing is a generator that yields after each weight: the library drives it
// in one go (builder.ts), the CLI between event-loop turns so that Ctrl-C can stop it and remove the
// temp dir.
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import type { DType } from "../dtype.ts";
import { makeDirectory } from "../make_directory.ts";
import { checksum, createHasher } from "./checksum.ts";
import { OutputNotEngineError } from "./errors.ts";
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
import {
  type EngineManifest,
  type FileRecord,
  isKilnEngineDir,
  MANIFEST_FILE,
  RANK_FILE,
} from "./manifest.ts";
import { removeAside, sweepStaleTemps, tempSibling } from "./temp_dirs.ts";
import type { WeightFormat, WeightFormatParams } from "./weight_format.ts";

export interface EngineWeight {
  name: string;
  dtype: DType;
  shape: number[];
  /** Set for a quantized weight (its bytes follow weight_format.ts); absent for plain `dtype` data. */
  format?: WeightFormat;
  /** The format's settings for this weight, when it has any. */
  params?: WeightFormatParams;
  /** Produces the bytes when the writer reaches this weight (weights stream, one at a time). */
  bytes: () => Uint8Array;
  byteLength: number;
}

/** "output": a user's --output; only a kiln engine there is replaced, anything else is refused.
 * "cache": a cache entry; one another process published meanwhile is kept and ours discarded. */
export type PublishMode = "output" | "cache";

/** "written": ours is at `dir`; "existing": a complete entry was already there and is kept. */
export type PublishResult = "written" | "existing";

const align = (n: number) => Math.ceil(n / WEIGHT_ALIGNMENT) * WEIGHT_ALIGNMENT;

export function* writeEngineSteps(
  dir: string,
  config: EngineConfig,
  plan: Plan,
  weights: EngineWeight[],
  extraFiles: { from: string; name: string }[],
  blobs: { name: string; bytes: Uint8Array }[],
  mode: PublishMode,
): Generator<void, PublishResult> {
  makeDirectory(dirname(dir));
  if (mode === "output") {
    assertOutputReplaceable(dir);
    sweepStaleTemps(dirname(dir), basename(dir));
  } else sweepStaleTemps(dirname(dir));
  const tmp = tempSibling(dir, "tmp");
  mkdirSync(tmp);
  let published = false;
  try {
    const rank = yield* writeRankFile(join(tmp, RANK_FILE), plan, weights, blobs);
    const files: Record<string, FileRecord> = {};
    for (const f of extraFiles) files[f.name] = writeFile(join(tmp, f.name), readFileSync(f.from));
    files["config.json"] = writeFile(join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
    const manifest: EngineManifest = {
      format: "kiln-engine-manifest",
      formatVersion: ENGINE_FORMAT_VERSION,
      files,
      rank,
    };
    writeFile(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    const result = publish(tmp, dir, mode);
    published = result === "written";
    return result;
  } finally {
    if (!published) rmSync(tmp, { recursive: true, force: true });
  }
}

/** Only a kiln engine, an empty directory or nothing may be at an output path. */
export function assertOutputReplaceable(dir: string): void {
  // A second look when the first says no: a concurrent build may have been swapping engines there.
  for (let look = 0; look < 2; look++) {
    let isDir: boolean;
    try {
      isDir = statSync(dir).isDirectory();
      if (isKilnEngineDir(dir) || (isDir && readdirSync(dir).length === 0)) return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    if (look === 1) {
      const what = isDir ? "a directory that is not a kiln engine" : "a file";
      throw new OutputNotEngineError(
        `--output ${dir} is ${what}; kiln only replaces engine directories it wrote. Choose a new or empty path, or remove it yourself`,
      );
    }
  }
}

/** Renames `tmp` to `dir` without ever deleting a complete engine another process may be reading. */
function publish(tmp: string, dir: string, mode: PublishMode): PublishResult {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      renameSync(tmp, dir);
      return "written";
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw e;
    }
    if (mode === "cache") {
      if (existsSync(join(dir, MANIFEST_FILE))) return "existing";
    } else assertOutputReplaceable(dir);
    removeAside(dir);
  }
  throw new Error(`internal: could not publish ${tmp} at ${dir} after 100 attempts`);
}

function writeFile(path: string, data: string | Uint8Array): FileRecord {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  const fd = openSync(path, "w");
  try {
    writeSync(fd, bytes, 0, bytes.byteLength);
  } finally {
    closeSync(fd);
  }
  return { bytes: bytes.byteLength, xxh64: checksum(bytes) };
}

function* writeRankFile(
  path: string,
  plan: Plan,
  weights: EngineWeight[],
  blobs: { name: string; bytes: Uint8Array }[],
): Generator<void, EngineManifest["rank"]> {
  // The header's size depends on the offsets it lists; offsets are at most 16 digits, so lay out
  // with a generous bound first, then pad the header to that bound.
  const entries: WeightEntry[] = weights.map((w) => ({
    name: w.name,
    dtype: w.dtype,
    shape: w.shape,
    ...(w.format ? { format: w.format } : {}),
    ...(w.params ? { params: w.params } : {}),
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
  const regions: Record<string, string> = {};
  const fd = openSync(path, "w");
  try {
    writeSync(fd, pre, 0, pre.length, 0);
    writeSync(fd, json, 0, json.length, PREAMBLE_BYTES);
    for (const [i, w] of weights.entries()) {
      const bytes = w.bytes();
      if (bytes.byteLength !== w.byteLength) {
        throw new Error(
          `internal: weight ${w.name} produced ${bytes.byteLength} bytes, declared ${w.byteLength}`,
        );
      }
      writeSync(fd, bytes, 0, bytes.byteLength, entries[i].offset);
      regions[entries[i].offset] = checksum(bytes);
      yield;
    }
    for (const [i, b] of blobs.entries()) {
      writeSync(fd, b.bytes, 0, b.bytes.byteLength, blobEntries[i].offset);
      regions[blobEntries[i].offset] = checksum(b.bytes);
    }
    // Pad the file to its aligned end so the last region is complete.
    const last = [...entries, ...blobEntries].at(-1);
    const dataEnd = last ? last.offset + last.byteLength : PREAMBLE_BYTES + json.length;
    if (align(dataEnd) > dataEnd) writeSync(fd, Buffer.alloc(1), 0, 1, align(dataEnd) - 1);
    return {
      file: RANK_FILE,
      bytes: align(dataEnd),
      header: createHasher().update(pre).update(json).digest(),
      regions,
    };
  } finally {
    closeSync(fd);
  }
}
