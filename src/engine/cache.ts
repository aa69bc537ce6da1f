// Content-addressed engine cache: an engine built from a checkpoint is stored under a key made of
// everything that determines its bytes (checkpoint content hash, build config, target, kiln and
// format versions), so a second run with the same inputs is a hit and any change is a miss.
import { createHash } from "node:crypto";
import { accessSync, constants, lstatSync, mkdirSync, readlinkSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { BuildConfig } from "../builder/build_config.ts";
import { CacheDirError, type ErrnoError, errnoReason, isErrnoError } from "../fs_errors.ts";
import { KILN_VERSION } from "../version.ts";
import { ENGINE_FORMAT_VERSION } from "./format.ts";

const CACHE_FIX = "set --cache-dir or KILN_CACHE_DIR to a writable directory";

/** `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_CACHE_DIR) return env.KILN_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "kiln");
  return join(homeDir(env), ".cache", "kiln");
}

/** The cache root to use, `dir` (--cache-dir) or else `cacheRoot(env)`, as an absolute path to a
 * directory that exists: created if missing, or a one-line CacheDirError saying why it cannot be. */
export function openCacheRoot(dir?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (dir === undefined && !env.KILN_CACHE_DIR && !env.XDG_CACHE_HOME) {
    // The default lives in the home directory; kiln never creates a home directory.
    const home = homeDir(env);
    if (!statOrNull(home)?.isDirectory()) {
      throw new CacheDirError(
        `the home directory ${home} (HOME) does not exist, so the default engine cache ~/.cache/kiln cannot be made; ${CACHE_FIX}`,
      );
    }
  }
  const root = resolve(dir ?? cacheRoot(env));
  makeDirectory(root);
  return root;
}

/** Throws a CacheDirError unless engines can be written into `root` (checked on a miss, before a
 * build: a read-only cache still serves its hits). */
export function assertCacheWritable(root: string): void {
  try {
    accessSync(root, constants.W_OK);
  } catch (e) {
    if (!isErrnoError(e)) throw e;
    throw new CacheDirError(
      `engine cache directory ${root} is not writable: ${errnoReason(e)}; ${CACHE_FIX}`,
      { cause: e },
    );
  }
}

/** `mkdir -p root`, done one level at a time from the deepest existing ancestor. Node's recursive
 * mkdir retries forever where a pseudo file system (/proc) answers ENOENT for a parent that exists;
 * one plain mkdir per missing level fails at once instead, and names the level that failed. */
function makeDirectory(root: string): void {
  const missing: string[] = [];
  for (let p = root; !existingDirectory(p, root); p = dirname(p)) {
    if (dirname(p) === p) break;
    missing.push(p);
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      // Another process may have made it meanwhile; that is success.
      if (isErrnoError(e) && e.code === "EEXIST" && statOrNull(p)?.isDirectory()) continue;
      throw cacheDirError(root, e);
    }
  }
}

/** True if `p` is a directory, false if nothing is there; a CacheDirError for anything else. */
function existingDirectory(p: string, root: string): boolean {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(p);
  } catch (e) {
    // ENOTDIR: a parent is a file; walk up to name it.
    if (isErrnoError(e) && e.code === "ENOTDIR") return false;
    if (!isErrnoError(e) || e.code !== "ENOENT") throw cacheDirError(root, e);
    if (lstatOrNull(p)?.isSymbolicLink()) {
      throw new CacheDirError(
        `engine cache directory ${root} cannot be made: ${p} is a symbolic link to ${readlinkSync(p)}, which does not exist; create its target, or ${CACHE_FIX}`,
      );
    }
    return false;
  }
  if (st.isDirectory()) return true;
  throw new CacheDirError(
    `engine cache directory ${root} cannot be made: ${p} is a file, not a directory; ${CACHE_FIX}`,
  );
}

function cacheDirError(root: string, e: unknown): unknown {
  if (!isErrnoError(e)) return e;
  const at = e.path !== undefined && e.path !== root ? ` (at ${e.path})` : "";
  // mkdir answers ENOENT under a parent that exists when its file system takes no new directories.
  const reason =
    e.syscall === "mkdir" && e.code === "ENOENT"
      ? "its file system does not allow creating directories (ENOENT, mkdir)"
      : errnoReason(e as ErrnoError);
  return new CacheDirError(`engine cache directory ${root} cannot be made${at}: ${reason}; ${CACHE_FIX}`, {
    cause: e,
  });
}

function homeDir(env: NodeJS.ProcessEnv): string {
  return env.HOME || homedir();
}

function statOrNull(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

export function engineCacheKey(checkpointHash: string, build: BuildConfig): string {
  const key = JSON.stringify({ checkpointHash, build, kiln: KILN_VERSION, format: ENGINE_FORMAT_VERSION });
  return createHash("sha256").update(key).digest("hex").slice(0, 32);
}

export function engineCacheDir(checkpointHash: string, build: BuildConfig, root = cacheRoot()): string {
  return join(root, "engines", engineCacheKey(checkpointHash, build));
}
