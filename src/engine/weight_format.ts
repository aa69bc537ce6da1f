// Weight formats an engine may store besides plain dtype arrays, and their exact meaning: the CPU
// backend dequantizes by these rules, and every future kernel is checked against it.
//
// int8-wo / int4-wo (weight-only, symmetric, round-to-nearest), for a weight of shape [out, in]:
//   groups of GROUP_SIZE consecutive input features of one output row share one scale; `in` is padded
//   with zeros up to a whole number of groups (padded = ceil(in / 128) * 128, groups = padded / 128).
//   region = q then scales, no gap:
//     q       int8-wo: [out, padded] int8, row-major;  int4-wo: [out, padded / 2] bytes, row-major,
//             two signed 4-bit values a byte: feature 2j in the low nibble, feature 2j+1 in the high
//     scales  [out, groups] fp32, little-endian (fp32 whatever the engine dtype: no second rounding)
//   w[r, c] = q[r, c] × scales[r, floor(c / 128)], for c < in (the padding is never read).
//   q ranges over [-127, 127] (int8) and [-7, 7] (int4): symmetric, so -128 / -8 are never written.
// fp8 (W8A8 E4M3, per-output-channel scales): fp8_format.ts.
// int4-zp (asymmetric 4-bit, zero points, any group size, optional act-order g_idx; AWQ and GPTQ
//   checkpoints load into it): int4_zp_format.ts.
// A format's extra settings travel in the weight entry's `params` (WeightFormatParams).
import { UnknownWeightFormatError } from "./errors.ts";
import { dequantizeFp8, type Fp8Activation, fp8ByteLength } from "./fp8_format.ts";
import { dequantizeInt4Zp, int4ZpByteLength, int4ZpParamsProblem } from "./int4_zp_format.ts";

export const WEIGHT_FORMATS = ["int8-wo", "int4-wo", "fp8", "int4-zp"] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];
/** The weight-only integer formats defined in this file. */
export type IntWoFormat = "int8-wo" | "int4-wo";

/** Settings a format keeps per weight, beside its name (absent for formats that have none). */
export interface WeightFormatParams {
  /** fp8: per-token ("dynamic") or calibrated per-tensor ("static") activation scales. */
  activation?: Fp8Activation;
  /** int4-zp: input features per group (any size ≥ 1). */
  groupSize?: number;
  /** int4-zp: the region stores a g_idx (GPTQ act-order), the group of each input feature. */
  actOrder?: boolean;
}

/** Input features that share one scale. */
export const GROUP_SIZE = 128;

/** Largest |q| of each format (symmetric range). */
export const QMAX: Record<IntWoFormat, number> = { "int8-wo": 127, "int4-wo": 7 };

/** Rows, padded columns and groups of a quantized [out, in] weight. */
export function quantizedLayout(shape: readonly number[]): {
  rows: number;
  cols: number;
  padded: number;
  groups: number;
} {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const groups = Math.ceil(cols / GROUP_SIZE);
  return { rows, cols, padded: groups * GROUP_SIZE, groups };
}

/** Bytes of the q part of an int-wo weight's region (the scales follow at this offset). */
export function quantizedDataBytes(shape: readonly number[], format: IntWoFormat): number {
  const { rows, padded } = quantizedLayout(shape);
  return format === "int8-wo" ? rows * padded : (rows * padded) / 2;
}

/** Bytes of a quantized weight's whole region. */
export function quantizedByteLength(
  shape: readonly number[],
  format: WeightFormat,
  params: WeightFormatParams = {},
): number {
  if (format === "fp8") return fp8ByteLength(shape, params.activation ?? "dynamic");
  if (format === "int4-zp") return int4ZpByteLength(shape, params);
  const { rows, groups } = quantizedLayout(shape);
  return quantizedDataBytes(shape, format) + rows * groups * 4;
}

/** Throws UnknownWeightFormatError unless `format` (with its `params`) is one this kiln reads. */
export function assertKnownFormat(
  name: string,
  format: unknown,
  params: WeightFormatParams = {},
): asserts format is WeightFormat {
  if (!WEIGHT_FORMATS.includes(format as WeightFormat))
    throw new UnknownWeightFormatError(name, format, WEIGHT_FORMATS);
  if (format === "fp8" && params.activation !== "dynamic" && params.activation !== "static")
    throw new UnknownWeightFormatError(
      name,
      `fp8 with activation ${JSON.stringify(params.activation)}`,
      WEIGHT_FORMATS,
    );
  const problem = format === "int4-zp" ? int4ZpParamsProblem(params) : null;
  if (problem !== null) throw new UnknownWeightFormatError(name, `int4-zp with ${problem}`, WEIGHT_FORMATS);
}

/** The fp32 weight [out, in] a quantized region stands for (int-wo: w = q × scale of its group). */
export function dequantize(
  bytes: Uint8Array,
  shape: readonly number[],
  format: WeightFormat,
  params: WeightFormatParams = {},
): Float32Array {
  if (format === "fp8") return dequantizeFp8(bytes, shape);
  if (format === "int4-zp") return dequantizeInt4Zp(bytes, shape, params);
  const { rows, cols, padded, groups } = quantizedLayout(shape);
  const dataBytes = quantizedDataBytes(shape, format);
  const scales = new Float32Array(rows * groups);
  new Uint8Array(scales.buffer).set(bytes.subarray(dataBytes, dataBytes + scales.byteLength));
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, dataBytes);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const scale = scales[r * groups + Math.floor(c / GROUP_SIZE)];
      out[r * cols + c] = quantAt(q, format, r * padded + c) * scale;
    }
  }
  return out;
}

/** The signed value at flat index i of a q array (int4: two a byte, even index in the low nibble). */
function quantAt(q: Int8Array, format: IntWoFormat, i: number): number {
  if (format === "int8-wo") return q[i];
  const byte = q[i >> 1] & 0xff;
  const nibble = i & 1 ? byte >> 4 : byte & 0x0f;
  return nibble >= 8 ? nibble - 16 : nibble; // two's complement in 4 bits
}
