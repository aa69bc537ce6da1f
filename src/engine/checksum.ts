// xxhash64 of engine bytes, the engine's integrity checksum: fast enough (GB/s) to run while a file
// is written and while its weights are uploaded. The wasm module loads once here, so callers stay
// synchronous.
import xxhash from "xxhash-wasm";

const api = await xxhash();

/** Bytes per wasm call: the module copies its input into its own memory, so hashing a 1 GiB weight
 * in one call would grow that memory to 1 GiB and copy it (about 20× slower than 8 MiB steps). */
const STEP = 8 << 20;

/** A streaming xxhash64: feed the bytes in order, read the 16-hex-digit digest at the end. */
export interface Hasher {
  update(bytes: Uint8Array): Hasher;
  digest(): string;
}

export function createHasher(): Hasher {
  const h = api.create64();
  const hasher: Hasher = {
    update(bytes) {
      for (let at = 0; at < bytes.byteLength; at += STEP) h.update(bytes.subarray(at, at + STEP));
      return hasher;
    },
    digest: () => h.digest().toString(16).padStart(16, "0"),
  };
  return hasher;
}

export function checksum(bytes: Uint8Array): string {
  return createHasher().update(bytes).digest();
}
