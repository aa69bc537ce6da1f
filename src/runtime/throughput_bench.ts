// Throughput benchmark (vLLM's benchmark_serving, trtllm-bench): N requests of I random prompt tokens
// (seeded) and exactly O output tokens each (no end ids) through the executor, all at once (the
// max-load case) or arriving as a Poisson process at R requests/s (seeded exponential gaps). Every
// token's time is the executor's clock when it was sampled, so the figures do not depend on when this
// loop reads the events.
//   TTFT = first token − enqueue      TPOT = (last − first) / (tokens − 1)      ITL = token − previous
// (latency_summary.ts, as `kiln bench --serve` computes them).
// With a prefix length P, every prompt starts with the same P tokens (a system prompt, a few-shot
// preamble), and before the timed run the prefix cache's effect on one request is measured alone:
// TTFT of a prompt whose P-token prefix nothing has seen (cold) against a prompt with the same prefix
// and a new suffix (its P tokens cached), each pair on a fresh prefix, medians of PREFIX_PROBES pairs.
// Against the floor of a decode step of the requests that run at once (floors.ts): max(bytes it reads /
// measured copy bandwidth, its FLOPs / measured GEMM rate).
import {
  Executor,
  type ExecutorSession,
  type IterationStats,
  type KvCacheLimit,
} from "../executor/executor.ts";
import type { CapacityPolicy } from "../executor/scheduler.ts";
import { BenchOptionError, type BenchSampling, BenchShapeError } from "./bench.ts";
import { decodeStepWork, floorMs } from "./floors.ts";
import type { KvCacheConfig } from "./kv_cache_config.ts";
import { latencySummary, type Summary, summary } from "./latency_summary.ts";
import { tokenTimes } from "./token_times.ts";

export interface ThroughputOptions {
  numRequests: number;
  inputLen: number;
  outputLen: number;
  /** Requests per second of the Poisson arrivals; undefined: all at once. */
  requestRate?: number;
  /** Leading prompt tokens every request shares (0 < prefixLen < inputLen); undefined: none. */
  prefixLen?: number;
  seed?: number;
  /** Tokens per iteration (default: the engine's maxNumTokens). */
  maxNumTokens?: number;
  policy?: CapacityPolicy;
  sampling?: BenchSampling;
  /** The KV cache: on backends that report free memory, the executor's sizing from these; elsewhere
   * what every request needs at once, capped at maxTokens. */
  kvCache: KvCacheConfig;
}

export interface ThroughputResult {
  mode: "throughput";
  device: string;
  backend: string;
  dtype: string;
  numRequests: number;
  inputLen: number;
  outputLen: number;
  /** null: every request submitted at once. */
  requestRate: number | null;
  seed: number;
  policy: CapacityPolicy;
  maxNumTokens: number;
  /** The sampled decoding settings, or null: greedy. */
  sampling: BenchSampling | null;
  /** When the last request arrived, after the first (0 when all arrive at once). */
  arrivalSpanS: number;
  /** First arrival to the last token. */
  durationS: number;
  /** Tokens counted in the results (numRequests × outputLen unless a request ended early). */
  outputTokens: number;
  outputTokensPerSec: number;
  /** Prompt and output tokens per second. */
  totalTokensPerSec: number;
  requestsPerSec: number;
  ttftMs: Summary;
  tpotMs: Summary;
  itlMs: Omit<Summary, "mean">;
  /** The floor of one decode step of `floorBatch` sequences at the average context (input + output / 2
   * keys each): max(bytes / copy bandwidth, FLOPs / GEMM rate), weights and every sequence's K and V
   * read once, the linear layers and attention computed (floors.ts). A reference for the TPOT of a
   * full batch; with Poisson arrivals fewer may run at once. */
  decodeStepFloorMs: number;
  /** Requests that run at once (at most numRequests, what the KV cache holds at full length, the
   * engine's maxBatchSize and maxNumTokens): the floor's batch. */
  floorBatch: number;
  /** Median TPOT / decodeStepFloorMs. */
  tpotOverFloor: number;
  copyBandwidthGBs: number;
  gemmTflops: number;
  /** With prefixLen: the shared prefix's length, and TTFT of one request alone, cold and with its
   * prefix cached (medians over PREFIX_PROBES fresh prefixes); cachedTokens: the prompt tokens the
   * cached request found in the cache (the prefix's whole blocks). */
  prefixCache?: {
    prefixLen: number;
    cachedTokens: number;
    coldTtftMs: number;
    cachedTtftMs: number;
    cachedOverCold: number;
  };
  executor: {
    iterations: number;
    preemptions: number;
    prefixQueryTokens: number;
    prefixHitTokens: number;
    kvBlocks: number;
    kvTokens: number;
    /** What set kvBlocks: the executor's kvSizing.limitedBy, or "requests" where the bench sized it
     * for every request at full length (the CPU). */
    kvLimitedBy: KvCacheLimit | "requests";
    /** Blocks held by live requests, highest after any iteration. */
    peakKvBlocksUsed: number;
    /** peakKvBlocksUsed / kvBlocks. */
    peakKvUsage: number;
    /** Most requests one iteration scheduled: how many ran at once (the engine's maxBatchSize bounds
     * it). */
    peakScheduled: number;
    /** Iterations whose step was queued while the previous one ran (the executor's overlap). */
    overlappedIterations: number;
    /** Per iteration: host ms waiting for the step's tokens (collectSample, or the synchronous
     * forward), and host ms of the loop's own work; waits near zero mean the host sets the pace. */
    hostWaitMs: Summary;
    hostMs: Summary;
    /** Decode graphs the executor captured at start, and the host ms it took (before the timed run). */
    graphWarmUp: { graphs: number; ms: number };
  };
}

