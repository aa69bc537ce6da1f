// Normalization layers.
import type { NetworkBuilder } from "../network_builder.ts";

/** RMSNorm over rows of `width`; with `groupWidth`, over each group (per-head norm, Qwen3's q/k norm). */
export function rmsNorm(
  nb: NetworkBuilder,
  x: string, // [T, width]
  weightName: string, // [groupWidth ?? width]
  width: number,
  eps: number,
  groupWidth?: number,
): string {
  const w = nb.weight(weightName, [groupWidth ?? width]);
  return nb.rmsNorm(x, width, eps, w, groupWidth);
}

export function layerNorm(nb: NetworkBuilder, x: string, module: string, width: number, eps: number): string {
  const w = nb.weight(`${module}.weight`, [width]);
  const b = nb.weight(`${module}.bias`, [width]);
  return nb.layerNorm(x, width, eps, w, b);
}
