// How many worker threads a build's parallel parts use (kernel compiles, weight quantization):
// KILN_BUILD_THREADS (a positive integer) or the machine's cores, and never more than there are jobs.
import { availableParallelism } from "node:os";
import { buildThreadsFromEnv } from "../../backends/cuda/tuning.ts";
import { InvalidEnvironmentError } from "../../errors.ts";

/** Worker threads for `jobs` jobs: KILN_BUILD_THREADS or the machine's cores, at most `jobs`, at least 1. */
export function buildThreads(jobs: number, env: string | undefined = buildThreadsFromEnv()): number {
  const cap = env === undefined || env === "" ? availableParallelism() : Number(env);
  if (!Number.isInteger(cap) || cap < 1)
    throw new InvalidEnvironmentError(`KILN_BUILD_THREADS must be a positive integer; got ${env}`);
  return Math.max(1, Math.min(cap, jobs));
}
