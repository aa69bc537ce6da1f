// Rotary position embeddings applied as Hugging Face applies them (apply_rotary_pos_emb in
// `modeling_llama.py`); inv_freq comes from models/rope.ts.
//
// Rotation ("rotate_half", non-interleaved), for each head and each i < rotaryDim / 2 = half:
//
//   head:  [ x_0 … x_{half-1} | x_half … x_{rotaryDim-1} | pass-through … x_{headDim-1} ]
//              first half            second half              (partial rotary: untouched)
//   θ_i = fp32(position · invFreq[i]);  c = fp32(cos θ_i) · scaling;  s = fp32(sin θ_i) · scaling
//   x_i        ← x_i · c − x_{i+half} · s
//   x_{i+half} ← x_{i+half} · c + x_i · s

import { checkSize } from "./check.ts";

const f32 = Math.fround;

// Part of the CPU kernel API (kernels/index.ts) so callers take rotation and frequencies from one place.
export { type RopeFrequencies, ropeInvFreq } from "../../../models/rope.ts";

/**
 * Rotates the first `rotaryDim` dims of every head of `x` in place (HF apply_rotary_pos_emb with
 * rotate_half). Each product and the sum are fp32 ops, as in `(q * cos) + (rotate_half(q) * sin)`.
 */
export function applyRope(
  x: Float32Array, // [numTokens, numHeads, headDim], rotated in place
  numTokens: number,
  numHeads: number,
  headDim: number,
  rotaryDim: number,
  positions: Int32Array, // [numTokens]
  invFreq: Float32Array, // [rotaryDim / 2]
  attentionScaling: number,
): void {
  const half = rotaryDim / 2;
  if (!Number.isInteger(half) || rotaryDim > headDim) {
    throw new RangeError(`rotaryDim ${rotaryDim} must be even and at most headDim ${headDim}`);
  }
  checkSize("applyRope x", x, numTokens * numHeads * headDim);
  checkSize("applyRope positions", positions, numTokens);
  checkSize("applyRope invFreq", invFreq, half);
  const scalingF = f32(attentionScaling);
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let t = 0; t < numTokens; t++) {
    const pos = positions[t];
    for (let i = 0; i < half; i++) {
      const freq = f32(pos * invFreq[i]); // inv_freq @ position_ids.float(), one fp32 product
      cos[i] = f32(Math.cos(freq)) * scalingF;
      sin[i] = f32(Math.sin(freq)) * scalingF;
    }
    for (let h = 0; h < numHeads; h++) {
      const b = (t * numHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const x1 = x[b + i];
        const x2 = x[b + i + half];
        const c = cos[i];
        const s = sin[i];
        x[b + i] = f32(x1 * c) - f32(x2 * s);
        x[b + i + half] = f32(x2 * c) + f32(x1 * s);
      }
    }
  }
}
