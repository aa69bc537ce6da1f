// "Give me an engine for this model dir": an engine dir is used as is; a checkpoint is looked up in
// the content-addressed cache and built into it on a miss.
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { targetIdentity } from "../backends/open_backend.ts";
import { Checkpoint } from "../checkpoint/checkpoint.ts";
import { combineHashes, sha256File } from "../checkpoint/content_hash.ts";
import { readHfConfig } from "../checkpoint/hf_config.ts";
import { type BuildConfig, resolveBuildConfig } from "../engine/build_config.ts";
import { acquireBuildLock } from "../engine/build_lock.ts";
import { assertCacheWritable, engineCacheDir, openCacheRoot } from "../engine/cache_dirs.ts";
import { EngineCorruptError, EngineError } from "../engine/errors.ts";
import { TOKENIZER_FILES } from "../engine/format.ts";
import { type FileHasher, memoizedFileHasher } from "../engine/hash_memo.ts";
import { isEngineDir, openEngine } from "../engine/reader.ts";
import { removeAside, sweepStaleTemps } from "../engine/temp_dirs.ts";
import { buildEngineSteps } from "./builder.ts";
import { runSteps, type Steps } from "./steps.ts";

export interface ResolvedEngine {
  dir: string;
  /** "engine": DIR was an engine; "hit": found in the cache; "built": built now. */
  origin: "engine" | "hit" | "built";
  buildSeconds?: number;
}

/** The engine for `modelDir`: the directory itself when it is an engine (verified when opened, never
 * rebuilt over), else the cache entry for its content, built on a miss. A damaged entry (any file
 * differing from its manifest; `damaged` when the caller found it while loading the weights) is
 * reported in one line on stderr and rebuilt. */
export function resolveEngine(
  modelDir: string,
  options: Partial<BuildConfig> = {},
  cacheRootDir?: string,
  damaged?: EngineCorruptError,
): ResolvedEngine {
  return runSteps(resolveEngineSteps(modelDir, options, cacheRootDir, damaged));
}

/** resolveEngine as steps: a build on a miss yields between weights (see steps.ts). */
export function* resolveEngineSteps(
  modelDir: string,
  options: Partial<BuildConfig> = {},
  cacheRootDir?: string,
  damaged?: EngineCorruptError,
): Steps<ResolvedEngine> {
  if (isEngineDir(modelDir)) return { dir: modelDir, origin: "engine" };
  const build = resolveBuildConfig(options);
  const root = openCacheRoot(cacheRootDir);
  const hashFile = memoizedFileHasher(root);
  // --random-weights builds from config.json alone: a missing or invalid one is a named ConfigError.
  if (build.randomWeights) readHfConfig(modelDir);
  const hash = build.randomWeights
    ? sha256File(join(modelDir, "config.json"))
    : checkpointIdentity(modelDir, hashFile);
  // The key names what the backend's engines depend on (CUDA: the GPU architecture and kiln's kernel
  // sources), so another GPU, or changed kernels, build their own.
  const identity = targetIdentity(build.backend);
  const target = identity ? `${hash}:${identity}` : hash;
  const dir = engineCacheDir(target, build, root);
  sweepStaleTemps(dirname(dir));
  if (damaged?.dir !== dir) {
    const hit = cacheHit(dir);
    if (hit) return hit;
  }
  assertCacheWritable(root); // a miss: a read-only cache is a named error before any work
  // One process builds a missing entry while the others that missed it wait, then find it.
  const release = acquireBuildLock(dir);
  try {
    if (damaged?.dir === dir) discardDamaged(dir, damaged);
    else {
      const hit = cacheHit(dir);
      if (hit) return hit;
    }
    // Without the lock (a stuck owner), concurrent builds each write their own temp dir; the first
    // to publish wins and the others use its entry.
    const r = yield* buildEngineSteps(modelDir, dir, build, hashFile, "cache");
    return { dir, origin: "built", buildSeconds: r.seconds };
  } finally {
    release();
  }
}

/** The entry at `dir` when it opens (small files and header verified); a damaged one is reported and
 * removed. */
function cacheHit(dir: string): ResolvedEngine | null {
  if (!existsSync(dir)) return null;
  try {
    openEngine(dir).close();
    return { dir, origin: "hit" };
  } catch (e) {
    if (!(e instanceof EngineError)) throw e;
    discardDamaged(dir, e);
    return null;
  }
}

function discardDamaged(dir: string, e: EngineError): void {
  const what = e instanceof EngineCorruptError ? e.damage : e.message.replace(/\s*\n\s*/g, "; ");
  process.stderr.write(`kiln: cached engine ${basename(dir)} is damaged (${what}); rebuilding\n`);
  removeAside(dir);
}

/** The checkpoint's content hash combined with its tokenizer files' (the engine carries both). */
function checkpointIdentity(modelDir: string, hashFile: FileHasher): string {
  const ckpt = Checkpoint.open(modelDir);
  let hash: string;
  try {
    // The engine carries the tokenizer files too, so they are part of its identity.
    const tokenizerHashes = TOKENIZER_FILES.filter((f) => existsSync(join(modelDir, f))).map((f) => ({
      name: f,
      sha256: hashFile(join(modelDir, f)),
    }));
    hash = combineHashes([{ name: "checkpoint", sha256: ckpt.contentHash(hashFile) }, ...tokenizerHashes]);
  } finally {
    ckpt.close();
  }
  return hash;
}
