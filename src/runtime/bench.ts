// Latency benchmark: B prompts of I random tokens, O tokens each (greedy, or sampled with the given
// settings; end ids ignored) enqueued at once as B requests to the runner's executor, timed end to
// end (host work included); each run's prompts are fresh, so no run hits the prefix cache. Reported
// against the physical floors, each a lower bound: work the step cannot skip / the backend's measured
// peak rate for it (floors.ts counts attention's part).
//   decode floor  = max(bytes a step must read / measured copy bandwidth, its FLOPs / measured GEMM rate):
//                   bytes = weights + every sequence's K and V at its context (the run's average step),
//                   FLOPs = the linear layers on one row per sequence + attention over those keys
//   prefill floor = max(bytes / measured copy bandwidth, FLOPs / measured GEMM rate): bytes = weights read
//                   once + the prompts' K and V written once, FLOPs = the prompt's linear layers (the LM
//                   head on one row per prompt) and its causal attention (QKᵀ and P·V over L(L+1)/2
//                   row-key pairs per head)
import type { DecodeProfile, KindTimes, StepInput, StepProfile } from "../backends/backend.ts";
import { KilnError } from "../errors.ts";
import { decodeStepWork, prefillWork, floorMs as stepFloorMs } from "./floors.ts";
import { sessionClock } from "./generation_session.ts";
import type { KvCacheDtype, KvPoolLimit } from "./kv_cache_config.ts";
import { latencySummary } from "./latency_summary.ts";
import type { ModelRunner } from "./model_runner.ts";
import { tokenTimes } from "./token_times.ts";

export { prefillFlops } from "./floors.ts";

export interface BenchOptions {
  batchSize: number;
  inputLen: number;
  outputLen: number;
  /** Timed repetitions (the median is reported). */
  runs: number;
  seed?: number;
  /** Also break a decode step's GPU time down by launch kind (CUDA). */
  profile?: boolean;
  /** Sampled decoding (temperature > 0) with these settings, instead of greedy. */
  sampling?: BenchSampling;
}

/** The decoding settings of a sampled benchmark; the sampler's cost depends on them (deep top-p cuts). */
export interface BenchSampling {
  temperature: number;
  topK?: number;
  topP?: number;
  minP?: number;
}

/** The benchmark's prompt plus output does not fit the engine's context window. */
export class BenchShapeError extends KilnError {
  constructor(inputLen: number, outputLen: number, maxSeqLen: number) {
    const fixes = [
      ...(inputLen < maxSeqLen ? [`--output-len to ${maxSeqLen - inputLen}`] : []),
      ...(outputLen < maxSeqLen ? [`--input-len to ${maxSeqLen - outputLen}`] : []),
    ];
    super(
      `--input-len ${inputLen} + --output-len ${outputLen} = ${inputLen + outputLen} tokens do not fit the ` +
        `engine's context window of ${maxSeqLen} tokens; ` +
        (fixes.length > 0
          ? `lower ${fixes.join(" or ")}`
          : `lower both so that they sum to at most ${maxSeqLen}`),
    );
  }
}

/** An option the backend cannot honour (e.g. a kernel profile on the CPU backend). */
export class BenchOptionError extends KilnError {}

export interface BenchResult {
  device: string;
  backend: string;
  dtype: string;
  model: string;
  batchSize: number;
  inputLen: number;
  outputLen: number;
  /** Tokens the batch generated per run (the median run); B · O unless generation stopped early. */
  outputTokens: number;
  ttftMs: number;
  /** The median over sequences of (last token − first token) / (tokens − 1) (the median run). */
  tpotMs: number;
  /** From the first prompt's first token to the last prompt's (the median run): near 0 when the prompts
   * prefilled in one iteration; more when they took several, and the sequences then decode beside the
   * later prompts' prefill (TPOT includes those iterations; the decode floor assumes lock-step decode). */
  firstTokenSpreadMs: number;
  outputTokensPerSec: number;
  /** Decode floor: max(decodeFloorBytes / copy bandwidth, decodeFloorFlops / GEMM rate), the run's
   * average decode step. */
  floorMs: number;
  tpotOverFloor: number;
  /** Weights read once plus every sequence's K and V at the average context, input + output / 2. */
  decodeFloorBytes: number;
  /** The linear layers on one row per sequence plus attention over the same keys (floors.ts). */
  decodeFloorFlops: number;
  /** Prefill floor: max(prefillFloorBytes / copy bandwidth, prefillFloorFlops / GEMM rate). */
  prefillFloorMs: number;
  ttftOverPrefillFloor: number;
  /** The weights read once plus the prompts' K and V written once (floors.ts prefillWork). */
  prefillFloorBytes: number;
  /** The prompts' linear FLOPs (prefillFlops) plus their causal attention's (floors.ts). */
  prefillFloorFlops: number;
  copyBandwidthGBs: number;
  gemmTflops: number;
  weightBytes: number;
  /** The executor's KV cache every run shares (sized once; see executor/kv_cache_size.ts). */
  kvCacheBlocks: number;
  kvCacheTokens: number;
  kvCacheGiB: number;
  kvCacheLimitedBy: KvPoolLimit;
  /** How the pool stores K and V (KvCacheConfig.dtype). */
  kvCacheDtype: KvCacheDtype;
  runs: number;
  /** The sampled decoding settings, or null: greedy. */
  sampling: BenchSampling | null;
  /** Mean host milliseconds per step spent waiting for the device's sampled tokens (CUDA). */
  collectWaitMs?: number;
  /** With profile: one decode step's graph replay time and per-kind eager GPU times, and the batch's
   * prefill (its steps launched eagerly) summed by kind. */
  profile?: DecodeProfile & { prefill?: StepProfile & { steps: number; tokens: number } };
}

