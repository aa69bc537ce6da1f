// The weight formats the CUDA backend runs: plain dtype arrays, and the weight-only formats of
// CUDA_WEIGHT_FORMATS (kernels/gemv_wo.cu, quantized_linears.ts). An engine holding any other format
// (one the CPU backend reads but no CUDA kernel does yet) is refused before the GPU is touched.
import { CUDA_WEIGHT_FORMATS, isCudaWeightFormat } from "../../engine/build_config.ts";
import { QuantizedEngineUnsupportedError } from "../../engine/errors.ts";
import type { EngineHeader } from "../../engine/format.ts";

/** Throws QuantizedEngineUnsupportedError when a weight of the engine at `dir` has a format that is
 * not in CUDA_WEIGHT_FORMATS. */
export function assertCudaWeightFormats(dir: string, header: Pick<EngineHeader, "weights">): void {
  const unsupported = header.weights.find((w) => w.format !== undefined && !isCudaWeightFormat(w.format));
  if (!unsupported) return;
  throw new QuantizedEngineUnsupportedError(
    `${unsupported.format} engines run on the CPU backend only so far; the CUDA backend runs ${CUDA_WEIGHT_FORMATS.join(", ")} (engine ${dir}, weight ${unsupported.name}): rebuild with one of those or without --quantize, or use --backend cpu`,
  );
}
