// Eager launch of a lowered plan's steps (lowering.ts): for each step, the kernels that run it, in
// order, with their arguments: each linear through linear_launcher.ts (GEMVs, gemm_wo, cuBLASLt,
// quantized and fp8 linears), the norms, activations, RoPE + KV-cache write and attention, and the
// fusions decode steps take (gated activation inside the GEMV, RoPE inside decode attention, the final
// norm from the last add). CUDA graphs record exactly these launches. Owns the linears' launcher and
// decode attention's scratch (decode_attention.ts) until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import type { LinearInputObserver } from "../backend.ts";
import type { ActivationArena } from "./activations.ts";
import { ATTENTION_STOPS, ATTENTION_TRIGGERS, type SplitTarget } from "./attention_splits.ts";
import { DecodeAttention } from "./decode_attention.ts";
import { mmaDecodeApplies } from "./decode_mma.ts";
import type { CudaDevice, DevicePtr, KernelArg, Stream } from "./device/index.ts";
import type { Fp8PlanRecord } from "./fp8_linears.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { DeviceKvCache } from "./kv_cache.ts";
import { elementwiseGrid, normBlock } from "./launch_geometry.ts";
import { LinearLauncher, type LinearStep } from "./linear_launcher.ts";
import type { Lowered, LoweredStep } from "./lowering.ts";
import { MERGE_THREADS, PrefillAttention } from "./prefill_attention.ts";
import { splitsPay } from "./prefill_splits.ts";
import { type PrefillKernel, prefillKernelFor, prefillTiles } from "./prefill_tiles.ts";
import { decodeRopeArgs, type RopeSources, ropeArgs } from "./rope_args.ts";
import type { PackedStep } from "./step_metadata.ts";
import type { StepUploads } from "./step_uploads.ts";
import type { CudaTuning } from "./tuning.ts";
import type { DeviceWeights } from "./weights.ts";

const ELEM: Record<DTypeName, number> = { fp32: 4, fp16: 2, bf16: 2 };

/** What a StepLauncher launches over: the backend's device memory and its settings. */
export interface StepResources {
  device: CudaDevice;
  stream: Stream;
  model: ModelConfig;
  dtype: DTypeName;
  tuning: CudaTuning;
  lowered: Lowered;
  kernels: KernelLauncher;
  weights: DeviceWeights;
  arena: ActivationArena;
  kv: DeviceKvCache;
  uploads: StepUploads;
  /** The sampled tokens the embedding reads fed tokens from (DeviceSampler.tokens). */
  sampledTokens: DevicePtr;
  /** Rows the arena is sized for: token rows and logit rows. */
  maxTokens: number;
  maxLogitRows: number;
  /** Most sequences a decode step carries (the engine's maxBatchSize). */
  maxSeqs: number;
  /** cuBLASLt algorithms chosen at build time, by gemmKey. */
  gemmAlgos: ReadonlyMap<string, Uint8Array>;
}

export class StepLauncher {
  private readonly stream: Stream;
  private readonly dtype: DTypeName;
  private readonly elem: number;
  private readonly tuning: CudaTuning;
  /** The prefill attention's kernel: the tuning's where it applies and the engine has it, else mma4. */
  private readonly prefillKernel: PrefillKernel;
  private readonly lowered: Lowered;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;
  private readonly kv: DeviceKvCache;
  private readonly uploads: StepUploads;
  private readonly sampledTokens: DevicePtr;
  /** Every linear step: GEMVs, gemm_wo, cuBLASLt plans, quantized and fp8 linears. */
  private readonly linears: LinearLauncher;
  /** Decode attention's split plan and partials. */
  private readonly attention: DecodeAttention;
  /** Prefill attention's key splits and their partial scratch. */
  private readonly prefill: PrefillAttention;
  private observeLinear?: LinearInputObserver;

