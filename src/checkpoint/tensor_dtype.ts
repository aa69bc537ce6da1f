// Element types a checkpoint tensor may have. The float ones (dtype.ts) are plain weights; the others
// appear only as parts of a pre-quantized linear (quantization_scheme.ts): F8_E4M3 fp8 weights, I32
// packed int4 words and g_idx, I64 / U8 / I8 in schemes that use them. A plain weight stored in one
// of them is refused by name (plainDtype).
import { DTYPE_BYTES, type DType } from "../dtype.ts";

/** Element types that only quantized parts use. */
export type PackedDType = "F8_E4M3" | "I32" | "I64" | "U8" | "I8";
export type TensorDType = DType | PackedDType;

export const TENSOR_DTYPE_BYTES: Record<TensorDType, number> = {
  ...DTYPE_BYTES,
  F8_E4M3: 1,
  I32: 4,
  I64: 8,
  U8: 1,
  I8: 1,
};

/** True for the float types a plain weight may be stored in. */
export function isFloatDType(d: TensorDType): d is DType {
  return Object.hasOwn(DTYPE_BYTES, d);
}

/** Signed 32-bit integers of raw little-endian I32 bytes (need not be aligned). */
export function readI32s(bytes: Uint8Array): Int32Array {
  const copy = bytes.slice();
  return new Int32Array(copy.buffer, 0, copy.byteLength / 4);
}
