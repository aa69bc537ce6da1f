// Eager launch of a lowered plan's steps (lowering.ts): for each step, the kernels that run it, in
// order, with their arguments: our GEMV (decode shapes of 16-bit engines) or a cuBLASLt GEMM for each
// linear (over a quantized weight: gemv_wo, or dequantization then the GEMM: quantized_linears.ts; over
// an fp8 weight: activation quantization, then gemv_fp8 or the FP8 GEMM: fp8_linears.ts), the
// norms, activations, RoPE + KV-cache write and attention, and the fusions decode steps take (gated
// activation inside the GEMV, RoPE inside decode attention, the final norm from the last add). CUDA
// graphs record exactly these launches. Owns the GEMM plans, decode attention's scratch
// (decode_attention.ts) and the dequantization scratch until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import type { ActivationArena } from "./activations.ts";
import { ATTENTION_STOPS, ATTENTION_TRIGGERS, type SplitTarget } from "./attention_splits.ts";
import { DecodeAttention } from "./decode_attention.ts";
import type { CudaDevice, DevicePtr, KernelArg, Stream } from "./device/index.ts";
import { Fp8Linears } from "./fp8_linears.ts";
import { nextPow2 } from "./gemm_algorithms.ts";
import { GemmPlans } from "./gemm_plans.ts";
import { chooseGemv, gemvGatedLaunch, gemvLaunch } from "./gemv_variants.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { DeviceKvCache } from "./kv_cache.ts";
import { elementwiseGrid, normBlock } from "./launch_geometry.ts";
import { linearRoute } from "./linear_route.ts";
import type { Lowered, LoweredStep } from "./lowering.ts";
import { prefillTiles } from "./prefill_tiles.ts";
import { type LinearArgs, QuantizedLinears } from "./quantized_linears.ts";
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
  private readonly lowered: Lowered;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;
  private readonly kv: DeviceKvCache;
  private readonly uploads: StepUploads;
  private readonly sampledTokens: DevicePtr;
  private readonly maxTokens: number;
  private readonly maxLogitRows: number;
  /** cuBLASLt plans of the linears that do not run on a GEMV. */
  private readonly gemms: GemmPlans;
  /** Decode attention's split plan and partials. */
  private readonly attention: DecodeAttention;
  /** Linears over quantized weights: their GEMV and the dequantization scratch. */
  private readonly quantized: QuantizedLinears;
  /** Linears over fp8 weights: activation quantization, their GEMVs and FP8 GEMM plans. */
  private readonly fp8: Fp8Linears;

  constructor(r: StepResources) {
    this.stream = r.stream;
    this.dtype = r.dtype;
    this.elem = ELEM[r.dtype];
    this.tuning = r.tuning;
    this.lowered = r.lowered;
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
    this.kv = r.kv;
    this.uploads = r.uploads;
    this.sampledTokens = r.sampledTokens;
    this.maxTokens = r.maxTokens;
    this.maxLogitRows = r.maxLogitRows;
    this.gemms = new GemmPlans(r.device, r.dtype, r.gemmAlgos);
    this.attention = new DecodeAttention(
      r.device,
      r.stream,
      r.model,
      r.maxSeqs,
      r.tuning.attnCluster,
      r.tuning.attnBatch,
    );
    this.quantized = QuantizedLinears.allocate(r.device, r.kernels, r.weights, r.dtype);
    this.fp8 = Fp8Linears.allocate(r.device, r.kernels, r.weights, r.dtype, r.maxTokens);
  }

  /** Launches every step of the plan (the whole forward pass) for a packed step. */
  runAll(packed: PackedStep, logitRows: Int32Array): void {
    for (const step of this.lowered.steps) this.run(step, packed, logitRows);
  }

  /** Creates the GEMM plan (and its workspace) of every linear at every row count a step of at most
   * `maxRows` token rows runs on cuBLASLt, so no step creates one later: KV sizing reads free memory
   * after this (CudaBackend.warmUp). The buckets are run()'s: m = min(nextPow2(rows), cap). */
  prepareGemms(maxRows: number): void {
    for (const step of this.lowered.steps) {
      if (step.kind !== "linear") continue;
      const op = step.op;
      const logits = this.lowered.storage.get(op.x)?.rows === "logits";
      const cap = logits ? this.maxLogitRows : this.maxTokens;
      const top = Math.min(nextPow2(Math.min(maxRows, cap)), cap);
      const fp8 = this.weights.fp8(op.weight);
      for (let m = 1; m <= top; m *= 2)
        if (this.gemvApplies(op, m)) continue;
        else if (fp8) this.fp8.prepare(m, fp8.rows, fp8.cols, Boolean(op.bias));
        else
          this.gemms.get(
            m,
            op.outFeatures,
            op.inFeatures,
            Boolean(op.bias),
            step.logits && this.dtype !== "fp32",
          );
    }
  }

  /** What decode attention's split count depends on: the GPU's SMs and the CTAs per sequence. */
  splitTarget(): SplitTarget {
    return this.attention.splitTarget();
  }

  /** Whether a linear of `rows` rows runs on our GEMV, gemv.cu, gemv_wo.cu or gemv_fp8.cu (linear_route.ts). */
  private gemvApplies(op: { weight: string; inFeatures: number; out: string }, rows: number): boolean {
    const q = this.weights.quantized(op.weight);
    const route = linearRoute(
      {
        rows,
        inFeatures: op.inFeatures,
        quantized: q !== undefined,
        quantizedGemv: q === undefined || QuantizedLinears.gemvTakes(q),
        logits: op.out === this.lowered.output,
        fp8: this.weights.fp8(op.weight) !== undefined,
      },
      {
        dtype: this.dtype,
        gemv: this.tuning.gemv,
        gemvMaxRows: this.tuning.gemvMaxRows,
        hasGemv: this.kernels.has("gemv"),
        hasGemvWo: this.kernels.has(q?.zp ? "gemv_zp" : "gemv_wo"), // int4-zp: gemv_zp.cu
        hasGemvFp8: this.kernels.has("gemv_fp8"),
      },
    );
    return route === "gemv" || route === "gemv_wo" || route === "fp8_gemv";
  }

  /** A linear's x, bias and y (`out`: its output, or the fused gated activation's) for `rows` rows. */
  private linearArgs(op: { x: string; bias?: string }, rows: number, out: string): LinearArgs {
    const bias = op.bias ? this.weights.ptr(op.bias) : null;
    return { x: this.arena.ptr(op.x), bias, y: this.arena.ptr(out), rows };
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

  /** The GEMV variant decode steps run for an [n, k] weight (gemv_variants.ts chooseGemv). */
  private gemvFor(n: number, k: number) {
    return chooseGemv(n, k, this.elem, this.tuning.gemvPolicy, this.tuning.gemvShapes);
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
      case "linear": {
        const op = step.op;
        const rows = rowsOf(op.x);
        const cap = this.lowered.storage.get(op.x)?.rows === "logits" ? this.maxLogitRows : this.maxTokens;
        const m = Math.min(nextPow2(rows), cap);
        const fp8 = this.weights.fp8(op.weight); // x quantized per token first (fp8_linears.ts)
        if (this.gemvApplies(op, rows)) {
          // Bandwidth-bound decode shape: our GEMV streams the weights at close to copy bandwidth.
          // A gated MLP's gate_up runs with its activation in one launch (the gated_act step is skipped).
          const gated = step.gated && this.tuning.fuseGatedAct ? step.gated : null;
          const quantized = this.weights.quantized(op.weight);
          if (quantized || fp8) {
            const args = this.linearArgs(op, rows, gated ? gated.out : op.out);
            if (fp8) this.fp8.gemv(fp8, args, gated?.act);
            else if (quantized) this.quantized.gemv(quantized, args, gated?.act);
            return;
          }
          const fp32Out = step.logits && this.dtype !== "fp32";
          const n = gated ? gated.width : op.outFeatures;
          const variant = this.gemvFor(n, op.inFeatures);
          const { kernel, grid, block } = gated
            ? gemvGatedLaunch(gated.act, n)
            : gemvLaunch(variant, n, fp32Out);
          this.kernels.launch("gemv", kernel, [grid], block, [
            { ptr: this.arena.ptr(op.x) },
            { ptr: this.weights.ptr(op.weight) },
            { ptr: op.bias ? this.weights.ptr(op.bias) : (0n as DevicePtr) },
            { ptr: this.arena.ptr(gated ? gated.out : op.out) },
            { i32: rows },
            { i32: n },
            { i32: op.inFeatures },
          ]);
          return;
        }
        if (fp8) {
          this.fp8.gemm(this.stream, fp8, this.linearArgs(op, rows, op.out), m);
          return;
        }
        const g = this.gemms.get(
          m,
          op.outFeatures,
          op.inFeatures,
          Boolean(op.bias),
          step.logits && this.dtype !== "fp32",
        );
        // A quantized weight is dequantized into the scratch first, on the same stream: the GEMM reads it there.
        const quantized = this.weights.quantized(op.weight);
        const w = quantized ? this.quantized.dequantize(quantized) : this.weights.ptr(op.weight);
        g.run(
          this.stream,
          this.arena.ptr(op.x),
          w,
          this.arena.ptr(op.out),
          op.bias ? this.weights.ptr(op.bias) : undefined,
        );
        return;
      }
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
        if (step.fusedInto && this.tuning.fuseGatedAct && this.gemvApplies(step.fusedInto, rows)) return; // done by gemv_gated
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
        if (packed.allDecode && this.tuning.ropeFuse) return; // the decode attention after it does this work
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
          const tiles = prefillTiles(this.dtype, op.headDim);
          this.kernels.launch(
            "attn_prefill",
            this.kv.kernel("attention_prefill"),
            [Math.ceil(packed.maxQueryLen / tiles.blockM), op.numHeads, packed.numSeqs],
            128,
            [
              out,
              q,
              k,
              v,
              meta(packed.at.queryStart),
              meta(packed.at.contextLen),
              meta(packed.at.tables),
              { i32: packed.tableStride },
              { f32: op.scale },
              { i32: window },
              ...this.kv.scaleArgs(op.layer),
            ],
            tiles.sharedBytes,
          );
          return;
        }
        // One launch: with splits > 1 the splits of each (sequence, kv head group) form one cluster and
        // merge through distributed shared memory (2, 4 or 8 splits on sm_90+), or the last CTA merges;
        // a step of many sequences takes attention_decode_batch (one split, chosen by numSeqs alone).
        const splits = packed.splits ?? this.attention.splits(packed.numSeqs, packed.maxContextLen);
        const partials = this.attention.partialArgs(packed.numSeqs, splits);
        // Fused RoPE (attention_decode_rope*): q is the rope step's unrotated q rows.
        const fuse = this.tuning.ropeFuse;
        const kernel = this.attention.kernel(packed.numSeqs, splits, fuse);
        const rope = step.rope;
        this.kernels.launch(
          "attn_decode",
          this.kv.kernel(kernel.name),
          [this.attention.ctasPerSeq, packed.numSeqs, splits],
          128,
          [
            out,
            ...partials,
            fuse ? { ptr: this.arena.ptr(rope.qkv ?? rope.q) } : q,
            k,
            v,
            meta(packed.at.contextLen),
            meta(packed.at.tables),
            { i32: packed.tableStride },
            { i32: packed.tableStep },
            { i32: splits },
            { f32: op.scale },
            { i32: window },
            { i32: ATTENTION_TRIGGERS.indexOf(this.tuning.attnTrigger) },
            { i32: ATTENTION_STOPS.indexOf(this.tuning.attnStop) },
            ...(fuse ? decodeRopeArgs(this.ropeSources, rope, packed) : []),
            ...this.kv.scaleArgs(op.layer),
          ],
          kernel.sharedBytes,
        );
        return;
      }
    }
  }

  dispose(): void {
    this.gemms.dispose();
    this.attention.dispose();
    this.quantized.dispose();
    this.fp8.dispose();
  }
}
