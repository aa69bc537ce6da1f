// The CUDA backend: runs an engine's lowered plan with our kernels (cubins compiled into the engine for
// its GPU) and cuBLASLt GEMMs. This file is the ExecutionBackend facade (load, forward, sample,
// dispose) over the concepts it owns, each with its own lifetime:
//   weights.ts         the weights on the device        activations.ts   the activation arena
//   kv_cache.ts        the paged KV pools               step_uploads.ts  step metadata, RoPE frequencies
//   kernel_launcher.ts the kernel modules, launches     step_launcher.ts eager launch of the plan's steps
//   decode_graphs.ts   CUDA graphs of decode steps      device_sampler.ts sampling, tickets, penalties, bans
//   profile.ts         bandwidth, GEMM rate, step profile  tuning.ts     the KILN_* switches, fixed per backend
//   logits_readback.ts the logits' pinned copy to the host (forward, enqueueForward), fp32 for the decoding ops
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import { EngineError, EngineTargetMismatchError } from "../../engine/errors.ts";
import type { EngineConfig } from "../../engine/format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import type { DecodeProfile, ExecutionBackend, SampleTicket, StepInput, TokenFeed } from "../backend.ts";
import type { DecodingOps, SampleParams, StepTransforms } from "../decoding_ops.ts";
import { cpuDecodingOps } from "../host_decoding.ts";
import { checkFeed, checkPenaltyFeed } from "../token_feed.ts";
import { ActivationArena } from "./activations.ts";
import { graphSplits } from "./attention_splits.ts";
import { DecodeGraphs, decodeGraphKey, isGraphable } from "./decode_graphs.ts";
import { CudaDevice, type CudaGraph, Stream } from "./device/index.ts";
import { DeviceSampler, greedySampleParams } from "./device_sampler.ts";
import type { Fp8PlanRecord } from "./fp8_linears.ts";
import {
  assertStepFits,
  engineRowLimits,
  GEMM_TABLE_BLOB,
  type GemmChoice,
  gemmKey,
  rowBucket,
} from "./gemm_algorithms.ts";
import { graphReserveBytes } from "./graph_reserve.ts";
import { KernelLauncher } from "./kernel_launcher.ts";
import { DeviceKvCache, type KvCacheDtype } from "./kv_cache.ts";
import { LogitsReadback } from "./logits_readback.ts";
import { type Lowered, lower } from "./lowering.ts";
import { fp8InputsOf } from "./norm_quant.ts";
import { measureCopyBandwidth, measureGemmFlops, profileDecode, profileEager } from "./profile.ts";
import { StepLauncher } from "./step_launcher.ts";
import { type PackedStep, packDecodeStep, packStep, writeFeed, writeSampleParams } from "./step_metadata.ts";
import { StepUploads } from "./step_uploads.ts";
import { type CudaTuning, cudaTuningFromEnv, profilingWarnings } from "./tuning.ts";
import { graphWarmUpSteps, type WarmUpLimits, warmUpStep } from "./warm_up_step.ts";
import { assertCudaWeightFormats, assertFp8Capable, hasFp8Weights } from "./weight_formats.ts";
import { DeviceWeights } from "./weights.ts";

/** A sampled step's settings, its output slot, and whether its decode graph runs the sampler. */
type SampleLaunch = { params: SampleParams; slot: number; inGraph: boolean };

/** Steps of at most this many rows (decode batches) launch kiln kernels with PDL. */
const PDL_MAX_ROWS = 8;

