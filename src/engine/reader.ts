// Reads an engine directory: checks magic, format version, the integrity manifest (small files and
// the header at open, each weight region as it is read) and that every weight the plan reads is
// present with the shape it needs, and reports everything missing at once.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { DTYPE_BYTES } from "../dtype.ts";
import { opWeights } from "../models/network.ts";
import { checksum, createHasher } from "./checksum.ts";
import { EngineCorruptError, EngineError, formatVersionError } from "./errors.ts";
import {
  ENGINE_FORMAT_VERSION,
  ENGINE_MAGIC,
  type EngineConfig,
  type EngineHeader,
  PREAMBLE_BYTES,
} from "./format.ts";
import { type EngineManifest, MANIFEST_FILE, RANK_FILE, readManifest, smallFileDamage } from "./manifest.ts";
import { startRegionCheck } from "./region_check.ts";
import { assertKnownFormat, quantizedByteLength } from "./weight_format.ts";

export interface LoadedEngine {
  dir: string;
  config: EngineConfig;
  header: EngineHeader;
  /** Reads one weight's (or blob's) bytes from the rank file. */
  readWeight(entry: { offset: number; byteLength: number }): Uint8Array;
  /** Reads `into.byteLength` bytes at absolute file offset `offset` into `into` (e.g. pinned memory);
   * unchecked: check the regions read this way with `checkRegions`. */
  readInto(offset: number, into: Uint8Array): void;
  /** Starts checking these weight or blob regions against the manifest on worker threads (they read
   * the file themselves); `wait()` throws EngineCorruptError naming every damaged region. */
  checkRegions(entries: readonly { name: string; offset: number; byteLength: number }[]): { wait(): void };
  /** The blob named `name`, or null. */
  readBlob(name: string): Uint8Array | null;
  close(): void;
}

/** Something kiln wrote as an engine (complete or damaged), as opposed to a checkpoint. */
export function isEngineDir(dir: string): boolean {
  return existsSync(join(dir, RANK_FILE)) || existsSync(join(dir, MANIFEST_FILE));
}

/** The manifest, after checking every small file against it; a format-1 engine (no manifest) gets
 * the format-version message, any other missing or changed file an EngineCorruptError. */
function checkedManifest(dir: string): EngineManifest {
  if (!existsSync(join(dir, MANIFEST_FILE)) && existsSync(join(dir, "config.json"))) {
    let version: unknown;
    try {
      version = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).formatVersion;
    } catch {
      // unreadable: reported as the missing manifest below
    }
    if (typeof version === "number" && version !== ENGINE_FORMAT_VERSION) readConfig(dir);
  }
  const manifest = readManifest(dir);
  const damage = smallFileDamage(dir, manifest);
  if (damage.length) throw new EngineCorruptError(dir, damage.map((d) => `${d.file} (${d.what})`).join(", "));
  return manifest;
}

function readConfig(dir: string): EngineConfig {
  const path = join(dir, "config.json");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new EngineError(
      `cannot read engine config ${path}: ${(e as Error).message}; rebuild the engine with kiln build`,
    );
  }
  const c = raw as Partial<EngineConfig>;
  if (c.format !== "kiln-engine")
    throw new EngineError(`${path} is not a kiln engine config (format: ${c.format})`);
  if (c.formatVersion !== ENGINE_FORMAT_VERSION)
    throw formatVersionError(dir, c.formatVersion, ENGINE_FORMAT_VERSION);
  return c as EngineConfig;
}

