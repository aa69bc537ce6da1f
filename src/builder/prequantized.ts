// The linears a pre-quantized checkpoint stores quantized (AWQ, GPTQ, FP8; checkpoint/quantized_linear.ts),
// carried into the engine as they are: AWQ and GPTQ become int4-zp regions (engine/int4_zp_format.ts),
// FP8 becomes fp8 regions (engine/fp8_format.ts). A fused weight (QKV, gate/up) concatenates its
// parts' rows; parts fuse only when they agree on the format, the group size and the g_idx. A fused
// static-fp8 weight takes the largest of its parts' input scales (as vLLM does): one activation scale
// must serve the one GEMM, and the largest never clips an input any part's own scale would not.
import { createHash } from "node:crypto";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { QuantizedTensorError } from "../checkpoint/errors.ts";
import { MODELOPT_CONFIG_FILE, type QuantizationScheme } from "../checkpoint/quantization_scheme.ts";
import {
  actOrderOf,
  type Fp8Linear,
  type Int4Linear,
  type QuantizedModuleInfo,
  quantizedModule,
  readQuantizedLinear,
} from "../checkpoint/quantized_linear.ts";
import type { DType } from "../dtype.ts";
import { type BuildConfig, isCudaWeightFormat } from "../engine/build_config.ts";
import { QuantizedEngineUnsupportedError } from "../engine/errors.ts";
import { fp8Region as encodeFp8Region, fp8ByteLength } from "../engine/fp8_format.ts";
import { encodeInt4Zp, int4ZpByteLength } from "../engine/int4_zp_format.ts";
import type { WeightFormat, WeightFormatParams } from "../engine/weight_format.ts";
import type { EngineWeight } from "../engine/writer.ts";
import type { WeightSpec } from "../models/network.ts";
import { PrequantizedCheckpointError } from "./errors.ts";

interface Entry extends QuantizedModuleInfo {
  module: string;
  /** Parts with equal keys may be fused: the format, group size and g_idx. */
  fuseKey: string;
  params: WeightFormatParams;
}

/** The quantized linears of one open checkpoint, by the weight name the network uses ("X.weight"). */
export class PrequantizedLinears {
  private readonly byWeight = new Map<string, Entry>();

  constructor(
    private readonly ckpt: Checkpoint,
    readonly scheme: QuantizationScheme,
  ) {
    if (scheme.method === "none") {
      assertNothingQuantized(ckpt);
      return;
    }
    for (const name of ckpt.tensorNames()) {
      const m = /^(.*)\.(qweight|weight)$/.exec(name);
      if (!m) continue;
      const info = quantizedModule(ckpt, scheme, m[1]);
      if (info !== null) this.byWeight.set(`${m[1]}.weight`, this.entry(m[1], info));
    }
  }

  /** The quantized module behind network weight `weight`, or undefined for a plain weight. */
  get(weight: string): QuantizedModuleInfo | undefined {
    return this.byWeight.get(weight);
  }

  /** True when sibling weights `weights` may become one: all plain, or all quantized alike. */
  canFuse = (weights: string[]): boolean => {
    const keys = new Set(weights.map((w) => this.byWeight.get(w)?.fuseKey ?? "plain"));
    return keys.size === 1;
  };

  /** The engine weight for `spec` when its sources are quantized; null when they are plain. */
  engineWeight(name: string, spec: WeightSpec, dtype: DType): EngineWeight | null {
    const entries = spec.source.map((s) => this.byWeight.get(s));
    if (entries.every((e) => e === undefined)) return null;
    const parts = entries.map((e) => {
      if (e === undefined || e.fuseKey !== entries[0]?.fuseKey) {
        throw new Error(`internal: ${name} fuses unlike parts ${spec.source.join(", ")}`);
      }
      return e;
    });
    const first = parts[0];
    const read = () => parts.map((p) => readQuantizedLinear(this.ckpt, this.scheme, p.module));
    if (first.kind === "int4") {
      return {
        name,
        dtype,
        shape: spec.shape,
        format: "int4-zp",
        params: first.params,
        byteLength: int4ZpByteLength(spec.shape, first.params),
        bytes: () => {
          const { bytes, params } = encodeInt4Zp(concatInt4(read() as Int4Linear[]));
          if (Boolean(params.actOrder) !== Boolean(first.params.actOrder)) {
            throw new Error(`internal: ${name} g_idx read differently when planned and when written`);
          }
          return bytes;
        },
      };
    }
    const activation = first.params.activation ?? "dynamic";
    return {
      name,
      dtype,
      shape: spec.shape,
      format: "fp8",
      params: first.params,
      byteLength: fp8ByteLength(spec.shape, activation),
      bytes: () => fp8Region(read() as Fp8Linear[], activation === "static"),
    };
  }

