// A checkpoint or engine directory → an opened Session: the one path ModelRunner.fromDir/load and
// openExecutor share. The engine comes from resolveEngine (built into the content cache on a miss);
// weight damage found while the backend loads a cached engine rebuilds that entry once.
import { checkKvCacheDtype, type KvCacheDtype } from "../backends/kv_cache_dtype.ts";
import type { CudaTuning } from "../backends/open_backend.ts";
import { type ResolvedEngine, resolveEngineSteps } from "../builder/engine_cache.ts";
import type { Steps } from "../builder/steps.ts";
import { type BuildConfig, DEFAULT_BUILD_CONFIG, OPTIONAL_BUILD_KEYS } from "../engine/build_config.ts";
import { EngineCorruptError } from "../engine/errors.ts";
import type { KeySet } from "../sampling/option_keys.ts";
import { Session } from "./session.ts";

/** The build settings an options object may carry (for unknown-key checks). */
export const BUILD_CONFIG_KEYS = Object.fromEntries(
  [...Object.keys(DEFAULT_BUILD_CONFIG), ...OPTIONAL_BUILD_KEYS].map((k) => [k, true]),
) as KeySet<BuildConfig>;

/** `kvCacheDtype` is checked against the backend before the build (Session.open checks it again
 * against an engine's own backend). */
export function* openSessionSteps(
  dir: string,
  build: Partial<BuildConfig>,
  cacheDir?: string,
  cudaTuning?: CudaTuning,
  kvCacheDtype: KvCacheDtype = "auto",
): Steps<{ session: Session; engine: ResolvedEngine }> {
  if (build.backend) checkKvCacheDtype(build.backend, kvCacheDtype);
  const engine = yield* resolveEngineSteps(dir, build, cacheDir);
  try {
    return {
      session: Session.open(engine.dir, { backend: build.backend, cudaTuning, kvCacheDtype }),
      engine,
    };
  } catch (e) {
    // Weight regions are verified as the backend loads them: a damaged cache entry is rebuilt.
    if (engine.origin !== "hit" || !(e instanceof EngineCorruptError)) throw e;
    const rebuilt = yield* resolveEngineSteps(dir, build, cacheDir, e);
    return {
      session: Session.open(rebuilt.dir, { backend: build.backend, cudaTuning, kvCacheDtype }),
      engine: rebuilt,
    };
  }
}

/** `make(session)`, disposing the session when it throws (e.g. a KV limit below one block). */
export function adoptSession<T>(session: Session, make: (session: Session) => T): T {
  try {
    return make(session);
  } catch (e) {
    session.dispose();
    throw e;
  }
}
