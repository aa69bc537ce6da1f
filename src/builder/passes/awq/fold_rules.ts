// Where AWQ's per-input-channel scales s can go (Lin et al., 2023, §3.2): a linear group y = W·x
// becomes y = (W·diag(s))·(diag(s)⁻¹·x), exact when diag(s)⁻¹ folds into the op that produces x:
//
//   x = RMSNorm(h)·γ  (rms_norm / add_rms_norm)     γ ← γ / s
//   x = LayerNorm(h)·γ + β                            γ ← γ / s, β ← β / s
//   x = act(gate) · up, up = rows of a linear         those rows (and bias entries) ← / s
//   x = attention(q, k, v), v = rows of a linear      those rows ← / s, only when every query head has
//                                                      its own KV head (MHA): with GQA one v channel
//                                                      feeds several o_proj input channels, whose s differ
//
// A group is every linear reading one activation, so it runs after the fusion passes (fused QKV and
// gate/up are one linear, unfused q/k/v three sharing one s: the same scaling either way) and the
// folds land on the ops the engine runs. Anything else gets no fold, and the group is left unscaled.
import type { Network, Op } from "../../../models/network.ts";
import { opInputs, opOutputs, opWeights } from "../../../models/network.ts";
import { quantizableWeights } from "../quantize_weights.ts";

type LinearOp = Extract<Op, { kind: "linear" }>;

/** Where diag(s)⁻¹ goes: every entry i of each vector, or rows [offset, offset + n) of a matrix. */
export type Fold =
  | { kind: "vectors"; weights: string[] }
  | { kind: "rows"; weight: string; bias?: string; offset: number; rowWidth: number };

export interface AwqGroup {
  /** The activation the group's linears read, [T, inFeatures]. */
  input: string;
  inFeatures: number;
  linears: LinearOp[];
  /** null: no exact fold, so the group is quantized unscaled (s = 1). */
  fold: Fold | null;
  /** Why fold is null (for the build report). */
  skip?: string;
}

/** The network's AWQ groups, in op order: one per activation that only quantizable linears read. */
export function awqGroups(net: Network): AwqGroup[] {
  const quantizable = quantizableWeights(net);
  const readers = new Map<string, Op[]>();
  const weightReaders = new Map<string, number>();
  for (const op of net.ops) {
    for (const x of new Set(opInputs(op))) readers.set(x, [...(readers.get(x) ?? []), op]);
    for (const w of opWeights(op)) weightReaders.set(w, (weightReaders.get(w) ?? 0) + 1);
  }
  const producer = new Map<string, Op>();
  for (const op of net.ops) for (const o of opOutputs(op)) producer.set(o, op);
  const ctx: Ctx = { readers, weightReaders, producer };

  const groups: AwqGroup[] = [];
  const seen = new Set<string>();
  for (const op of net.ops) {
    if (op.kind !== "linear" || seen.has(op.x)) continue;
    seen.add(op.x);
    const ops = readers.get(op.x) ?? [];
    const linears = ops.filter((o): o is LinearOp => o.kind === "linear");
    if (linears.length !== ops.length || !linears.every((l) => quantizable.has(l.weight))) continue;
    const found = foldFor(op.x, ctx);
    groups.push({
      input: op.x,
      inFeatures: op.inFeatures,
      linears,
      fold: typeof found === "string" ? null : found,
      ...(typeof found === "string" ? { skip: found } : {}),
    });
  }
  return groups;
}

interface Ctx {
  readers: Map<string, Op[]>;
  weightReaders: Map<string, number>;
  producer: Map<string, Op>;
}

/** The exact fold for activation x, or why there is none. */
function foldFor(x: string, ctx: Ctx): Fold | string {
  const p = ctx.producer.get(x);
  const own = (w: string) => ctx.weightReaders.get(w) === 1;
  switch (p?.kind) {
    case "rms_norm":
    case "add_rms_norm":
      if (p.kind === "rms_norm" && p.groupWidth) return "per-head norm";
      return own(p.weight) ? { kind: "vectors", weights: [p.weight] } : "norm weight shared";
    case "layer_norm":
      return own(p.weight) && own(p.bias)
        ? { kind: "vectors", weights: [p.weight, p.bias] }
        : "norm weight shared";
    case "gated_act": {
      const rows = rowsOf(p.gateUp, p, ctx);
      return rows ? { ...rows, offset: rows.offset + p.width } : "gate/up not from a linear";
    }
    case "gated_act2":
      return rowsOf(p.up, p, ctx) ?? "up not from a linear";
    case "attention":
      if (p.numKvHeads !== p.numHeads) return `GQA (${p.numHeads} query heads, ${p.numKvHeads} KV heads)`;
      return rowsOf(p.v, p, ctx) ?? "v not from a linear";
    default:
      return p ? `produced by ${p.kind}` : "no producer";
  }
}

