// FP8 linears of compressed-tensors ("float-quantized"), quant_method "fp8" and NVIDIA ModelOpt
// checkpoints, for a linear of shape [out, in]:
//   weight        [out, in] F8_E4M3
//   weight_scale  one value (shape [], [1]: per tensor) or [out] / [out, 1] (per channel), any float dtype
//   input_scale   one value, for static activations (ignored when activations are dynamic)
//   w[r, c] = e4m3(weight[r, c]) × weight_scale[r]  (a per-tensor scale repeated per row: exact)
import type { Fp8Linear, ModuleTensors } from "./quantized_linear.ts";

export function readFp8Linear(
  t: ModuleTensors,
  shape: [number, number],
  activation: "dynamic" | "static",
): Fp8Linear {
  const [rows, cols] = shape;
  const q = t.bytes("weight");
  const s = t.f32("weight_scale");
  let scales: Float32Array;
  if (s.length === 1) scales = new Float32Array(rows).fill(s[0]);
  else if (s.length === rows && t.shape("weight_scale")[0] === rows) scales = s;
  else {
    throw t.error(
      `"weight_scale" has shape [${t.shape("weight_scale")}]; per-tensor ([] or [1]) or per-channel ([${rows}] or [${rows}, 1]) scales are read`,
    );
  }
  const bad = scales.findIndex((v) => !(Number.isFinite(v) && v >= 0));
  if (bad >= 0)
    throw t.error(`"weight_scale" holds ${scales[bad]} (row ${bad}); scales must be finite and ≥ 0`);
  let inputScale: number | null = null;
  if (activation === "static") {
    if (!t.has("input_scale")) throw t.error('activations are static but there is no "input_scale"');
    const x = t.f32("input_scale");
    if (x.length !== 1) throw t.error(`"input_scale" has ${x.length} values; one per-tensor scale is read`);
    // 0 would zero every input and NaN poison every logit: a damaged or uncalibrated checkpoint.
    if (!(Number.isFinite(x[0]) && x[0] > 0))
      throw t.error(`"input_scale" is ${x[0]}; a static input scale must be finite and > 0`);
    inputScale = x[0];
  }
  return { kind: "fp8", rows, cols, q, scales, inputScale };
}