export function openEngine(dir: string): LoadedEngine {
  const manifest = checkedManifest(dir);
  const config = readConfig(dir);
  const path = join(dir, RANK_FILE);
  if (!existsSync(path)) throw new EngineCorruptError(dir, `${RANK_FILE} (missing)`);
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size !== manifest.rank.bytes)
      throw new EngineCorruptError(dir, `${RANK_FILE} (${size} bytes, expected ${manifest.rank.bytes})`);
    // The manifest vouched for this file's size, so a bad preamble is damage, not another format.
    const damaged = (what: string) => new EngineCorruptError(dir, `${RANK_FILE} (${what})`);
    const pre = Buffer.alloc(PREAMBLE_BYTES);
    if (size < PREAMBLE_BYTES || readSync(fd, pre, 0, PREAMBLE_BYTES, 0) !== PREAMBLE_BYTES)
      throw damaged(`truncated: ${size} bytes`);
    if (pre.toString("latin1", 0, 8) !== ENGINE_MAGIC) throw damaged("bad magic");
    const version = pre.readUInt32LE(8);
    if (version !== ENGINE_FORMAT_VERSION) throw damaged(`preamble says format ${version}`);
    const headerLen = Number(pre.readBigUInt64LE(16));
    if (PREAMBLE_BYTES + headerLen > size) throw damaged("header length beyond the end of the file");
    const json = Buffer.alloc(headerLen);
    readSync(fd, json, 0, headerLen, PREAMBLE_BYTES);
    if (createHasher().update(pre).update(json).digest() !== manifest.rank.header)
      throw damaged("header: checksum mismatch");
    let header: EngineHeader;
    try {
      header = JSON.parse(json.toString("utf8"));
    } catch (e) {
      throw new EngineError(`${path} has a corrupt header (${(e as Error).message}); rebuild it`);
    }
    validate(path, header, size);
    const regionDamage = (offset: number) => {
      const name =
        header.weights.find((w) => w.offset === offset)?.name ??
        header.blobs?.find((b) => b.offset === offset)?.name;
      return new EngineCorruptError(dir, `${RANK_FILE} (${name} at byte ${offset}: checksum mismatch)`);
    };
    const checkRegions = (entries: readonly { name: string; offset: number; byteLength: number }[]) => {
      const check = startRegionCheck(
        path,
        entries.map((e) => ({ ...e, xxh64: manifest.rank.regions[e.offset] ?? "" })),
      );
      return {
        wait() {
          const damage = check.wait();
          if (damage.length)
            throw new EngineCorruptError(dir, damage.map((d) => `${RANK_FILE} (${d})`).join(", "));
        },
      };
    };
    const readChecked = (entry: { offset: number; byteLength: number }) => {
      const buf = new Uint8Array(entry.byteLength);
      readSync(fd, buf, 0, entry.byteLength, entry.offset);
      if (checksum(buf) !== manifest.rank.regions[entry.offset]) throw regionDamage(entry.offset);
      return buf;
    };
    return {
      dir,
      config,
      header,
      readWeight: readChecked,
      checkRegions,
      readInto(offset, into) {
        let done = 0;
        while (done < into.byteLength) {
          const n = readSync(fd, into, done, into.byteLength - done, offset + done);
          if (n === 0)
            throw new EngineError(
              `${path} ended while reading ${into.byteLength} bytes at ${offset}; rebuild it`,
            );
          done += n;
        }
      },
      readBlob(name) {
        const entry = header.blobs?.find((b) => b.name === name);
        return entry ? readChecked(entry) : null;
      },
      close: () => closeSync(fd),
    };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function validate(path: string, header: EngineHeader, fileSize: number): void {
  const byName = new Map(header.weights.map((w) => [w.name, w]));
  const problems: string[] = [];
  for (const w of header.weights) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    if (w.format !== undefined) assertKnownFormat(w.name, w.format, w.params);
    const bytes = w.format ? quantizedByteLength(w.shape, w.format, w.params) : n * DTYPE_BYTES[w.dtype];
    if (bytes !== w.byteLength) problems.push(`${w.name}: shape/dtype do not match its byte length`);
    if (w.offset + w.byteLength > fileSize)
      problems.push(`${w.name}: data beyond the end of the file (truncated?)`);
  }
  const missing = new Set<string>();
  for (const op of header.plan.ops)
    for (const name of opWeights(op)) if (!byName.has(name)) missing.add(name);
  if (missing.size) problems.push(`missing weights the plan needs: ${[...missing].join(", ")}`);
  if (problems.length)
    throw new EngineError(
      `engine file ${path} is invalid: ${problems.length} problem(s) (first: ${problems[0]}); rebuild it${
        problems.length > 1 ? "; --verbose lists them" : ""
      }`,
      { details: problems },
    );
}
