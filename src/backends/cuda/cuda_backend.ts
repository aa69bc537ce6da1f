// The CUDA backend: runs an engine's lowered plan with our kernels (cubins compiled into the engine
// for its GPU) and cuBLASLt GEMMs. It owns, with explicit lifetimes: the weights on the device, one
// activation arena sized for the largest step, the paged KV pool, the step-metadata buffers and the
// GEMM plans. Logits come back to the host as fp32 for the decoding ops.
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import { EngineError, EngineTargetMismatchError } from "../../engine/errors.ts";
import type { EngineConfig } from "../../engine/format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import type { StepTransforms } from "../../runtime/decoding/logits_pipeline.ts";
import type { DecodingOps, PenaltyParams, SampleParams } from "../../runtime/decoding/ops.ts";
import type { ExecutionBackend, SampleTicket, StepInput } from "../../runtime/step.ts";
import { cpuDecodingOps } from "../cpu/decoding.ts";
import { ropeInvFreq } from "../cpu/kernels/rope.ts";
import { planArena, type Region } from "./arena.ts";
import {
  ATTENTION_STOPS,
  ATTENTION_TRIGGERS,
  decodeKernel,
  decodeSharedBytes,
  decodeSplits,
  graphSplits,
  MAX_SPLITS,
  type SplitTarget,
} from "./attention_splits.ts";
import {
  CudaDevice,
  type CudaGraph,
  CudaModule,
  DeviceBuffer,
  type DevicePtr,
  Event,
  Gemm,
  GraphCapture,
  type KernelArg,
  offsetPtr,
  PinnedBuffer,
  Stream,
  timeOnStream,
} from "./device/index.ts";
import {
  engineRowLimits,
  GEMM_TABLE_BLOB,
  GEMM_WORKSPACE_BYTES,
  type GemmChoice,
  gemmKey,
  nextPow2,
} from "./gemm_table.ts";
import { chooseGemv, gemvGatedLaunch, gemvLaunch } from "./gemv_plan.ts";
import { cubinBlobName, type ModuleKey, moduleSpecs } from "./kernel_modules.ts";
import { type Lowered, type LStep, lower, type RopeStep } from "./lowering.ts";
import { prefillTiles } from "./prefill_tiles.ts";
import { samplingSlices, samplingWorkspace } from "./sampling_launch.ts";
import {
  metadataBytes,
  type PackedStep,
  packDecodeStep,
  packStep,
  samplingLayout,
  writeFeed,
  writeSampleParams,
} from "./step_metadata.ts";
import { type CudaTuning, cudaTuningFromEnv } from "./tuning.ts";

const ELEM: Record<DTypeName, number> = { fp32: 4, fp16: 2, bf16: 2 };
/** Tokens a decode step takes from an earlier queued step's samples (ExecutionBackend.enqueueSample). */
type TokenFeed = { from: SampleTicket; rows: Int32Array };
/** A sampled step's settings, its output slot, and whether its decode graph runs the sampler. */
type SampleLaunch = { params: SampleParams; slot: number; inGraph: boolean };

/** One decode graph per batch bucket and attention split count (≤ MAX_SPLITS). */
const graphKey = (bucket: number, splits: number) => bucket * (MAX_SPLITS + 1) + splits;
/** Steps of at most this many rows (decode batches) launch kiln kernels with PDL. */
const PDL_MAX_ROWS = 8;

export class CudaBackend implements ExecutionBackend {
  readonly name = "cuda";
  readonly vocabSize: number;
  readonly kvBlockSize: number;
  readonly kvBytesPerBlock: number;
  readonly decoding: DecodingOps = cpuDecodingOps;
  private readonly dtype: DTypeName;
  private readonly elem: number;
  private readonly modules = new Map<ModuleKey, CudaModule>();
  private readonly weights = new Map<string, DeviceBuffer>();
  private readonly gemms = new Map<string, Gemm>();
  /** Algorithms chosen at build time, by gemmKey. */
  private readonly gemmAlgos = new Map<string, Uint8Array>();
  private readonly lowered: Lowered;
  private readonly regions: Map<string, Region>;
  private readonly arena: DeviceBuffer;
  private readonly maxTokens: number;
  private readonly maxLogitRows: number;
  private readonly maxSeqLen: number;
  private meta: DeviceBuffer;
  private readonly invFreq: DeviceBuffer;
  /** attention_decode's dynamic shared memory per CTA (attention_splits.ts decodeSharedBytes). */
  private readonly decodeSmem: number;
  /** Decode attention's split partials and arrival counters (attention_decode.cu), sized for up to
   * `seqs` sequences at decodeSplits(seqs) splits or fewer. */
  private readonly partials: {
    acc: DeviceBuffer;
    m: DeviceBuffer;
    l: DeviceBuffer;
    counters: DeviceBuffer;
    seqs: number;
  };
  private readonly logitsHost: Float32Array;
  /** sample_topk_topp's per-slice statistics [maxLogitRows, slices] and per-row arrival counters
   * [maxLogitRows] (at `counters` bytes in), zeroed once here: every launch leaves them zero. */
  private readonly sampleSlices: { buffer: DeviceBuffer; slices: number; counters: number };
  /** Pipelined sampling (enqueueSample): two slots, each the sampled tokens then log-probs of up to
   * maxLogitRows rows, on the device (one buffer, slot s at s · slotBytes: the embedding reads fed
   * tokens from it by element, whichever slot they are in) and in pinned host memory (read by
   * collectSample once the slot's event has passed). */
  private readonly sampledDevice: DeviceBuffer;
  private readonly sampled: { offset: number; host: PinnedBuffer; ready: Event; done: Event }[];
  /** Copies sampled tokens to the host off the main stream, so the next step's uploads and graph do
   * not queue behind the device-to-host copy. */
  private readonly readback: Stream;
  private tickets = 0;
  private collected = 0;
  private readonly biasDevice: DeviceBuffer;
  private biasSource: Float32Array | null = null;
  private kvK: DeviceBuffer[] = [];
  private kvV: DeviceBuffer[] = [];
  private numBlocks = 0;
  private disposed = false;

