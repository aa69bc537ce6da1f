// The launches of a step's attention (lowering.ts rope and attention steps): RoPE + KV-cache write
// (rope_kv.cu), then prefill or decode attention by the step's rows: an all-decode step through one
// decode kernel (decode_attention.ts routes it, RoPE fused where its kernel has the prologue), a mixed
// step's leading decode rows through a decode kernel and the rest through attention_prefill, its keys
// split over CTAs and merged where that pays (prefill_attention.ts). StepLauncher calls it in the plan's
// order. Owns decode attention's partials and prefill attention's split scratch until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import type { ActivationArena } from "./activations.ts";
import { ATTENTION_STOPS, ATTENTION_TRIGGERS, type SplitTarget } from "./attention_splits.ts";
import { DecodeAttention } from "./decode_attention.ts";
import { DECODE_MMA_KV8, DECODE_MMA_ROPE, mmaDecodeApplies } from "./decode_mma.ts";
import type { CudaDevice, KernelArg, Stream } from "./device/index.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { DeviceKvCache } from "./kv_cache.ts";
import type { LoweredStep, RopeStep } from "./lowering.ts";
import { MERGE_THREADS, PrefillAttention } from "./prefill_attention.ts";
import { splitsPay } from "./prefill_splits.ts";
import { prefillTiles } from "./prefill_tiles.ts";
import { decodeRopeArgs, type RopeSources, ropeArgs } from "./rope_args.ts";
import type { PackedStep } from "./step_metadata.ts";
import type { StepUploads } from "./step_uploads.ts";
import type { CudaTuning } from "./tuning.ts";
import type { DeviceWeights } from "./weights.ts";

export type AttentionStep = Extract<LoweredStep, { kind: "attention" }>;

/** What an AttentionLauncher launches over (StepResources has all of it). */
export interface AttentionResources {
  device: CudaDevice;
  stream: Stream;
  model: ModelConfig;
  dtype: DTypeName;
  tuning: CudaTuning;
  kernels: KernelLauncher;
  weights: DeviceWeights;
  arena: ActivationArena;
  kv: DeviceKvCache;
  uploads: StepUploads;
  /** Most sequences a decode step carries (the engine's maxBatchSize). */
  maxSeqs: number;
}

export class AttentionLauncher {
  private readonly dtype: DTypeName;
  private readonly elem: number;
  private readonly tuning: CudaTuning;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;
  private readonly kv: DeviceKvCache;
  private readonly uploads: StepUploads;
  /** Decode attention's split plan and partials. */
  private readonly decode: DecodeAttention;
  /** Prefill attention's key splits and their partial scratch. */
  private readonly prefill: PrefillAttention;

  constructor(r: AttentionResources) {
    this.dtype = r.dtype;
    this.elem = ELEMENT_BYTES[r.dtype];
    this.tuning = r.tuning;
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
    this.kv = r.kv;
    this.uploads = r.uploads;
    const mma =
      r.kernels.has("attn_decode_mma") &&
      mmaDecodeApplies(
        r.dtype,
        r.kv.dtype,
        r.model.numHeads / r.model.numKvHeads,
        r.model.headDim,
        r.kernels.hasKernel("attn_decode_mma", DECODE_MMA_KV8),
      );
    // FP8 pools: no fused-RoPE entry (`attention_decode_mma_rope_kv8` is not built).
    const mmaRope = mma && r.kernels.hasKernel("attn_decode_mma", r.kv.kernel(DECODE_MMA_ROPE));
    this.decode = new DecodeAttention(
      r.device,
      r.stream,
      r.model,
      r.maxSeqs,
      r.tuning.attnCluster,
      mma,
      mmaRope,
      r.kv.dtype,
    );
    const splitKernel = `${prefillTiles(r.dtype, r.model.headDim).kernel}_split`;
    this.prefill = new PrefillAttention(
      r.device,
      r.model,
      r.tuning.prefillSplit &&
        splitsPay(r.model.headDim) &&
        r.kernels.hasKernel("attn_prefill", r.kv.kernel(splitKernel)),
    );
    // Outside any graph capture: attention_decode_mma's shared memory is above the default 48 KiB.
    if (mma)
      r.kernels.reserveSharedMemory(
        "attn_decode_mma",
        r.kv.kernel("attention_decode_mma"),
        this.decode.mmaSharedBytes,
      );
    if (mmaRope)
      r.kernels.reserveSharedMemory("attn_decode_mma", DECODE_MMA_ROPE, this.decode.mmaSharedBytes);
  }

  /** What decode attention's split count depends on: the GPU's SMs and the CTAs per sequence. */
  splitTarget(): SplitTarget {
    return this.decode.splitTarget();
  }

  /** A decode step's context splits: the graph's, or the eager step's own (attention_splits.ts). */
  private decodeSplits(packed: PackedStep): number {
    return packed.splits ?? this.decode.splits(packed.numSeqs, packed.maxContextLen);
  }

  /** A decode step's attention kernel and whether it does the step's RoPE (decode_mma.ts decodeRoute):
   * the rope step and the attention step ask the same question of the same step. */
  private decodeRoute(packed: PackedStep) {
    return this.decode.route(packed.numSeqs, this.decodeSplits(packed), this.tuning.ropeFuse);
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

  /** The rope step: q/k norms, RoPE and the KV-cache write of every row (rope_qkv_fused over the packed
   * qkv, else rope_qkv), unless the decode attention after it does this work. */
  rope(step: RopeStep, packed: PackedStep): void {
    const T = packed.numTokens;
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
  }

  /** The attention step: all-decode through decode attention; a mixed step's leading decode rows
   * through decode attention, then the rest through attention_prefill (and its merge where it split). */
  attention(step: AttentionStep, packed: PackedStep): void {
    const meta = (at: number): KernelArg => this.uploads.metaArg(at);
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
      if (D > 0) this.decodeAttention(step, packed, D, this.decode.splits(D, packed.leadingDecodeContext));
      const tiles = prefillTiles(this.dtype, op.headDim);
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
  }

  /** Decode attention over the step's first `S` sequences (one query row each, row s for sequence s),
   * `splits` splits of each context. One launch: with splits > 1 the splits of each (sequence, kv head
   * group) form one cluster and merge through distributed shared memory (2, 4 or 8 splits on sm_90+),
   * or the last CTA merges; many sequences take attention_decode_mma / _batch (one split, chosen by S
   * alone). RoPE is fused (attention_decode_rope*: q is the rope step's unrotated rows) only in an
   * all-decode step whose route says so (decodeRoute): in a mixed step the rope step ran for every row. */
  private decodeAttention(step: AttentionStep, packed: PackedStep, S: number, splits: number): void {
    const op = step.op;
    const meta = (at: number): KernelArg => this.uploads.metaArg(at);
    const partials = this.decode.partialArgs(S, splits);
    const route = packed.allDecode ? this.decodeRoute(packed) : this.decode.route(S, splits, false);
    const fuse = route.ropeFused;
    const rope = step.rope;
    this.kernels.launch(
      route.module,
      this.kv.kernel(route.kernel),
      this.decode.grid(route, S, splits),
      route.threads,
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

  dispose(): void {
    this.decode.dispose();
    this.prefill.dispose();
  }
}
