// An advisory lock per cache entry (`<entry>.lock`, holding the owner's pid and start time) so that
// processes that miss the same entry at once build it once: the others wait, then find it as a hit.
// A lock whose owner is gone (no such pid, or a pid reused by a process started at another time) is
// stale and taken over. Correctness does not depend on it (publishing is one atomic
// rename); it saves the duplicated build time and disk space.
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { makeDirectory } from "../make_directory.ts";
import { pidAlive } from "./temp_dirs.ts";

const POLL_MS = 25;
/** A lock file without a pid (its owner died between creating and writing it) after this is stale. */
const EMPTY_LOCK_STALE_MS = 10_000;

/** Takes the lock of `entryDir`, waiting while a live process holds it, at most `maxWaitMs` (then
 * goes on without it). Returns the release function. */
export function acquireBuildLock(entryDir: string, maxWaitMs = 30 * 60_000): () => void {
  const path = `${entryDir}.lock`;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + maxWaitMs;
  try {
    makeDirectory(dirname(path));
  } catch {
    return () => {}; // the build reports why the cache cannot be written
  }
  for (;;) {
    try {
      writeFileSync(path, `${process.pid} ${startTime(process.pid)}`, { flag: "wx" });
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") return () => {}; // unlockable: build anyway
    }
    if (isStale(path)) rmSync(path, { force: true });
    else if (Date.now() > deadline) return () => {};
    else Atomics.wait(sleeper, 0, 0, POLL_MS);
  }
}

/** A process's start time (Linux /proc, in clock ticks since boot); "" where unknown. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

function isStale(path: string): boolean {
  try {
    const [pidText, started = ""] = readFileSync(path, "utf8").split(" ");
    const pid = Number.parseInt(pidText, 10);
    if (Number.isInteger(pid) && pid > 0)
      return !pidAlive(pid) || (started !== "" && startTime(pid) !== started);
    return Date.now() - statSync(path).mtimeMs > EMPTY_LOCK_STALE_MS;
  } catch {
    return false; // released meanwhile: the next attempt takes it
  }
}