  private constructor(
    private readonly device: CudaDevice,
    private readonly stream: Stream,
    private readonly model: ModelConfig,
    config: EngineConfig,
    engine: LoadedEngine,
    /** Fixed for the backend's lifetime: graphs are captured under the settings its eager steps use. */
    readonly tuning: CudaTuning,
  ) {
    this.dtype = config.build.dtype === "auto" ? "bf16" : config.build.dtype;
    this.elem = ELEM[this.dtype];
    if (tuning.skipKernels.size > 0)
      process.stderr.write(
        `kiln: KILN_SKIP_KERNELS leaves out ${[...tuning.skipKernels].join(", ")} (profiling only: the outputs are wrong)\n`,
      );
    if (tuning.attnStop !== "")
      process.stderr.write(
        `kiln: KILN_ATTN_STOP=${tuning.attnStop} stops decode attention early (profiling only: the outputs are wrong)\n`,
      );
    this.vocabSize = model.vocabSize;
    this.kvBlockSize = config.build.kvBlockSize;
    this.kvBytesPerBlock =
      2 * model.numLayers * this.kvBlockSize * model.numKvHeads * model.headDim * this.elem;
    const plan = engine.header.plan;
    for (const spec of moduleSpecs(model, plan, this.dtype, this.kvBlockSize)) {
      const cubin = engine.readBlob(cubinBlobName(spec.key));
      if (!cubin)
        throw new EngineError(
          `engine ${engine.dir} lacks the compiled kernel module "${spec.key}"; rebuild it with kiln build --backend cuda`,
        );
      this.modules.set(spec.key, CudaModule.load(device, cubin));
    }
    this.uploadWeights(engine);
    this.lowered = lower(plan, model);
    this.maxSeqLen = config.maxSeqLen;
    ({ maxTokens: this.maxTokens, maxLogitRows: this.maxLogitRows } = engineRowLimits(config.build));
    const table = engine.readBlob(GEMM_TABLE_BLOB);
    if (table) {
      for (const c of JSON.parse(new TextDecoder().decode(table)) as GemmChoice[]) {
        this.gemmAlgos.set(gemmKey(c), Uint8Array.from(Buffer.from(c.algo, "base64")));
      }
    }
    const bytesOf = (name: string) => {
      const s = this.lowered.storage.get(name);
      if (!s) throw new Error(`internal: no storage for ${name}`);
      return s.width * (s.rows === "tokens" ? this.maxTokens : this.maxLogitRows) * (s.fp32 ? 4 : this.elem);
    };
    const { regions, totalBytes } = planArena(this.lowered.steps, bytesOf, new Set([this.lowered.output]));
    this.regions = regions;
    this.arena = DeviceBuffer.alloc(device, Math.max(256, totalBytes));
    const maxSeqs = Math.max(config.build.maxBatchSize, 1);
    const maxBlocksPerSeq = Math.ceil(config.maxSeqLen / this.kvBlockSize);
    this.meta = DeviceBuffer.alloc(device, metadataBytes(this.maxTokens, this.maxLogitRows, maxBlocksPerSeq));
    this.invFreq = DeviceBuffer.alloc(device, 4 * (model.rope.rotaryDim / 2) * (this.maxTokens + 1));
    // Decode attention: graph buckets pad the batch to a power of two. Partials [S, H, splits, …] for
    // the largest S·splits any launch uses (none at 1 split); counters [S, Hkv·headGroups], zeroed
    // once here: every launch leaves them zero.
    const decodeSeqs = nextPow2(maxSeqs);
    let partialRows = 1;
    for (let s = 1; s <= decodeSeqs; s++) {
      const splits = this.decodeSplits(s);
      if (splits > 1) partialRows = Math.max(partialRows, s * model.numHeads * splits);
    }
    this.partials = {
      acc: DeviceBuffer.alloc(device, 4 * partialRows * model.headDim),
      m: DeviceBuffer.alloc(device, 4 * partialRows),
      l: DeviceBuffer.alloc(device, 4 * partialRows),
      counters: DeviceBuffer.alloc(device, 4 * decodeSeqs * this.decodeCtasPerSeq()),
      seqs: decodeSeqs,
    };
    this.partials.counters.fillBytes(stream, 0);
    this.decodeSmem = decodeSharedBytes(model.numHeads / model.numKvHeads, model.headDim);
    this.logitsHost = new Float32Array(this.maxLogitRows * model.vocabSize);
    const slices = samplingSlices(model.vocabSize);
    const workspace = samplingWorkspace(this.maxLogitRows, slices);
    this.sampleSlices = {
      buffer: DeviceBuffer.alloc(device, workspace.bytes),
      slices,
      counters: workspace.countersOffset,
    };
    this.sampleSlices.buffer.fillBytes(stream, 0);
    this.sampledDevice = DeviceBuffer.alloc(device, 2 * 8 * this.maxLogitRows);
    this.sampled = [0, 1].map((s) => ({
      offset: s * 8 * this.maxLogitRows,
      host: PinnedBuffer.alloc(device, 8 * this.maxLogitRows),
      ready: Event.create(device, { timing: false }),
      done: Event.create(device, { timing: false }),
    }));
    this.readback = Stream.create(device, { nonBlocking: true });
    this.biasDevice = DeviceBuffer.alloc(device, 4 * model.vocabSize);
  }

  /** Streams the weights from the engine file to the device through two pinned staging buffers:
   * the file read of one chunk overlaps the DMA of the previous one. Worker threads check every
   * weight against the engine's manifest meanwhile; damage throws EngineCorruptError at the end. */
  private uploadWeights(engine: LoadedEngine): void {
    const CHUNK = 64 << 20;
    const staging = [PinnedBuffer.alloc(this.device, CHUNK), PinnedBuffer.alloc(this.device, CHUNK)];
    const copied = [Event.create(this.device), Event.create(this.device)];
    const inFlight = [false, false];
    let slot = 0;
    const check = engine.checkRegions(engine.header.weights);
    try {
      for (const w of engine.header.weights) {
        const buf = DeviceBuffer.alloc(this.device, w.byteLength);
        this.weights.set(w.name, buf);
        for (let off = 0; off < w.byteLength; off += CHUNK) {
          const n = Math.min(CHUNK, w.byteLength - off);
          if (inFlight[slot]) copied[slot].synchronize();
          engine.readInto(w.offset + off, new Uint8Array(staging[slot].arrayBuffer(), 0, n));
          this.device.driver.memcpyHtoDAsync(
            offsetPtr(buf.ptr, off),
            staging[slot].ptr,
            this.stream.handle,
            n,
          );
          copied[slot].record(this.stream);
          inFlight[slot] = true;
          slot ^= 1;
        }
      }
      this.stream.synchronize();
      check.wait();
    } finally {
      for (const x of [...staging, ...copied]) x.dispose();
    }
  }

