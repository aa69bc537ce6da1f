// Which pre-quantized scheme a checkpoint declares, decided once at open from config.json's
// `quantization_config` and NVIDIA ModelOpt's hf_quant_config.json. Anything this kiln does not read
// exactly is an UnsupportedQuantizationError naming the scheme and the offending setting; nothing is
// loaded approximately. Which modules are quantized is read from the tensors themselves (a module with
// `qweight`, or an F8_E4M3 `weight`): modules a scheme's ignore list names (`modules_to_not_convert`,
// compressed-tensors `ignore`, ModelOpt `exclude_modules`, the LM head) are stored plain and load plain.
// KV-cache scales (`kv_cache_scheme`, `kv_cache_quant_algo`, k_scale / v_scale tensors) are accepted
// and ignored: the FP8 KV cache is configured at run time, not from the checkpoint.
import { UnsupportedQuantizationError } from "./errors.ts";

export type QuantizationScheme =
  | { method: "none" }
  /** AutoAWQ GEMM packing; `groupSize` 0 = one group per row. */
  | { method: "awq"; groupSize: number }
  /** AutoGPTQ / GPTQModel packing; `zeroOffset` 1 for checkpoint_format "gptq" (v1 stores z − 1). */
  | { method: "gptq"; groupSize: number; descAct: boolean; zeroOffset: 0 | 1 }
  /** E4M3 weights with per-tensor or per-channel scales; static activations carry `input_scale`. */
  | { method: "fp8"; producer: "compressed-tensors" | "fp8" | "modelopt"; activation: "dynamic" | "static" };

/** ModelOpt's exporter writes this beside config.json. */
export const MODELOPT_CONFIG_FILE = "hf_quant_config.json";

/**
 * The scheme of a checkpoint: `config` is config.json's object (`configSource` its path), `modelopt`
 * the parsed hf_quant_config.json or undefined when there is none (`modeloptSource` its path).
 */
export function readQuantizationScheme(
  config: Record<string, unknown>,
  configSource: string,
  modelopt?: unknown,
  modeloptSource = MODELOPT_CONFIG_FILE,
): QuantizationScheme {
  const qc = config.quantization_config;
  if (qc !== undefined && qc !== null) {
    if (!isObject(qc))
      throw new UnsupportedQuantizationError(configSource, `quantization_config ${show(qc)}`);
    return fromQuantizationConfig(qc, configSource);
  }
  if (modelopt !== undefined) {
    const q = isObject(modelopt) ? modelopt.quantization : undefined;
    if (!isObject(q)) {
      throw new UnsupportedQuantizationError(
        modeloptSource,
        'ModelOpt config without a "quantization" object',
      );
    }
    return modeloptScheme(q.quant_algo, modeloptSource);
  }
  return { method: "none" };
}

function fromQuantizationConfig(qc: Record<string, unknown>, src: string): QuantizationScheme {
  const method = qc.quant_method;
  switch (method) {
    case "awq":
      return awqScheme(qc, src);
    case "gptq":
      return gptqScheme(qc, src);
    case "compressed-tensors":
      return compressedTensorsScheme(qc, src);
    case "fp8":
      return fp8Scheme(qc, src);
    case "modelopt":
      return modeloptScheme(
        qc.quant_algo ?? (isObject(qc.quantization) ? qc.quantization.quant_algo : undefined),
        src,
      );
    default:
      throw new UnsupportedQuantizationError(src, `quant_method ${show(method)}`);
  }
}

function awqScheme(qc: Record<string, unknown>, src: string): QuantizationScheme {
  const bits = qc.bits ?? qc.w_bit;
  if (bits !== 4)
    throw new UnsupportedQuantizationError(src, `awq bits=${show(bits)}`, "AWQ loads with 4 bits only");
  const version = typeof qc.version === "string" ? qc.version.toLowerCase() : "gemm";
  if (version !== "gemm") {
    throw new UnsupportedQuantizationError(
      src,
      `awq version=${show(qc.version)}`,
      'only AutoAWQ\'s GEMM packing (version "gemm") is read',
    );
  }
  if (qc.zero_point === false) {
    throw new UnsupportedQuantizationError(src, "awq zero_point=false", "AWQ loads with zero points only");
  }
  return { method: "awq", groupSize: groupSize(qc.group_size ?? qc.q_group_size, "awq", src) };
}

function gptqScheme(qc: Record<string, unknown>, src: string): QuantizationScheme {
  if (qc.bits !== 4)
    throw new UnsupportedQuantizationError(src, `gptq bits=${show(qc.bits)}`, "GPTQ loads with 4 bits only");
  const format = qc.checkpoint_format ?? qc.format ?? "gptq";
  if (format !== "gptq" && format !== "gptq_v2") {
    throw new UnsupportedQuantizationError(
      src,
      `gptq checkpoint_format=${show(format)}`,
      'only the "gptq" (v1) and "gptq_v2" packings are read',
    );
  }
  if (qc.lm_head === true) {
    throw new UnsupportedQuantizationError(src, "gptq lm_head=true", "the LM head must be unquantized");
  }
  const descAct = qc.desc_act ?? false;
  if (typeof descAct !== "boolean")
    throw new UnsupportedQuantizationError(src, `gptq desc_act=${show(descAct)}`);
  return {
    method: "gptq",
    groupSize: groupSize(qc.group_size, "gptq", src),
    descAct,
    zeroOffset: format === "gptq" ? 1 : 0,
  };
}

