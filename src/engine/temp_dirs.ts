// Temporary siblings of an engine directory: `<dir>.tmp-PID-TIME` while it is written, and
// `<dir>.old-PID-TIME` for an entry moved aside to be replaced. Both carry their owner's pid, so one
// left behind by a killed process is recognised (its pid is gone) and swept by the next build.
import { readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";

const TEMP_NAME = /^(.+)\.(tmp|old)-(\d+)-\d+(?:-\d+)?$/;

/** A fresh sibling path of `dir` owned by this process. */
export function tempSibling(dir: string, kind: "tmp" | "old"): string {
  const nonce = Math.floor(Math.random() * 1e9);
  return `${dir}.${kind}-${process.pid}-${Date.now()}-${nonce}`;
}

/** Whether process `pid` exists (ours counts; a pid we may not signal exists too). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/** Removes the temp siblings in `parent` whose owner process is gone; with `of`, only those of the
 * engine directory named `of` (a user's folder holds other things). */
export function sweepStaleTemps(parent: string, of?: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return; // nothing there yet
  }
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m || (of !== undefined && m[1] !== of) || pidAlive(Number(m[3]))) continue;
    rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/** Moves `dir` aside and deletes it; false when it was already gone (another process moved it). */
export function removeAside(dir: string): boolean {
  const aside = tempSibling(dir, "old");
  try {
    renameSync(dir, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
  rmSync(aside, { recursive: true, force: true });
  return true;
}
