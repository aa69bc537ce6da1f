// The weight formats the CUDA backend runs: plain dtype arrays, and the formats of CUDA_WEIGHT_FORMATS
// (kernels/gemv_wo.cu, gemv_zp.cu, quantized_linears.ts; fp8: kernels/gemv_fp8.cu, fp8_linears.ts). An
// engine holding any other format (one the CPU backend reads but no CUDA kernel does yet) is refused
// before the GPU is touched, and so is an fp8 weight whose input features are not a multiple of 16; an
// fp8 engine is refused on a GPU without FP8 tensor cores once the device is open.
import { CUDA_WEIGHT_FORMATS, isCudaWeightFormat } from "../../engine/build_config.ts";
import { QuantizedEngineUnsupportedError } from "../../engine/errors.ts";
import type { EngineHeader } from "../../engine/format.ts";
import { quantizedLayout } from "../../engine/weight_format.ts";

/** Lowest compute capability with E4M3 tensor cores (Ada, sm_89; Hopper is sm_90). */
export const FP8_MIN_COMPUTE_CAPABILITY = [8, 9] as const;

/** Throws QuantizedEngineUnsupportedError when a weight of the engine at `dir` has a format that is
 * not in CUDA_WEIGHT_FORMATS, or is an fp8 weight whose input features are not a multiple of 16 (the
 * 16-byte vectors of gemv_fp8.cu and cuBLASLt's FP8 layouts; checked first, as the more specific). */
export function assertCudaWeightFormats(dir: string, header: Pick<EngineHeader, "weights">): void {
  const odd = header.weights.find((w) => w.format === "fp8" && quantizedLayout(w.shape).cols % 16 !== 0);
  if (odd)
    throw new QuantizedEngineUnsupportedError(
      `fp8 weight ${odd.name} of engine ${dir} has ${quantizedLayout(odd.shape).cols} input features; the CUDA backend's FP8 kernels need a multiple of 16: rebuild without --quantize fp8 (or with int8-wo), or use --backend cpu`,
    );
  const unsupported = header.weights.find((w) => w.format !== undefined && !isCudaWeightFormat(w.format));
  if (unsupported)
    throw new QuantizedEngineUnsupportedError(
      `${unsupported.format} engines run on the CPU backend only so far; the CUDA backend runs ${CUDA_WEIGHT_FORMATS.join(", ")} (engine ${dir}, weight ${unsupported.name}): rebuild with one of those or without --quantize, or use --backend cpu`,
    );
}

/** Throws QuantizedEngineUnsupportedError when the GPU (`sm`, compute capability `cc`) is older than
 * FP8_MIN_COMPUTE_CAPABILITY; `what` names the fp8 engine (or build) refused. */
export function assertFp8Capable(
  what: string,
  gpu: { sm: string; computeCapability: readonly [number, number] },
): void {
  const [major, minor] = gpu.computeCapability;
  const [needMajor, needMinor] = FP8_MIN_COMPUTE_CAPABILITY;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return;
  throw new QuantizedEngineUnsupportedError(
    `${what} needs a GPU of compute capability ${needMajor}.${needMinor} or newer (sm_${needMajor}${needMinor}: FP8 tensor cores); this GPU is ${gpu.sm}: rebuild with --quantize int8-wo or without --quantize, or use --backend cpu`,
  );
}

/** Whether an engine (or a build) holds fp8 weights. */
export const hasFp8Weights = (weights: readonly { format?: string }[]): boolean =>
  weights.some((w) => w.format === "fp8");
