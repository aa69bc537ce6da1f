// The public way to an Executor from a directory: a Hugging Face checkpoint (built into a cached engine
// on the fly, as ModelRunner.fromDir does) or an engine. The executor folder sits below the builder and
// the runtime, so this factory lives here and hands the opened Session over to the Executor.
import type { CudaTuning } from "../backends/open_backend.ts";
import { runSteps, type Steps } from "../builder/steps.ts";
import type { BuildConfig } from "../engine/build_config.ts";
import { EXECUTOR_OPTION_KEYS, Executor, type ExecutorOptions } from "../executor/executor.ts";
import { type KeySet, rejectUnknownKeys } from "../sampling/option_keys.ts";
import { type KvCacheDtype, resolveKvCacheConfig } from "./kv_cache_config.ts";
import { adoptSession, BUILD_CONFIG_KEYS, openSessionSteps } from "./open_session.ts";

/** ExecutorOptions plus how to get the engine. maxNumTokens is both the build's and the executor's
 * tokens per step. */
export interface OpenExecutorOptions extends Partial<BuildConfig>, ExecutorOptions {
  /** Engine cache root (default: $KILN_CACHE_DIR, $XDG_CACHE_HOME/kiln or ~/.cache/kiln). */
  cacheDir?: string;
  /** The CUDA backend's switches (default: the KILN_* environment, read once). */
  cudaTuning?: CudaTuning;
  /** How the KV cache stores K and V (KvCacheConfig.dtype; default "auto"). */
  kvCacheDtype?: KvCacheDtype;
}

const OWN_KEYS: KeySet<Omit<OpenExecutorOptions, keyof BuildConfig | keyof ExecutorOptions>> = {
  cacheDir: true,
  cudaTuning: true,
  kvCacheDtype: true,
};
/** Opens `dir` (checkpoint or engine) and starts an Executor that owns it; shutdown() frees it. */
export function openExecutor(dir: string, options: OpenExecutorOptions = {}): Executor {
  return runSteps(openSteps(dir, options));
}

function* openSteps(dir: string, options: OpenExecutorOptions): Steps<Executor> {
  rejectUnknownKeys("OpenExecutorOptions", options, OWN_KEYS, BUILD_CONFIG_KEYS, EXECUTOR_OPTION_KEYS);
  const { cacheDir, cudaTuning } = options;
  const { dtype } = resolveKvCacheConfig({ dtype: options.kvCacheDtype }); // checked before the build
  const build: Partial<BuildConfig> = {};
  const exec: ExecutorOptions = {};
  for (const [k, v] of Object.entries(options)) {
    if (k in BUILD_CONFIG_KEYS) (build as Record<string, unknown>)[k] = v;
    if (k in EXECUTOR_OPTION_KEYS) (exec as Record<string, unknown>)[k] = v;
  }
  const { session } = yield* openSessionSteps(dir, build, cacheDir, cudaTuning, dtype);
  return adoptSession(session, (s) => new Executor(s, exec));
}
