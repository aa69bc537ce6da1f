// The launches of a step's row-wise and elementwise steps (rmsnorm.cu, layernorm.cu, activation.cu;
// geometry in launch_geometry.ts): the norms, the residual add (or, in a decode step, the add that runs
// the decoder's final norm too) and the activations, each one launch over the rows StepLauncher gives
// it; a norm that quantizes its output for fp8 linears (norm_quant.ts) as rms_norm_q8 / add_rms_norm_q8.
// Whether a step launches at all (the final norm's fusion, a gated activation done by its GEMV)
// StepLauncher decides. Allocates nothing: it launches over the arena and the weights.
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import type { ActivationArena } from "./activations.ts";
import type { DevicePtr, KernelArg } from "./device/index.ts";
import type { Fp8NormTarget } from "./fp8_linears.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import { elementwiseGrid, normBlock } from "./launch_geometry.ts";
import type { FinalNorm, LoweredStep } from "./lowering.ts";
import type { DeviceWeights } from "./weights.ts";

type StepOf<K extends LoweredStep["kind"]> = Extract<LoweredStep, { kind: K }>;

/** What a RowwiseLauncher launches over (StepResources has all of it). */
export interface RowwiseResources {
  dtype: DTypeName;
  kernels: KernelLauncher;
  weights: DeviceWeights;
  arena: ActivationArena;
}

export class RowwiseLauncher {
  private readonly elem: number;
  private readonly kernels: KernelLauncher;
  private readonly weights: DeviceWeights;
  private readonly arena: ActivationArena;

  constructor(r: RowwiseResources) {
    this.elem = ELEMENT_BYTES[r.dtype];
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
  }

  /** RMSNorm of x's `xRows` rows, or with op.groupWidth of each group of that width (per-head norms);
   * with `q` (no groups), its quantization for fp8 linears too (rms_norm_q8). */
  rmsNorm(step: StepOf<"rms_norm">, xRows: number, q?: Fp8NormTarget): void {
    const op = step.op;
    const g = op.groupWidth ?? op.width;
    const rows = (xRows * op.width) / g;
    const mod = op.groupWidth ? "rmsnorm_head" : "rmsnorm";
    this.kernels.launch(mod, q ? "rms_norm_q8" : "rms_norm", [rows], normBlock(g, this.elem), [
      { ptr: this.arena.ptr(op.x) },
      { ptr: this.weights.ptr(op.weight) },
      { ptr: this.arena.ptr(op.out) },
      ...quantArgs(q),
      { f32: op.eps },
      { i32: rows },
    ]);
  }

  /** LayerNorm (weight and bias) of `rows` rows. */
  layerNorm(step: StepOf<"layer_norm">, rows: number): void {
    const op = step.op;
    this.kernels.launch("layernorm", "layer_norm", [rows], normBlock(op.width, this.elem), [
      { ptr: this.arena.ptr(op.x) },
      { ptr: this.weights.ptr(op.weight) },
      { ptr: this.weights.ptr(op.bias) },
      { ptr: this.arena.ptr(op.out) },
      { f32: op.eps },
      { i32: rows },
    ]);
  }

  /** residual + x into step.residualOut, and its RMSNorm into op.out, over `rows` rows; with `q`, the
   * norm's quantization for fp8 linears too (add_rms_norm_q8). */
  addRmsNorm(step: StepOf<"add_rms_norm">, rows: number, q?: Fp8NormTarget): void {
    const op = step.op;
    this.kernels.launch(
      "rmsnorm",
      q ? "add_rms_norm_q8" : "add_rms_norm",
      [rows],
      normBlock(op.width, this.elem),
      [
        { ptr: this.arena.ptr(op.residual) },
        { ptr: this.arena.ptr(op.x) },
        { ptr: this.weights.ptr(op.weight) },
        { ptr: this.arena.ptr(op.out) },
        { ptr: this.arena.ptr(step.residualOut) },
        ...quantArgs(q),
        { f32: op.eps },
        { i32: rows },
      ],
    );
  }

  /** The final norm from the add, over the step's T rows: residual + x, normalised into the norm's
   * output; the add's own output gets the sum (nothing reads it). */
  addFinalNorm(step: StepOf<"add">, finalNorm: FinalNorm, T: number): void {
    const { norm } = finalNorm;
    this.kernels.launch("rmsnorm", "add_rms_norm", [T], normBlock(norm.width, this.elem), [
      { ptr: this.arena.ptr(step.op.a) },
      { ptr: this.arena.ptr(step.op.b) },
      { ptr: this.weights.ptr(norm.weight) },
      { ptr: this.arena.ptr(norm.out) },
      { ptr: this.arena.ptr(step.op.out) },
      { f32: norm.eps },
      { i32: T },
    ]);
  }

  /** a + b over `rows` rows of a. */
  add(step: StepOf<"add">, rows: number): void {
    const n = rows * step.op.width;
    this.kernels.launch("activation", "residual_add", [elementwiseGrid(n, this.elem)], 256, [
      { ptr: this.arena.ptr(step.op.out) },
      { ptr: this.arena.ptr(step.op.a) },
      { ptr: this.arena.ptr(step.op.b) },
      { i32: n },
    ]);
  }

  /** act(gate) · up over `rows` rows: gate_up [rows, 2·width] (gate, then up) → out [rows, width]. */
  gatedAct(step: StepOf<"gated_act">, rows: number): void {
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
  }

  /** act(gate) · up over `rows` rows: gate, up [rows, width] → out [rows, width]. */
  gatedAct2(step: StepOf<"gated_act2">, rows: number): void {
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
  }

  /** act(x) over `rows` rows of x. */
  act(step: StepOf<"act">, rows: number): void {
    const n = rows * step.op.width;
    this.kernels.launch("activation", `act_${step.op.act}`, [elementwiseGrid(n, this.elem)], 256, [
      { ptr: this.arena.ptr(step.op.x) },
      { ptr: this.arena.ptr(step.op.out) },
      { i32: n },
    ]);
  }
}

/** The _q8 norms' extra arguments (xq, s, static_scale, xhat: kernels/rmsnorm.cu); none for the plain ones. */
function quantArgs(q: Fp8NormTarget | undefined): KernelArg[] {
  if (!q) return [];
  const none = 0n as DevicePtr;
  return [{ ptr: q.xq }, { ptr: q.s }, { ptr: q.staticScale ?? none }, { ptr: q.xhat ?? none }];
}