  constructor(r: StepResources) {
    this.stream = r.stream;
    this.dtype = r.dtype;
    this.elem = ELEM[r.dtype];
    this.tuning = r.tuning;
    this.prefillKernel = prefillKernelFor(
      r.tuning.prefillKernel,
      {
        dtype: r.dtype,
        headDim: r.model.headDim,
        kvCacheDtype: r.kv.dtype,
        computeCapability: r.device.properties.computeCapability,
      },
      (k) => r.kernels.hasKernel("attn_prefill", r.kv.kernel(k)),
    );
    this.lowered = r.lowered;
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
    this.kv = r.kv;
    this.uploads = r.uploads;
    this.sampledTokens = r.sampledTokens;
    this.linears = new LinearLauncher(r);
    this.attention = new DecodeAttention(
      r.device,
      r.stream,
      r.model,
      r.maxSeqs,
      r.tuning.attnCluster,
      r.kernels.has("attn_decode_mma") &&
        mmaDecodeApplies(r.dtype, r.kv.dtype, r.model.numHeads / r.model.numKvHeads, r.model.headDim),
    );
    // attention_prefill_wgmma has no split entry: with it, launches never split.
    const splitKernel = `${prefillTiles(r.dtype, r.model.headDim, this.prefillKernel).kernel}_split`;
    this.prefill = new PrefillAttention(
      r.device,
      r.model,
      r.tuning.prefillSplit &&
        splitsPay(r.model.headDim) &&
        r.kernels.hasKernel("attn_prefill", r.kv.kernel(splitKernel)),
    );
    // Outside any graph capture: attention_decode_mma's shared memory is above the default 48 KiB.
    if (r.kernels.has("attn_decode_mma"))
      r.kernels.reserveSharedMemory("attn_decode_mma", "attention_decode_mma", this.attention.mmaSharedBytes);
  }

  /** Launches every step of the plan (the whole forward pass) for a packed step. */
  runAll(packed: PackedStep, logitRows: Int32Array): void {
    for (const step of this.lowered.steps) this.run(step, packed, logitRows);
  }

  /** Creates what every linear of a step of at most `maxRows` token rows would otherwise create on first
   * use (linear_launcher.ts prepare): KV sizing reads free memory after this (CudaBackend.warmUp). */
  prepareGemms(maxRows: number): void {
    this.linears.prepare(maxRows);
  }

  /** The FP8 GEMM plans created so far (fp8_linears.ts plans). */
  fp8Plans(): Fp8PlanRecord[] {
    return this.linears.fp8Plans();
  }

  /** What decode attention's split count depends on: the GPU's SMs and the CTAs per sequence. */
  splitTarget(): SplitTarget {
    return this.attention.splitTarget();
  }

  /**
   * Whether a step of T token rows whose logits come from `logitRows` runs the decoder's final norm from
   * its last add (LoweredStep add's finalNorm): when the logit rows are the step's rows in order (decode steps),
   * the gather is the identity and add + norm is one add_rms_norm, two launches and a copy fewer.
   */
  private finalNormFused(T: number, logitRows: Int32Array): boolean {
    if (logitRows.length !== T) return false;
    for (let i = 0; i < T; i++) if (logitRows[i] !== i) return false;
    return true;
  }

  /** A decode step's context splits: the graph's, or the eager step's own (attention_splits.ts). */
  private decodeSplits(packed: PackedStep): number {
    return packed.splits ?? this.attention.splits(packed.numSeqs, packed.maxContextLen);
  }

  /** A decode step's attention kernel and whether it does the step's RoPE (decode_mma.ts decodeRoute):
   * the rope step and the attention step ask the same question of the same step. */
  private decodeRoute(packed: PackedStep) {
    return this.attention.route(packed.numSeqs, this.decodeSplits(packed), this.tuning.ropeFuse);
  }

  /** What ropeArgs / decodeRopeArgs read (rope_args.ts). */
  private get ropeSources(): RopeSources {
    return {
      uploads: this.uploads,
      weights: this.weights,
      arena: this.arena,
      elem: this.elem,
      slots: this.kv.slots,
    };
  }