  /** Opens GPU 0 and loads `engine` onto it, under `tuning` (the environment's KILN_* switches by default). */
  static fromEngine(engine: LoadedEngine, tuning: CudaTuning = cudaTuningFromEnv()): CudaBackend {
    const device = CudaDevice.open(0);
    try {
      const t = engine.config.target;
      if (t.sm && t.sm !== device.sm) {
        throw new EngineTargetMismatchError(
          `engine ${engine.dir} was compiled for ${t.sm} (${t.deviceName ?? "?"}) but this GPU is ${device.sm} (${device.name}); ` +
            "rebuild it on this GPU with kiln build --backend cuda",
        );
      }
      const stream = Stream.create(device);
      return new CudaBackend(device, stream, engine.config.model, engine.config, engine, tuning);
    } catch (e) {
      device.dispose();
      throw e;
    }
  }

  get deviceName(): string {
    return this.device.name;
  }

  measureCopyBandwidth(): number {
    const bytes = 1 << 30;
    const a = DeviceBuffer.alloc(this.device, bytes);
    const b = DeviceBuffer.alloc(this.device, bytes);
    try {
      b.copyFromAsync(this.stream, a, bytes); // warm-up
      const reps = 10;
      const ms = timeOnStream(this.stream, () => {
        for (let i = 0; i < reps; i++) b.copyFromAsync(this.stream, a, bytes);
      });
      return (reps * 2 * bytes) / (ms / 1000);
    } finally {
      a.dispose();
      b.dispose();
    }
  }

  measureGemmFlops(): number {
    const m = 8192;
    const n = 8192;
    const k = 8192;
    const x = DeviceBuffer.alloc(this.device, m * k * this.elem);
    const w = DeviceBuffer.alloc(this.device, n * k * this.elem);
    const y = DeviceBuffer.alloc(this.device, m * n * this.elem);
    const g = Gemm.create(this.device, { m, n, k, dtypeIn: this.dtype, computeFp32Exact: true });
    try {
      for (const buf of [x, w]) buf.fillBytes(this.stream, 0x3c);
      g.run(this.stream, x, w, y);
      const reps = 5;
      const ms = timeOnStream(this.stream, () => {
        for (let i = 0; i < reps; i++) g.run(this.stream, x, w, y);
      });
      return (reps * 2 * m * n * k) / (ms / 1000);
    } finally {
      g.dispose();
      for (const b of [x, w, y]) b.dispose();
    }
  }

  get maxStepTokens(): number {
    return this.maxTokens;
  }

  get numKvBlocks(): number {
    return this.numBlocks;
  }

  /** Blocks that fit in free device memory, keeping `reserveBytes` for everything else. */
  maxKvBlocks(reserveBytes = 1 << 30): number {
    const { free } = this.device.memoryInfo();
    return Math.max(
      0,
      Math.floor((free - reserveBytes + this.numBlocks * this.kvBytesPerBlock) / this.kvBytesPerBlock),
    );
  }

  allocateKvCache(numBlocks: number): void {
    this.stream.synchronize();
    this.dropGraphs(); // graphs hold the old pools' addresses
    for (const b of [...this.kvK, ...this.kvV]) b.dispose();
    const perLayer = numBlocks * this.kvBlockSize * this.model.numKvHeads * this.model.headDim * this.elem;
    this.kvK = [];
    this.kvV = [];
    for (let l = 0; l < this.model.numLayers; l++) {
      this.kvK.push(DeviceBuffer.alloc(this.device, perLayer));
      this.kvV.push(DeviceBuffer.alloc(this.device, perLayer));
    }
    this.numBlocks = numBlocks;
  }

  copyKvBlocks(src: readonly number[], dst: readonly number[]): void {
    const blockBytes = this.kvBlockSize * this.model.numKvHeads * this.model.headDim * this.elem;
    for (const pool of [...this.kvK, ...this.kvV]) {
      src.forEach((s, i) =>
        pool.copyFromAsync(this.stream, pool, blockBytes, dst[i] * blockBytes, s * blockBytes),
      );
    }
  }

  forward(step: StepInput): Float32Array {
    const R = step.logitRows.length;
    this.forwardOnDevice(step);
    const out = this.regions.get(this.lowered.output) as Region;
    const logits = this.logitsHost.subarray(0, R * this.vocabSize);
    this.arena.downloadAsync(this.stream, logits, out.offset);
    this.stream.synchronize();
    return logits;
  }

  /** Runs the plan; the logits stay in the arena (fp32 [R, vocab] at the output's region). With
   * `sample`, the metadata upload carries the sampling settings, and with `inGraph` a decode step's
   * graph also runs sample_topk_topp into the slot (else the caller launches it). Returns the step's
   * metadata. */
  private forwardOnDevice(step: StepInput, feed?: TokenFeed, sample?: SampleLaunch): PackedStep {
    const T = step.tokenIds.length;
    const R = step.logitRows.length;
    if (T > this.maxTokens) {
      throw new EngineError(
        `a step of ${T} tokens exceeds this engine's maxNumTokens (${this.maxTokens}); rebuild with a larger --max-num-tokens`,
      );
    }
    if (R > this.maxLogitRows) {
      throw new EngineError(
        `a step asks for ${R} rows of logits; this engine returns at most ${this.maxLogitRows} per step (rebuild with a larger --max-batch-size)`,
      );
    }
    const rowOf = this.uploadInvFreq(step);
    if (feed && !this.graphable(step))
      throw new Error("internal: a fed step must be a decode step (one token per sequence, in order)");
    if (this.tuning.graphs && this.graphable(step))
      return this.replayDecode(step, rowOf, feed, sample).packed;
    if (sample?.inGraph) throw new Error("internal: only a graph's decode step samples in its graph");
    this.pdlNow = this.tuning.pdl && T <= PDL_MAX_ROWS;
    const packed = packStep(step, rowOf);
    this.prepareMeta(packed, feed, sample);
    for (const st of this.lowered.steps) this.run(st, packed, step.logitRows);
    return packed;
  }

  /** Writes the fed tokens and sampling settings into the step's metadata and uploads it. */
  private prepareMeta(packed: PackedStep, feed?: TokenFeed, sample?: SampleLaunch): void {
    if (feed) {
      const { from, rows } = feed;
      if (from.id !== this.tickets - 1)
        throw new Error(
          `internal: a step is fed from the last queued one (${this.tickets - 1}), not ${from.id}`,
        );
      for (const r of rows)
        if (r < 0 || r >= from.rows) throw new Error(`internal: fed row ${r} ∉ [0, ${from.rows})`);
      // Element of the sampled buffer (int32): the slot's tokens come first in it.
      writeFeed(packed, rows, this.sampled[from.id % 2].offset / 4);
    }
    if (sample) writeSampleParams(packed, sample.params);
    this.uploadMeta(packed);
  }

  get forwardSample(): ExecutionBackend["forwardSample"] {
    return this.modules.has("sampling")
      ? (step, p, t) => this.collectSampled(this.enqueueSampled(step, p, t))
      : undefined;
  }

