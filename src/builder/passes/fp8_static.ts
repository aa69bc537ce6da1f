// fp8-static's calibration (--quantize fp8-static): the static input scale of every fp8 linear, as
// ModelOpt and TensorRT-LLM calibrate it: the largest |x| the linear's input took over the calibration
// tokens, divided by 448 (E4M3's largest value), so the calibrated range maps onto E4M3's without
// saturating. Linears that read one input (fused or not) get one scale.
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { E4M3_MAX } from "../../fp8_e4m3.ts";
import type { Network } from "../../models/network.ts";
import { runCalibration } from "../calibration_run.ts";
import { quantizableWeights } from "./quantize_weights.ts";

/** Input scale by weight name for every quantizable linear; an input the calibration only ever saw
 * as zeros gets scale 1 (any positive scale represents zero exactly). */
export function* fp8InputScales(
  model: ModelConfig,
  net: Network,
  weights: ReadonlyMap<string, Float32Array>,
  ids: Int32Array,
  window: number,
): Generator<void, Map<string, number>> {
  const eligible = quantizableWeights(net);
  const amax = new Map<string, number>(); // by input activation name
  yield* runCalibration(model, net, weights, ids, window, (op, x, rows) => {
    if (!eligible.has(op.weight)) return;
    let m = amax.get(op.x) ?? 0;
    for (let i = 0; i < rows * op.inFeatures; i++) m = Math.max(m, Math.abs(x[i]));
    amax.set(op.x, m);
  });
  const scales = new Map<string, number>();
  for (const op of net.ops) {
    if (op.kind !== "linear" || !eligible.has(op.weight)) continue;
    const m = amax.get(op.x) ?? 0;
    scales.set(op.weight, m > 0 ? Math.fround(m / E4M3_MAX) : 1);
  }
  return scales;
}
