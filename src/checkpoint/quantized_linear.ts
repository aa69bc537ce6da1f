// The linears a pre-quantized checkpoint stores quantized, decoded into two canonical forms the builder
// writes into engine formats. Which modules are quantized is read from the tensors (AWQ / GPTQ: the
// module has `qweight`; FP8: its `weight` is F8_E4M3); every other module is a plain weight.
//   Int4Linear: q [rows, cols] values 0..15, scales and zeros [rows, groups] fp32, optional gIdx [cols]
//               (the group of each input feature; null when it is floor(c / groupSize));
//               w[r, c] = (q[r, c] − zeros[r, g(c)]) × scales[r, g(c)].
//   Fp8Linear:  q [rows, cols] E4M3 bytes, scales [rows] fp32 (a per-tensor scale repeated: exact),
//               inputScale for static activations; w[r, c] = e4m3(q[r, c]) × scales[r].
import { unpackAwq } from "./awq_packing.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { QuantizedTensorError } from "./errors.ts";
import { readFp8Linear } from "./fp8_checkpoint.ts";
import { readGIdx, unpackGptq } from "./gptq_packing.ts";
import type { QuantizationScheme } from "./quantization_scheme.ts";

export interface Int4Linear {
  kind: "int4";
  rows: number;
  cols: number;
  /** Input features per group (cols when the checkpoint has one group per row). */
  groupSize: number;
  /** ceil(cols / groupSize). */
  groups: number;
  /** [rows * cols], values 0..15. */
  q: Uint8Array;
  /** [rows * groups]. */
  scales: Float32Array;
  /** [rows * groups]. */
  zeros: Float32Array;
  /** [cols], or null when feature c is in group floor(c / groupSize). */
  gIdx: Int32Array | null;
}

export interface Fp8Linear {
  kind: "fp8";
  rows: number;
  cols: number;
  /** [rows * cols] E4M3 bytes. */
  q: Uint8Array;
  /** [rows]. */
  scales: Float32Array;
  /** The static activation scale; null for dynamic activations. */
  inputScale: number | null;
}

export type QuantizedLinear = Int4Linear | Fp8Linear;

/** What the builder needs to know about a quantized module before reading it. */
export interface QuantizedModuleInfo {
  kind: "int4" | "fp8";
  /** [out, in] of the weight it stands for. */
  shape: [number, number];
  /** Checkpoint tensors it is made of. */
  parts: string[];
}

/** Parts of an int4 module beside `qweight`. */
const INT4_PARTS = ["qweight", "qzeros", "scales", "g_idx"];

/** Info of module `module` (the linear's name without ".weight") when the checkpoint stores it
 * quantized under `scheme`; null when it is a plain weight (or the checkpoint is not quantized). */
export function quantizedModule(
  ckpt: Checkpoint,
  scheme: QuantizationScheme,
  module: string,
): QuantizedModuleInfo | null {
  if (scheme.method === "awq" || scheme.method === "gptq") {
    if (!ckpt.has(`${module}.qweight`)) return null;
    const parts = INT4_PARTS.map((p) => `${module}.${p}`).filter((n) => ckpt.has(n));
    const packed = ckpt.info(`${module}.qweight`).shape;
    // awq: [in, out / 8]; gptq: [in / 8, out]
    const shape: [number, number] =
      scheme.method === "awq" ? [packed[1] * 8, packed[0]] : [packed[1], packed[0] * 8];
    return { kind: "int4", shape, parts };
  }
  if (scheme.method === "fp8") {
    const weight = `${module}.weight`;
    if (!ckpt.has(weight) || ckpt.info(weight).dtype !== "F8_E4M3") return null;
    const parts = [weight, `${module}.weight_scale`, `${module}.input_scale`].filter((n) => ckpt.has(n));
    const s = ckpt.info(weight).shape;
    return { kind: "fp8", shape: [s[0], s[1]], parts };
  }
  return null;
}

/** Decodes quantized module `module` into its canonical form (QuantizedTensorError if a part is
 * missing or disagrees with the others). */
export function readQuantizedLinear(
  ckpt: Checkpoint,
  scheme: QuantizationScheme,
  module: string,
): QuantizedLinear {
  const info = quantizedModule(ckpt, scheme, module);
  if (info === null) throw new QuantizedTensorError(`${module} is not a quantized linear in ${ckpt.dir}`);
  if (scheme.method === "awq") return unpackAwq(tensorReader(ckpt, module), info.shape, scheme.groupSize);
  if (scheme.method === "gptq") return unpackGptq(tensorReader(ckpt, module), info.shape, scheme);
  if (scheme.method === "fp8")
    return readFp8Linear(tensorReader(ckpt, module), info.shape, scheme.activation);
  throw new QuantizedTensorError(`${module}: checkpoint ${ckpt.dir} is not quantized`);
}

/** The g_idx of GPTQ module `module` when it is not floor(c / G) (act-order), else null; reads only
 * that tensor (the builder decides fusion by it before reading weights). */
export function actOrderOf(ckpt: Checkpoint, scheme: QuantizationScheme, module: string): Int32Array | null {
  const info = quantizedModule(ckpt, scheme, module);
  if (info === null || scheme.method !== "gptq") return null;
  const cols = info.shape[1];
  const g = scheme.groupSize === 0 ? cols : scheme.groupSize;
  return readGIdx(tensorReader(ckpt, module), cols, g, Math.ceil(cols / g), scheme.descAct);
}

/** One module's parts by suffix ("qweight", "scales", ...), for the unpackers. */
export interface ModuleTensors {
  module: string;
  has(part: string): boolean;
  shape(part: string): number[];
  dtype(part: string): string;
  bytes(part: string): Uint8Array;
  f32(part: string): Float32Array;
  /** A QuantizedTensorError unless the part has `shape` (and `dtype`, when given). */
  expect(part: string, shape: number[], dtype?: string): void;
  /** A QuantizedTensorError about this module. */
  error(problem: string): QuantizedTensorError;
}

function tensorReader(ckpt: Checkpoint, module: string): ModuleTensors {
  const name = (part: string) => `${module}.${part}`;
  const need = (part: string) => {
    if (!ckpt.has(name(part))) {
      throw new QuantizedTensorError(
        `quantized linear ${module} in ${ckpt.dir} has no "${name(part)}"; the checkpoint is incomplete or not in the format its config declares`,
      );
    }
    return name(part);
  };
  const error = (problem: string) =>
    new QuantizedTensorError(
      `quantized linear ${module} in ${ckpt.dir}: ${problem}; re-export the checkpoint`,
    );
  return {
    module,
    has: (part) => ckpt.has(name(part)),
    shape: (part) => ckpt.info(need(part)).shape,
    dtype: (part) => ckpt.info(need(part)).dtype,
    bytes: (part) => ckpt.read(need(part)),
    f32: (part) => ckpt.readF32(need(part)),
    expect: (part, shape, dtype) => {
      const info = ckpt.info(need(part));
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw error(`"${part}" has shape [${info.shape}], expected [${shape}]`);
      }
      if (dtype !== undefined && info.dtype !== dtype)
        throw error(`"${part}" is ${info.dtype}, expected ${dtype}`);
    },
    error,
  };
}