  get enqueueSample(): ExecutionBackend["enqueueSample"] {
    return this.modules.has("sampling")
      ? (step, p, t, feed) => this.enqueueSampled(step, p, t, feed)
      : undefined;
  }

  get collectSample(): ExecutionBackend["collectSample"] {
    return this.modules.has("sampling") ? (ticket) => this.collectSampled(ticket) : undefined;
  }

  /** Forward, then embedding bias, penalties, bans and sample_topk_topp on the device (HF's order);
   * only B tokens and log-probs cross to the host, into the ticket's pinned slot. Returns at once. */
  private enqueueSampled(
    step: StepInput,
    p: SampleParams,
    t: StepTransforms,
    feed?: TokenFeed,
  ): SampleTicket {
    const bias = t.bias;
    const B = step.logitRows.length;
    if (this.tickets - this.collected >= 2) {
      // Two uncollected steps: a caller abandoned them (an aborted generation); drop them.
      this.stream.synchronize();
      this.collected = this.tickets;
    }
    const id = this.tickets;
    const slot = id % 2;
    // Without logit transforms, a graph's decode step runs the sampler inside its graph.
    const inGraph = !bias && !t.penalties && !t.banned && this.tuning.graphs && this.graphable(step);
    const packed = this.forwardOnDevice(step, feed, { params: p, slot, inGraph });
    if (!inGraph) {
      const logits = this.logitsPtr;
      if (bias) {
        if (this.biasSource !== bias) {
          this.biasDevice.upload(bias);
          this.biasSource = bias;
        }
        const grid = Math.max(1, Math.min(Math.ceil((B * this.vocabSize) / 256), 65535));
        this.launch("sampling", "add_logit_bias", [grid], 256, [
          { ptr: logits },
          { ptr: this.biasDevice.ptr },
          { i32: B },
        ]);
      }
      if (t.penalties) this.applyPenaltiesOnDevice(logits, B, t.penalties);
      if (t.banned) this.banOnDevice(logits, B, t.banned);
      this.launchSampler(packed, B, slot);
    }
    this.tickets++;
    // The slot is rewritten by ticket id + 2, queued only after this one is collected (done passed).
    const s = this.sampled[slot];
    s.ready.record(this.stream);
    this.readback.waitEvent(s.ready);
    this.sampledDevice.downloadAsync(this.readback, s.host, s.offset);
    s.done.record(this.readback);
    return { id, rows: B };
  }

  /** The logits in the arena: fp32 [maxLogitRows, vocab] at the output's region. */
  private get logitsPtr(): DevicePtr {
    return offsetPtr(this.arena.ptr, (this.regions.get(this.lowered.output) as Region).offset);
  }

  /** sample_topk_topp over the first B logit rows, its settings from the step's metadata, into a slot
   * of the sampled buffer: tokens [maxLogitRows] then log-probs [maxLogitRows]. */
  private launchSampler(packed: PackedStep, B: number, slot: number): void {
    const l = samplingLayout(packed.samplingRows);
    const at = (o: number): KernelArg => ({
      ptr: offsetPtr(this.meta.ptr, 4 * packed.at.sampling + o),
    });
    const out = this.sampledDevice.at(this.sampled[slot].offset);
    const ws = this.sampleSlices;
    this.launch("sampling", "sample_topk_topp", [ws.slices, B], 1024, [
      { ptr: this.logitsPtr },
      at(l.greedy),
      at(l.temperature),
      at(l.topK),
      at(l.topP),
      at(l.minP),
      at(l.seed),
      at(l.sequence),
      at(l.step),
      { ptr: out },
      { ptr: offsetPtr(out, 4 * this.maxLogitRows) },
      { ptr: ws.buffer.ptr },
      { ptr: ws.buffer.at(ws.counters) },
    ]);
  }

  /** Host time spent waiting in collectSample for the device, and collections (see ExecutionBackend). */
  private readonly collectWait = { ms: 0, count: 0 };
  collectWaitStats(): { ms: number; count: number } {
    return { ...this.collectWait };
  }

  /** Waits for a queued step's tokens (tickets are collected in queue order). */
  private collectSampled(ticket: SampleTicket): { tokens: Int32Array; logProbs: Float32Array } {
    if (ticket.id !== this.collected)
      throw new Error(`internal: collecting ticket ${ticket.id}, but ${this.collected} is next`);
    const slot = this.sampled[ticket.id % 2];
    const t0 = performance.now();
    slot.done.synchronize();
    this.collectWait.ms += performance.now() - t0;
    this.collectWait.count++;
    this.collected++;
    const host = slot.host.arrayBuffer();
    return {
      tokens: new Int32Array(host, 0, ticket.rows).slice(),
      logProbs: new Float32Array(host, 4 * this.maxLogitRows, ticket.rows).slice(),
    };
  }

  profileDecode(step: StepInput): {
    graphMs: number;
    sampledGraphMs?: number;
    uploadGraphMs?: number;
    eagerMs: number;
    byKind: Record<string, { ms: number; count: number }>;
  } {
    if (!this.graphable(step))
      throw new EngineError("profileDecode needs a decode step (one token per sequence)");
    const rowOf = this.uploadInvFreq(step);
    const { key, packed } = this.replayDecode(step, rowOf); // captures the graph if needed
    const bucket = packed.numSeqs;
    const graph = this.graphs.get(key) as CudaGraph;
    const reps = 20;
    const graphMs =
      timeOnStream(this.stream, () => {
        for (let i = 0; i < reps; i++) graph.launch(this.stream);
      }) / reps;
    // The graph that also samples (greedy, into slot 0), alone and after the metadata upload each step
    // makes: TPOT minus uploadGraphMs is the host's share and the gaps between steps.
    let sampledGraphMs: number | undefined;
    let uploadGraphMs: number | undefined;
    if (this.modules.has("sampling") && this.tickets === this.collected) {
      const B = step.seqs.length;
      const params: SampleParams = {
        greedy: new Uint8Array(B).fill(1),
        temperature: new Float32Array(B).fill(1),
        topK: new Int32Array(B),
        topP: new Float32Array(B).fill(1),
        minP: new Float32Array(B),
        seed: new Float64Array(B),
        sequence: Int32Array.from({ length: B }, (_, i) => i),
        step: new Int32Array(B),
      };
      const sampled = this.replayDecode(step, rowOf, undefined, { params, slot: 0, inGraph: true });
      const g = this.graphs.get(sampled.key) as CudaGraph;
      sampledGraphMs =
        timeOnStream(this.stream, () => {
          for (let i = 0; i < reps; i++) g.launch(this.stream);
        }) / reps;
      uploadGraphMs =
        timeOnStream(this.stream, () => {
          for (let i = 0; i < reps; i++) {
            this.uploadMeta(sampled.packed);
            g.launch(this.stream);
          }
        }) / reps;
    }
    const rows = Int32Array.from({ length: bucket }, (_, i) => i);
    this.uploadMeta(packed);
    const byKind: Record<string, { ms: number; count: number }> = {};
    let eagerMs = 0;
    for (const st of this.lowered.steps) {
      const key = st.kind === "linear" ? `gemm ${st.op.outFeatures}x${st.op.inFeatures}` : st.kind;
      const ms = timeOnStream(this.stream, () => this.run(st, packed, rows));
      eagerMs += ms;
      const k = byKind[key] ?? { ms: 0, count: 0 };
      k.ms += ms;
      k.count++;
      byKind[key] = k;
    }
    this.stream.synchronize();
    return { graphMs, sampledGraphMs, uploadGraphMs, eagerMs, byKind };
  }

