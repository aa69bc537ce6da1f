// Build settings: what the engine is specialised for. Validated once, here.
import type { DTypeName } from "../dtype.ts";
import { InvalidArgumentError } from "../errors.ts";
import { CalibrationNotUsedError, DEFAULT_CALIBRATION_TOKENS, resolveCalibration } from "./calibration.ts";
import { QuantizedEngineUnsupportedError } from "./errors.ts";
import type { WeightFormat } from "./weight_format.ts";

/** What `--quantize` can build from an unquantized checkpoint: a stored weight format (weight_format.ts;
 * "fp8" with dynamic activation scales), or int4-awq, which stores int4-wo weights after
 * activation-aware scaling (builder/passes/awq/). */
export const QUANTIZE_METHODS = ["int8-wo", "int4-wo", "fp8", "int4-awq", "fp8-static"] as const;
export type QuantizeMethod = (typeof QUANTIZE_METHODS)[number];

/** The methods that run calibration text through the model (--calibration, --calibration-tokens). */
export const CALIBRATED_METHODS = ["int4-awq", "fp8-static"] as const;
export type CalibratedMethod = (typeof CALIBRATED_METHODS)[number];

export function isCalibrated(method: QuantizeMethod | "none"): method is CalibratedMethod {
  return (CALIBRATED_METHODS as readonly string[]).includes(method);
}

/** The weight formats --quantize stores. */
export type BuiltWeightFormat = Exclude<QuantizeMethod, CalibratedMethod> & WeightFormat;

/** The weight format a quantize method stores (fp8-static: fp8 with static input scales). */
export function storedFormat(method: QuantizeMethod): BuiltWeightFormat {
  if (method === "int4-awq") return "int4-wo";
  if (method === "fp8-static") return "fp8";
  return method;
}

export type BackendName = "cpu" | "cuda";

export interface BuildConfig {
  backend: BackendName;
  /** Weight storage dtype; "auto" keeps the checkpoint's. The CPU backend always computes in fp32. */
  dtype: DTypeName | "auto";
  /** Tokens per KV-cache block (the paged layout's block size). */
  kvBlockSize: number;
  /** Longest sequence (prompt + generated) the engine serves; ≤ the model's context window. 0 = the model's. */
  maxSeqLen: number;
  /** Largest number of sequences in one step. */
  maxBatchSize: number;
  /** Most tokens in one step (prefill chunk + decode tokens); sizes the CUDA activation arena. */
  maxNumTokens: number;
  /** Run the fusion passes (QKV, gate-up, add+norm). Off only for debugging the passes. */
  fuse: boolean;
  /** Build from config.json alone with random weights (benchmarks of shipped configs). */
  randomWeights: boolean;
  /** Quantization of the transformer blocks' linear layers (weight_format.ts: int8-wo / int4-wo weight
   * only, fp8 weights and per-token activations, int4-awq); "none" keeps every weight in `dtype`. The
   * LM head and the embeddings always stay in `dtype`. */
  quantize: "none" | QuantizeMethod;
  /** int4-awq only (absent otherwise, so other builds' configs and cache keys are unchanged): the
   * calibration text (absolute once resolved; absent before = the bundled text), how many of its
   * tokens run through the model, and its content hash, which the cache keys on instead of the path. */
  calibrationFile?: string;
  calibrationTokens?: number;
  calibrationSha256?: string;
}

/** The weight formats the CUDA backend runs (kernels/gemv_wo.cu, gemv_zp.cu; fp8: kernels/gemv_fp8.cu and
 * cuBLASLt's FP8 GEMM, fp8_linears.ts, on GPUs of compute capability 8.9 or newer), listed one by one: a
 * format not listed is refused for --backend cuda, at build and at load (backends/cuda/weight_formats.ts).
 * int4-zp is no --quantize method: it comes from AWQ and GPTQ checkpoints (builder/prequantized.ts). */
export const CUDA_WEIGHT_FORMATS = [
  "int8-wo",
  "int4-wo",
  "int4-zp",
  "fp8",
] as const satisfies readonly WeightFormat[];
export type CudaWeightFormat = (typeof CUDA_WEIGHT_FORMATS)[number];

