// `mkdir -p` that fails fast with a named error. Node's recursive mkdirSync retries
// forever where a pseudo file system (/proc) answers ENOENT for a directory whose parent exists
// (kiln spun at 100% CPU on `--cache-dir /proc/kiln`). Here the missing levels are found by walking
// up to the deepest existing ancestor, then made one plain mkdir at a time, so a refusal surfaces at
// once and names the level that failed.
import { lstatSync, mkdirSync, readlinkSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { FileSystemError, isErrnoError } from "./fs_errors.ts";

/** Makes `path` and its missing parents; a FileSystemError names what is in the way. */
export function makeDirectory(path: string): void {
  const target = resolve(path);
  const missing: string[] = [];
  for (let p = target; !existingDirectory(p, target); p = dirname(p)) {
    if (dirname(p) === p) break;
    missing.push(p);
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      // Another process may have made it meanwhile; that is success.
      if (isErrnoError(e) && e.code === "EEXIST" && statSync(p, { throwIfNoEntry: false })?.isDirectory())
        continue;
      throw isErrnoError(e) ? FileSystemError.fromErrno(e) : e;
    }
  }
}

/** True if `p` is a directory, false if nothing is there (or a parent is a file: the walk goes on
 * up to name it); a FileSystemError for anything else in the way. */
function existingDirectory(p: string, target: string): boolean {
  let isDir: boolean;
  try {
    isDir = statSync(p).isDirectory();
  } catch (e) {
    if (!isErrnoError(e)) throw e;
    if (e.code === "ENOTDIR") return false;
    if (e.code !== "ENOENT") throw FileSystemError.fromErrno(e);
    if (isSymlink(p)) {
      throw new FileSystemError(
        `cannot create directory ${target}: ${p} is a symbolic link to ${readlinkSync(p)}, which does not exist`,
        "create the link's target, or choose another path",
        { code: "ENOENT", syscall: "stat", path: p },
      );
    }
    return false;
  }
  if (isDir) return true;
  throw new FileSystemError(
    `cannot create directory ${target}: ${p} is a file, not a directory`,
    "choose a path whose parents are directories",
    { code: "ENOTDIR", syscall: "mkdir", path: p },
  );
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
