// Linears over fp8 weights (W8A8 E4M3, engine/fp8_format.ts) on the GPU. Every step first quantizes the
// linear's input per token (quant_fp8_act: xq [rows, k] E4M3 and s [rows] fp32, into a scratch), then:
//   - decode steps (LinearLauncher.gemvApplies, linear_route.ts): a decode GEMV over the stored E4M3
//     bytes (fp8_variants.ts resolveFp8Gemv, fp8DecodeLaunch): in 16-bit engines the tensor-core
//     gemv_fp8_mma (and its gated kernel for a fused gate_up), in fp32 engines gemv_fp8_bits, which
//     reads x̂ (quant_fp8_act's fp32 copy of xq, written into the scratch for those steps only) instead
//     of xq, and gemv_fp8's gated kernel (KILN_FP8_GEMV picks one for every dtype);
//   - every other step: a cuBLASLt FP8 GEMM (E4M3 × E4M3, fp32 accumulation with FP8 fast accumulation
//     off, output in the engine dtype), the plan fp8_gemm_plan.ts chooses: s and the weight's per-row
//     scales as outer-vector scales (OUTER_VEC_32F: y[t, r] = s[t]·sw[r]·Σ xq·q, no fp32 scratch of y),
//     the bias in cuBLASLt's epilogue or, where cuBLASLt refuses that, added by bias_add after it; else
//     unit scales and an fp32 output into a scratch [rows, widest n], which fp8_scale_rows scales, biases
//     and rounds into y as gemv_fp8 does its sums (allocated at the first such plan, during warm-up,
//     before KV sizing). Plans come from the heuristic at first use (prepare() at warm-up), not from the
//     build's tuning table; plans() lists which plan each shape got, and why the others were refused.
// A linear whose input a norm has quantized already (norm_quant.ts: rms_norm_q8 / add_rms_norm_q8 wrote
// xq, s and, for a bits GEMV, x̂ into the scratch: normTarget) skips quant_fp8_act.
// One scratch serves every linear: a step's kernels run in stream order, and quant_fp8_act (or the norm)
// waits for the kernel before it (PDL), so the next quantization never overwrites an input a GEMV or
// GEMM still reads. Sized for the widest fp8 input at the arena's row count (x̂ at the decode GEMV's rows
// only); allocated with the backend (before KV sizing reads free memory) and freed by dispose(), with the
// GEMM plans.
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import {
  type CudaDevice,
  DeviceBuffer,
  type DevicePtr,
  Gemm,
  offsetPtr,
  type Stream,
} from "./device/index.ts";
import { chooseFp8Plan, type Fp8PlanKind } from "./fp8_gemm_plan.ts";
import {
  type Fp8DecodeGemv,
  type Fp8GemvKind,
  fp8DecodeLaunch,
  fp8DecodeReadsXhat,
  fp8QuantLaunch,
  fp8ScaleOffset,
  fp8ScaleRowsLaunch,
  fp8ScratchBytes,
  fp8XhatOffset,
  fp8XhatRows,
  resolveFp8Gemv,
} from "./fp8_variants.ts";
import { GEMM_WORKSPACE_BYTES } from "./gemm_algorithms.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import { elementwiseGrid } from "./launch_geometry.ts";
import type { LinearArgs } from "./quantized_linears.ts";
import type { DeviceWeights, Fp8Weight } from "./weights.ts";

/** An FP8 GEMM plan (fp8_gemm_plan.ts): the cuBLASLt GEMM and what runs around it. */
interface Fp8Plan {
  gemm: Gemm;
  kind: Fp8PlanKind;
  refused: string[];
}

/** Where a norm that quantizes its output for fp8 linears writes it (norm_quant.ts; rms_norm_q8's xq, s,
 * static_scale and xhat arguments): the scratch, and the weight's static input scale (null: dynamic). */
export interface Fp8NormTarget {
  xq: DevicePtr;
  s: DevicePtr;
  staticScale: DevicePtr | null;
  /** null: x̂ not written (no reader of this step's rows reads it). */
  xhat: DevicePtr | null;
}

/** Which plan one FP8 GEMM shape got: y[m, n] = xq[m, k]·qᵀ (+ bias), and the plans refused before it. */
export interface Fp8PlanRecord {
  m: number;
  n: number;
  k: number;
  bias: boolean;
  kind: Fp8PlanKind;
  refused: readonly string[];
}

export class Fp8Linears {
  private readonly gemms = new Map<string, Fp8Plan>();
  /** The one workspace every FP8 plan runs in (queued on one stream; gemm_plans.ts). */
  private workspace: DeviceBuffer | null = null;
  /** The fallback plans' fp32 output [maxRows, widest n]; allocated at the first fallback. */
  private accumulators: DeviceBuffer | null = null;