/** A seeded generator of uniform numbers in [0, 1) (a 32-bit LCG, as the latency bench's prompts). */
export function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Arrival times in seconds of n requests at `rate` per second: 0, then exponential gaps (mean 1/rate). */
export function poissonArrivals(n: number, rate: number, seed: number): number[] {
  const u = seededUniform(seed ^ 0x5bd1e995); // a stream apart from the prompts'
  const t = [0];
  for (let i = 1; i < n; i++) t.push(t[i - 1] - Math.log(1 - u()) / rate);
  return t;
}

/** Cold / cached request pairs the prefix-cache probe times. */
const PREFIX_PROBES = 3;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Bytes of a stored weight element of an engine of `dtype`. */
const elemBytes = (dtype: string) => (dtype === "fp32" ? 4 : 2);

/** Runs the benchmark on `session`, which it borrows (the caller disposes it); `weightBytes`: the
 * engine's weights in bytes of the engine dtype (the floor's parameter count); `storedWeightBytes`: as
 * stored, quantized weights as q and scales (the floor's bytes on the CUDA backend). */
export async function runThroughputBench(
  session: ExecutorSession & { readonly weightBytes: number; readonly storedWeightBytes: number },
  o: ThroughputOptions,
): Promise<ThroughputResult> {
  const { config, backend } = session;
  if (o.inputLen + o.outputLen > config.maxSeqLen)
    throw new BenchShapeError(o.inputLen, o.outputLen, config.maxSeqLen);
  const P = o.prefixLen;
  if (P !== undefined && !(Number.isInteger(P) && P > 0 && P < o.inputLen))
    throw new BenchOptionError(
      `--prefix-len ${P} must be a whole number of tokens from 1 to --input-len − 1 (${o.inputLen - 1}): ` +
        "the shared prefix, then at least one token of each request's own",
    );
  if (o.requestRate !== undefined && !(o.requestRate > 0 && Number.isFinite(o.requestRate)))
    throw new BenchOptionError(
      `--request-rate ${o.requestRate} is not a positive rate; give requests per second above 0, ` +
        "or leave it out to submit every request at once",
    );
  const engineTokens = Math.min(config.build.maxNumTokens, backend.maxStepTokens ?? Infinity);
  const maxNumTokens = o.maxNumTokens ?? engineTokens;
  if (maxNumTokens > engineTokens)
    throw new BenchOptionError(
      `--max-num-tokens ${maxNumTokens} is above the engine's ${engineTokens} tokens per step; ` +
        `give at most ${engineTokens} or rebuild the engine with a larger --max-num-tokens`,
    );
  const seed = o.seed ?? 1;
  const m = config.model;
  const rand = seededUniform(seed);
  const tokens = (n: number) => Array.from({ length: n }, () => 10 + Math.floor(rand() * (m.vocabSize - 20)));
  const prompt = () => tokens(o.inputLen);
  const shared = tokens(o.prefixLen ?? 0);
  const prompts = Array.from({ length: o.numRequests }, () => [
    ...shared,
    ...tokens(o.inputLen - shared.length),
  ]);
  const warmPrompt = prompt();
  const arrivals = o.requestRate ? poissonArrivals(o.numRequests, o.requestRate, seed) : prompts.map(() => 0);
  // The floor's rates, measured before the KV cache takes its share of device memory (they borrow some).
  const bandwidth = backend.measureCopyBandwidth();
  const gemmRate = backend.measureGemmFlops();
  // KV: on a backend that reports free memory the executor sizes it after its warm-up step
  // (freeGpuMemoryFraction of what is free, or the given maxTokens: executor/kv_cache_size.ts);
  // elsewhere (the CPU) every request at full length at once, within the given maxTokens.
  const bs = backend.kvBlockSize;
  const { freeGpuMemoryFraction, maxTokens } = o.kvCache;
  let kv: { maxTokens?: number; freeGpuMemoryFraction: number } = {
    freeGpuMemoryFraction,
    ...(maxTokens !== undefined ? { maxTokens } : {}),
  };
  let byRequests = false;
  if (!backend.freeMemoryBytes) {
    const need = o.numRequests * Math.ceil((o.inputLen + o.outputLen) / bs);
    byRequests = maxTokens === undefined || need < Math.floor(maxTokens / bs);
    const blocks = byRequests ? need : Math.floor((maxTokens as number) / bs);
    kv = { freeGpuMemoryFraction, maxTokens: Math.max(1, blocks) * bs };
  }
  const decoding = o.sampling ? { ...o.sampling, seed } : ({ greedy: true } as const);
  let peak = 0;
  let iterations: IterationStats[] = [];
  const borrowed: ExecutorSession = {
    backend,
    config,
    tokenizer: session.tokenizer,
    generationDefaults: session.generationDefaults,
    eosTokenIds: session.eosTokenIds,
    dispose: () => {}, // the caller's: the executor's shutdown leaves it open
  };
  const executor = new Executor(borrowed, {
    ...kv,
    maxNumTokens,
    policy: o.policy,
    clock: () => performance.now(),
    onIteration: (s) => {
      peak = Math.max(peak, s.kv.numUsed);
      iterations.push(s);
    },
  });
  // The requests that can run at once: the executor's KV cache at full length, and the executor's running cap
  // (the engine's maxBatchSize, at most one sequence per token of an iteration).
  const floorBatch = Math.max(
    1,
    Math.min(
      o.numRequests,
      Math.floor(executor.kv.stats().numBlocks / Math.ceil((o.inputLen + o.outputLen) / bs)),
      config.build.maxBatchSize,
      maxNumTokens,
    ),
  );
  const params = session.weightBytes / elemBytes(config.build.dtype);
  const elem = backend.name === "cpu" ? 4 : elemBytes(config.build.dtype); // the CPU backend widens to fp32 at load
  const step = decodeStepWork(
    m,
    params,
    elem,
    new Array<number>(floorBatch).fill(o.inputLen + o.outputLen / 2),
    backend.name === "cpu" ? params * elem : session.storedWeightBytes, // CUDA: quantized weights as stored
    backend.kvCacheDtype === "fp8" ? 1 : elem, // an FP8 KV cache: a byte an element (scales not counted)
  );
  const decodeStepFloorMs = floorMs(step.bytes, step.flops, bandwidth, gemmRate);
  try {
    const request = (ids: number[], maxNewTokens: number) =>
      executor.enqueue({ prompt: ids, maxNewTokens, endId: [], streaming: true, ...decoding });
    const ttftAlone = async (ids: number[]) => {
      const start = performance.now();
      return (await tokenTimes(executor, request(ids, 1)))[0] - start;
    };
    const probePrefixCache = async (prefixLen: number) => {
      const cold: number[] = [];
      const cached: number[] = [];
      let hitTokens = 0;
      for (let i = 0; i < PREFIX_PROBES; i++) {
        const prefix = tokens(prefixLen);
        cold.push(await ttftAlone([...prefix, ...tokens(o.inputLen - prefixLen)]));
        const hits = executor.stats().kv.prefixHitTokens;
        cached.push(await ttftAlone([...prefix, ...tokens(o.inputLen - prefixLen)]));
        hitTokens += executor.stats().kv.prefixHitTokens - hits;
      }
      const [coldTtftMs, cachedTtftMs] = [summary(cold).median, summary(cached).median];
      const cachedTokens = hitTokens / PREFIX_PROBES;
      return { prefixLen, cachedTokens, coldTtftMs, cachedTtftMs, cachedOverCold: cachedTtftMs / coldTtftMs };
    };
    // Warm-up (lazy GEMM plans, caches), on a prompt of its own so the timed ones start cold.
    await tokenTimes(executor, request(warmPrompt, Math.min(4, o.outputLen)));
    const prefixCache = P === undefined ? undefined : await probePrefixCache(P);
    const before = executor.stats();
    peak = 0;
    iterations = [];
    const t0 = performance.now();
    const runs: Promise<number[]>[] = [];
    const enqueued: number[] = [];
    for (const [i, ids] of prompts.entries()) {
      // All at once: no await between enqueues, so the first iteration sees every request.
      const wait = t0 + arrivals[i] * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
      enqueued.push(performance.now());
      const id = request(ids, o.outputLen);
      runs.push(tokenTimes(executor, id));
    }
    const stamps = await Promise.all(runs);
    const after = executor.stats();
    const end = Math.max(...stamps.map((s) => s[s.length - 1] ?? t0));
    const durationS = (end - t0) / 1000;
    const outputTokens = stamps.reduce((a, s) => a + s.length, 0);
    const { ttftMs, tpotMs, itlMs } = latencySummary(
      stamps.map((times, i) => ({ start: enqueued[i], times })),
    );
    return {
      mode: "throughput",
      device: backend.deviceName,
      backend: backend.name,
      dtype: config.build.dtype,
      numRequests: o.numRequests,
      inputLen: o.inputLen,
      outputLen: o.outputLen,
      requestRate: o.requestRate ?? null,
      seed,
      policy: o.policy ?? "guaranteedNoEvict",
      maxNumTokens,
      sampling: o.sampling ?? null,
      arrivalSpanS: arrivals[arrivals.length - 1],
      durationS,
      outputTokens,
      outputTokensPerSec: outputTokens / durationS,
      totalTokensPerSec: (o.numRequests * o.inputLen + outputTokens) / durationS,
      requestsPerSec: o.numRequests / durationS,
      ttftMs,
      tpotMs,
      itlMs: { median: itlMs.median, p99: itlMs.p99 },
      decodeStepFloorMs,
      floorBatch,
      tpotOverFloor: tpotMs.median / decodeStepFloorMs,
      ...(prefixCache ? { prefixCache } : {}),
      copyBandwidthGBs: bandwidth / 1e9,
      gemmTflops: gemmRate / 1e12,
      executor: {
        iterations: after.numIterations - before.numIterations,
        preemptions: after.numPreemptions - before.numPreemptions,
        prefixQueryTokens: after.kv.prefixQueryTokens - before.kv.prefixQueryTokens,
        prefixHitTokens: after.kv.prefixHitTokens - before.kv.prefixHitTokens,
        kvBlocks: after.kv.numBlocks,
        kvTokens: after.kv.numBlocks * after.kv.tokensPerBlock,
        kvLimitedBy: byRequests ? "requests" : executor.kvSizing.limitedBy,
        peakKvBlocksUsed: peak,
        peakKvUsage: peak / after.kv.numBlocks,
        peakScheduled: Math.max(0, ...iterations.map((s) => s.numScheduled)),
        overlappedIterations: iterations.filter((s) => s.overlapped).length,
        hostWaitMs: summary(iterations.map((s) => s.hostWaitMs)),
        hostMs: summary(iterations.map((s) => s.hostMs)),
        graphWarmUp: executor.graphWarmUp,
      },
    };
  } finally {
    await executor.shutdown({ drain: false });
  }
}