  /** CUDA graphs replay decode steps: one token per sequence, logits for each in order. */
  private graphable(step: StepInput): boolean {
    const S = step.seqs.length;
    if (S === 0 || S > this.maxLogitRows || step.logitRows.length !== S) return false;
    for (let i = 0; i < S; i++) {
      const q = step.seqs[i];
      if (
        q.queryLen !== 1 ||
        q.queryStart !== i ||
        step.logitRows[i] !== i ||
        q.blockTable.length > this.graphStride
      )
        return false;
    }
    return true;
  }

  /** Decode step through the graph of its batch bucket, captured on first use (after one eager run
   * that creates the GEMM plans, so capture records only stream work). A step that samples in its
   * graph has a graph per output slot. */
  private replayDecode(
    step: StepInput,
    rowOf: (seq: number) => number,
    feed?: TokenFeed,
    sample?: SampleLaunch,
  ): { key: number; packed: PackedStep } {
    const bucket = nextPow2(step.seqs.length);
    this.pdlNow = this.tuning.pdl && bucket <= PDL_MAX_ROWS;
    const base = packDecodeStep(step, bucket, this.graphStride, rowOf);
    const splits = graphSplits(this.splitTarget(), bucket, base.maxContextLen);
    const packed = { ...base, splits };
    const sampleSlot = sample?.inGraph ? sample.slot : -1;
    const key = 3 * graphKey(bucket, splits) + sampleSlot + 1;
    const rows = Int32Array.from({ length: bucket }, (_, i) => i);
    this.prepareMeta(packed, feed, sample);
    let graph = this.graphs.get(key);
    if (!graph) {
      const record = () => {
        for (const st of this.lowered.steps) this.run(st, packed, rows);
        if (sampleSlot >= 0) this.launchSampler(packed, bucket, sampleSlot);
      };
      record(); // warm-up: GEMM plans, module loads
      const capture = GraphCapture.begin(this.stream);
      try {
        record();
      } catch (e) {
        capture.abort();
        throw e;
      }
      graph = capture.end();
      this.graphs.set(key, graph);
    }
    graph.launch(this.stream);
    return { key, packed };
  }

  /** Whether decode attention may use its cluster kernels: compute capability ≥ 9.0 (clusters), unless
   * KILN_ATTN_CLUSTER=0. */
  private attnClusters(): boolean {
    return this.tuning.attnCluster && this.device.properties.computeCapability[0] >= 9;
  }

  /** CTAs of attention_decode per sequence and split: kv heads × head groups of ≤ 8 query heads. */
  private decodeCtasPerSeq(): number {
    const m = this.model;
    const group = m.numHeads / m.numKvHeads;
    return m.numKvHeads * Math.ceil(group / Math.min(group, 8));
  }

  private splitTarget(): SplitTarget {
    return { smCount: this.device.smCount, ctasPerSeq: this.decodeCtasPerSeq() };
  }

  /** Decode attention splits (attention_splits.ts); never more than the constructor sized the partials for. */
  private decodeSplits(numSeqs: number, maxContextLen = Number.POSITIVE_INFINITY): number {
    return decodeSplits(this.splitTarget(), numSeqs, maxContextLen);
  }

  private uploadMeta(packed: PackedStep): void {
    if (packed.extent > this.meta.bytes) {
      // A larger buffer moves every pointer: graphs captured against the old one are stale.
      this.stream.synchronize();
      this.meta.dispose();
      this.meta = DeviceBuffer.alloc(this.device, 2 * packed.extent);
      this.dropGraphs();
    }
    this.meta.uploadAsync(this.stream, packed.data);
  }

  private dropGraphs(): void {
    for (const g of this.graphs.values()) g.dispose();
    this.graphs.clear();
  }

  /** Uploads the RoPE frequency rows this step needs; returns each sequence's row. */
  private uploadInvFreq(step: StepInput): (seq: number) => number {
    const rope = this.model.rope;
    const half = rope.rotaryDim / 2;
    if (rope.scaling.type !== "dynamic") {
      if (!this.staticInvFreqUploaded) {
        const { invFreq } = ropeInvFreq(rope, 1);
        this.invFreq.upload(invFreq);
        this.staticInvFreqUploaded = true;
      }
      return () => 0;
    }
    // Dynamic NTK: each sequence's frequencies depend on its length (HF: max position + 1).
    const table = new Float32Array(step.seqs.length * half);
    step.seqs.forEach((s, i) => table.set(ropeInvFreq(rope, s.contextLen).invFreq, i * half));
    this.invFreq.uploadAsync(this.stream, table);
    return (i) => i;
  }
  private staticInvFreqUploaded = false;
  /** [maxLogitRows, vocab] int32 zeros for apply_penalties (the kernel leaves it zeroed). */
  private penaltyCounts: DeviceBuffer | null = null;
  private scratch: DeviceBuffer | null = null;

  /** A device scratch buffer of at least `bytes` for this step's small uploads. */
  private scratchFor(bytes: number): DeviceBuffer {
    if (!this.scratch || this.scratch.bytes < bytes) {
      this.stream.synchronize();
      this.scratch?.dispose();
      this.scratch = DeviceBuffer.alloc(this.device, Math.max(bytes, 1 << 20));
    }
    return this.scratch;
  }

