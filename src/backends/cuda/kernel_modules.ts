// Which kernel modules an engine needs and how they are specialised: each entry is one kernels/*.cu
// file compiled by NVRTC with the model's shapes and dtype baked in as macros. The builder compiles
// them for the target GPU and stores the cubins in the engine; the runtime only loads them.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import type { DTypeName } from "../../dtype.ts";
import type { Plan } from "../../engine/format.ts";
import { decodeBatchSharedBytes, decodeSharedBytes } from "./attention_splits.ts";
import { decodeMmaKv8SharedBytes, decodeMmaSharedBytes, mmaDecodeBuilt } from "./decode_mma.ts";
import { gemvActMacro } from "./gemv_variants.ts";

export const KERNELS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "kernels");

export type ModuleKey =
  | "embedding"
  | "rmsnorm"
  | "rmsnorm_head"
  | "layernorm"
  | "activation"
  | "rope"
  | "attn_prefill"
  | "attn_decode"
  | "attn_decode_mma"
  | "sampling"
  | "gemv"
  | "gemv_wo"
  | "gemv_zp"
  | "gemm_wo"
  | "gemv_fp8";

export interface ModuleSpec {
  key: ModuleKey;
  file: string;
  defines: Record<string, number>;
}

export function dtypeMacro(dtype: DTypeName): string {
  return dtype === "fp32" ? "KILN_DTYPE_F32" : dtype === "fp16" ? "KILN_DTYPE_F16" : "KILN_DTYPE_BF16";
}

/** Which quantized-weight modules an engine needs (quantizedModules, from its weights' formats). */
export interface QuantizedModules {
  quantized: boolean;
  zp: boolean;
  fp8: boolean;
}

const NO_QUANTIZED_MODULES: QuantizedModules = { quantized: false, zp: false, fp8: false };

/** The modules the plan's ops need, for `dtype` activations and KV blocks of `blockSize` tokens;
 * `quantized`: some weights are int8-wo / int4-wo; `zp`: some are int4-zp (either: gemm_wo.cu too, for
 * 16-bit engines); `fp8`: some are fp8 (gemv_fp8.cu: activation quantization and the fp8 GEMVs) —
 * quantizedModules. */
