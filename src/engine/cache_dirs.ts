// Content-addressed engine cache: an engine built from a checkpoint is stored under a key made of
// everything that determines its bytes (checkpoint content hash, build config, target, kiln and
// format versions), so a second run with the same inputs is a hit and any change is a miss.
import { createHash } from "node:crypto";
import { mkdtempSync, rmdirSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { CacheDirError, errnoReason, FileSystemError, isErrnoError } from "../fs_errors.ts";
import { makeDirectory } from "../make_directory.ts";
import { KILN_VERSION } from "../version.ts";
import type { BuildConfig } from "./build_config.ts";
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
  makeCacheRoot(root);
  return root;
}

/** Throws a CacheDirError unless engines can be written into `root`, checked on a miss before a
 * build (a read-only cache still serves its hits) by making and removing a directory there: that
 * answers for root, read-only mounts and pseudo file systems alike, where access(W_OK) does not. */
export function assertCacheWritable(root: string): void {
  let probe: string;
  try {
    probe = mkdtempSync(join(root, ".probe-"));
  } catch (e) {
    if (!isErrnoError(e)) throw e;
    throw new CacheDirError(
      `engine cache directory ${root} is not writable: ${errnoReason(e)}; ${CACHE_FIX}`,
      { cause: e },
    );
  }
  rmdirSync(probe);
}

/** `mkdir -p root`, failing fast (see makeDirectory) with the cache's own fix. */
function makeCacheRoot(root: string): void {
  try {
    makeDirectory(root);
  } catch (e) {
    if (!(e instanceof FileSystemError)) throw e;
    throw new CacheDirError(`engine cache: ${e.problem}; ${CACHE_FIX}`, { cause: e });
  }
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

export function engineCacheKey(checkpointHash: string, build: BuildConfig): string {
  const key = JSON.stringify({
    checkpointHash,
    build: keyedBuild(build),
    kiln: KILN_VERSION,
    format: ENGINE_FORMAT_VERSION,
  });
  return createHash("sha256").update(key).digest("hex").slice(0, 32);
}

/** The build config as the key sees it: a calibration file counts by its content hash
 * (calibrationSha256), not its path, so the same text anywhere is one entry. */
function keyedBuild(build: BuildConfig): Partial<BuildConfig> {
  const { calibrationFile: _, ...keyed } = build;
  return keyed;
}

export function engineCacheDir(checkpointHash: string, build: BuildConfig, root = cacheRoot()): string {
  return join(root, "engines", engineCacheKey(checkpointHash, build));
}
