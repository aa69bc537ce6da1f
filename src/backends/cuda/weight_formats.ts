// The weight formats the CUDA backend runs: plain dtype arrays only until its quantized kernels land;
// a quantized engine is refused before the GPU is touched.
import { QuantizedEngineUnsupportedError } from "../../engine/errors.ts";
import type { EngineHeader } from "../../engine/format.ts";

/** Throws QuantizedEngineUnsupportedError when any weight of the engine at `dir` is quantized. */
export function assertCudaWeightFormats(dir: string, header: Pick<EngineHeader, "weights">): void {
  const quantized = header.weights.find((w) => w.format !== undefined);
  if (!quantized) return;
  throw new QuantizedEngineUnsupportedError(
    `${quantized.format} engines run on the CPU backend only so far; build without --quantize for CUDA (engine ${dir}, weight ${quantized.name})`,
  );
}
