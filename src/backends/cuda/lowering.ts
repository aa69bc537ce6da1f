// Lowers an engine plan to CUDA launches. Each plan op becomes zero or more steps over named
// storage; `split` becomes views into its input, and the attention prologue (split q/k/v →
// per-head q/k RMSNorm → RoPE → KV write) collapses into one rope_qkv_fused launch, which decode steps
// fold further into the decode attention kernel (attention_decode_rope*). The arena (arena.ts) then places storage by liveness.
// In fp8 engines, a norm read only by fp8 linears also quantizes their input (norm_quant.ts).
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { Op, Plan } from "../../engine/format.ts";
import { opInputs, renameInputs } from "../../models/network.ts";
import type { Access } from "./arena.ts";
import { type Fp8InputOf, markNormQuant, type NormQuant } from "./norm_quant.ts";

type AttentionOp = Extract<Op, { kind: "attention" }>;

/** A column slice of a row-major storage: rows of `rowWidth` elements, columns [col, col + width). */
export interface View {
  base: string;
  col: number;
  width: number;
  rowWidth: number;
}

export type LoweredStep = Access &
  (
    | { kind: "embedding"; op: Extract<Op, { kind: "embedding" }> }
    | {
        kind: "linear";
        op: Extract<Op, { kind: "linear" }>;
        logits: boolean;
        /** The gate_up GEMM of a gated MLP whose only reader is the next step's gated activation: a
         * decode step runs both as one GEMV (gemv_gated_ACT) writing `out`, and skips the activation. */
        gated?: { act: string; out: string; width: number };
        /** An fp8 linear whose input the norm step writing it has quantized into the fp8 scratch
         * already (norm_quant.ts): it launches no quant_fp8_act. */
        inputQuantized?: boolean;
      }
    | {
        kind: "rms_norm";
        op: Extract<Op, { kind: "rms_norm" }>;
        finalNorm?: FinalNorm;
        /** Its output quantized for the fp8 linears that read it, by the norm kernel (norm_quant.ts). */
        fp8Out?: NormQuant;
      }
    | { kind: "layer_norm"; op: Extract<Op, { kind: "layer_norm" }> }
    | {
        kind: "add_rms_norm";
        op: Extract<Op, { kind: "add_rms_norm" }>;
        /** Where the residual sum goes (the plan's add_rms_norm updates `residual` in place). */
        residualOut: string;
        /** As rms_norm's. */
        fp8Out?: NormQuant;
      }
    | {
        kind: "add";
        op: Extract<Op, { kind: "add" }>;
        /** The final norm of a decoder (add → gather_rows → rms_norm, each the only reader of the one
         * before): in a step whose logit rows are all its rows in order (decode), this step runs
         * add_rms_norm into the norm's output instead, and the gather and the norm launch nothing. */
        finalNorm?: FinalNorm;
      }
    | {
        kind: "gated_act";
        op: Extract<Op, { kind: "gated_act" }>;
        /** The linear step before it that also computes this activation in decode steps. */
        fusedInto?: Extract<Op, { kind: "linear" }>;
      }
    | { kind: "gated_act2"; op: Extract<Op, { kind: "gated_act2" }> }
    | { kind: "act"; op: Extract<Op, { kind: "act" }> }
    | { kind: "gather_rows"; op: Extract<Op, { kind: "gather_rows" }>; finalNorm?: FinalNorm }
    | {
        kind: "rope";
        op: AttentionOp;
        /** Fused: the packed qkv storage; else q, k, v storages. */
        qkv: string | null;
        q: string;
        k: string;
        v: string;
        qNorm: string | null;
        kNorm: string | null;
        normEps: number;
        qOut: string;
      }
    | {
        kind: "attention";
        op: AttentionOp;
        q: string;
        /** The rope step before it, whose work a decode step does inside the attention kernel instead
         * (attention_decode_rope*; KILN_ROPE_FUSE), reading the rope step's inputs: so the attention
         * reads them too, and the arena keeps them alive until it has run. */
        rope: RopeStep;
      }
  );

/** The rope step (rope_qkv_fused / rope_qkv) of an attention. */
export type RopeStep = Extract<LoweredStep, { kind: "rope" }>;

