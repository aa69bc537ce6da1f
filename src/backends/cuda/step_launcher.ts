// Eager launch of a lowered plan's steps (lowering.ts): for each step, in the plan's order, the kernels
// that run it, through the concept that launches them: each linear through linear_launcher.ts (GEMVs,
// gemm_wo, cuBLASLt, quantized and fp8 linears), RoPE + KV-cache write and attention through
// attention_launcher.ts, the norms, residual adds and activations through rowwise_launcher.ts; the
// embedding and the gather of logit rows here. It decides the fusions decode steps take (gated
// activation inside the GEMV, the final norm from the last add; RoPE inside decode attention is
// attention_launcher.ts's); a norm marked to quantize for fp8 linears (norm_quant.ts) gets the fp8
// scratch from the linears' launcher. CUDA graphs record exactly these launches. Owns the linears' and
// the attention's launchers until dispose().
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { type DTypeName, ELEMENT_BYTES } from "../../dtype.ts";
import type { LinearInputObserver } from "../backend.ts";
import type { ActivationArena } from "./activations.ts";
import { AttentionLauncher } from "./attention_launcher.ts";
import type { SplitTarget } from "./attention_splits.ts";
import type { CudaDevice, DevicePtr, KernelArg, Stream } from "./device/index.ts";
import type { Fp8PlanRecord } from "./fp8_linears.ts";
import type { KernelLauncher } from "./kernel_launcher.ts";
import type { DeviceKvCache } from "./kv_cache.ts";
import { LinearLauncher, type LinearStep } from "./linear_launcher.ts";
import type { Lowered, LoweredStep } from "./lowering.ts";
import { RowwiseLauncher } from "./rowwise_launcher.ts";
import type { PackedStep } from "./step_metadata.ts";
import type { StepUploads } from "./step_uploads.ts";
import type { CudaTuning } from "./tuning.ts";
import type { DeviceWeights } from "./weights.ts";

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
  private readonly uploads: StepUploads;
  private readonly sampledTokens: DevicePtr;
  /** Every linear step: GEMVs, gemm_wo, cuBLASLt plans, quantized and fp8 linears. */
  private readonly linears: LinearLauncher;
  /** RoPE + KV write and attention: decode attention's partials, prefill attention's split scratch. */
  private readonly attention: AttentionLauncher;
  /** Norms, residual adds and activations. */
  private readonly rowwise: RowwiseLauncher;
  private observeLinear?: LinearInputObserver;

  constructor(r: StepResources) {
    this.stream = r.stream;
    this.dtype = r.dtype;
    this.elem = ELEMENT_BYTES[r.dtype];
    this.tuning = r.tuning;
    this.lowered = r.lowered;
    this.kernels = r.kernels;
    this.weights = r.weights;
    this.arena = r.arena;
    this.uploads = r.uploads;
    this.sampledTokens = r.sampledTokens;
    this.linears = new LinearLauncher(r);
    this.attention = new AttentionLauncher(r);
    this.rowwise = new RowwiseLauncher(r);
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

  /** Launches one step's kernels, over its token rows or, for storage with logit rows, `logitRows`. */
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
        if (step.finalNorm && this.finalNormFused(T, logitRows)) return; // run by the add before it
        const rows = rowsOf(step.op.x);
        this.rowwise.rmsNorm(step, rows, step.fp8Out && this.linears.fp8NormTarget(step.fp8Out, rows));
        return;
      }
      case "layer_norm":
        this.rowwise.layerNorm(step, rowsOf(step.op.x));
        return;
      case "add_rms_norm": {
        const rows = rowsOf(step.op.x);
        this.rowwise.addRmsNorm(step, rows, step.fp8Out && this.linears.fp8NormTarget(step.fp8Out, rows));
        return;
      }
      case "add":
        if (step.finalNorm && this.finalNormFused(T, logitRows))
          this.rowwise.addFinalNorm(step, step.finalNorm, T);
        else this.rowwise.add(step, rowsOf(step.op.a));
        return;
      case "gated_act": {
        const rows = rowsOf(step.op.gateUp);
        if (step.fusedInto && this.tuning.fuseGatedAct && this.linears.fusesGatedAct(step.fusedInto, rows))
          return; // done by the gated GEMV / gemm_wo
        this.rowwise.gatedAct(step, rows);
        return;
      }
      case "gated_act2":
        this.rowwise.gatedAct2(step, rowsOf(step.op.gate));
        return;
      case "act":
        this.rowwise.act(step, rowsOf(step.op.x));
        return;
      case "gather_rows": {
        if (step.finalNorm && this.finalNormFused(T, logitRows)) return; // the rows are all there, in order
        this.arena.gatherRows(this.stream, step.op.x, step.op.out, step.op.width * this.elem, logitRows);
        return;
      }
      case "rope":
        this.attention.rope(step, packed);
        return;
      case "attention":
        this.attention.attention(step, packed);
        return;
    }
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
  }
}