  private applyPenaltiesOnDevice(logits: DevicePtr, B: number, pen: PenaltyParams): void {
    if (!this.penaltyCounts) {
      this.penaltyCounts = DeviceBuffer.alloc(this.device, 4 * this.maxLogitRows * this.vocabSize);
      this.penaltyCounts.fillBytes(this.stream, 0);
    }
    const maxTokens = Math.max(1, ...pen.tokens.map((x) => x.length));
    // [tokens B×maxTokens | token_lens B | prompt_lens B] int32, then [repetition | presence | frequency] f32
    const ints = new Int32Array(B * maxTokens + 2 * B);
    pen.tokens.forEach((row, r) => {
      ints.set(row, r * maxTokens);
      ints[B * maxTokens + r] = row.length;
    });
    ints.set(pen.promptLens, B * maxTokens + B);
    const floats = new Float32Array(3 * B);
    floats.set(pen.repetition, 0);
    floats.set(pen.presence, B);
    floats.set(pen.frequency, 2 * B);
    const buf = this.scratchFor(ints.byteLength + floats.byteLength);
    buf.uploadAsync(this.stream, ints);
    buf.uploadAsync(this.stream, floats, ints.byteLength);
    const at = (bytes: number): KernelArg => ({ ptr: offsetPtr(buf.ptr, bytes) });
    this.launch("sampling", "apply_penalties", [B], 1024, [
      { ptr: logits },
      at(0),
      at(4 * B * maxTokens),
      at(4 * (B * maxTokens + B)),
      at(ints.byteLength),
      at(ints.byteLength + 4 * B),
      at(ints.byteLength + 8 * B),
      { ptr: (this.penaltyCounts as DeviceBuffer).ptr },
      { i32: maxTokens },
    ]);
  }

  private banOnDevice(logits: DevicePtr, B: number, banned: number[][]): void {
    const width = Math.max(1, ...banned.map((b) => b.length));
    const ids = new Int32Array(B * width).fill(-1);
    banned.forEach((b, r) => ids.set(b, r * width));
    // Penalties may have used the scratch earlier in this step: put the bans after them.
    const buf = this.scratchFor(2 * ids.byteLength + (1 << 20));
    const offset = buf.bytes - ids.byteLength;
    buf.uploadAsync(this.stream, ids, offset);
    this.launch("sampling", "ban_tokens", [B], 128, [
      { ptr: logits },
      { ptr: offsetPtr(buf.ptr, offset) },
      { i32: width },
    ]);
  }
  /** Decode graphs by 3 · graphKey(bucket, attention splits) + (1 + the slot the graph samples into, or 0). */
  private readonly graphs = new Map<number, CudaGraph>();
  /** Block-table stride of graph steps: enough blocks for the engine's longest sequence. */
  private get graphStride(): number {
    return Math.ceil(this.maxSeqLen / this.kvBlockSize);
  }
  /** Our GEMV for m ≤ 8 (16-bit engines); KILN_GEMV=0 uses cuBLASLt everywhere. */
  get useGemv(): boolean {
    return this.tuning.gemv && this.modules.has("gemv");
  }

  /** Whether a linear of `rows` rows runs on our GEMV (decode shapes of 16-bit engines). */
  private gemvApplies(op: { inFeatures: number }, rows: number): boolean {
    return this.useGemv && rows <= this.tuning.gemvMaxRows && op.inFeatures % (16 / this.elem) === 0;
  }

  /**
   * Whether a step of T token rows whose logits come from `logitRows` runs the decoder's final norm from
   * its last add (LStep add's finalNorm): when the logit rows are the step's rows in order (decode steps),
   * the gather is the identity and add + norm is one add_rms_norm, two launches and a copy fewer.
   */
  private finalNormFused(T: number, logitRows: Int32Array): boolean {
    if (logitRows.length !== T) return false;
    for (let i = 0; i < T; i++) if (logitRows[i] !== i) return false;
    return true;
  }

  /** PDL for the launches of the current step: decode-sized steps only (≤ PDL_MAX_ROWS rows), whose
   * GEMMs (our GEMV, or cuBLASLt's single-wave kernels from 3 rows) leave SMs free for kernels that wait.
   * Larger steps' cuBLASLt GEMMs may release dependents early: a waiting kernel's CTAs would then hold
   * SM slots the GEMM's later waves need. */
  private pdlNow = false;

  /** The GEMV variant decode steps run for an [n, k] weight (gemv_plan.ts chooseGemv). */
  private gemvFor(n: number, k: number) {
    return chooseGemv(n, k, this.elem, this.tuning.gemvPolicy, this.tuning.gemvShapes);
  }

  private ptr(name: string): DevicePtr {
    const r = this.regions.get(name);
    if (!r) throw new Error(`internal: no arena region for ${name}`);
    return offsetPtr(this.arena.ptr, r.offset);
  }

  private w(name: string): DevicePtr {
    const b = this.weights.get(name);
    if (!b) throw new Error(`internal: weight ${name} not on the device`);
    return b.ptr;
  }

  private launch(
    mod: ModuleKey,
    kernel: string,
    grid: [number, number?, number?],
    block: number,
    args: KernelArg[],
    sharedBytes = 0,
  ): void {
    if (grid.some((d) => d === 0)) return; // nothing to do (e.g. no logit rows in a prefill chunk)
    if (this.tuning.skipKernels.has(kernel)) return;
    const m = this.modules.get(mod);
    if (!m) throw new Error(`internal: module ${mod} not loaded`);
    // Every kiln kernel waits for its predecessor itself (griddepcontrol.wait), so it may be launched
    // early; cuBLASLt's kernels do not, and keep plain launches (Gemm.run).
    const dims: [number, number, number] = [grid[0], grid[1] ?? 1, grid[2] ?? 1];
    m.kernel(kernel).launch(this.stream, dims, [block, 1, 1], sharedBytes, args, { pdl: this.pdlNow });
  }

  private gemm(m: number, n: number, k: number, bias: boolean, fp32Out: boolean): Gemm {
    const key = gemmKey({ m, n, k, bias, fp32Out });
    let g = this.gemms.get(key);
    if (!g) {
      const cfg = {
        m,
        n,
        k,
        dtypeIn: this.dtype,
        dtypeOut: fp32Out ? ("fp32" as const) : this.dtype,
        bias,
        computeFp32Exact: true,
        maxWorkspaceBytes: GEMM_WORKSPACE_BYTES,
      };
      const algo = this.gemmAlgos.get(key);
      try {
        g = Gemm.create(this.device, cfg, algo ? { algo } : {});
      } catch (e) {
        if (!algo) throw e;
        g = Gemm.create(this.device, cfg); // the stored algorithm is from another cuBLAS: use the heuristic
      }
      this.gemms.set(key, g);
    }
    return g;
  }

  private normBlock(width: number): number {
    const vec = 16 / this.elem;
    const per = width % vec === 0 ? Math.ceil(width / vec) : width;
    return Math.min(1024, Math.ceil(per / 32) * 32);
  }

