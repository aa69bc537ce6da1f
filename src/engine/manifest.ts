// kiln-engine.json: the engine's integrity record and its marker. It lists the xxhash64 of every file
// of the engine directory and, for rank0.engine, of its preamble + header and of each weight and blob
// region, all computed while the engine was written. It is written last, so a directory holding it
// is a complete kiln engine; `kiln build --output` replaces only such directories.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { checksum } from "./checksum.ts";
import { EngineCorruptError, formatVersionError } from "./errors.ts";
import { ENGINE_FORMAT_VERSION } from "./format.ts";

export const MANIFEST_FILE = "kiln-engine.json";
export const RANK_FILE = "rank0.engine";

export interface FileRecord {
  bytes: number;
  xxh64: string;
}

export interface EngineManifest {
  format: "kiln-engine-manifest";
  formatVersion: number;
  /** Every file but the rank file and the manifest (config.json, tokenizer files). */
  files: Record<string, FileRecord>;
  rank: {
    file: string;
    bytes: number;
    /** Of the preamble and the header JSON. */
    header: string;
    /** Region checksums keyed by the region's byte offset in the rank file. */
    regions: Record<string, string>;
  };
}

/** A directory kiln wrote as an engine: this format's manifest, or a format-1 engine's files. */
export function isKilnEngineDir(dir: string): boolean {
  if (existsSync(join(dir, MANIFEST_FILE))) return true;
  try {
    const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    return c?.format === "kiln-engine" && existsSync(join(dir, RANK_FILE));
  } catch {
    return false;
  }
}

/** The manifest of `dir`; a missing or unreadable one is damage. */
export function readManifest(dir: string): EngineManifest {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) throw new EngineCorruptError(dir, `${MANIFEST_FILE} (missing)`);
  let m: EngineManifest;
  try {
    m = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new EngineCorruptError(dir, `${MANIFEST_FILE} (unreadable)`);
  }
  if (m?.format !== "kiln-engine-manifest" || typeof m.files !== "object" || typeof m.rank !== "object")
    throw new EngineCorruptError(dir, `${MANIFEST_FILE} (not a kiln manifest)`);
  if (m.formatVersion !== ENGINE_FORMAT_VERSION)
    throw formatVersionError(dir, m.formatVersion, ENGINE_FORMAT_VERSION);
  return m;
}

/** What is wrong with the manifest's small files (missing, other size, other bytes), all at once. */
export function smallFileDamage(dir: string, m: EngineManifest): { file: string; what: string }[] {
  const damage: { file: string; what: string }[] = [];
  for (const [name, rec] of Object.entries(m.files)) {
    const path = join(dir, name);
    if (!existsSync(path)) {
      damage.push({ file: name, what: "missing" });
      continue;
    }
    const size = statSync(path).size;
    if (size !== rec.bytes) damage.push({ file: name, what: `${size} bytes, expected ${rec.bytes}` });
    else if (checksum(readFileSync(path)) !== rec.xxh64)
      damage.push({ file: name, what: "checksum mismatch" });
  }
  return damage;
}