  run(step: LoweredStep, packed: PackedStep, logitRows: Int32Array): void {
    const T = packed.numTokens;
    const R = logitRows.length;
    const rowsOf = (name: string) => (this.lowered.storage.get(name)?.rows === "logits" ? R : T);
    const meta = (at: number): KernelArg => this.uploads.metaArg(at);
    switch (step.kind) {
      case "embedding":
        this.kernels.launch("embedding", "embedding", [T], 128, [
          meta(packed.at.ids),
          meta(packed.at.feed),
          { ptr: this.sampledTokens },
          { ptr: this.weights.ptr(step.op.weight) },
          { ptr: this.arena.ptr(step.op.out) },
          { i32: T },
          { i32: 0 },
        ]);
        return;
      case "linear":
        if (this.observeLinear) this.observe(step.op, rowsOf(step.op.x));
        this.linears.run(step, rowsOf(step.op.x));
        return;
      case "rms_norm": {
        const op = step.op;
        if (step.finalNorm && this.finalNormFused(T, logitRows)) return; // run by the add before it
        const g = op.groupWidth ?? op.width;
        const rows = (rowsOf(op.x) * op.width) / g;
        const mod = op.groupWidth ? "rmsnorm_head" : "rmsnorm";
        this.kernels.launch(mod, "rms_norm", [rows], normBlock(g, this.elem), [
          { ptr: this.arena.ptr(op.x) },
          { ptr: this.weights.ptr(op.weight) },
          { ptr: this.arena.ptr(op.out) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "layer_norm": {
        const op = step.op;
        const rows = rowsOf(op.x);
        this.kernels.launch("layernorm", "layer_norm", [rows], normBlock(op.width, this.elem), [
          { ptr: this.arena.ptr(op.x) },
          { ptr: this.weights.ptr(op.weight) },
          { ptr: this.weights.ptr(op.bias) },
          { ptr: this.arena.ptr(op.out) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "add_rms_norm": {
        const op = step.op;
        const rows = rowsOf(op.x);
        this.kernels.launch("rmsnorm", "add_rms_norm", [rows], normBlock(op.width, this.elem), [
          { ptr: this.arena.ptr(op.residual) },
          { ptr: this.arena.ptr(op.x) },
          { ptr: this.weights.ptr(op.weight) },
          { ptr: this.arena.ptr(op.out) },
          { ptr: this.arena.ptr(step.residualOut) },
          { f32: op.eps },
          { i32: rows },
        ]);
        return;
      }
      case "add": {
        if (step.finalNorm && this.finalNormFused(T, logitRows)) {
          // The final norm from the add: residual + x, normalised into the norm's output; the add's
          // own output gets the sum (nothing reads it).
          const { norm } = step.finalNorm;
          this.kernels.launch("rmsnorm", "add_rms_norm", [T], normBlock(norm.width, this.elem), [
            { ptr: this.arena.ptr(step.op.a) },
            { ptr: this.arena.ptr(step.op.b) },
            { ptr: this.weights.ptr(norm.weight) },
            { ptr: this.arena.ptr(norm.out) },
            { ptr: this.arena.ptr(step.op.out) },
            { f32: norm.eps },
            { i32: T },
          ]);
          return;
        }
        const n = rowsOf(step.op.a) * step.op.width;
        this.kernels.launch("activation", "residual_add", [elementwiseGrid(n, this.elem)], 256, [
          { ptr: this.arena.ptr(step.op.out) },
          { ptr: this.arena.ptr(step.op.a) },
          { ptr: this.arena.ptr(step.op.b) },
          { i32: n },
        ]);
        return;
      }
      case "gated_act": {
        const rows = rowsOf(step.op.gateUp);
        if (step.fusedInto && this.tuning.fuseGatedAct && this.linears.fusesGatedAct(step.fusedInto, rows))
          return; // done by the gated GEMV / gemm_wo
        this.kernels.launch(
          "activation",
          `gated_act_${step.op.act}`,
          [elementwiseGrid(rows * step.op.width, this.elem)],
          256,
          [
            { ptr: this.arena.ptr(step.op.gateUp) },
            { ptr: this.arena.ptr(step.op.out) },
            { i32: rows },
            { i32: step.op.width },
          ],
        );
        return;
      }
      case "gated_act2": {
        const rows = rowsOf(step.op.gate);
        this.kernels.launch(
          "activation",
          `gated_act2_${step.op.act}`,
          [elementwiseGrid(rows * step.op.width, this.elem)],
          256,
          [
            { ptr: this.arena.ptr(step.op.gate) },
            { ptr: this.arena.ptr(step.op.up) },
            { ptr: this.arena.ptr(step.op.out) },
            { i32: rows },
            { i32: step.op.width },
          ],
        );
        return;
      }
      case "act": {
        const n = rowsOf(step.op.x) * step.op.width;
        this.kernels.launch("activation", `act_${step.op.act}`, [elementwiseGrid(n, this.elem)], 256, [
          { ptr: this.arena.ptr(step.op.x) },
          { ptr: this.arena.ptr(step.op.out) },
          { i32: n },
        ]);
        return;
      }
      case "gather_rows": {
        if (step.finalNorm && this.finalNormFused(T, logitRows)) return; // the rows are all there, in order
        this.arena.gatherRows(this.stream, step.op.x, step.op.out, step.op.width * this.elem, logitRows);
        return;
      }
      case "rope": {
        // The decode attention after it does this work, where its kernel has the RoPE prologue.
        if (packed.allDecode && this.decodeRoute(packed).ropeFused) return;
        const op = step.op;
        const heads = op.numHeads + 2 * op.numKvHeads;
        const common: KernelArg[] = [
          ...ropeArgs(this.ropeSources, step, packed),
          { ptr: this.arena.ptr(step.qOut) },
          { ptr: this.kv.keys(op.layer).ptr },
          { ptr: this.kv.values(op.layer).ptr },
          { i32: T },
          { i32: this.kv.slots },
          { i32: this.tuning.ropeEarly ? 1 : 0 },
          ...this.kv.scaleArgs(op.layer), // fp8 cache: the _kv8 kernel's row scales
        ];
        const grid: [number, number] = [T, Math.ceil(heads / 4)];
        if (step.qkv)
          this.kernels.launch("rope", this.kv.kernel("rope_qkv_fused"), grid, 128, [
            { ptr: this.arena.ptr(step.qkv) },
            ...common,
          ]);
        else
          this.kernels.launch("rope", this.kv.kernel("rope_qkv"), grid, 128, [
            { ptr: this.arena.ptr(step.q) },
            { ptr: this.arena.ptr(step.k) },
            { ptr: this.arena.ptr(step.v) },
            ...common,
          ]);
        return;
      }
      case "attention": {
        const op = step.op;
        const window = op.slidingWindow ?? 0;
        const out = { ptr: this.arena.ptr(op.out) };
        const q = { ptr: this.arena.ptr(step.q) };
        const k = { ptr: this.kv.keys(op.layer).ptr };
        const v = { ptr: this.kv.values(op.layer).ptr };
        if (!packed.allDecode) {
          // A mixed step: its leading decode rows through a decode kernel (GQA heads share each K/V
          // read; attention_prefill would give each query row a 128-row tile per head), the rest here.
          const D = packed.leadingDecodes;
          if (D > 0)
            this.decodeAttention(step, packed, D, this.attention.splits(D, packed.leadingDecodeContext));
          const tiles = prefillTiles(this.dtype, op.headDim, this.prefillKernel);
          // Few CTAs over a long context: the keys split over CTAs, then merged (prefill_splits.ts).
          const rows = packed.numTokens - D;
          const launch = {
            numSeqs: packed.numSeqs - D,
            maxQueryLen: packed.maxQueryLen,
            maxContextLen: packed.maxContextLen,
            rows,
          };
          const splits = this.prefill.splits(launch, tiles.blockM);
          const queryStart = meta(packed.at.queryStart + D); // absolute row indices: q and out stay whole
          this.kernels.launch(
            "attn_prefill",
            this.kv.kernel(splits > 1 ? `${tiles.kernel}_split` : tiles.kernel),
            [Math.ceil(packed.maxQueryLen / tiles.blockM) * splits, op.numHeads, packed.numSeqs - D],
            tiles.threads,
            [
              out,
              q,
              k,
              v,
              queryStart,
              meta(packed.at.contextLen + D),
              meta(packed.at.tables + D * packed.tableStride),
              { i32: packed.tableStride },
              { f32: op.scale },
              { i32: window },
              ...(splits > 1 ? this.prefill.splitArgs(rows, splits) : []),
              ...this.kv.scaleArgs(op.layer),
            ],
            tiles.sharedBytes,
          );
          if (splits > 1) {
            const merge = this.prefill.merge(rows, splits);
            this.kernels.launch("attn_prefill", "attention_prefill_merge", [merge.grid], MERGE_THREADS, [
              out,
              ...merge.partials,
              queryStart,
              { i32: packed.numSeqs - D },
              { i32: splits },
            ]);
          }
          return;
        }
        this.decodeAttention(step, packed, packed.numSeqs, this.decodeSplits(packed));
        return;
      }
    }
  }

  /** Decode attention over the step's first `S` sequences (one query row each, row s for sequence s),
   * `splits` splits of each context. One launch: with splits > 1 the splits of each (sequence, kv head
   * group) form one cluster and merge through distributed shared memory (2, 4 or 8 splits on sm_90+),
   * or the last CTA merges; many sequences take attention_decode_mma / _batch (one split, chosen by S
   * alone). RoPE is fused (attention_decode_rope*: q is the rope step's unrotated rows) only in an
   * all-decode step whose route says so (decodeRoute): in a mixed step the rope step ran for every row. */
  private decodeAttention(
    step: Extract<LoweredStep, { kind: "attention" }>,
    packed: PackedStep,
    S: number,
    splits: number,
  ): void {
    const op = step.op;
    const meta = (at: number): KernelArg => this.uploads.metaArg(at);
    const partials = this.attention.partialArgs(S, splits);
    const route = packed.allDecode ? this.decodeRoute(packed) : this.attention.route(S, splits, false);
    const fuse = route.ropeFused;
    const rope = step.rope;
    this.kernels.launch(
      route.module,
      this.kv.kernel(route.kernel),
      [route.ctasPerSeq, S, splits],
      128,
      [
        { ptr: this.arena.ptr(op.out) },
        ...partials,
        fuse ? { ptr: this.arena.ptr(rope.qkv ?? rope.q) } : { ptr: this.arena.ptr(step.q) },
        { ptr: this.kv.keys(op.layer).ptr },
        { ptr: this.kv.values(op.layer).ptr },
        meta(packed.at.contextLen),
        meta(packed.at.tables),
        { i32: packed.tableStride },
        { i32: packed.tableStep },
        { i32: splits },
        { f32: op.scale },
        { i32: op.slidingWindow ?? 0 },
        { i32: ATTENTION_TRIGGERS.indexOf(this.tuning.attnTrigger) },
        { i32: ATTENTION_STOPS.indexOf(this.tuning.attnStop) },
        ...(fuse ? decodeRopeArgs(this.ropeSources, rope, packed) : []),
        ...this.kv.scaleArgs(op.layer),
      ],
      route.sharedBytes,
    );
  }

  /** Calibration only (fp32 engines): `observe` sees every linear's input, copied to the host before
   * the linear runs. */
  observeLinears(observe: LinearInputObserver): void {
    if (this.dtype !== "fp32") throw new Error("internal: linear inputs are observed in fp32 only");
    this.observeLinear = observe;
  }

  /** The linear's input x [rows, inFeatures] as it is now in the arena, to the observer (synchronous:
   * the copy waits for the kernels that write x). */
  private observe(op: LinearStep["op"], rows: number): void {
    const x = new Float32Array(rows * op.inFeatures);
    this.arena.download(this.stream, op.x, x);
    this.observeLinear?.(op, x, rows);
  }

  dispose(): void {
    this.linears.dispose();
    this.attention.dispose();
    this.prefill.dispose();
  }
}