  private elementwiseGrid(n: number): number {
    return Math.max(1, Math.min(Math.ceil(n / (256 * (16 / this.elem))), 65535));
  }

  /** The rope step's arguments from positions to norm_eps (rope_kv.cu's order, attention_decode_rope*'s
   * too): positions, slots, inv_freq, inv_freq_index (dynamic NTK only), attention_scaling, the q/k norm
   * weights (or null) and their eps. */
  private ropeArgs(st: RopeStep, p: PackedStep): KernelArg[] {
    const meta = (at: number): KernelArg => ({ ptr: offsetPtr(this.meta.ptr, 4 * at) });
    const dynamic = st.op.rope.scaling.type === "dynamic";
    return [
      meta(p.at.positions),
      meta(p.at.slots),
      { ptr: this.invFreq.ptr },
      dynamic ? meta(p.at.invFreqIndex) : { ptr: 0n as DevicePtr },
      { f32: 1 },
      { ptr: st.qNorm ? this.w(st.qNorm) : (0n as DevicePtr) },
      { ptr: st.kNorm ? this.w(st.kNorm) : (0n as DevicePtr) },
      { f32: st.normEps },
    ];
  }

  /** attention_decode_rope*'s prologue arguments (after the attention's own): the unrotated k and v rows
   * and the row strides of q and k/v, then the rope step's (ropeArgs) and the cache's slot count. */
  private decodeRopeArgs(st: RopeStep, p: PackedStep): KernelArg[] {
    const op = st.op;
    const H = op.numHeads * op.headDim;
    const Hkv = op.numKvHeads * op.headDim;
    const qkv = st.qkv === null ? null : this.ptr(st.qkv);
    return [
      { ptr: qkv ? offsetPtr(qkv, H * this.elem) : this.ptr(st.k) },
      { ptr: qkv ? offsetPtr(qkv, (H + Hkv) * this.elem) : this.ptr(st.v) },
      { i32: qkv ? H + 2 * Hkv : H },
      { i32: qkv ? H + 2 * Hkv : Hkv },
      ...this.ropeArgs(st, p),
      { i32: this.numBlocks * this.kvBlockSize },
    ];
  }