  private entry(module: string, info: QuantizedModuleInfo): Entry {
    if (info.kind === "fp8") {
      const activation = this.scheme.method === "fp8" ? this.scheme.activation : "dynamic";
      return { ...info, module, fuseKey: "fp8", params: { activation } };
    }
    const cols = info.shape[1];
    const configured =
      this.scheme.method === "awq" || this.scheme.method === "gptq" ? this.scheme.groupSize : 0;
    const groupSize = configured === 0 ? cols : configured;
    const order = this.gIdxKey(module);
    return {
      ...info,
      module,
      fuseKey: `int4 g${groupSize} ${order}`,
      params: { groupSize, ...(order === "sequential" ? {} : { actOrder: true }) },
    };
  }

  /** "sequential" when feature c is in group floor(c / G), else a digest of the g_idx. */
  private gIdxKey(module: string): string {
    const gIdx = actOrderOf(this.ckpt, this.scheme, module);
    return gIdx === null
      ? "sequential"
      : digest(new Uint8Array(gIdx.buffer, gIdx.byteOffset, gIdx.byteLength));
  }
}

/** The engine weight format each pre-quantized scheme loads into. */
export const SCHEME_FORMAT: Record<Exclude<QuantizationScheme["method"], "none">, WeightFormat> = {
  fp8: "fp8",
  awq: "int4-zp",
  gptq: "int4-zp",
};

/** Pre-quantized checkpoints build as they are: not re-quantized, and for the CUDA backend only when it
 * has kernels for the format they load into (all of them so far). */
export function assertPrequantizedBuild(scheme: QuantizationScheme, build: BuildConfig, dir: string): void {
  if (scheme.method === "none") return;
  if (build.quantize !== "none") {
    throw new PrequantizedCheckpointError(
      `checkpoint ${dir} is already quantized (${scheme.method}); build it without --quantize ${build.quantize}, ` +
        "or start from its unquantized (bf16/fp16) checkpoint",
    );
  }
  if (build.backend === "cuda" && !isCudaWeightFormat(SCHEME_FORMAT[scheme.method])) {
    throw new QuantizedEngineUnsupportedError(
      `pre-quantized ${scheme.method} checkpoints run on the CPU backend only so far; use --backend cpu (checkpoint ${dir})`,
    );
  }
}

/** A checkpoint that declares no scheme must not hold quantized linears (a config.json that lost its
 * quantization_config, or a ModelOpt export without hf_quant_config.json). */
function assertNothingQuantized(ckpt: Checkpoint): void {
  const found = ckpt
    .tensorNames()
    .find((n) => n.endsWith(".qweight") || (n.endsWith(".weight") && ckpt.info(n).dtype === "F8_E4M3"));
  if (found === undefined) return;
  throw new QuantizedTensorError(
    `checkpoint ${ckpt.dir} holds quantized tensors ("${found}") but declares no quantization scheme ` +
      `(config.json has no quantization_config and there is no ${MODELOPT_CONFIG_FILE}); ` +
      "use the config.json (and hf_quant_config.json) that came with the checkpoint",
  );
}

/** Rows of several int4 linears stacked (fusion); they share group size and g_idx (the fuse key). */
function concatInt4(parts: Int4Linear[]): Int4Linear {
  if (parts.length === 1) return parts[0];
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  const { cols, groupSize, groups, gIdx } = parts[0];
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * groups);
  const zeros = new Float32Array(rows * groups);
  let r = 0;
  for (const p of parts) {
    q.set(p.q, r * cols);
    scales.set(p.scales, r * groups);
    zeros.set(p.zeros, r * groups);
    r += p.rows;
  }
  return { kind: "int4", rows, cols, groupSize, groups, q, scales, zeros, gIdx };
}

/** The fp8 region (engine/fp8_format.ts) of several fp8 linears stacked: q rows, per-row scales,
 * then (static) the largest input scale. */
function fp8Region(parts: Fp8Linear[], isStatic: boolean): Uint8Array {
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  const cols = parts[0].cols;
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  let r = 0;
  let inputScale = 0;
  for (const p of parts) {
    q.set(p.q, r * cols);
    scales.set(p.scales, r);
    inputScale = Math.max(inputScale, p.inputScale ?? 0);
    r += p.rows;
  }
  return encodeFp8Region(q, scales, isStatic ? inputScale : null);
}

function digest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}