export class CudaBackend implements ExecutionBackend {
  readonly name = "cuda";
  readonly vocabSize: number;
  readonly kvBlockSize: number;
  readonly kvBytesPerBlock: number;
  readonly decoding: DecodingOps = cpuDecodingOps;
  /** The floors' rates, measured at the first call (see measureCopyBandwidth). */
  private copyRate: number | undefined;
  private gemmRate: number | undefined;
  private readonly dtype: DTypeName;
  private readonly lowered: Lowered;
  readonly maxStepTokens: number; // token rows of the largest step: the engine's maxNumTokens
  /** The arena's logits rows: nextPow2(max(maxBatchSize, 64)) (engineRowLimits). */
  readonly maxLogitRows: number;
  private readonly warmUpLimits: WarmUpLimits;
  /** Block-table stride of graph steps: enough blocks for the engine's longest sequence. */
  private readonly graphStride: number;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;
  private readonly kv: DeviceKvCache;
  private readonly uploads: StepUploads;
  private readonly steps: StepLauncher;
  private readonly graphs: DecodeGraphs;
  private readonly sampler: DeviceSampler;
  private readonly readback: LogitsReadback;
  private disposed = false;

  private constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    model: ModelConfig,
    config: EngineConfig,
    engine: LoadedEngine,
    /** Fixed for the backend's lifetime: graphs are captured under the settings its eager steps use. */
    readonly tuning: CudaTuning,
    readonly kvCacheDtype: KvCacheDtype, // the KV pool's storage: fp8 launches the `_kv8` kernels
  ) {
    this.dtype = config.build.dtype === "auto" ? "bf16" : config.build.dtype;
    const elem = ELEMENT_BYTES[this.dtype];
    for (const w of profilingWarnings(tuning)) process.stderr.write(`kiln: ${w}\n`);
    this.vocabSize = model.vocabSize;
    this.kvBlockSize = config.build.kvBlockSize;
    this.kernels = KernelLauncher.load(
      device,
      stream,
      engine,
      model,
      this.dtype,
      this.kvBlockSize,
      tuning.skipKernels,
    );
    this.weights = DeviceWeights.upload(device, stream, engine);
    this.lowered = lower(engine.header.plan, model, fp8InputsOf(this.weights, this.kernels));
    ({ maxTokens: this.maxStepTokens, maxLogitRows: this.maxLogitRows } = engineRowLimits(config.build));
    const gemmAlgos = new Map<string, Uint8Array>();
    const table = engine.readBlob(GEMM_TABLE_BLOB);
    if (table) {
      for (const c of JSON.parse(new TextDecoder().decode(table)) as GemmChoice[]) {
        gemmAlgos.set(gemmKey(c), Uint8Array.from(Buffer.from(c.algo, "base64")));
      }
    }
    const rows = { maxTokens: this.maxStepTokens, maxLogitRows: this.maxLogitRows };
    this.arena = ActivationArena.allocate(device, this.lowered, this.dtype, rows);
    const maxSeqs = Math.max(config.build.maxBatchSize, 1);
    this.warmUpLimits = {
      maxSeqLen: config.maxSeqLen,
      maxSeqs,
      blockSize: this.kvBlockSize,
      maxLogitRows: this.maxLogitRows,
    };
    this.graphStride = Math.ceil(config.maxSeqLen / this.kvBlockSize);
    this.graphs = new DecodeGraphs(stream);
    this.uploads = new StepUploads(
      device,
      stream,
      model,
      { ...rows, maxBlocksPerSeq: this.graphStride },
      () => this.graphs.drop(),
    );
    this.kv = new DeviceKvCache(device, model, this.kvBlockSize, elem, kvCacheDtype);
    this.kvBytesPerBlock = 2 * model.numLayers * this.kv.blockBytes; // K and V of every layer
    this.sampler = new DeviceSampler(device, stream, this.kernels, model.vocabSize, this.maxLogitRows);
    this.steps = new StepLauncher({
      device,
      stream,
      model,
      dtype: this.dtype,
      tuning,
      lowered: this.lowered,
      kernels: this.kernels,
      weights: this.weights,
      arena: this.arena,
      kv: this.kv,
      uploads: this.uploads,
      sampledTokens: this.sampler.tokens,
      ...rows,
      maxSeqs,
      gemmAlgos,
    });
    const run = (s: StepInput) => this.forwardOnDevice(s);
    this.readback = new LogitsReadback(device, stream, this.arena, this.vocabSize, this.maxLogitRows, run);
  }

  /** Opens GPU 0 and loads `engine` onto it under `tuning` (KILN_* by default), its KV cache as `kvDtype`. */
  static fromEngine(engine: LoadedEngine, tuning = cudaTuningFromEnv(), kvDtype: KvCacheDtype = "auto") {
    assertCudaWeightFormats(engine.dir, engine.header);
    DeviceKvCache.assertKernels(engine, kvDtype); // fp8: the engine's `_kv8` kernels, before the GPU opens
    const device = CudaDevice.open(0);
    try {
      if (hasFp8Weights(engine.header.weights))
        assertFp8Capable(`fp8 engine ${engine.dir}`, device.properties);
      const { target: t, model } = engine.config;
      if (t.sm && t.sm !== device.sm) {
        throw new EngineTargetMismatchError(
          `engine ${engine.dir} was compiled for ${t.sm} (${t.deviceName ?? "?"}) but this GPU is ${device.sm} (${device.name}); ` +
            "rebuild it on this GPU with kiln build --backend cuda",
        );
      }
      return new CudaBackend(device, Stream.create(device), model, engine.config, engine, tuning, kvDtype);
    } catch (e) {
      device.dispose();
      throw e;
    }
  }

  // The FP8 GEMM plans cuBLASLt gave an fp8 engine's linears so far (fp8_gemm_plan.ts), for tests to report.
  readonly fp8Plans = (): Fp8PlanRecord[] => this.steps.fp8Plans();
  // Calibration only (calibration_backend.ts): every linear's input, copied to the host before it runs.
  readonly observeLinears: StepLauncher["observeLinears"] = (o) => this.steps.observeLinears(o);

  get deviceName(): string {
    return this.device.name;
  }

  // Each measured once (it borrows device memory the KV pool may hold later); later calls return it.
  measureCopyBandwidth = (): number => (this.copyRate ??= measureCopyBandwidth(this.device, this.stream));
  measureGemmFlops = (): number => (this.gemmRate ??= measureGemmFlops(this.device, this.stream, this.dtype));

  get numKvBlocks(): number {
    return this.kv.numBlocks;
  }

  /** GEMM plans and sampler buffers for steps of ≤ `maxStepTokens` tokens, then one such step for first-use
   * allocations (warm_up_step.ts); with no KV pool it allocates one block. */
  warmUp(maxStepTokens = this.maxStepTokens): void {
    const T = Math.max(1, Math.min(Math.floor(maxStepTokens), this.maxStepTokens));
    this.steps.prepareGemms(T);
    if (this.kernels.has("sampling")) this.sampler.warmUp();
    if (this.kv.numBlocks === 0) this.allocateKvCache(1);
    this.forwardOnDevice(warmUpStep(T, this.warmUpLimits));
    this.stream.synchronize();
  }

  /** Device memory the KV pool may take: free memory now plus the current pool's (allocateKvCache
   * frees it first), less what the backend still allocates by itself (graph_reserve.ts). */
  freeMemoryBytes(): number {
    const reserve = graphReserveBytes(this.lowered.steps.length, this.maxLogitRows);
    return Math.max(0, this.device.memoryInfo().free + this.kv.numBlocks * this.kvBytesPerBlock - reserve);
  }

  allocateKvCache(numBlocks: number): void {
    this.stream.synchronize();
    this.graphs.drop(); // graphs hold the old pools' addresses
    this.kv.allocate(numBlocks);
  }

  copyKvBlocks(src: readonly number[], dst: readonly number[]): void {
    this.kv.copyBlocks(this.stream, src, dst);
  }

  // The logits cross to pinned host memory; the pipelined form polls the copy's event (logits_readback.ts).
  readonly forward = (step: StepInput): Float32Array => this.readback.collect(this.readback.queue(step));
  readonly enqueueForward: ExecutionBackend["enqueueForward"] = (step) => this.readback.queue(step);
  readonly forwardReady: ExecutionBackend["forwardReady"] = (ticket) => this.readback.ready(ticket);
  readonly collectForward: ExecutionBackend["collectForward"] = (ticket) => this.readback.collect(ticket);

  /** Runs the plan; the logits stay in the arena (fp32 [R, vocab] at the output's region). With
   * `sample`, the metadata upload carries the sampling settings, and with `inGraph` a decode step's
   * graph also runs sample_topk_topp into the slot (else the caller launches it). Returns the step's
   * metadata. */
  private forwardOnDevice(step: StepInput, feed?: TokenFeed, sample?: SampleLaunch): PackedStep {
    const T = step.tokenIds.length;
    const limits = { maxTokens: this.maxStepTokens, maxLogitRows: this.maxLogitRows };
    assertStepFits(T, step.logitRows.length, limits);
    const rowOf = this.uploads.uploadInvFreq(step);
    if (this.tuning.graphs && this.graphable(step))
      return this.replayDecode(step, rowOf, feed, sample).packed;
    if (sample?.inGraph) throw new Error("internal: only a graph's decode step samples in its graph");
    this.kernels.pdl = this.tuning.pdl && T <= PDL_MAX_ROWS;
    const packed = packStep(step, rowOf);
    this.prepareMeta(packed, feed, sample);
    this.steps.runAll(packed, step.logitRows);
    return packed;
  }

  /** Writes the fed tokens and sampling settings into the step's metadata and uploads it. */
  private prepareMeta(packed: PackedStep, feed?: TokenFeed, sample?: SampleLaunch): void {
    // Element of the sampled buffer (int32): the slot's tokens come first in it.
    if (feed) writeFeed(packed, feed.rows, this.sampler.feedBase(feed.from));
    if (sample) writeSampleParams(packed, sample.params);
    this.uploads.uploadMeta(packed);
  }

  get forwardSample(): ExecutionBackend["forwardSample"] {
    return this.kernels.has("sampling")
      ? (step, p, t) => this.sampler.collect(this.enqueueSampled(step, p, t))
      : undefined;
  }

  get enqueueSample(): ExecutionBackend["enqueueSample"] {
    return this.kernels.has("sampling")
      ? (step, p, t, feed) => this.enqueueSampled(step, p, t, feed)
      : undefined;
  }

  get collectSample(): ExecutionBackend["collectSample"] {
    return this.kernels.has("sampling") ? (ticket) => this.sampler.collect(ticket) : undefined;
  }

  get sampleReady(): ExecutionBackend["sampleReady"] {
    return this.kernels.has("sampling") ? (ticket) => this.sampler.ready(ticket) : undefined;
  }

  /** Forward, then embedding bias, penalties, bans and sample_topk_topp on the device (HF's order);
   * only B tokens and log-probs cross to the host, into the ticket's pinned slot. Returns at once. */
  private enqueueSampled(
    step: StepInput,
    p: SampleParams,
    t: StepTransforms,
    feed?: TokenFeed,
  ): SampleTicket {
    const B = step.logitRows.length;
    if (feed) checkFeed(step, feed, this.sampler.lastTicket);
    checkPenaltyFeed(step, t, feed);
    // Where the penalties' fed entries are read: the feed ticket's slot, as the embedding's fed tokens.
    const feedBase = feed ? this.sampler.feedBase(feed.from) : null;
    const { slot } = this.sampler.begin();
    // Without logit transforms, a graph's decode step runs the sampler inside its graph.
    const inGraph = !t.bias && !t.penalties && !t.banned && this.tuning.graphs && this.graphable(step);
    const packed = this.forwardOnDevice(step, feed, { params: p, slot, inGraph });
    if (!inGraph) {
      this.sampler.transform(this.arena.logits, B, t, feedBase);
      this.launchSampler(packed, B, slot);
    }
    return this.sampler.finish(slot, B);
  }

  /** sample_topk_topp over the first B logit rows into `slot`, its settings from the step's metadata. */
  private launchSampler(packed: PackedStep, B: number, slot: number): void {
    this.sampler.launch(this.arena.logits, this.uploads.metaPtr(packed.at.sampling), packed, B, slot);
  }

  collectWaitStats(): { ms: number; count: number } {
    return this.sampler.waitStats();
  }

  profileDecode(step: StepInput): DecodeProfile {
    if (!this.graphable(step))
      throw new EngineError("profileDecode needs a decode step (one token per sequence)");
    const rowOf = this.uploads.uploadInvFreq(step);
    const { graph, packed } = this.replayDecode(step, rowOf); // captures the graph if needed
    // The graph that also samples (greedy, into slot 0), when nothing is queued.
    const params = greedySampleParams(step.seqs.length);
    const sampled =
      this.kernels.has("sampling") && this.sampler.idle
        ? () => this.replayDecode(step, rowOf, undefined, { params, slot: 0, inGraph: true })
        : undefined;
    return profileDecode({
      stream: this.stream,
      graph,
      packed,
      sampled,
      uploadMeta: (p) => this.uploads.uploadMeta(p),
      steps: this.lowered.steps,
      runStep: (s, p, rows) => this.steps.run(s, p, rows),
    });
  }

  /** Any step (a prefill, a mixed step) run once, then its launches eagerly, each timed on its own. */
  profileStep(step: StepInput) {
    const packed = this.forwardOnDevice(step); // checks the step's size; creates its GEMM plans
    return profileEager(this.stream, this.lowered.steps, (s) => this.steps.run(s, packed, step.logitRows));
  }

  /** Captures every decode graph a step of up to `maxSeqs` sequences may need (graphWarmUpSteps), so
   * no request waits on one; zeroes the KV pool (call it before any request). Returns how many. */
  prepareDecodeGraphs(maxSeqs: number): number {
    if (!this.tuning.graphs || this.kv.numBlocks === 0) return 0;
    this.kv.clear(this.stream);
    const limits = { ...this.warmUpLimits, maxSeqs };
    const steps = graphWarmUpSteps(limits, this.steps.splitTarget());
    return this.graphs.prepare(steps, this.kernels.has("sampling"), (step, sample) =>
      this.replayDecode(step, this.uploads.uploadInvFreq(step), undefined, sample),
    );
  }

  /** CUDA graphs replay decode steps: one token per sequence, logits for each in order. */
  private graphable(step: StepInput): boolean {
    return isGraphable(step, this.maxLogitRows, this.graphStride);
  }

  /** Decode step through the graph of its batch bucket, captured on first use (decode_graphs.ts). A step
   * that samples in its graph has a graph per output slot. */
  private replayDecode(
    step: StepInput,
    rowOf: (seq: number) => number,
    feed?: TokenFeed,
    sample?: SampleLaunch,
  ): { graph: CudaGraph; packed: PackedStep } {
    const bucket = rowBucket(step.seqs.length);
    this.kernels.pdl = this.tuning.pdl && bucket <= PDL_MAX_ROWS;
    const base = packDecodeStep(step, bucket, this.graphStride, rowOf);
    const splits = graphSplits(this.steps.splitTarget(), bucket, base.maxContextLen);
    const packed = { ...base, splits };
    const sampleSlot = sample?.inGraph ? sample.slot : -1;
    const key = decodeGraphKey(bucket, splits, sampleSlot);
    const rows = Int32Array.from({ length: bucket }, (_, i) => i);
    this.prepareMeta(packed, feed, sample);
    const graph = this.graphs.getOrCapture(key, () => {
      this.steps.runAll(packed, rows);
      if (sampleSlot >= 0) this.launchSampler(packed, bucket, sampleSlot);
    });
    graph.launch(this.stream);
    return { graph, packed };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stream.synchronize();
    this.sampler.synchronize();
    this.graphs.dispose();
    this.steps.dispose();
    this.weights.dispose();
    this.kv.dispose();
    this.arena.dispose();
    this.uploads.dispose();
    this.sampler.dispose();
    this.readback.dispose();
    this.kernels.dispose();
    this.stream.dispose();
    this.device.dispose();
  }
}
