// Checks every file and every weight and blob region of an engine against its manifest without
// running it (`kiln verify`; the regions on worker threads), and lists all the damage found.
import { EngineCorruptError } from "./errors.ts";
import { openEngine } from "./reader.ts";

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
  try {
    engine.checkRegions([...engine.header.weights, ...(engine.header.blobs ?? [])]).wait();
    return [];
  } catch (e) {
    if (e instanceof EngineCorruptError) return [e.damage];
    throw e;
  } finally {
    engine.close();
  }
}
