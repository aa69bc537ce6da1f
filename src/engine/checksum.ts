// xxhash64 of engine bytes, the engine's integrity checksum: fast enough (GB/s) to run while a file
// is written and while its weights are uploaded. The wasm module loads once here, so callers stay
// synchronous.
import xxhash from "xxhash-wasm";

const api = await xxhash();

/** A streaming xxhash64: feed the bytes in order, read the 16-hex-digit digest at the end. */
export interface Hasher {
  update(bytes: Uint8Array): Hasher;
  digest(): string;
}

export function createHasher(): Hasher {
  const h = api.create64();
  const hasher: Hasher = {
    update(bytes) {
      h.update(bytes);
      return hasher;
    },
    digest: () => h.digest().toString(16).padStart(16, "0"),
  };
  return hasher;
}

export function checksum(bytes: Uint8Array): string {
  return api.h64Raw(bytes).toString(16).padStart(16, "0");
}
