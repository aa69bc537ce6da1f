// AutoGPTQ / GPTQModel packing, for a linear of shape [out, in] with group size G:
//   qweight  [in / 8, out] I32: word (i, r) holds input features 8i .. 8i+7 of row r, feature 8i + k in
//            nibble k (bits 4k .. 4k+3), sequential
//   qzeros   [groups, out / 8] I32: zero points packed sequentially along the output dim
//   scales   [groups, out] (fp16 as exported)
//   g_idx    [in] I32: the group of each input feature; with desc_act (act-order) it is a permutation
//            of floor(c / G), otherwise exactly that (and may be absent)
//   w[r, c] = (q[r, c] − z[r, g_idx[c]]) × s[r, g_idx[c]]
// checkpoint_format "gptq" (v1) stores each zero point minus one (AutoGPTQ's pack subtracts 1, its
// kernels add it back: z = nibble + 1, so 15 reads as 16); "gptq_v2" stores them as they are.
import type { QuantizationScheme } from "./quantization_scheme.ts";
import type { Int4Linear, ModuleTensors } from "./quantized_linear.ts";
import { readI32s } from "./tensor_dtype.ts";

type GptqScheme = Extract<QuantizationScheme, { method: "gptq" }>;

/** Unpacks one GPTQ linear of shape [out, in]. */
export function unpackGptq(t: ModuleTensors, shape: [number, number], scheme: GptqScheme): Int4Linear {
  const [rows, cols] = shape;
  const g = scheme.groupSize === 0 ? cols : scheme.groupSize;
  const groups = Math.ceil(cols / g);
  t.expect("qweight", [cols / 8, rows], "I32");
  t.expect("qzeros", [groups, rows / 8], "I32");
  t.expect("scales", [groups, rows]);
  const qweight = readI32s(t.bytes("qweight"));
  const qzeros = readI32s(t.bytes("qzeros"));
  const scalesT = t.f32("scales"); // [groups, rows]
  const q = new Uint8Array(rows * cols);
  for (let c = 0; c < cols; c++) {
    const shift = 4 * (c & 7);
    const base = (c >> 3) * rows;
    for (let r = 0; r < rows; r++) q[r * cols + c] = (qweight[base + r] >>> shift) & 0xf;
  }
  const scales = new Float32Array(rows * groups);
  const zeros = new Float32Array(rows * groups);
  const words = rows / 8;
  for (let k = 0; k < groups; k++) {
    for (let r = 0; r < rows; r++) {
      scales[r * groups + k] = scalesT[k * rows + r];
      const z = (qzeros[k * words + (r >> 3)] >>> (4 * (r & 7))) & 0xf;
      zeros[r * groups + k] = z + scheme.zeroOffset;
    }
  }
  const gIdx = readGIdx(t, cols, g, groups, scheme.descAct);
  return { kind: "int4", rows, cols, groupSize: g, groups, q, scales, zeros, gIdx };
}

/** g_idx, or null when it is floor(c / G) (absent, or desc_act false with the trivial order). */
export function readGIdx(
  t: ModuleTensors,
  cols: number,
  g: number,
  groups: number,
  descAct: boolean,
): Int32Array | null {
  if (!t.has("g_idx")) {
    if (descAct) throw t.error('desc_act is true but there is no "g_idx"');
    return null;
  }
  t.expect("g_idx", [cols]);
  const dtype = t.dtype("g_idx");
  const raw = t.bytes("g_idx");
  let gIdx: Int32Array;
  if (dtype === "I32") gIdx = readI32s(raw);
  else if (dtype === "I64") {
    const wide = new BigInt64Array(raw.slice().buffer);
    gIdx = Int32Array.from(wide, (v) => Number(v));
  } else throw t.error(`"g_idx" is ${dtype}, expected I32 or I64`);
  let trivial = true;
  for (let c = 0; c < cols; c++) {
    if (gIdx[c] < 0 || gIdx[c] >= groups) throw t.error(`g_idx[${c}] = ${gIdx[c]} is outside [0, ${groups})`);
    if (gIdx[c] !== Math.floor(c / g)) trivial = false;
  }
  return trivial ? null : gIdx;
}