/** A decoder's last residual add, the gather of the rows that need logits, and the final RMSNorm, which
 * a step whose logit rows are its rows in order runs as one add_rms_norm (the add step's `finalNorm`). */
export interface FinalNorm {
  add: Extract<Op, { kind: "add" }>;
  norm: Extract<Op, { kind: "rms_norm" }>;
}

export interface Lowered {
  steps: LoweredStep[];
  /** Element width of each storage's rows, and whether it has token rows or logit rows. */
  storage: Map<string, { width: number; rows: "tokens" | "logits"; fp32?: boolean }>;
  output: string;
}

/** `plan` as CUDA steps; with `fp8Input` (an fp8 engine's linears: norm_quant.ts fp8InputsOf), the norms
 * that can quantize their output for the fp8 linears reading it marked to (markNormQuant). */
export function lower(plan: Plan, model: ModelConfig, fp8Input?: Fp8InputOf): Lowered {
  const views = new Map<string, View>();
  const storage: Lowered["storage"] = new Map();
  const readers = new Map<string, Op[]>();
  for (const op of plan.ops) for (const x of opInputs(op)) readers.set(x, [...(readers.get(x) ?? []), op]);
  // Group norms absorbed into the fused RoPE launch: output name → (input view, weight).
  const absorbed = new Map<string, { x: string; weight: string; eps: number }>();
  const rowsOf = (name: string) => storage.get(resolve(name))?.rows ?? "tokens";
  const resolve = (name: string) => views.get(name)?.base ?? name;
  const def = (name: string, width: number, rows: "tokens" | "logits", fp32 = false) =>
    storage.set(name, { width, rows, fp32 });
  const steps: LoweredStep[] = [];

  // add_rms_norm writes the residual sum to a new storage, not in place (the arena places it by
  // liveness like any other). Later readers of the plan's residual name read the newest one.
  const renamed = new Map<string, string>();
  let residuals = 0;
  for (const planOp of plan.ops) {
    const op = renameInputs(planOp, (n) => renamed.get(n) ?? n);
    switch (op.kind) {
      case "split": {
        let col = 0;
        const rowWidth = op.widths.reduce((a, b) => a + b, 0);
        op.outs.forEach((o, i) => {
          views.set(o, { base: resolve(op.x), col, width: op.widths[i], rowWidth });
          col += op.widths[i];
        });
        break;
      }
      case "rms_norm": {
        const onlyAttention = (readers.get(op.out) ?? []).every((r) => r.kind === "attention");
        if (op.groupWidth && views.has(op.x) && onlyAttention) {
          absorbed.set(op.out, { x: op.x, weight: op.weight, eps: op.eps });
          break;
        }
        if (views.has(op.x))
          throw new Error(`internal: rms_norm of a column slice (${op.x}) has no CUDA kernel`);
        def(op.out, op.width, rowsOf(op.x));
        // add → gather_rows → rms_norm, each read only by the next: decode steps run add_rms_norm into
        // the norm's output from the add step (which then writes it: the arena keeps it apart).
        const [add, gather] = steps.slice(-2);
        const only = (name: string) => (readers.get(name) ?? []).length === 1;
        if (
          add?.kind === "add" &&
          gather?.kind === "gather_rows" &&
          gather.op.x === add.op.out &&
          gather.op.out === op.x &&
          only(add.op.out) &&
          only(op.x) &&
          !op.groupWidth &&
          add.op.width === op.width
        ) {
          const finalNorm: FinalNorm = { add: add.op, norm: op };
          steps[steps.length - 2] = { ...add, finalNorm, writes: [...add.writes, op.out] };
          steps[steps.length - 1] = { ...gather, finalNorm };
          steps.push({ kind: "rms_norm", op, finalNorm, reads: [op.x], writes: [op.out] });
          break;
        }
        steps.push({ kind: "rms_norm", op, reads: [op.x], writes: [op.out] });
        break;
      }
      case "attention": {
        const src = (n: string) => absorbed.get(n)?.x ?? n;
        const [q, k, v] = [src(op.q), src(op.k), src(op.v)].map((n) => views.get(n));
        const H = op.numHeads * op.headDim;
        const Hkv = op.numKvHeads * op.headDim;
        const qOut = `${op.out}#q`;
        def(qOut, H, "tokens");
        const packed =
          q &&
          k &&
          v &&
          q.base === k.base &&
          k.base === v.base &&
          q.col === 0 &&
          k.col === H &&
          v.col === H + Hkv &&
          v.rowWidth === H + 2 * Hkv;
        const qn = absorbed.get(op.q);
        const kn = absorbed.get(op.k);
        let rope: RopeStep;
        if (packed && q) {
          rope = {
            kind: "rope",
            op,
            qkv: q.base,
            q: q.base,
            k: q.base,
            v: q.base,
            qNorm: qn?.weight ?? null,
            kNorm: kn?.weight ?? null,
            normEps: qn?.eps ?? kn?.eps ?? model.normEps,
            qOut,
            reads: [q.base],
            writes: [qOut],
          };
        } else {
          if (q || k || v || qn || kn)
            throw new Error("internal: attention inputs are slices that are not a packed q|k|v");
          rope = {
            kind: "rope",
            op,
            qkv: null,
            q: op.q,
            k: op.k,
            v: op.v,
            qNorm: null,
            kNorm: null,
            normEps: model.normEps,
            qOut,
            reads: [op.q, op.k, op.v],
            writes: [qOut],
          };
        }
        steps.push(rope);
        def(op.out, H, "tokens");
        steps.push({ kind: "attention", op, q: qOut, rope, reads: [qOut, ...rope.reads], writes: [op.out] });
        break;
      }
      case "embedding":
        def(op.out, op.width, "tokens");
        steps.push({ kind: "embedding", op, reads: [], writes: [op.out] });
        break;
      case "linear": {
        if (views.has(op.x)) throw new Error(`internal: GEMM over a column slice (${op.x})`);
        const logits = op.out === plan.output;
        def(op.out, op.outFeatures, rowsOf(op.x), logits);
        steps.push({ kind: "linear", op, logits, reads: [op.x], writes: [op.out] });
        break;
      }
      case "layer_norm":
        def(op.out, op.width, rowsOf(op.x));
        steps.push({ kind: "layer_norm", op, reads: [op.x], writes: [op.out] });
        break;
      case "add_rms_norm": {
        def(op.out, op.width, rowsOf(op.x));
        const base = (planOp as typeof op).residual; // the plan's name, before renaming
        const residualOut = `${base}~${residuals++}`;
        def(residualOut, op.width, rowsOf(op.residual));
        renamed.set(base, residualOut);
        steps.push({
          kind: "add_rms_norm",
          op,
          residualOut,
          reads: [op.residual, op.x],
          writes: [op.out, residualOut],
        });
        break;
      }
      case "add":
        def(op.out, op.width, rowsOf(op.a));
        steps.push({ kind: "add", op, reads: [op.a, op.b], writes: [op.out] });
        break;
      case "gated_act": {
        def(op.out, op.width, rowsOf(op.gateUp));
        const prev = steps[steps.length - 1];
        const only = (readers.get(op.gateUp) ?? []).length === 1 && !views.has(op.gateUp);
        if (prev?.kind === "linear" && prev.op.out === op.gateUp && only && !prev.logits) {
          // The linear step may write `out` too, so the arena keeps it apart from the GEMM's input.
          steps[steps.length - 1] = {
            ...prev,
            gated: { act: op.act, out: op.out, width: op.width },
            writes: [...prev.writes, op.out],
          };
          steps.push({ kind: "gated_act", op, fusedInto: prev.op, reads: [op.gateUp], writes: [op.out] });
        } else steps.push({ kind: "gated_act", op, reads: [op.gateUp], writes: [op.out] });
        break;
      }
      case "gated_act2":
        if (views.has(op.gate) || views.has(op.up))
          throw new Error("internal: unfused gate/up slices (run the fusion passes)");
        def(op.out, op.width, rowsOf(op.gate));
        steps.push({ kind: "gated_act2", op, reads: [op.gate, op.up], writes: [op.out] });
        break;
      case "act":
        def(op.out, op.width, rowsOf(op.x));
        steps.push({ kind: "act", op, reads: [op.x], writes: [op.out] });
        break;
      case "gather_rows":
        def(op.out, op.width, "logits");
        steps.push({ kind: "gather_rows", op, reads: [op.x], writes: [op.out] });
        break;
    }
  }
  return { steps: fp8Input ? markNormQuant(steps, fp8Input) : steps, storage, output: plan.output };
}
