// Hashes regions of an engine's rank file and compares them with the manifest's checksums: what each
// region_check worker runs over its share, and what the calling thread runs when a worker cannot.
import { closeSync, openSync, readSync } from "node:fs";
import { createHasher } from "./checksum.ts";

/** A weight or blob region of the rank file and the checksum the manifest recorded for it. */
export interface Region {
  name: string;
  offset: number;
  byteLength: number;
  xxh64: string;
}

const CHUNK = 16 << 20;

/** One description per damaged region (a checksum mismatch, or the file ending inside it). */
export function checkRegionsHere(path: string, regions: readonly Region[]): string[] {
  const damage: string[] = [];
  const buf = new Uint8Array(CHUNK);
  const fd = openSync(path, "r");
  try {
    for (const r of regions) {
      const h = createHasher();
      let off = 0;
      while (off < r.byteLength) {
        const n = readSync(fd, buf, 0, Math.min(CHUNK, r.byteLength - off), r.offset + off);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
        off += n;
      }
      if (off < r.byteLength) damage.push(`${r.name} at byte ${r.offset}: the file ends inside it`);
      else if (h.digest() !== r.xxh64) damage.push(`${r.name} at byte ${r.offset}: checksum mismatch`);
    }
  } finally {
    closeSync(fd);
  }
  return damage;
}
