// Named errors of the checkpoint stage. Each message says what is wrong, where (file, tensor, field),
// the offending value and how to fix it; the structured fields are there for callers that branch on them.
import { KilnError } from "../errors.ts";

/** A safetensors file (or its index) is corrupt, truncated or not in the format we read. */
export class SafetensorsError extends KilnError {
  constructor(
    /** File the problem is in. */
    readonly path: string,
    /** What is wrong, with the offending values, e.g. `tensor "w": data_offsets [0, 12] ...`. */
    readonly problem: string,
    fix = "the file is corrupt or was not written as safetensors; re-download or re-export it",
    options?: { cause?: unknown },
  ) {
    super(`invalid safetensors file ${path}: ${problem}; ${fix}`, options);
  }
}

/** Tensors the caller asked for are in none of the checkpoint's files. */
export class MissingTensorError extends KilnError {
  /** The missing names. */
  readonly tensorNames: string[];
  /** Files that were searched (or the checkpoint directory). */
  readonly searched: string[];

  constructor(
    /** One missing tensor name, or all of them. */
    names: string | string[],
    /** The file(s) searched, or the checkpoint directory. */
    searched: string | string[],
    /** Existing tensor names close to the (first) one asked for, best first. */
    readonly nearNames: string[] = [],
  ) {
    const tensorNames = typeof names === "string" ? [names] : names;
    const files = typeof searched === "string" ? [searched] : searched;
    const shownFiles = files.length > 4 ? [...files.slice(0, 3), `... ${files.length - 3} more`] : files;
    const where = files.length === 1 ? files[0] : `${files.length} files (${shownFiles.join(", ")})`;
    const shownNames =
      tensorNames.length > 5
        ? [...tensorNames.slice(0, 5), `... ${tensorNames.length - 5} more`]
        : tensorNames;
    const what =
      tensorNames.length === 1
        ? `tensor "${tensorNames[0]}"`
        : `${tensorNames.length} tensors (${shownNames.map((n) => `"${n}"`).join(", ")})`;
    const near = nearNames.length > 0 ? ` Similar names: ${nearNames.map((n) => `"${n}"`).join(", ")}.` : "";
    super(
      `${what} not found in ${where}.${near} ` +
        "The checkpoint does not match what the model expects: check that config.json's architecture " +
        "matches the weights and that the download is complete.",
    );
    this.tensorNames = tensorNames;
    this.searched = files;
  }
}

/** config.json is missing, unreadable, not JSON, or has a field that is missing, mistyped or out of range. */
export class ConfigError extends KilnError {
  constructor(
    /** The config file (or other source) the value came from. */
    readonly source: string,
    /** The offending field (dotted path, e.g. "rope_scaling.factor"), or null for the whole file. */
    readonly field: string | null,
    /** What is wrong, with the offending value. */
    readonly problem: string,
    fix: string,
    options?: { cause?: unknown },
  ) {
    const where = field === null ? source : `${source}: field "${field}"`;
    super(`bad model config ${where}: ${problem}; ${fix}`, options);
  }
}

/** The checkpoint directory does not exist or lacks config.json / the *.safetensors weights. */
export class CheckpointNotFoundError extends KilnError {
  constructor(
    readonly dir: string,
    readonly problem: string,
    fix = "pass the directory of a Hugging Face checkpoint (config.json + *.safetensors), " +
      "e.g. one downloaded with `huggingface-cli download ORG/MODEL --local-dir DIR`",
    options?: { cause?: unknown },
  ) {
    super(`no usable checkpoint at ${dir}: ${problem}; ${fix}`, options);
  }
}

/** Formats a value for an error message: JSON for plain data, short. */
export function showValue(value: unknown): string {
  if (value === undefined) return "undefined";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A tensor read as a plain float weight is stored in a packed dtype (F8_E4M3, I32, ...), which kiln
 * reads only as part of a quantized linear that config.json's quantization scheme declares. */
export class PackedTensorError extends SafetensorsError {
  constructor(
    path: string,
    readonly tensorName: string,
    readonly dtype: string,
  ) {
    super(
      path,
      `tensor "${tensorName}" is ${dtype}, but kiln reads plain weights only as F32, F16 or BF16`,
      `${dtype} tensors load only as parts of a quantized linear that config.json's quantization_config ` +
        "(or hf_quant_config.json) declares; convert this weight to F32, F16 or BF16 or declare the scheme",
    );
  }
}

/** The checkpoint is quantized in a scheme (or with a setting) kiln does not read. */
export class UnsupportedQuantizationError extends KilnError {
  constructor(
    /** The config file that declares the scheme. */
    readonly source: string,
    /** The scheme as declared, e.g. "gptq bits=8" or "awq version=gemv". */
    readonly scheme: string,
    detail = "",
  ) {
    super(
      `checkpoint quantization ${scheme} (${source}) is not supported${detail ? `: ${detail}` : ""}; ` +
        `kiln loads ${SUPPORTED_SCHEMES}; use an unquantized (bf16/fp16) checkpoint, optionally with --quantize`,
    );
  }
}

/** What pre-quantized checkpoints kiln loads, for messages. */
export const SUPPORTED_SCHEMES =
  'AWQ (quant_method "awq", 4-bit GEMM packing), GPTQ (quant_method "gptq", 4-bit, desc_act true or false), ' +
  'FP8 E4M3 with per-tensor or per-channel weight scales (compressed-tensors "float-quantized", ' +
  'quant_method "fp8" without weight_block_size, ModelOpt quant_algo "FP8")';

/** A pre-quantized checkpoint's tensors disagree with its scheme (missing part, wrong shape or dtype). */
export class QuantizedTensorError extends KilnError {}
