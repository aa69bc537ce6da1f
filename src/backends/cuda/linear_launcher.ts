// How a linear step y[rows, n] = x[rows, k]·Wᵀ (+ bias) runs (linear_route.ts decides): our GEMV for
// decode shapes of 16-bit engines (gemv.cu); over a quantized weight gemv_wo, gemm_wo for larger batches,
// or dequantization then a cuBLASLt GEMM (quantized_linears.ts); over an fp8 weight activation
// quantization (unless the norm before it did: norm_quant.ts), then gemv_fp8 or the FP8 GEMM
// (fp8_linears.ts); else a cuBLASLt GEMM at the step's row bucket (gemm_algorithms.ts rowBucket). A gated
// MLP's gate_up runs its activation in the same launch where the kernel has a gated form. Owns the GEMM
// plans, the dequantization scratch and the fp8 scratch until dispose().
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import type { ActivationArena } from "./activations.ts";
import type { CudaDevice, DevicePtr, Stream } from "./device/index.ts";
import { Fp8Linears, type Fp8NormTarget, type Fp8PlanRecord } from "./fp8_linears.ts";
import { rowBucket, rowBuckets } from "./gemm_algorithms.ts";
import { GemmPlans } from "./gemm_plans.ts";
import { chooseGemv, gemvGatedLaunch, gemvLaunch } from "./gemv_variants.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import { type LinearRoute, linearRoute } from "./linear_route.ts";
import type { Lowered, LoweredStep } from "./lowering.ts";
import type { NormQuant } from "./norm_quant.ts";
import { type LinearArgs, QuantizedLinears } from "./quantized_linears.ts";
import type { CudaTuning } from "./tuning.ts";
import type { DeviceWeights } from "./weights.ts";

export type LinearStep = Extract<LoweredStep, { kind: "linear" }>;

/** What a LinearLauncher launches over. */
export interface LinearResources {
  device: CudaDevice;
  stream: Stream;
  dtype: DTypeName;
  tuning: CudaTuning;
  lowered: Lowered;
  kernels: KernelLauncher;
  weights: DeviceWeights;
  arena: ActivationArena;
  /** Rows the arena is sized for: token rows and logit rows. */
  maxTokens: number;
  maxLogitRows: number;
  /** cuBLASLt algorithms chosen at build time, by gemmKey. */
  gemmAlgos: ReadonlyMap<string, Uint8Array>;
}

export class LinearLauncher {
  private readonly stream: Stream;
  private readonly dtype: DTypeName;
  private readonly elem: number;
  private readonly tuning: CudaTuning;
  private readonly lowered: Lowered;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;
  private readonly maxTokens: number;
  private readonly maxLogitRows: number;
  /** cuBLASLt plans of the linears that do not run on our kernels. */
  private readonly gemms: GemmPlans;
  /** Linears over quantized weights: their GEMV, gemm_wo and the dequantization scratch. */
  private readonly quantized: QuantizedLinears;
  /** Linears over fp8 weights: activation quantization, their GEMVs and FP8 GEMM plans. */
  private readonly fp8: Fp8Linears;

  constructor(r: LinearResources) {
    this.stream = r.stream;
    this.dtype = r.dtype;
    this.elem = ELEMENT_BYTES[r.dtype];
    this.tuning = r.tuning;
    this.lowered = r.lowered;
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
    this.maxTokens = r.maxTokens;
    this.maxLogitRows = r.maxLogitRows;
    this.gemms = new GemmPlans(r.device, r.dtype, r.gemmAlgos);
    this.quantized = QuantizedLinears.allocate(r.device, r.kernels, r.weights, r.dtype);
    this.fp8 = Fp8Linears.allocate(r.device, r.kernels, r.weights, r.dtype, r.maxTokens, r.tuning.fp8Gemv);
  }

  /** Creates the GEMM plan (and its workspace) of every linear at every row count a step of at most
   * `maxRows` token rows runs on cuBLASLt, so no step creates one later: KV sizing reads free memory
   * after this (CudaBackend.warmUp); and readies gemm_wo's kernels for the row counts they run. The
   * buckets are run()'s: m = min(rowBucket(rows), cap). */
  prepare(maxRows: number): void {
    for (const step of this.lowered.steps) {
      if (step.kind !== "linear") continue;
      const op = step.op;
      const logits = this.lowered.storage.get(op.x)?.rows === "logits";
      const cap = logits ? this.maxLogitRows : this.maxTokens;
      const fp8 = this.weights.fp8(op.weight);
      // A bucket on our kernels (a GEMV, or gemm_wo up to KILN_WO_GEMM_MAX_M) needs no plan; gemm_wo's
      // kernels (every tile: which one runs depends on the rows and the grid) opt in to their shared
      // memory here, before decode graphs are captured (decode steps run at these buckets).
      const quantized = this.weights.quantized(op.weight);
      const gatedAct = step.gated && this.tuning.fuseGatedAct ? step.gated.act : undefined;
      let woGemm = false;
      for (const m of rowBuckets(Math.min(maxRows, cap)))
        if (this.gemvApplies(op, m)) continue;
        else if (quantized && this.route(op, m) === "wo_gemm") woGemm = true;
        else if (fp8) this.fp8.prepare(m, fp8.rows, fp8.cols, Boolean(op.bias));
        else
          this.gemms.get(
            m,
            op.outFeatures,
            op.inFeatures,
            Boolean(op.bias),
            step.logits && this.dtype !== "fp32",
          );
      if (quantized && woGemm) this.quantized.prepareGemm(quantized, gatedAct); // once: every tile's kernel
    }
  }