  private constructor(
    private readonly device: CudaDevice,
    private readonly kernels: KernelLauncher,
    private readonly dtype: DTypeName,
    /** xq [maxRows, widest] E4M3, s [maxRows] fp32, then (the default `bits` GEMV) x̂ [xhatRows, widest]
     * fp32; null when the engine has no fp8 weight. */
    private readonly scratch: DeviceBuffer | null,
    private readonly scalesPtr: DevicePtr,
    /** x̂ in the scratch, and the rows it holds (0: no x̂, the GEMV is not `bits`). */
    private readonly xhatPtr: DevicePtr,
    private readonly xhatRows: number,
    /** Rows the scratch holds, and the most output features of an fp8 weight. */
    private readonly maxRows: number,
    private readonly widestN: number,
    /** Which decode GEMV runs (KILN_FP8_GEMV, resolved for the dtype). */
    private readonly gemvKind: Fp8DecodeGemv,
  ) {}

  /** The scratch for `weights`' fp8 linears at up to `maxRows` rows (none without fp8 weights), their
   * decode steps on the `gemvKind` GEMV. */
  static allocate(
    device: CudaDevice,
    kernels: KernelLauncher,
    weights: DeviceWeights,
    dtype: DTypeName,
    maxRows: number,
    kind: Fp8GemvKind,
  ): Fp8Linears {
    const gemvKind = resolveFp8Gemv(kind, dtype);
    const all = [...weights.allFp8];
    const xhatRows = fp8XhatRows(gemvKind, maxRows);
    const bytes = fp8ScratchBytes(all, maxRows, xhatRows);
    const none = 0n as DevicePtr;
    if (bytes === 0) return new Fp8Linears(device, kernels, dtype, null, none, none, 0, 0, 0, gemvKind);
    const scratch = DeviceBuffer.alloc(device, bytes);
    const widest = Math.max(...all.map((w) => w.cols));
    const scales = offsetPtr(scratch.ptr, fp8ScaleOffset(widest, maxRows));
    const xhat = xhatRows > 0 ? offsetPtr(scratch.ptr, fp8XhatOffset(widest, maxRows)) : none;
    return new Fp8Linears(
      device,
      kernels,
      dtype,
      scratch,
      scales,
      xhat,
      xhatRows,
      maxRows,
      Math.max(...all.map((w) => w.rows)),
      gemvKind,
    );
  }

  /** gemv_fp8 over `w` ([n, k]) for a.rows rows of x, after quantizing them (unless `quantized`: a norm
   * did, normTarget); with `gatedAct` the gated kernel writing act(gate)·up for the fused gate_up weight
   * ([2·inter, k]). The `bits` GEMV reads x̂, which the quantization then also writes. */
  gemv(w: Fp8Weight, a: LinearArgs, gatedAct?: string, quantized = false): void {
    const bits = this.readsXhat(gatedAct !== undefined);
    if (bits && a.rows > this.xhatRows)
      throw new Error(`internal: a ${a.rows}-row fp8 GEMV but x̂ holds ${this.xhatRows} rows`);
    const xq = quantized
      ? this.quantizedInput()
      : this.quantize(w, a.x, a.rows, bits ? this.xhatPtr : (0n as DevicePtr));
    const n = gatedAct ? w.rows / 2 : w.rows;
    const { kernel, grid, block } = fp8DecodeLaunch(this.gemvKind, n, w.cols, gatedAct);
    this.kernels.launch("gemv_fp8", kernel, [grid], block, [
      { ptr: bits ? this.xhatPtr : xq },
      { ptr: this.scalesPtr },
      { ptr: w.q },
      { ptr: w.scales },
      { ptr: a.bias ?? (0n as DevicePtr) },
      { ptr: a.y },
      { i32: a.rows },
      { i32: n },
      { i32: w.cols },
    ]);
  }

  /** The FP8 GEMM of `w` over a.rows rows of x (quantized first unless `quantized`: a norm did), run as
   * the bucket of `m` ≥ a.rows rows (rows past a.rows read stale scratch and write rows of y no one
   * reads, as the plain GEMMs' buckets do). */
  gemm(stream: Stream, w: Fp8Weight, a: LinearArgs, m: number, quantized = false): void {
    const xq = quantized ? this.quantizedInput() : this.quantize(w, a.x, a.rows, 0n as DevicePtr);
    const plan = this.prepare(m, w.rows, w.cols, a.bias !== null);
    const scales = { x: this.scalesPtr, w: w.scales };
    if (plan.kind === "outer-vector") {
      plan.gemm.run(stream, xq, w.q, a.y, a.bias ?? undefined, scales);
      return;
    }
    if (plan.kind === "outer-vector + bias_add") {
      plan.gemm.run(stream, xq, w.q, a.y, undefined, scales);
      const elements = a.rows * w.rows;
      this.kernels.launch(
        "activation",
        "bias_add",
        [elementwiseGrid(elements, ELEMENT_BYTES[this.dtype])],
        256,
        [{ ptr: a.y }, { ptr: a.bias as DevicePtr }, { i32: a.rows }, { i32: w.rows }],
      );
      return;
    }
    const acc = (this.accumulators as DeviceBuffer).ptr;
    plan.gemm.run(stream, xq, w.q, acc);
    const { kernel, grid, block } = fp8ScaleRowsLaunch(a.rows, w.rows);
    this.kernels.launch("gemv_fp8", kernel, [grid], block, [
      { ptr: acc },
      { ptr: this.scalesPtr },
      { ptr: w.scales },
      { ptr: a.bias ?? (0n as DevicePtr) },
      { ptr: a.y },
      { i32: a.rows },
      { i32: w.rows },
    ]);
  }

