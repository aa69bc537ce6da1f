// Checks every file and every weight and blob region of an engine against its manifest without
// running it (`kiln verify`), and lists all the damage found rather than the first.
import { EngineCorruptError } from "./errors.ts";
import { openEngine } from "./reader.ts";

const CHUNK = 64 << 20;

/** One item per damaged file or region; empty when the engine is intact. Other problems (another
 * format version, not an engine) throw their EngineError. */
export function engineDamage(dir: string): string[] {
  let engine: ReturnType<typeof openEngine>;
  try {
    engine = openEngine(dir);
  } catch (e) {
    if (e instanceof EngineCorruptError) return [e.damage];
    throw e;
  }
  const damage: string[] = [];
  try {
    const staging = new Uint8Array(CHUNK);
    for (const entry of [...engine.header.weights, ...(engine.header.blobs ?? [])]) {
      const check = engine.verifier(entry);
      for (let off = 0; off < entry.byteLength; off += CHUNK) {
        const view = staging.subarray(0, Math.min(CHUNK, entry.byteLength - off));
        engine.readInto(entry.offset + off, view);
        check.update(view);
      }
      try {
        check.finish();
      } catch (e) {
        if (!(e instanceof EngineCorruptError)) throw e;
        damage.push(e.damage);
      }
    }
  } finally {
    engine.close();
  }
  return damage;
}
