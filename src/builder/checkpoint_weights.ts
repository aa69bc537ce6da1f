// The network's weights read from a checkpoint: checked all at once before any is written (present,
// shaped as config.json says, none left over), then produced one at a time as the writer reaches
// them, in the engine dtype or, for a pre-quantized checkpoint's quantized linears, in their format.
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { MissingTensorError, PackedTensorError } from "../checkpoint/errors.ts";
import { isFloatDType } from "../checkpoint/tensor_dtype.ts";
import { DTYPE_BY_NAME, DTYPE_BYTES, type DType, fromF32, toF32 } from "../dtype.ts";
import type { BuildConfig } from "../engine/build_config.ts";
import type { EngineWeight } from "../engine/writer.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { Network, WeightSpec } from "../models/network.ts";
import { UnusedTensorError } from "./errors.ts";
import type { PrequantizedLinears } from "./prequantized.ts";

/** Buffers some exporters save that transformers recomputes rather than loads, and the KV-cache scales
 * of quantized checkpoints (k_scale, v_scale, ...; older llm-compressor exports: k_proj.output_scale),
 * accepted and ignored: the FP8 KV cache is set at run
 * time, not taken from the checkpoint. */
const IGNORED_TENSORS = /(^|\.)rotary_emb\.inv_freq$|\.(k|v|kv|q|prob)_scale$|\.[kv]_proj\.output_scale$/;

/** "auto" keeps the dtype the checkpoint stores its weights in (that of the first plain float weight). */
export function resolveDtype(
  ckpt: Checkpoint,
  net: Network,
  build: BuildConfig,
  quantized: PrequantizedLinears,
): DType {
  if (build.dtype !== "auto") return DTYPE_BY_NAME[build.dtype];
  for (const spec of Object.values(net.weights)) {
    const src = spec.source[0];
    if (quantized.get(src)) continue;
    const dtype = ckpt.info(src).dtype;
    if (isFloatDType(dtype)) return dtype;
  }
  return "BF16";
}

/** Lists every tensor the plan needs that the checkpoint lacks or has in another shape, all at once,
 * and refuses tensors the plan does not use (a config that describes less than the weights hold). */
export function checkWeightsPresent(
  ckpt: Checkpoint,
  net: Network,
  dir: string,
  quantized: PrequantizedLinears,
): void {
  const missing: string[] = [];
  const wrong: string[] = [];
  const used = new Set<string>();
  for (const spec of Object.values(net.weights)) {
    let rows = 0;
    for (const src of spec.source) {
      const q = quantized.get(src);
      if (q === undefined && !ckpt.has(src)) {
        missing.push(src);
        continue;
      }
      for (const part of q?.parts ?? [src]) used.add(part);
      const shape = q?.shape ?? ckpt.info(src).shape;
      rows += shape[0];
      if (shape.slice(1).join(",") !== spec.shape.slice(1).join(",")) {
        wrong.push(`${src}: shape [${shape}], expected [?, ${spec.shape.slice(1)}]`);
      }
    }
    if (!missing.length && !wrong.length && rows !== spec.shape[0]) {
      wrong.push(`${spec.source.join(" + ")}: ${rows} rows, expected ${spec.shape[0]}`);
    }
  }
  if (missing.length) throw new MissingTensorError(missing, dir);
  // A tied checkpoint may still store lm_head.weight; transformers ties it to the embedding.
  if (ckpt.config.tieWordEmbeddings) used.add("lm_head.weight");
  const unused = ckpt.tensorNames().filter((n) => !used.has(n) && !IGNORED_TENSORS.test(n));
  if (unused.length) throw new UnusedTensorError(unused, dir);
  if (wrong.length) {
    throw new InvalidArgumentError(
      `checkpoint ${dir} has ${wrong.length} tensor(s) whose shapes do not match its config.json (first: ${wrong[0]}); check that config.json belongs to these weights${
        wrong.length > 1 ? "; --verbose lists them" : ""
      }`,
      { details: wrong },
    );
  }
}

/** The engine weight `name` of `spec`: quantized as stored, or plain in `dtype`. */
export function engineWeight(
  ckpt: Checkpoint,
  name: string,
  spec: WeightSpec,
  dtype: DType,
  quantized: PrequantizedLinears,
): EngineWeight {
  const q = quantized.engineWeight(name, spec, dtype);
  if (q !== null) return q;
  const count = spec.shape.reduce((a, b) => a * b, 1);
  return {
    name,
    dtype,
    shape: spec.shape,
    byteLength: count * DTYPE_BYTES[dtype],
    bytes: () => {
      const parts = spec.source.map((src) => convert(ckpt, src, dtype));
      if (parts.length === 1) return parts[0];
      const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.byteLength;
      }
      return out;
    },
  };
}

/** One plain tensor's bytes in `to` (through exact fp32 where the dtypes differ); a tensor of a packed
 * dtype outside a quantized linear is a PackedTensorError. */
function convert(ckpt: Checkpoint, src: string, to: DType): Uint8Array {
  const { dtype: from, file } = ckpt.info(src);
  if (!isFloatDType(from)) throw new PackedTensorError(file, src, from);
  const bytes = ckpt.read(src);
  return from === to ? bytes : fromF32(toF32(bytes, from), to);
}
