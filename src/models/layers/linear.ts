// Linear layer: y = x·Wᵀ (+ b), W in HF layout [outFeatures, inFeatures].
import type { NetworkBuilder } from "../network_builder.ts";

/** `module` is the HF module name (e.g. "model.layers.0.self_attn.q_proj"); `.weight`/`.bias` are appended. */
export function linear(
  nb: NetworkBuilder,
  x: string, // [T, inFeatures]
  module: string,
  inFeatures: number,
  outFeatures: number,
  bias: boolean,
): string /* [T, outFeatures] */ {
  const w = nb.weight(`${module}.weight`, [outFeatures, inFeatures]);
  const b = bias ? nb.weight(`${module}.bias`, [outFeatures]) : undefined;
  return nb.linear(x, inFeatures, outFeatures, w, b);
}
