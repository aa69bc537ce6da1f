// Pass: sibling linears that read the same activation become one GEMM over concatenated weights,
// followed by a column split (q/k/v → qkv_proj, gate/up → gate_up_proj). Fewer, larger GEMMs are
// what both backends want; the weights are concatenated at build time, not at load. `canFuse` lets
// the builder keep a group apart whose weights cannot be stacked (pre-quantized parts that differ in
// format, group size or act-order g_idx): then each of its linears stays as it is.
import type { Network, Op, WeightSpec } from "../../models/network.ts";
import { PACKED_MODULES } from "../../models/weight_map.ts";

type LinearOp = Extract<Op, { kind: "linear" }>;

function moduleOf(weight: string): { parent: string; leaf: string } {
  const m = /^(.*)\.([^.]+)\.weight$/.exec(weight);
  return m ? { parent: m[1], leaf: m[2] } : { parent: "", leaf: weight };
}

/** The packed weight's name, e.g. "model.layers.0.self_attn.qkv_proj.weight". */
function packedName(group: LinearOp[], suffix: "weight" | "bias"): string {
  const mods = group.map((op) => moduleOf(op.weight));
  const parent = mods[0].parent;
  const leaves = mods.map((m) => m.leaf).join(",");
  const leaf = PACKED_MODULES[leaves] ?? mods.map((m) => m.leaf).join("+");
  return `${parent}.${leaf}.${suffix}`;
}

function concatSpec(specs: WeightSpec[]): WeightSpec {
  const rows = specs.reduce((s, w) => s + w.shape[0], 0);
  return { shape: [rows, ...specs[0].shape.slice(1)], source: specs.flatMap((w) => w.source) };
}

/** Whether sibling weights (checkpoint names, in op order) may be stacked into one. */
export type CanFuse = (weights: string[]) => boolean;

export function fuseSiblingLinears(net: Network, canFuse: CanFuse = () => true): Network {
  const weights = { ...net.weights };
  const consumed = new Set<Op>();
  const ops: Op[] = [];
  for (const op of net.ops) {
    if (consumed.has(op)) continue;
    if (op.kind !== "linear") {
      ops.push(op);
      continue;
    }
    const group = net.ops.filter(
      (o): o is LinearOp =>
        o.kind === "linear" &&
        o.x === op.x &&
        !consumed.has(o) &&
        o.inFeatures === op.inFeatures &&
        Boolean(o.bias) === Boolean(op.bias) &&
        moduleOf(o.weight).parent === moduleOf(op.weight).parent,
    );
    if (group.length < 2) {
      ops.push(op);
      continue;
    }
    if (!canFuse(group.map((g) => g.weight))) {
      for (const g of group) consumed.add(g);
      ops.push(...group);
      continue;
    }
    for (const g of group) consumed.add(g);
    const weight = packedName(group, "weight");
    weights[weight] = concatSpec(group.map((g) => net.weights[g.weight]));
    let bias: string | undefined;
    if (op.bias) {
      bias = packedName(group, "bias");
      weights[bias] = concatSpec(group.map((g) => net.weights[g.bias as string]));
    }
    const outFeatures = group.reduce((s, g) => s + g.outFeatures, 0);
    const out = `${weight.replace(/\.weight$/, "")}#fused`;
    ops.push({
      kind: "linear",
      x: op.x,
      out,
      inFeatures: op.inFeatures,
      outFeatures,
      weight,
      ...(bias ? { bias } : {}),
    });
    ops.push({
      kind: "split",
      x: out,
      outs: group.map((g) => g.out),
      widths: group.map((g) => g.outFeatures),
    });
  }
  return { ...net, ops, weights: pruneWeights(ops, weights) };
}

/** Drops weight specs no op reads any more. */
export function pruneWeights(ops: Op[], weights: Record<string, WeightSpec>): Record<string, WeightSpec> {
  const used = new Set<string>();
  for (const op of ops) {
    if ("weight" in op) used.add(op.weight);
    if ("bias" in op && typeof op.bias === "string") used.add(op.bias);
  }
  return Object.fromEntries(Object.entries(weights).filter(([k]) => used.has(k)));
}