  /** The FP8 GEMM plans created so far, and which plan each shape got (fp8_linears.ts plans). */
  fp8Plans(): Fp8PlanRecord[] {
    return this.fp8.plans();
  }

  /** Launches the linear `step` over `rows` rows of its input. */
  run(step: LinearStep, rows: number): void {
    const op = step.op;
    const cap = this.lowered.storage.get(op.x)?.rows === "logits" ? this.maxLogitRows : this.maxTokens;
    const m = Math.min(rowBucket(rows), cap);
    const fp8 = this.weights.fp8(op.weight); // x quantized per token first (fp8_linears.ts)
    if (this.gemvApplies(op, rows)) {
      // Bandwidth-bound decode shape: our GEMV streams the weights at close to copy bandwidth.
      // A gated MLP's gate_up runs with its activation in one launch (the gated_act step is skipped).
      const gated = step.gated && this.tuning.fuseGatedAct ? step.gated : null;
      const quantized = this.weights.quantized(op.weight);
      if (quantized || fp8) {
        const args = this.linearArgs(op, rows, gated ? gated.out : op.out);
        if (fp8) this.fp8.gemv(fp8, args, gated?.act, step.inputQuantized);
        else if (quantized) this.quantized.gemv(quantized, args, gated?.act);
        return;
      }
      const fp32Out = step.logits && this.dtype !== "fp32";
      const n = gated ? gated.width : op.outFeatures;
      const variant = this.gemvFor(n, op.inFeatures);
      const { kernel, grid, block } = gated ? gemvGatedLaunch(gated.act, n) : gemvLaunch(variant, n, fp32Out);
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
      this.fp8.gemm(this.stream, fp8, this.linearArgs(op, rows, op.out), m, step.inputQuantized);
      return;
    }
    const quantized = this.weights.quantized(op.weight);
    if (quantized && this.route(op, rows) === "wo_gemm") {
      // Batches past the GEMV: gemm_wo's tensor-core GEMM over the quantized bytes, no dequantization;
      // a gated MLP's gate_up with its activation in one launch (the gated_act step is skipped).
      const gated = step.gated && this.tuning.fuseGatedAct ? step.gated : null;
      this.quantized.gemm(quantized, this.linearArgs(op, rows, gated ? gated.out : op.out), gated?.act);
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

  /** Whether a linear of `rows` rows runs on our GEMV, gemv.cu, gemv_wo.cu or gemv_fp8.cu (linear_route.ts). */
  private gemvApplies(op: { weight: string; inFeatures: number; out: string }, rows: number): boolean {
    const route = this.route(op, rows);
    return route === "gemv" || route === "gemv_wo" || route === "fp8_gemv";
  }

  /** Where the norm of a step of `rows` rows writes its output's quantization for the fp8 linears that
   * read it (norm_quant.ts), x̂ too when one of them runs the decode GEMV that reads it (bits) at `rows`. */
  fp8NormTarget(q: NormQuant, rows: number): Fp8NormTarget {
    const w = this.weights.fp8(q.weight);
    if (!w) throw new Error(`internal: ${q.weight} quantized by a norm but not an fp8 weight`);
    const xhat = q.readers.some(
      (r) => this.gemvApplies(r.op, rows) && this.fp8.readsXhat(r.gated && this.tuning.fuseGatedAct),
    );
    return this.fp8.normTarget(w, rows, xhat);
  }

  /** Whether the kernel of a gate_up linear of `rows` rows runs the gated activation in its epilogue:
   * our GEMVs and gemm_wo have gated kernels (cuBLASLt does not). */
  fusesGatedAct(op: { weight: string; inFeatures: number; out: string }, rows: number): boolean {
    return this.gemvApplies(op, rows) || this.route(op, rows) === "wo_gemm";
  }

  /** The kernels a linear of `rows` rows runs on (linear_route.ts). */
  private route(op: { weight: string; inFeatures: number; out: string }, rows: number): LinearRoute {
    const q = this.weights.quantized(op.weight);
    return linearRoute(
      {
        rows,
        inFeatures: op.inFeatures,
        quantized: q !== undefined,
        quantizedGemv: q === undefined || QuantizedLinears.gemvTakes(q),
        quantizedGemm: q === undefined || QuantizedLinears.gemmTakes(q),
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
        hasGemmWo: this.kernels.has("gemm_wo"),
        woGemmMaxM: this.tuning.woGemmMaxM,
      },
    );
  }

  /** A linear's x, bias and y (`out`: its output, or the fused gated activation's) for `rows` rows. */
  private linearArgs(op: { x: string; bias?: string }, rows: number, out: string): LinearArgs {
    const bias = op.bias ? this.weights.ptr(op.bias) : null;
    return { x: this.arena.ptr(op.x), bias, y: this.arena.ptr(out), rows };
  }

  /** The GEMV variant decode steps run for an [n, k] weight (gemv_variants.ts chooseGemv). */
  private gemvFor(n: number, k: number) {
    return chooseGemv(n, k, this.elem, this.tuning.gemvPolicy, this.tuning.gemvShapes);
  }

  dispose(): void {
    this.gemms.dispose();
    this.quantized.dispose();
    this.fp8.dispose();
  }
}