  private run(st: LStep, p: PackedStep, logitRows: Int32Array): void {
    const T = p.numTokens;
    const R = logitRows.length;
    const rowsOf = (name: string) => (this.lowered.storage.get(name)?.rows === "logits" ? R : T);
    const meta = (at: number): KernelArg => ({ ptr: offsetPtr(this.meta.ptr, 4 * at) });
    switch (st.kind) {
      case "embedding":
        this.launch("embedding", "embedding", [T], 128, [
          meta(p.at.ids),
          meta(p.at.feed),
          { ptr: this.sampledDevice.ptr },
          { ptr: this.w(st.op.weight) },
          { ptr: this.ptr(st.op.out) },
          { i32: T },
          { i32: 0 },
        ]);
        return;
      case "linear": {
        const op = st.op;
        const rows = rowsOf(op.x);
        const cap = this.lowered.storage.get(op.x)?.rows === "logits" ? this.maxLogitRows : this.maxTokens;
        const m = Math.min(nextPow2(rows), cap);
        if (this.gemvApplies(op, rows)) {
          // Bandwidth-bound decode shape: our GEMV streams the weights at close to copy bandwidth.
          // A gated MLP's gate_up runs with its activation in one launch (the gated_act step is skipped).
          const gated = st.gated && this.tuning.fuseGatedAct ? st.gated : null;
          const fp32Out = st.logits && this.dtype !== "fp32";
          const n = gated ? gated.width : op.outFeatures;
          const variant = this.gemvFor(n, op.inFeatures);
          const { kernel, grid, block } = gated
            ? gemvGatedLaunch(gated.act, n)
            : gemvLaunch(variant, n, fp32Out);
          this.launch("gemv", kernel, [grid], block, [
            { ptr: this.ptr(op.x) },
            { ptr: this.w(op.weight) },
            { ptr: op.bias ? this.w(op.bias) : (0n as DevicePtr) },
            { ptr: this.ptr(gated ? gated.out : op.out) },
            { i32: rows },
            { i32: n },
            { i32: op.inFeatures },
          ]);
          return;
        }
        const g = this.gemm(
          m,
          op.outFeatures,
          op.inFeatures,
          Boolean(op.bias),
          st.logits && this.dtype !== "fp32",
        );
        g.run(
          this.stream,
          this.ptr(op.x),
          this.w(op.weight),
          this.ptr(op.out),
          op.bias ? this.w(op.bias) : undefined,
        );
        return;
      }
      case "rms_norm": {
        const op = st.op;
        if (st.finalNorm && this.finalNormFused(T, logitRows)) return; // run by the add before it
        const g = op.groupWidth ?? op.width;
        const rows = (rowsOf(op.x) * op.width) / g;
        const mod = op.groupWidth ? "rmsnorm_head" : "rmsnorm";
        this.launch(mod, "rms_norm", [rows], this.normBlock(g), [
          { ptr: this.ptr(op.x) },
          { ptr: this.w(op.weight) },
          { ptr: this.ptr(op.out) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "layer_norm": {
        const op = st.op;
        const rows = rowsOf(op.x);
        this.launch("layernorm", "layer_norm", [rows], this.normBlock(op.width), [
          { ptr: this.ptr(op.x) },
          { ptr: this.w(op.weight) },
          { ptr: this.w(op.bias) },
          { ptr: this.ptr(op.out) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "add_rms_norm": {
        const op = st.op;
        const rows = rowsOf(op.x);
        this.launch("rmsnorm", "add_rms_norm", [rows], this.normBlock(op.width), [
          { ptr: this.ptr(op.residual) },
          { ptr: this.ptr(op.x) },
          { ptr: this.w(op.weight) },
          { ptr: this.ptr(op.out) },
          { ptr: this.ptr(st.residualOut) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "add": {
        if (st.finalNorm && this.finalNormFused(T, logitRows)) {
          // The final norm from the add: residual + x, normalised into the norm's output; the add's
          // own output gets the sum (nothing reads it).
          const { norm } = st.finalNorm;
          this.launch("rmsnorm", "add_rms_norm", [T], this.normBlock(norm.width), [
            { ptr: this.ptr(st.op.a) },
            { ptr: this.ptr(st.op.b) },
            { ptr: this.w(norm.weight) },
            { ptr: this.ptr(norm.out) },
            { ptr: this.ptr(st.op.out) },
            { f32: norm.eps },
            { i32: T },
          ]);
          return;
        }
        const n = rowsOf(st.op.a) * st.op.width;
        this.launch("activation", "residual_add", [this.elementwiseGrid(n)], 256, [
          { ptr: this.ptr(st.op.out) },
          { ptr: this.ptr(st.op.a) },
          { ptr: this.ptr(st.op.b) },
          { i32: n },
        ]);
        return;
      }
      case "gated_act": {
        const rows = rowsOf(st.op.gateUp);
        if (st.fusedInto && this.tuning.fuseGatedAct && this.gemvApplies(st.fusedInto, rows)) return; // done by gemv_gated
        this.launch("activation", `gated_act_${st.op.act}`, [this.elementwiseGrid(rows * st.op.width)], 256, [
          { ptr: this.ptr(st.op.gateUp) },
          { ptr: this.ptr(st.op.out) },
          { i32: rows },
          { i32: st.op.width },
        ]);
        return;
      }
      case "gated_act2": {
        const rows = rowsOf(st.op.gate);
        this.launch(
          "activation",
          `gated_act2_${st.op.act}`,
          [this.elementwiseGrid(rows * st.op.width)],
          256,
          [
            { ptr: this.ptr(st.op.gate) },
            { ptr: this.ptr(st.op.up) },
            { ptr: this.ptr(st.op.out) },
            { i32: rows },
            { i32: st.op.width },
          ],
        );
        return;
      }
      case "act": {
        const n = rowsOf(st.op.x) * st.op.width;
        this.launch("activation", `act_${st.op.act}`, [this.elementwiseGrid(n)], 256, [
          { ptr: this.ptr(st.op.x) },
          { ptr: this.ptr(st.op.out) },
          { i32: n },
        ]);
        return;
      }
      case "gather_rows": {
        if (st.finalNorm && this.finalNormFused(T, logitRows)) return; // the rows are all there, in order
        const rowBytes = st.op.width * this.elem;
        const src = this.regions.get(st.op.x) as Region;
        const dst = this.regions.get(st.op.out) as Region;
        logitRows.forEach((r, i) => {
          this.arena.copyFromAsync(
            this.stream,
            this.arena,
            rowBytes,
            dst.offset + i * rowBytes,
            src.offset + r * rowBytes,
          );
        });
        return;
      }
      case "rope": {
        if (p.allDecode && this.tuning.ropeFuse) return; // the decode attention after it does this work
        const op = st.op;
        const heads = op.numHeads + 2 * op.numKvHeads;
        const common: KernelArg[] = [
          ...this.ropeArgs(st, p),
          { ptr: this.ptr(st.qOut) },
          { ptr: this.kvK[op.layer].ptr },
          { ptr: this.kvV[op.layer].ptr },
          { i32: T },
          { i32: this.numBlocks * this.kvBlockSize },
          { i32: this.tuning.ropeEarly ? 1 : 0 },
        ];
        const grid: [number, number] = [T, Math.ceil(heads / 4)];
        if (st.qkv) this.launch("rope", "rope_qkv_fused", grid, 128, [{ ptr: this.ptr(st.qkv) }, ...common]);
        else
          this.launch("rope", "rope_qkv", grid, 128, [
            { ptr: this.ptr(st.q) },
            { ptr: this.ptr(st.k) },
            { ptr: this.ptr(st.v) },
            ...common,
          ]);
        return;
      }
      case "attention": {
        const op = st.op;
        const window = op.slidingWindow ?? 0;
        const out = { ptr: this.ptr(op.out) };
        const q = { ptr: this.ptr(st.q) };
        const k = { ptr: this.kvK[op.layer].ptr };
        const v = { ptr: this.kvV[op.layer].ptr };
        if (!p.allDecode) {
          const tiles = prefillTiles(this.dtype, op.headDim);
          this.launch(
            "attn_prefill",
            "attention_prefill",
            [Math.ceil(p.maxQueryLen / tiles.blockM), op.numHeads, p.numSeqs],
            128,
            [
              out,
              q,
              k,
              v,
              meta(p.at.queryStart),
              meta(p.at.contextLen),
              meta(p.at.tables),
              { i32: p.tableStride },
              { f32: op.scale },
              { i32: window },
            ],
            tiles.sharedBytes,
          );
          return;
        }
        // One launch: with splits > 1 the splits of each (sequence, kv head group) form one cluster and
        // merge through distributed shared memory (2, 4 or 8 splits on sm_90+), or the last CTA merges.
        const splits = p.splits ?? this.decodeSplits(p.numSeqs, p.maxContextLen);
        if (splits > 1 && (p.numSeqs > this.partials.seqs || splits > this.decodeSplits(p.numSeqs)))
          throw new Error(
            `internal: decode attention over ${p.numSeqs} sequences × ${splits} splits exceeds its buffers (${this.partials.seqs} sequences)`,
          );
        // Fused RoPE (attention_decode_rope*): q is the rope step's unrotated q rows.
        const fuse = this.tuning.ropeFuse;
        const kernel = decodeKernel(splits, this.attnClusters(), fuse);
        const rope = st.rope;
        this.launch(
          "attn_decode",
          kernel,
          [this.decodeCtasPerSeq(), p.numSeqs, splits],
          128,
          [
            out,
            { ptr: this.partials.acc.ptr },
            { ptr: this.partials.m.ptr },
            { ptr: this.partials.l.ptr },
            { ptr: this.partials.counters.ptr },
            fuse ? { ptr: this.ptr(rope.qkv ?? rope.q) } : q,
            k,
            v,
            meta(p.at.contextLen),
            meta(p.at.tables),
            { i32: p.tableStride },
            { i32: p.tableStep },
            { i32: splits },
            { f32: op.scale },
            { i32: window },
            { i32: ATTENTION_TRIGGERS.indexOf(this.tuning.attnTrigger) },
            { i32: ATTENTION_STOPS.indexOf(this.tuning.attnStop) },
            ...(fuse ? this.decodeRopeArgs(rope, p) : []),
          ],
          this.decodeSmem,
        );
        return;
      }
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stream.synchronize();
    this.readback.synchronize();
    this.dropGraphs();
    for (const g of this.gemms.values()) g.dispose();
    for (const b of [...this.weights.values(), ...this.kvK, ...this.kvV]) b.dispose();
    for (const b of [
      this.arena,
      this.meta,
      this.invFreq,
      this.partials.acc,
      this.partials.m,
      this.partials.l,
      this.partials.counters,
      this.sampleSlices.buffer,
      this.biasDevice,
      this.sampledDevice,
      ...this.sampled.flatMap((s) => [s.host, s.ready, s.done]),
      this.readback,
    ])
      b.dispose();
    for (const m of this.modules.values()) m.dispose();
    this.stream.dispose();
    this.device.dispose();
  }
}