export function isCudaWeightFormat(format: string): format is CudaWeightFormat {
  return (CUDA_WEIGHT_FORMATS as readonly string[]).includes(format);
}

export const DEFAULT_BUILD_CONFIG: BuildConfig = {
  backend: "cpu",
  dtype: "auto",
  kvBlockSize: 16,
  maxSeqLen: 0,
  maxBatchSize: 64,
  maxNumTokens: 4096,
  fuse: true,
  randomWeights: false,
  quantize: "none",
};

/** BuildConfig's optional keys (absent from DEFAULT_BUILD_CONFIG), for the options-key checks. */
export const OPTIONAL_BUILD_KEYS = ["calibrationFile", "calibrationTokens", "calibrationSha256"] as const;

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) {
    throw new InvalidArgumentError(`build option ${name} must be a positive integer, got ${v}`);
  }
}

/** maxBatchSize of a CUDA engine when none is asked for: room for a server's concurrent requests
 * (DEFAULT_BUILD_CONFIG's 64 is the CPU's, where a step of many rows gains nothing). */
export const DEFAULT_CUDA_MAX_BATCH_SIZE = 256;

export function resolveBuildConfig(partial: Partial<BuildConfig> = {}): BuildConfig {
  const given = stripUndefined(partial);
  const c: BuildConfig = { ...DEFAULT_BUILD_CONFIG, ...given };
  if (given.maxBatchSize === undefined && c.backend === "cuda") c.maxBatchSize = DEFAULT_CUDA_MAX_BATCH_SIZE;
  if (c.backend !== "cpu" && c.backend !== "cuda") {
    throw new InvalidArgumentError(`unknown backend "${c.backend}"; use --backend cpu or --backend cuda`);
  }
  if (!["auto", "fp32", "fp16", "bf16"].includes(c.dtype)) {
    throw new InvalidArgumentError(`unknown dtype "${c.dtype}"; use one of fp32, fp16, bf16 (or auto)`);
  }
  if (c.quantize !== "none" && !QUANTIZE_METHODS.includes(c.quantize)) {
    throw new InvalidArgumentError(
      `unknown quantization "${c.quantize}"; use --quantize ${QUANTIZE_METHODS.join(" or --quantize ")} (or leave it out)`,
    );
  }
  if (isCalibrated(c.quantize)) {
    Object.assign(
      c,
      resolveCalibration(c.calibrationFile ?? "", c.calibrationTokens ?? DEFAULT_CALIBRATION_TOKENS),
    );
  } else if (c.calibrationFile !== undefined || c.calibrationTokens !== undefined) {
    const flag =
      c.calibrationFile !== undefined
        ? `--calibration ${c.calibrationFile}`
        : `--calibration-tokens ${c.calibrationTokens}`;
    throw new CalibrationNotUsedError(
      `${flag} applies only to --quantize ${CALIBRATED_METHODS.join(" or ")} (got --quantize ${c.quantize}); add one of those, or drop ${flag.split(" ")[0]}`,
    );
  } else {
    delete c.calibrationSha256; // a hash without its file means nothing
  }
  if (c.quantize !== "none" && c.backend === "cuda" && !isCudaWeightFormat(storedFormat(c.quantize))) {
    // Refused before any build work; the CUDA backend refuses such an engine at load as well.
    const methods = QUANTIZE_METHODS.filter((m) => isCudaWeightFormat(m));
    throw new QuantizedEngineUnsupportedError(
      `${c.quantize} engines run on the CPU backend only so far; build with --quantize ${methods.join(" or --quantize ")} for CUDA (or use --backend cpu)`,
    );
  }
  positiveInt("kvBlockSize", c.kvBlockSize);
  positiveInt("maxBatchSize", c.maxBatchSize);
  positiveInt("maxNumTokens", c.maxNumTokens);
  if (!Number.isInteger(c.maxSeqLen) || c.maxSeqLen < 0) {
    throw new InvalidArgumentError(
      `build option maxSeqLen must be a non-negative integer, got ${c.maxSeqLen}`,
    );
  }
  return c;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
