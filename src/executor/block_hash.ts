// Prefix-cache keys of full KV blocks: a hash chain, so a block's key names its whole prefix.
//
//   key(block i) = sha256(key(block i−1) | extraKey | token ids of block i)     key(block −1) = ""
//
// Two sequences share a block only if every token before it, and the extra key (anything else that
// changes the cached keys/values: a LoRA adapter, a cache salt), are the same. Only full blocks get
// keys; the last, partial block of a sequence is never shared through the cache.
import { createHash } from "node:crypto";

/** A full block's key: the base64 of a sha256 digest (collisions are not a practical concern). */
export type BlockKey = string;

export function blockKey(parent: BlockKey | null, tokens: ArrayLike<number>, extraKey: string): BlockKey {
  const h = createHash("sha256");
  h.update(parent ?? "");
  h.update("\u0000");
  h.update(extraKey);
  h.update("\u0000");
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest("base64");
}
