// `kiln bench --serve URL`: the serving benchmark's flags (the engine's own flags cannot apply to a
// server already running, so they are refused) and its table. The client is server/serve_bench.ts.
import { BenchOptionError } from "../runtime/bench.ts";
import type { ServeBenchResult } from "../server/serve_bench.ts";

export interface ServeFlags {
  serve?: string;
  maxConcurrency?: number;
}

/** Flags that set up kiln's own engine or executor: a running server has its own. */
const ENGINE_FLAGS = [
  "--model",
  "--backend",
  "--dtype",
  "--quantize",
  "--calibration",
  "--calibration-tokens",
  "--batch-size",
  "--runs",
  "--random-weights",
  "--profile",
  "--cache-dir",
  "--temperature",
  "--top-k",
  "--top-p",
  "--min-p",
  "--kv-cache-free-gpu-mem-fraction",
  "--max-kv-tokens",
  "--kv-cache-dtype",
  "--max-num-tokens",
  "--policy",
];

/** Requests of a --serve run without --num-requests. */
export const DEFAULT_SERVE_REQUESTS = 100;

/** Throws BenchOptionError for --max-concurrency without --serve, or an engine flag with it.
 * `given(flag)`: the user set it (not a default). */
export function checkServeFlags(f: ServeFlags, given: (flag: string) => boolean): void {
  if (f.serve === undefined) {
    if (given("--max-concurrency"))
      throw new BenchOptionError(
        "--max-concurrency caps the requests in flight to a server; give --serve URL with it, or drop it",
      );
    return;
  }
  for (const flag of ENGINE_FLAGS)
    if (given(flag))
      throw new BenchOptionError(
        `${flag} sets up kiln's own engine, but --serve benchmarks a server already running with its own ` +
          `settings; drop ${flag} (or drop --serve to benchmark in-process)`,
      );
}

const ms = (s: { mean: number; median: number; p99: number }) =>
  `mean ${s.mean.toFixed(2)}, median ${s.median.toFixed(2)}, p99 ${s.p99.toFixed(2)} ms`;

export function serveTable(r: ServeBenchResult): string {
  const rows: [string, string][] = [
    ["server", `${r.url} (model ${r.model})`],
    ["requests / input / output", `${r.numRequests} / ${r.inputLen} / ${r.outputLen}`],
    [
      "arrivals",
      r.requestRate === null ? "all at once" : `Poisson, ${r.requestRate} requests/s (seed ${r.seed})`,
    ],
    ["max concurrency", r.maxConcurrency === null ? "no cap" : `${r.maxConcurrency}`],
    ["completed / failed", `${r.completed} / ${r.failed}`],
    ...r.errors.map((e): [string, string] => ["  error", e]),
    ["duration", `${r.durationS.toFixed(3)} s`],
    ["output tokens", `${r.outputTokens}`],
    ["output tokens/s", r.outputTokensPerSec.toFixed(1)],
    ["total tokens/s", r.totalTokensPerSec.toFixed(1)],
    ["requests/s", r.requestsPerSec.toFixed(2)],
    ["peak streaming at once", `${r.peakStreaming}`],
    ["TTFT", ms(r.ttftMs)],
    ["TPOT", ms(r.tpotMs)],
    ["ITL", ms(r.itlMs)],
  ];
  return rows.map(([k, v]) => `${k.padEnd(26)} ${v}\n`).join("");
}