export function moduleSpecs(
  model: ModelConfig,
  plan: Plan,
  dtype: DTypeName,
  blockSize: number,
  { quantized, zp, fp8 }: QuantizedModules = NO_QUANTIZED_MODULES,
): ModuleSpec[] {
  const t = { [dtypeMacro(dtype)]: 1 };
  const heads = { NUM_HEADS: model.numHeads, NUM_KV_HEADS: model.numKvHeads, HEAD_DIM: model.headDim };
  const kinds = new Set(plan.ops.map((o) => o.kind));
  const specs: ModuleSpec[] = [
    {
      key: "embedding",
      file: "embedding.cu",
      defines: { ...t, HIDDEN: model.hiddenSize, VOCAB: model.vocabSize },
    },
    { key: "rmsnorm", file: "rmsnorm.cu", defines: { ...t, WIDTH: model.hiddenSize } },
    { key: "activation", file: "activation.cu", defines: { ...t } },
    { key: "rope", file: "rope_kv.cu", defines: { ...t, ...heads, ROTARY_DIM: model.rope.rotaryDim } },
    { key: "attn_prefill", file: "attention_prefill.cu", defines: { ...t, ...heads, BLOCK_SIZE: blockSize } },
    {
      key: "attn_decode",
      file: "attention_decode.cu",
      defines: {
        ...t,
        ...heads,
        BLOCK_SIZE: blockSize,
        ROTARY_DIM: model.rope.rotaryDim, // attention_decode_rope*: the fused RoPE prologue (rope.cuh)
        // The launches' dynamic shared memory; the kernel asserts it is sizeof(attn::DecodeSmem).
        DECODE_SMEM_BYTES: decodeSharedBytes(model.numHeads / model.numKvHeads, model.headDim),
        // attention_decode_batch's; the kernel asserts it is sizeof(attn::BatchSmem).
        DECODE_BATCH_SMEM_BYTES: decodeBatchSharedBytes(model.numHeads / model.numKvHeads, model.headDim),
      },
    },
    { key: "sampling", file: "sampling.cu", defines: { VOCAB: model.vocabSize } },
  ];
  // Decode attention on tensor cores for many sequences (16-bit, D 64/128, G ≤ 16; decode_mma.ts).
  if (mmaDecodeBuilt(dtype, model.numHeads / model.numKvHeads, model.headDim))
    specs.push({
      key: "attn_decode_mma",
      file: "attention_decode_mma.cu",
      defines: {
        ...t,
        ...heads,
        BLOCK_SIZE: blockSize,
        ROTARY_DIM: model.rope.rotaryDim, // attention_decode_mma_rope: the fused RoPE prologue (rope.cuh)
        // The launches' dynamic shared memory; the kernel asserts it is its sizeof(attn::MmaSmem<…>).
        DECODE_MMA_SMEM_BYTES: decodeMmaSharedBytes(model.headDim),
        DECODE_MMA_KV8_SMEM_BYTES: decodeMmaKv8SharedBytes(model.headDim), // attention_decode_mma_kv8's
      },
    });
  // Only the model's activation gets gated kernels: each costs NVRTC time at every build.
  const acts = new Set(plan.ops.flatMap((o) => (o.kind === "gated_act" ? [o.act as string] : [])));
  const act = gemvActMacro(acts);
  const gemvDefines = { ...t, ...(act === undefined ? {} : { GEMV_ACT: act }) };
  // Decode GEMMs (m ≤ 8) of 16-bit engines; fp32 engines keep cuBLASLt's exact-fp32 GEMMs.
  if (dtype !== "fp32") specs.push({ key: "gemv", file: "gemv.cu", defines: gemvDefines });
  // Quantized weights: their GEMVs (16-bit) and the dequantization before a GEMM (every dtype).
  if (quantized) specs.push({ key: "gemv_wo", file: "gemv_wo.cu", defines: gemvDefines });
  if (zp) specs.push({ key: "gemv_zp", file: "gemv_zp.cu", defines: gemvDefines });
  // Their tensor-core GEMMs for batches past the GEMV (16-bit): the families the weights need.
  if (dtype !== "fp32" && (quantized || zp))
    specs.push({
      key: "gemm_wo",
      file: "gemm_wo.cu",
      defines: { ...gemvDefines, ...(quantized && zp ? {} : { GEMM_FAMILY: quantized ? 1 : 2 }) },
    });
  // fp8 weights: activation quantization and the decode GEMVs (every dtype: they read quantized x).
  if (fp8) specs.push({ key: "gemv_fp8", file: "gemv_fp8.cu", defines: gemvDefines });
  if (plan.ops.some((o) => o.kind === "rms_norm" && o.groupWidth)) {
    specs.push({ key: "rmsnorm_head", file: "rmsnorm.cu", defines: { ...t, WIDTH: model.headDim } });
  }
  if (kinds.has("layer_norm")) {
    specs.push({ key: "layernorm", file: "layernorm.cu", defines: { ...t, WIDTH: model.hiddenSize } });
  }
  return specs;
}

/** The quantized-weight modules an engine with weights of `formats` needs (moduleSpecs' `quantized`
 * and `zp`): gemv_wo.cu for int8-wo / int4-wo, gemv_zp.cu for int4-zp (AWQ, GPTQ); the builder and the
 * loader ask the same question of the same weights. */
export function quantizedModules(formats: Iterable<string | undefined>): QuantizedModules {
  const set = new Set(formats);
  return { quantized: set.has("int8-wo") || set.has("int4-wo"), zp: set.has("int4-zp"), fp8: set.has("fp8") };
}

export function moduleSource(spec: ModuleSpec): string {
  return readFileSync(join(KERNELS_DIR, spec.file), "utf8");
}

export const cubinBlobName = (key: ModuleKey) => `cubin/${key}`;

let sourcesHash: string | null = null;

/**
 * sha256 of every kernels/*.cu and *.cuh (names and contents): part of a CUDA engine's cache identity,
 * so engines whose cubins were compiled from other kernel sources (other kernel names, or kernels
 * without the PDL wait that the runtime's launches rely on) are rebuilt, not reused.
 */
export function kernelSourcesHash(): string {
  if (sourcesHash === null) {
    const h = createHash("sha256");
    const files = readdirSync(KERNELS_DIR)
      .filter((f) => f.endsWith(".cu") || f.endsWith(".cuh"))
      .sort();
    for (const f of files) {
      h.update(`${f}\0`);
      h.update(readFileSync(join(KERNELS_DIR, f)));
      h.update("\0");
    }
    sourcesHash = h.digest("hex");
  }
  return sourcesHash;
}
