// AutoAWQ's GEMM packing (WQLinear_GEMM), for a linear of shape [out, in] with group size G:
//   qweight  [in, out / 8] I32: word (c, j) holds features (rows) 8j .. 8j+7 of input column c, in the
//            AWQ order: nibble i (bits 4i .. 4i+3) holds row 8j + ORDER[i], ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
//   qzeros   [in / G, out / 8] I32, packed the same way along the output dim
//   scales   [in / G, out] (fp16 as exported; any float dtype is read)
//   w[r, c] = (q[r, c] − z[r, c / G]) × s[r, c / G]

import type { Int4Linear, ModuleTensors } from "./quantized_linear.ts";
import { readI32s } from "./tensor_dtype.ts";

/** Nibble position of row 8j + k inside its word: the inverse of ORDER. */
const NIBBLE_OF_ROW = [0, 4, 1, 5, 2, 6, 3, 7];

/** Unpacks one AWQ GEMM linear of shape [out, in] (`groupSize` 0 = one group per row). */
export function unpackAwq(t: ModuleTensors, shape: [number, number], groupSize: number): Int4Linear {
  const [rows, cols] = shape;
  const g = groupSize === 0 ? cols : groupSize;
  if (cols % g !== 0) throw t.error(`in_features ${cols} is not a multiple of group_size ${g}`);
  const groups = cols / g;
  t.expect("qweight", [cols, rows / 8], "I32");
  t.expect("qzeros", [groups, rows / 8], "I32");
  t.expect("scales", [groups, rows]);
  const qweight = readI32s(t.bytes("qweight"));
  const qzeros = readI32s(t.bytes("qzeros"));
  const scalesT = t.f32("scales"); // [groups, rows]
  const words = rows / 8;
  const q = new Uint8Array(rows * cols);
  for (let c = 0; c < cols; c++) {
    for (let r = 0; r < rows; r++) q[r * cols + c] = nibble(qweight[c * words + (r >> 3)], r);
  }
  const scales = new Float32Array(rows * groups);
  const zeros = new Float32Array(rows * groups);
  for (let k = 0; k < groups; k++) {
    for (let r = 0; r < rows; r++) {
      scales[r * groups + k] = scalesT[k * rows + r];
      zeros[r * groups + k] = nibble(qzeros[k * words + (r >> 3)], r);
    }
  }
  return { kind: "int4", rows, cols, groupSize: g, groups, q, scales, zeros, gIdx: null };
}

function nibble(word: number, row: number): number {
  return (word >>> (4 * NIBBLE_OF_ROW[row & 7])) & 0xf;
}
