// Reads an engine directory: checks magic, format version and that every weight the plan reads is
// present with the shape it needs, and reports everything missing at once.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";
import { DTYPE_BYTES } from "../dtype.ts";
import { opWeights } from "../models/network.ts";
import { EngineError } from "./errors.ts";
import {
  ENGINE_FORMAT_VERSION,
  ENGINE_MAGIC,
  type EngineConfig,
  type EngineHeader,
  PREAMBLE_BYTES,
} from "./format.ts";

export interface LoadedEngine {
  dir: string;
  config: EngineConfig;
  header: EngineHeader;
  /** Reads one weight's (or blob's) bytes from the rank file. */
  readWeight(entry: { offset: number; byteLength: number }): Uint8Array;
  /** Reads `into.byteLength` bytes at absolute file offset `offset` into `into` (e.g. pinned memory). */
  readInto(offset: number, into: Uint8Array): void;
  /** The blob named `name`, or null. */
  readBlob(name: string): Uint8Array | null;
  close(): void;
}

export function isEngineDir(dir: string): boolean {
  return existsSync(join(dir, "rank0.engine"));
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
  if (c.formatVersion !== ENGINE_FORMAT_VERSION) {
    throw new EngineError(
      `engine ${dir} has format version ${c.formatVersion}, this kiln reads version ${ENGINE_FORMAT_VERSION}; ` +
        "rebuild it with `kiln build` (engines are cheap to rebuild from the checkpoint)",
    );
  }
  return c as EngineConfig;
}

export function openEngine(dir: string): LoadedEngine {
  const config = readConfig(dir);
  const path = join(dir, "rank0.engine");
  if (!existsSync(path))
    throw new EngineError(`engine ${dir} has no rank0.engine; rebuild it with kiln build`);
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const pre = Buffer.alloc(PREAMBLE_BYTES);
    if (size < PREAMBLE_BYTES || readSync(fd, pre, 0, PREAMBLE_BYTES, 0) !== PREAMBLE_BYTES) {
      throw new EngineError(`${path} is truncated (${size} bytes); rebuild the engine`);
    }
    if (pre.toString("latin1", 0, 8) !== ENGINE_MAGIC)
      throw new EngineError(`${path} is not a kiln engine file (bad magic)`);
    const version = pre.readUInt32LE(8);
    if (version !== ENGINE_FORMAT_VERSION) {
      throw new EngineError(
        `${path} has format version ${version}, expected ${ENGINE_FORMAT_VERSION}; rebuild it`,
      );
    }
    const headerLen = Number(pre.readBigUInt64LE(16));
    if (PREAMBLE_BYTES + headerLen > size)
      throw new EngineError(`${path} is truncated inside its header; rebuild it`);
    const json = Buffer.alloc(headerLen);
    readSync(fd, json, 0, headerLen, PREAMBLE_BYTES);
    let header: EngineHeader;
    try {
      header = JSON.parse(json.toString("utf8"));
    } catch (e) {
      throw new EngineError(`${path} has a corrupt header (${(e as Error).message}); rebuild it`);
    }
    validate(path, header, size);
    return {
      dir,
      config,
      header,
      readWeight(entry) {
        const buf = new Uint8Array(entry.byteLength);
        readSync(fd, buf, 0, entry.byteLength, entry.offset);
        return buf;
      },
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
        if (!entry) return null;
        const buf = new Uint8Array(entry.byteLength);
        readSync(fd, buf, 0, entry.byteLength, entry.offset);
        return buf;
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
    if (n * DTYPE_BYTES[w.dtype] !== w.byteLength)
      problems.push(`${w.name}: shape/dtype do not match its byte length`);
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
