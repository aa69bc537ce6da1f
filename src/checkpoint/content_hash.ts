// Content hashes for the engine cache: a checkpoint's identity is the bytes of its files, never their
// names, sizes or mtimes (a re-export with one changed weight must not hit a stale engine).
import { createHash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";

/** Bytes read per step when hashing a file. */
export const HASH_CHUNK_BYTES = 8 * 1024 * 1024;

/** Version tag mixed into every checkpoint hash; bump it when the hashed parts change. */
const HASH_FORMAT = "kiln-checkpoint-hash-v1";

/** sha256 (hex) of a whole file, read in 8 MiB chunks so memory stays flat for multi-GiB shards. */
export function sha256File(path: string): string {
  const hash = createHash("sha256");
  const buf = new Uint8Array(HASH_CHUNK_BYTES);
  const fd = openSync(path, "r");
  try {
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.byteLength, pos);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

export function sha256Bytes(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** One hash over named parts ({name, sha256 hex}); names (file names in the checkpoint) keep parts apart. */
export function combineHashes(parts: { name: string; sha256: string }[]): string {
  const hash = createHash("sha256").update(`${HASH_FORMAT}\n`);
  for (const p of parts) hash.update(`${p.name}\0${p.sha256}\n`);
  return hash.digest("hex");
}
