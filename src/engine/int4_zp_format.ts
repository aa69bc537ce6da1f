// The int4-zp weight format (asymmetric 4-bit with zero points, any group size, optional act-order;
// what AWQ and GPTQ checkpoints load into), for a linear weight of shape [out, in]:
//   params: groupSize G ≥ 1 (input features per group), actOrder (a g_idx is stored)
//   groups = ceil(in / G), rowBytes = ceil(in / 2)
//   region = q, then scales, then zeros, then (actOrder only) gIdx; no gaps:
//     q       [out, rowBytes] bytes, row-major: unsigned 4-bit values 0..15, feature 2j in the low
//             nibble, 2j+1 in the high (as int4-wo; an odd `in` leaves each row's last high nibble 0)
//     scales  [out, groups] fp32 little-endian
//     zeros   [out, groups] fp32 little-endian: zero points (integers in practice; 16 can occur, from
//             GPTQ v1's z − 1 storage, so they are not nibbles)
//     gIdx    [in] int32 little-endian, each in [0, groups): the group of input feature c
//   g(c) = actOrder ? gIdx[c] : floor(c / G)
//   w[r, c] = (q[r, c] − zeros[r, g(c)]) × scales[r, g(c)], in fp32 (q − z is exact; one rounding)
// A fused weight (QKV, gate/up) is its parts' rows concatenated: same G and the same gIdx.
import type { WeightFormatParams } from "./weight_format.ts";

/** The canonical parts of an int4-zp weight, unpacked. */
export interface Int4ZpParts {
  rows: number;
  cols: number;
  groupSize: number;
  /** [rows * cols], values 0..15. */
  q: Uint8Array;
  /** [rows * groups]. */
  scales: Float32Array;
  /** [rows * groups]. */
  zeros: Float32Array;
  /** [cols], or null: floor(c / groupSize). */
  gIdx: Int32Array | null;
}

/** Groups and byte offsets of an int4-zp region of `shape` with `params`. */
export function int4ZpLayout(
  shape: readonly number[],
  params: WeightFormatParams,
): {
  rows: number;
  cols: number;
  groups: number;
  rowBytes: number;
  scales: number;
  zeros: number;
  gIdx: number;
  end: number;
} {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const groupSize = params.groupSize ?? 0;
  const groups = Math.ceil(cols / groupSize);
  const rowBytes = Math.ceil(cols / 2);
  const scales = rows * rowBytes;
  const zeros = scales + rows * groups * 4;
  const gIdx = zeros + rows * groups * 4;
  const end = gIdx + (params.actOrder ? cols * 4 : 0);
  return { rows, cols, groups, rowBytes, scales, zeros, gIdx, end };
}

/** Bytes of an int4-zp region. */
export function int4ZpByteLength(shape: readonly number[], params: WeightFormatParams): number {
  return int4ZpLayout(shape, params).end;
}

/** The region of `parts` and the params that go with it. */
export function encodeInt4Zp(parts: Int4ZpParts): { bytes: Uint8Array; params: WeightFormatParams } {
  const params: WeightFormatParams = {
    groupSize: parts.groupSize,
    ...(parts.gIdx ? { actOrder: true } : {}),
  };
  const { rows, cols, rowBytes, scales, zeros, gIdx, end } = int4ZpLayout([parts.rows, parts.cols], params);
  const out = new Uint8Array(end);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++)
      out[r * rowBytes + (c >> 1)] |= (parts.q[r * cols + c] & 0x0f) << (c & 1 ? 4 : 0);
  }
  out.set(asBytes(parts.scales), scales);
  out.set(asBytes(parts.zeros), zeros);
  if (parts.gIdx) out.set(asBytes(parts.gIdx), gIdx);
  return { bytes: out, params };
}

/** The parts a region stores (the inverse of encodeInt4Zp). */
export function decodeInt4Zp(
  bytes: Uint8Array,
  shape: readonly number[],
  params: WeightFormatParams,
): Int4ZpParts {
  const { rows, cols, groups, rowBytes, scales, zeros, gIdx } = int4ZpLayout(shape, params);
  const q = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const byte = bytes[r * rowBytes + (c >> 1)];
      q[r * cols + c] = c & 1 ? byte >> 4 : byte & 0x0f;
    }
  }
  return {
    rows,
    cols,
    groupSize: params.groupSize ?? cols,
    q,
    scales: new Float32Array(bytes.slice(scales, scales + rows * groups * 4).buffer),
    zeros: new Float32Array(bytes.slice(zeros, zeros + rows * groups * 4).buffer),
    gIdx: params.actOrder ? new Int32Array(bytes.slice(gIdx, gIdx + cols * 4).buffer) : null,
  };
}

/** The fp32 weight [out, in] an int4-zp region stands for: w = (q − zero) × scale of its group. */
export function dequantizeInt4Zp(
  bytes: Uint8Array,
  shape: readonly number[],
  params: WeightFormatParams,
): Float32Array {
  const { rows, cols, groupSize, q, scales, zeros, gIdx } = decodeInt4Zp(bytes, shape, params);
  const groups = Math.ceil(cols / groupSize);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = r * groups + (gIdx ? gIdx[c] : Math.floor(c / groupSize));
      out[r * cols + c] = (q[r * cols + c] - zeros[g]) * scales[g];
    }
  }
  return out;
}

/** Why `params` do not describe an int4-zp weight of `cols` input features, or null if they do. */
export function int4ZpParamsProblem(params: WeightFormatParams): string | null {
  const g = params.groupSize;
  if (typeof g !== "number" || !Number.isInteger(g) || g < 1) return `groupSize ${JSON.stringify(g)}`;
  if (params.actOrder !== undefined && typeof params.actOrder !== "boolean") {
    return `actOrder ${JSON.stringify(params.actOrder)}`;
  }
  return null;
}

function asBytes(a: Float32Array | Int32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