/** The linear rows that write activation `a`, when only `consumer` reads it (directly, or through one
 * split of the linear's output) and nothing else reads the linear's weight. */
function rowsOf(a: string, consumer: Op, ctx: Ctx): Extract<Fold, { kind: "rows" }> | null {
  const only = (name: string, op: Op) => {
    const r = ctx.readers.get(name) ?? [];
    return r.length === 1 && r[0] === op;
  };
  if (!only(a, consumer)) return null;
  let p = ctx.producer.get(a);
  let offset = 0;
  if (p?.kind === "split") {
    const i = p.outs.indexOf(a);
    offset = p.widths.slice(0, i).reduce((s, w) => s + w, 0);
    if (!only(p.x, p)) return null;
    p = ctx.producer.get(p.x);
  }
  if (p?.kind !== "linear" || ctx.weightReaders.get(p.weight) !== 1) return null;
  return {
    kind: "rows",
    weight: p.weight,
    ...(p.bias ? { bias: p.bias } : {}),
    offset,
    rowWidth: p.inFeatures,
  };
}

/** For each linear weight whose output rows become attention queries or keys (directly, through a
 * split of a fused QKV, or through a per-head norm), those rows as [from, to) ranges. */
export function queryKeyRows(net: Network): Map<string, [number, number][]> {
  const producer = new Map<string, Op>();
  for (const op of net.ops) for (const o of opOutputs(op)) producer.set(o, op);
  const rows = new Map<string, [number, number][]>();
  for (const op of net.ops) {
    if (op.kind !== "attention") continue;
    for (let a of [op.q, op.k]) {
      let p = producer.get(a);
      if (p?.kind === "rms_norm" && p.groupWidth) {
        a = p.x;
        p = producer.get(a);
      }
      let from = 0;
      let width = 0;
      if (p?.kind === "split") {
        const i = p.outs.indexOf(a);
        from = p.widths.slice(0, i).reduce((s, w) => s + w, 0);
        width = p.widths[i];
        p = producer.get(p.x);
      }
      if (p?.kind !== "linear") continue;
      rows.set(p.weight, [...(rows.get(p.weight) ?? []), [from, from + (width || p.outFeatures)]]);
    }
  }
  return rows;
}

/** Applies each group's scales s [inFeatures] in place: every linear's columns × s, the fold ÷ s.
 * Groups without a scale (or without a fold) are left alone. `weights` are fp32 [out, in] row-major. */
export function applyAwqScales(
  groups: readonly AwqGroup[],
  scales: ReadonlyMap<string, Float32Array>,
  weights: Map<string, Float32Array>,
): void {
  for (const g of groups) {
    const s = scales.get(g.input);
    if (!s || !g.fold) continue;
    const n = g.inFeatures;
    for (const l of g.linears) {
      const w = get(weights, l.weight);
      for (let r = 0; r < l.outFeatures; r++) for (let c = 0; c < n; c++) w[r * n + c] *= s[c];
    }
    const f = g.fold;
    if (f.kind === "vectors") {
      for (const name of f.weights) {
        const v = get(weights, name);
        for (let c = 0; c < n; c++) v[c] /= s[c];
      }
      continue;
    }
    const w = get(weights, f.weight);
    for (let c = 0; c < n; c++) {
      const row = (f.offset + c) * f.rowWidth;
      for (let k = 0; k < f.rowWidth; k++) w[row + k] /= s[c];
    }
    if (f.bias) {
      const b = get(weights, f.bias);
      for (let c = 0; c < n; c++) b[f.offset + c] /= s[c];
    }
  }
}

function get(weights: Map<string, Float32Array>, name: string): Float32Array {
  const w = weights.get(name);
  if (!w) throw new Error(`internal: AWQ scaling reads weight ${name}, which is not loaded`);
  return w;
}