  /** The FP8 GEMM plan of y[m, n] = xq[m, k]·qᵀ (+ bias) in the engine dtype, created once: the first
   * of fp8_gemm_plan.ts's plans cuBLASLt offers. */
  prepare(m: number, n: number, k: number, bias: boolean): Fp8Plan {
    const key = `${m}:${n}:${k}:${bias}`;
    let plan = this.gemms.get(key);
    if (!plan) {
      const base = { m, n, k, dtypeIn: this.dtype, fp8: true, maxWorkspaceBytes: GEMM_WORKSPACE_BYTES };
      this.workspace ??= DeviceBuffer.alloc(this.device, GEMM_WORKSPACE_BYTES);
      const ws = { workspace: this.workspace };
      plan = chooseFp8Plan(bias, (t) =>
        t.unitScales
          ? Gemm.create(this.device, { ...base, dtypeOut: "fp32", fp8UnitScales: true }, ws)
          : Gemm.create(this.device, { ...base, dtypeOut: this.dtype, bias: t.biasEpilogue }, ws),
      );
      if (plan.kind === "unit scales + fp8_scale_rows")
        this.accumulators ??= DeviceBuffer.alloc(this.device, this.maxRows * this.widestN * 4);
      this.gemms.set(key, plan);
    }
    return plan;
  }

  /** Every FP8 GEMM plan created so far, with the plan each shape got (for the GPU tests and tools). */
  plans(): Fp8PlanRecord[] {
    return [...this.gemms.entries()].map(([key, p]) => {
      const [m, n, k] = key.split(":").map(Number);
      return { m, n, k, bias: key.endsWith("true"), kind: p.kind, refused: p.refused };
    });
  }

  /** Whether the decode GEMV of a plain (`gated` false) or fused gate_up linear reads x̂ (the bits GEMV). */
  readsXhat(gated: boolean): boolean {
    return fp8DecodeReadsXhat(this.gemvKind, gated);
  }

  /** Where a norm writes the quantization of `rows` rows of its output for `w`'s linears (norm_quant.ts),
   * x̂ too with `xhat` (a bits GEMV reads it at these rows). */
  normTarget(w: Fp8Weight, rows: number, xhat: boolean): Fp8NormTarget {
    const xq = this.quantizedInput();
    if (rows > this.maxRows)
      throw new Error(`internal: ${rows} rows quantized but the scratch holds ${this.maxRows}`);
    if (xhat && rows > this.xhatRows)
      throw new Error(`internal: ${rows} rows of x̂ but the scratch holds ${this.xhatRows}`);
    return { xq, s: this.scalesPtr, staticScale: w.inputScale, xhat: xhat ? this.xhatPtr : null };
  }

  /** xq's address in the scratch, which a norm has written (normTarget). */
  private quantizedInput(): DevicePtr {
    if (!this.scratch) throw new Error("internal: an fp8 weight but no activation scratch");
    return this.scratch.ptr;
  }

  /** Queues quant_fp8_act of x [rows, w.cols] into the scratch, and x̂ into `xhat` unless it is null;
   * returns xq's address. */
  private quantize(w: Fp8Weight, x: DevicePtr, rows: number, xhat: DevicePtr): DevicePtr {
    if (!this.scratch) throw new Error("internal: an fp8 weight but no activation scratch");
    const { kernel, grid, block } = fp8QuantLaunch(rows, w.cols, ELEMENT_BYTES[this.dtype]);
    this.kernels.launch("gemv_fp8", kernel, [grid], block, [
      { ptr: x },
      { ptr: this.scratch.ptr },
      { ptr: this.scalesPtr },
      { ptr: w.inputScale ?? (0n as DevicePtr) },
      { ptr: xhat },
      { i32: rows },
      { i32: w.cols },
    ]);
    return this.scratch.ptr;
  }

  dispose(): void {
    for (const p of this.gemms.values()) p.gemm.dispose();
    this.gemms.clear();
    this.workspace?.dispose();
    this.workspace = null;
    this.scratch?.dispose();
    this.accumulators?.dispose();
    this.accumulators = null;
  }
}
