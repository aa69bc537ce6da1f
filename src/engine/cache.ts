// Content-addressed engine cache: an engine built from a checkpoint is stored under a key made of
// everything that determines its bytes (checkpoint content hash, build config, target, kiln and
// format versions), so a second run with the same inputs is a hit and any change is a miss.
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import type { BuildConfig } from "../builder/build_config.ts";
import { KILN_VERSION } from "../version.ts";
import { ENGINE_FORMAT_VERSION } from "./format.ts";

/** `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_CACHE_DIR) return env.KILN_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "kiln");
  return join(homedir(), ".cache", "kiln");
}

export function engineCacheKey(checkpointHash: string, build: BuildConfig): string {
  const key = JSON.stringify({ checkpointHash, build, kiln: KILN_VERSION, format: ENGINE_FORMAT_VERSION });
  return createHash("sha256").update(key).digest("hex").slice(0, 32);
}

export function engineCacheDir(checkpointHash: string, build: BuildConfig, root = cacheRoot()): string {
  return join(root, "engines", engineCacheKey(checkpointHash, build));
}