/** group_size: a positive integer, or -1 for one group per row (returned as 0). */
function groupSize(v: unknown, method: string, src: string): number {
  if (v === -1) return 0;
  if (typeof v === "number" && Number.isInteger(v) && v > 0) return v;
  throw new UnsupportedQuantizationError(
    src,
    `${method} group_size=${show(v)}`,
    "a positive integer or -1 is needed",
  );
}

function compressedTensorsScheme(qc: Record<string, unknown>, src: string): QuantizationScheme {
  const groups = isObject(qc.config_groups) ? Object.entries(qc.config_groups) : [];
  if (groups.length === 0)
    throw new UnsupportedQuantizationError(src, "compressed-tensors without config_groups");
  let activation: "dynamic" | "static" | undefined;
  for (const [name, group] of groups) {
    const g = isObject(group) ? group : {};
    const format = g.format ?? qc.format;
    const what = (s: string) => `compressed-tensors ${name} ${s}`;
    if (format !== "float-quantized" && format !== "naive-quantized") {
      throw new UnsupportedQuantizationError(
        src,
        what(`format=${show(format)}`),
        'only FP8 weights (format "float-quantized") are read; packed int schemes such as w4a16 are not',
      );
    }
    const w = isObject(g.weights) ? g.weights : {};
    if (w.type !== "float" || w.num_bits !== 8) {
      throw new UnsupportedQuantizationError(
        src,
        what(`weights type=${show(w.type)} num_bits=${show(w.num_bits)}`),
        "only 8-bit float (E4M3) weights are read",
      );
    }
    if (w.strategy !== "tensor" && w.strategy !== "channel") {
      throw new UnsupportedQuantizationError(
        src,
        what(`weights strategy=${show(w.strategy)}`),
        'only per-tensor and per-channel weight scales ("tensor", "channel") are read',
      );
    }
    if (w.dynamic === true) throw new UnsupportedQuantizationError(src, what("weights dynamic=true"));
    const a = g.input_activations;
    if (!isObject(a)) {
      throw new UnsupportedQuantizationError(
        src,
        what(`input_activations=${show(a)}`),
        "FP8 weight-only (W8A16) is not read; kiln's fp8 format quantizes activations too",
      );
    }
    const mode = activationMode(a, what, src);
    if (activation !== undefined && activation !== mode) {
      throw new UnsupportedQuantizationError(
        src,
        what("mixes dynamic and static input_activations across groups"),
      );
    }
    activation = mode;
  }
  return { method: "fp8", producer: "compressed-tensors", activation: activation ?? "dynamic" };
}

function activationMode(
  a: Record<string, unknown>,
  what: (s: string) => string,
  src: string,
): "dynamic" | "static" {
  if (a.type !== "float" || a.num_bits !== 8) {
    throw new UnsupportedQuantizationError(
      src,
      what(`input_activations type=${show(a.type)} num_bits=${show(a.num_bits)}`),
    );
  }
  if (a.dynamic === true && a.strategy === "token") return "dynamic";
  if (a.dynamic === false && a.strategy === "tensor") return "static";
  throw new UnsupportedQuantizationError(
    src,
    what(`input_activations dynamic=${show(a.dynamic)} strategy=${show(a.strategy)}`),
    'activations are read as dynamic per "token" or static per "tensor"',
  );
}

function fp8Scheme(qc: Record<string, unknown>, src: string): QuantizationScheme {
  if (qc.weight_block_size !== undefined && qc.weight_block_size !== null) {
    throw new UnsupportedQuantizationError(
      src,
      `fp8 weight_block_size=${show(qc.weight_block_size)}`,
      "block-wise FP8 scales are not read",
    );
  }
  const scheme = qc.activation_scheme ?? "dynamic";
  if (scheme !== "dynamic" && scheme !== "static") {
    throw new UnsupportedQuantizationError(src, `fp8 activation_scheme=${show(scheme)}`);
  }
  return { method: "fp8", producer: "fp8", activation: scheme };
}

function modeloptScheme(algo: unknown, src: string): QuantizationScheme {
  if (algo !== "FP8") {
    throw new UnsupportedQuantizationError(
      src,
      `ModelOpt quant_algo=${show(algo)}`,
      'of ModelOpt\'s algorithms only "FP8" (per-tensor scales, static activations) is read',
    );
  }
  return { method: "fp8", producer: "modelopt", activation: "static" };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function show(v: unknown): string {
  return v === undefined ? "(absent)" : JSON.stringify(v);
}
