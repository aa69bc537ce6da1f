// `kiln bench --num-requests N`: the throughput mode's flags (which latency flags cannot apply, and the
// reverse) and its table. The measurement is runtime/throughput_bench.ts.
import { BenchOptionError } from "../runtime/bench.ts";
import type { ThroughputResult } from "../runtime/throughput_bench.ts";

export interface ThroughputFlags {
  numRequests?: number;
  requestRate?: number;
  maxNumTokens?: number;
  policy?: "guaranteedNoEvict" | "maxUtilization";
  prefixLen?: number;
}

/** Throws BenchOptionError for a flag of the other mode. `given(flag)`: the user set it (not a
 * default). Latency flags are given as their long names, e.g. "--runs". */
export function checkModeFlags(f: ThroughputFlags, given: (flag: string) => boolean): void {
  if (f.numRequests !== undefined) {
    for (const flag of ["--runs", "--batch-size", "--profile"])
      if (given(flag))
        throw new BenchOptionError(
          `${flag} applies to the latency mode (one static batch), not to --num-requests; ` +
            `drop ${flag}, or drop --num-requests to measure latency`,
        );
    if (f.requestRate !== undefined && !(f.requestRate > 0))
      throw new BenchOptionError(
        `--request-rate ${f.requestRate} is not a positive rate; give requests per second above 0, ` +
          "or leave it out to submit every request at once",
      );
    return;
  }
  for (const flag of ["--request-rate", "--max-num-tokens", "--policy", "--prefix-len"])
    if (given(flag))
      throw new BenchOptionError(
        `${flag} drives the executor in the throughput mode; give --num-requests N with it, or drop ${flag}`,
      );
}

const ms = (s: { mean?: number; median: number; p99: number }) =>
  `${s.mean !== undefined ? `mean ${s.mean.toFixed(2)}, ` : ""}median ${s.median.toFixed(2)}, p99 ${s.p99.toFixed(2)} ms`;

export function throughputTable(r: ThroughputResult): string {
  const e = r.executor;
  const rows: [string, string][] = [
    ["device", `${r.device} (${r.backend}, ${r.dtype})`],
    ["requests / input / output", `${r.numRequests} / ${r.inputLen} / ${r.outputLen}`],
    [
      "arrivals",
      r.requestRate === null
        ? "all at once"
        : `Poisson, ${r.requestRate} requests/s (seed ${r.seed}, last at ${r.arrivalSpanS.toFixed(2)} s)`,
    ],
    [
      "decoding",
      r.sampling
        ? `sampled (${Object.entries(r.sampling)
            .map(([k, v]) => `${k} ${v}`)
            .join(", ")})`
        : "greedy",
    ],
    ["scheduling", `${r.policy}, ${r.maxNumTokens} tokens per iteration`],
    ["duration", `${r.durationS.toFixed(3)} s`],
    ["output tokens", `${r.outputTokens}`],
    ["output tokens/s", r.outputTokensPerSec.toFixed(1)],
    ["total tokens/s", r.totalTokensPerSec.toFixed(1)],
    ["requests/s", r.requestsPerSec.toFixed(2)],
    ["TTFT", ms(r.ttftMs)],
    ["TPOT", ms(r.tpotMs)],
    [
      "decode step floor",
      `${r.decodeStepFloorMs.toFixed(3)} ms at ${r.floorBatch} sequences (median TPOT ×${r.tpotOverFloor.toFixed(2)})`,
    ],
    ["ITL", ms(r.itlMs)],
    [
      "iterations",
      `${e.iterations} (${e.preemptions} preemptions, ${e.overlappedIterations} overlapped; at most ${e.peakScheduled} requests at once)`,
    ],
    ["host wait per iteration", ms(e.hostWaitMs)],
    ["host work per iteration", ms(e.hostMs)],
    [
      "graphs at start",
      `${e.graphWarmUp.graphs} captured in ${e.graphWarmUp.ms.toFixed(0)} ms (before the timed run)`,
    ],
    ["prefix cache hits", `${e.prefixHitTokens} of ${e.prefixQueryTokens} prompt tokens`],
    ...(r.prefixCache
      ? ([
          [
            "TTFT, prefix cached",
            `${r.prefixCache.cachedTtftMs.toFixed(2)} ms with ${r.prefixCache.cachedTokens} of the ${r.prefixCache.prefixLen}-token prefix cached, ${r.prefixCache.coldTtftMs.toFixed(2)} ms cold (×${r.prefixCache.cachedOverCold.toFixed(3)}; one request alone)`,
          ],
        ] as [string, string][])
      : []),
    [
      "KV cache",
      `${e.kvBlocks} blocks (${e.kvTokens} tokens, limited by ${e.kvLimitedBy}), peak ${e.peakKvBlocksUsed} used (${(100 * e.peakKvUsage).toFixed(1)}%)`,
    ],
  ];
  return rows.map(([k, v]) => `${k.padEnd(26)} ${v}\n`).join("");
}