/** One run's latencies from each prompt's token times (ms, `stamps[p]`) after the start `t0`: TTFT
 * when every prompt has its first token (the batch's prefill), TPOT the median over sequences of each
 * one's (last − first) / (tokens − 1), as serving benchmarks define it (latency_summary.ts; in a
 * lock-step batch, the step time; undefined when no sequence has two tokens), the total until the last
 * token, the tokens, and the spread of the prompts' first tokens. */
export function batchLatency(
  stamps: readonly (readonly number[])[],
  t0: number,
): {
  ttftMs: number;
  tpotMs: number | undefined;
  totalMs: number;
  tokens: number;
  firstTokenSpreadMs: number;
} {
  const { tpotMs } = latencySummary(stamps.map((times) => ({ start: t0, times })));
  const firsts = stamps.filter((s) => s.length > 0).map((s) => s[0]);
  return {
    ttftMs: Math.max(...stamps.map((s) => s[0] ?? t0)) - t0,
    firstTokenSpreadMs: firsts.length ? Math.max(...firsts) - Math.min(...firsts) : 0,
    tpotMs: Number.isNaN(tpotMs.median) ? undefined : tpotMs.median,
    totalMs: Math.max(...stamps.map((s) => s[s.length - 1] ?? t0)) - t0,
    tokens: stamps.reduce((n, s) => n + s.length, 0),
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Tokens [from, to) of prompt `seq` (its KV in blocks seq·nb … seq·nb + nb − 1), as one sequence of a step. */
interface PromptChunk {
  seq: number;
  ids: readonly number[];
  from: number;
  to: number;
}

/** One step over `chunks`, each sequence's logits row at its chunk's last token. */
function chunkStep(chunks: readonly PromptChunk[], bs: number, nb: number): StepInput {
  const n = chunks.reduce((a, c) => a + c.to - c.from, 0);
  const tokenIds = new Int32Array(n);
  const positions = new Int32Array(n);
  const slotMapping = new Int32Array(n);
  const logitRows = new Int32Array(chunks.length);
  let t = 0;
  const seqs = chunks.map(({ seq, ids, from, to }, i) => {
    const queryStart = t;
    for (let pos = from; pos < to; pos++, t++) {
      tokenIds[t] = ids[pos];
      positions[t] = pos;
      slotMapping[t] = (seq * nb + Math.floor(pos / bs)) * bs + (pos % bs);
    }
    logitRows[i] = t - 1;
    const blockTable = Int32Array.from({ length: Math.ceil(to / bs) }, (_, k) => seq * nb + k);
    return { queryStart, queryLen: to - from, contextLen: to, blockTable };
  });
  return { tokenIds, positions, slotMapping, seqs, logitRows };
}

/** The prompts' prefill as steps of at most `maxTokens` tokens: whole prompts while they fit, a longer
 * one in chunks (as the executor's scheduler cuts them). */
export function prefillChunks(rows: readonly (readonly number[])[], maxTokens: number): PromptChunk[][] {
  const steps: PromptChunk[][] = [];
  let step: PromptChunk[] = [];
  let room = maxTokens;
  rows.forEach((ids, seq) => {
    for (let from = 0; from < ids.length; ) {
      if (room === 0) {
        steps.push(step);
        step = [];
        room = maxTokens;
      }
      const to = Math.min(ids.length, from + room);
      step.push({ seq, ids, from, to });
      room -= to - from;
      from = to;
    }
  });
  if (step.length > 0) steps.push(step);
  return steps;
}

export async function runBench(runner: ModelRunner, o: BenchOptions): Promise<BenchResult> {
  const s = runner.session;
  const m = s.config.model;
  const backend = s.backend;
  if (o.inputLen + o.outputLen > runner.maxSeqLen)
    throw new BenchShapeError(o.inputLen, o.outputLen, runner.maxSeqLen);
  if (o.profile && !backend.profileDecode)
    throw new BenchOptionError(
      `--profile breaks a decode step down by CUDA kernel, and the ${backend.name} backend runs none; ` +
        "drop --profile or use --backend cuda",
    );
  let seed = o.seed ?? 1;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 4294967296;
  };
  const batch = () =>
    Array.from({ length: o.batchSize }, () => ({
      ids: Array.from({ length: o.inputLen }, () => 10 + Math.floor(rand() * (m.vocabSize - 20))),
    }));
  const opts = o.sampling
    ? { ...o.sampling, randomSeed: o.seed ?? 1, ignoreEos: true }
    : ({ greedy: true, ignoreEos: true } as const);
  // The floors' measurements borrow ~2 GiB of device memory: take it before the KV pool takes its share.
  const firstBandwidth = backend.measureCopyBandwidth();
  const firstFlops = backend.measureGemmFlops();
  const pool = runner.generation.allocatePool(); // the executor and its KV cache, before any timing
  await runner.generate(batch(), { ...opts, maxNewTokens: Math.min(4, o.outputLen) }); // warm-up: lazy GEMM plans, caches
  // The timed runs go to the executor as one request per prompt, each token timed when the executor
  // read its step off the device (tokenTimes, on the session's clock), not when this loop takes its
  // event: the executor resumes readers a few per turn, so a large batch's readers take several steps'
  // tokens at once. One request per prompt: a batch whose prompts take several prefill iterations
  // decodes its first sequences while later ones still prefill, and a batch call's lock-step outputs
  // (each waiting for the slowest lane) would time only the last lanes, decoding once the others have
  // finished.
  const executor = runner.generation.executor;
  const decoding = o.sampling ? { ...o.sampling, seed: o.seed ?? 1 } : ({ greedy: true } as const);
  const ttfts: number[] = [];
  const spreads: number[] = [];
  const tpots: number[] = [];
  const totals: number[] = [];
  const produced: number[] = [];
  const wait0 = backend.collectWaitStats?.();
  let prompts = batch();
  for (let r = 0; r < o.runs; r++) {
    prompts = batch();
    const t0 = sessionClock();
    // All at once (no await between them): the first iteration sees every prompt.
    const ids = prompts.map((p) =>
      executor.enqueue({ prompt: p.ids, maxNewTokens: o.outputLen, endId: [], streaming: true, ...decoding }),
    );
    const run = batchLatency(await Promise.all(ids.map((id) => tokenTimes(executor, id))), t0);
    produced.push(run.tokens);
    ttfts.push(run.ttftMs);
    spreads.push(run.firstTokenSpreadMs);
    if (run.tpotMs !== undefined) tpots.push(run.tpotMs);
    totals.push(run.totalMs);
  }
  const wait1 = backend.collectWaitStats?.();
  // The rates again after the runs (a backend that measures cheaply measures again and keeps its best):
  // a rate measured while another process held the CPU would put the floor above the measured time.
  const bestBandwidth = Math.max(firstBandwidth, backend.measureCopyBandwidth());
  const bestFlops = Math.max(firstFlops, backend.measureGemmFlops());
  // Host time per decode step spent waiting for the device's tokens: TPOT minus it is the host's work
  // (a wait near zero means the host sets the pace, not the GPU).
  const collectWaitMs =
    wait0 && wait1 && wait1.count > wait0.count
      ? (wait1.ms - wait0.ms) / (wait1.count - wait0.count)
      : undefined;
  let profile: BenchResult["profile"];
  if (o.profile && backend.profileDecode) {
    // One decode step of the batch after its prompts, straight on the backend while the executor is
    // idle: its blocks are overwritten, so nothing may run on the runner after the benchmark.
    const bs = backend.kvBlockSize;
    const nb = Math.ceil((o.inputLen + 1) / bs);
    if (nb * o.batchSize > backend.numKvBlocks)
      throw new BenchOptionError(
        `--profile needs ${nb * o.batchSize} KV blocks for the batch but the KV cache holds ${backend.numKvBlocks}; ` +
          "lower --batch-size or --input-len, or give the KV cache more memory (--kv-cache-free-gpu-mem-fraction)",
      );
    // The batch's prefill in steps the engine takes, each launched eagerly and timed by kind (summed
    // over the steps), then one decode step over the same blocks.
    const rows = prompts.map((p) => p.ids);
    const chunks = prefillChunks(rows, backend.maxStepTokens ?? Number.POSITIVE_INFINITY);
    const prefill = {
      steps: chunks.length,
      tokens: o.batchSize * o.inputLen,
      eagerMs: 0,
      byKind: {} as KindTimes,
    };
    for (const c of chunks) {
      const step = chunkStep(c, bs, nb);
      if (!backend.profileStep) {
        backend.forward(step);
        continue;
      }
      const p = backend.profileStep(step);
      prefill.eagerMs += p.eagerMs;
      for (const [k, v] of Object.entries(p.byKind)) {
        const sum = prefill.byKind[k] ?? { ms: 0, count: 0 };
        sum.ms += v.ms;
        sum.count += v.count;
        prefill.byKind[k] = sum;
      }
    }
    const decodeRows = rows.map((ids) => [...ids, 11]);
    const decode = chunkStep(
      decodeRows.map((ids, seq) => ({ seq, ids, from: o.inputLen, to: ids.length })),
      bs,
      nb,
    );
    profile = { ...backend.profileDecode(decode), ...(backend.profileStep ? { prefill } : {}) };
  }
  // The CPU backend widens weights and KV to fp32 at load; the CUDA backend keeps the engine dtype.
  const stored = s.config.build.dtype === "fp32" ? 4 : 2;
  const elem = backend.name === "cpu" ? 4 : stored;
  const params = s.weightBytes / stored;
  // The average decode step: the step that samples token t (2 … O) reads I + t − 1 keys per sequence.
  const contexts = new Array<number>(o.batchSize).fill(o.inputLen + o.outputLen / 2);
  // The CUDA backend reads quantized weights as stored; the CPU backend widens them with the rest.
  const held = backend.name === "cpu" ? params * elem : s.storedWeightBytes;
  // An FP8 KV cache holds one byte an element (its scales not counted: the floor stays low).
  const kvElem = pool.dtype === "fp8" ? 1 : elem;
  const { bytes: decodeFloorBytes, flops: decodeFloorFlops } = decodeStepWork(
    m,
    params,
    elem,
    contexts,
    held,
    kvElem,
  );
  const floorMs = stepFloorMs(decodeFloorBytes, decodeFloorFlops, bestBandwidth, bestFlops);
  const { bytes: prefillFloorBytes, flops: prefillFloorFlops } = prefillWork(
    m,
    params,
    elem,
    o.batchSize,
    o.inputLen,
    held,
    kvElem,
  );
  const prefillFloorMs = stepFloorMs(prefillFloorBytes, prefillFloorFlops, bestBandwidth, bestFlops);
  const tpotMs = tpots.length ? median(tpots) : Number.NaN;
  const ttftMs = median(ttfts);
  return {
    device: backend.deviceName,
    backend: backend.name,
    dtype: s.config.build.dtype,
    model: `${m.architecture} (${m.numLayers} layers, hidden ${m.hiddenSize}, vocab ${m.vocabSize})`,
    batchSize: o.batchSize,
    inputLen: o.inputLen,
    outputLen: o.outputLen,
    outputTokens: median(produced),
    ttftMs,
    firstTokenSpreadMs: median(spreads),
    tpotMs,
    // Tokens actually produced per second of each run (fewer than B · O if generation stopped early).
    outputTokensPerSec: median(produced.map((n, r) => n / (totals[r] / 1000))),
    floorMs,
    tpotOverFloor: tpotMs / floorMs,
    decodeFloorBytes,
    decodeFloorFlops,
    prefillFloorMs,
    ttftOverPrefillFloor: ttftMs / prefillFloorMs,
    prefillFloorBytes,
    prefillFloorFlops,
    copyBandwidthGBs: bestBandwidth / 1e9,
    gemmTflops: bestFlops / 1e12,
    weightBytes: s.weightBytes,
    kvCacheBlocks: pool.numBlocks,
    kvCacheTokens: pool.tokens,
    kvCacheGiB: pool.bytes / 2 ** 30,
    kvCacheLimitedBy: pool.limitedBy,
    kvCacheDtype: pool.dtype,
    runs: o.runs,
    sampling: o.sampling ?? null,
    ...(collectWaitMs !== undefined ? { collectWaitMs } : {}),
    ...(profile ? { profile } : {}),
  };
}
