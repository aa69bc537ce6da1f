// Normalisation layers, computed as Hugging Face / torch compute them in fp32.
//
// Each fp32 step of the torch code is one Math.fround here (a double op on fp32 inputs, rounded once,
// is the correctly rounded fp32 op). Sums run in double: torch sums in fp32 in an order we cannot
// reproduce, so a row's variance may differ from torch's by an ulp, and outputs by a few (RMSNorm:
// ≤ 3 ulps seen against transformers 5.17); nothing else differs.
// `out` may be the same array as `x` (in place): each row is read before it is written.

import { checkSize } from "./check.ts";

const f32 = Math.fround;

/**
 * LlamaRMSNorm (Mistral, Qwen2, … alike):
 *   variance = mean(x², fp32); h = x * rsqrt(variance + eps); out = weight * h.
 * torch's fp32 rsqrt is 1 / sqrt(·), both correctly rounded, and eps is rounded to fp32 when added.
 */
export function rmsNorm(
  x: Float32Array, // [m, d]
  weight: Float32Array, // [d]
  eps: number,
  m: number,
  d: number,
  out: Float32Array, // [m, d]
): void {
  checkSize("rmsNorm x", x, m * d);
  checkSize("rmsNorm weight", weight, d);
  checkSize("rmsNorm out", out, m * d);
  const epsF = f32(eps);
  for (let r = 0; r < m; r++) {
    const o = r * d;
    let sumSq = 0;
    for (let i = 0; i < d; i++) {
      const v = x[o + i];
      sumSq += f32(v * v); // hidden_states.pow(2) is an fp32 tensor
    }
    const variance = f32(sumSq / d);
    const rstd = f32(1 / f32(Math.sqrt(f32(variance + epsF))));
    for (let i = 0; i < d; i++) out[o + i] = weight[i] * f32(x[o + i] * rstd);
  }
}

/**
 * The fused residual add + RMSNorm of a decoder layer: residual += x (in place, fp32 add, as HF's
 * `hidden_states = residual + hidden_states`), then out = rmsNorm(residual).
 */
export function addRmsNorm(
  residual: Float32Array, // [m, d], updated in place
  x: Float32Array, // [m, d]
  weight: Float32Array, // [d]
  eps: number,
  m: number,
  d: number,
  out: Float32Array, // [m, d]; may be x, must not be residual
): void {
  checkSize("addRmsNorm residual", residual, m * d);
  checkSize("addRmsNorm x", x, m * d);
  const len = m * d;
  for (let i = 0; i < len; i++) residual[i] += x[i];
  rmsNorm(residual, weight, eps, m, d, out);
}

/**
 * torch.nn.LayerNorm over the last dimension (biased variance), in the order of torch's CPU kernel:
 *   rstd = 1 / sqrt(var + eps); y = (x * rstd + (-rstd * mean)) * weight + bias.
 * Mean and variance are computed in double (two passes) and rounded to fp32.
 * A null weight or bias is the affine-free case (weight 1, bias 0).
 */
export function layerNorm(
  x: Float32Array, // [m, d]
  weight: Float32Array | null, // [d]
  bias: Float32Array | null, // [d]
  eps: number,
  m: number,
  d: number,
  out: Float32Array, // [m, d]
): void {
  checkSize("layerNorm x", x, m * d);
  if (weight !== null) checkSize("layerNorm weight", weight, d);
  if (bias !== null) checkSize("layerNorm bias", bias, d);
  checkSize("layerNorm out", out, m * d);
  const epsF = f32(eps);
  for (let r = 0; r < m; r++) {
    const o = r * d;
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[o + i];
    const meanD = sum / d;
    let sumSq = 0;
    for (let i = 0; i < d; i++) {
      const c = x[o + i] - meanD;
      sumSq += c * c;
    }
    const mean = f32(meanD);
    const rstd = f32(1 / f32(Math.sqrt(f32(f32(sumSq / d) + epsF))));
    const shift = f32(-rstd * mean);
    for (let i = 0; i < d; i++) {
      let y = f32(f32(x[o + i] * rstd) + shift);
      if (weight !== null) y = f32(y * weight[i]);
      if (bias !== null) y += bias[i];
      out[o + i] = y;
    }
  }
}
