// Helpers for checkpoint tests: temp dirs, tiny configs, tensor bytes and hand-made (corrupt) files.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TensorToWrite } from "../../src/checkpoint/safetensors.ts";
import type { DType } from "../../src/dtype.ts";
import { f32ToBf16, f32ToF16 } from "../../src/dtype.ts";

/** A fresh temp dir and its cleanup; call `cleanup` in `after`/`finally`. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "kiln-ckpt-test-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `values` stored as `dtype`, little-endian bytes. */
export function tensor(dtype: DType, shape: number[], values: number[]): TensorToWrite {
  const f32 = Float32Array.from(values);
  const typed = dtype === "F32" ? f32 : dtype === "F16" ? f32ToF16(f32) : f32ToBf16(f32);
  return { dtype, shape, data: new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength) };
}

/** 0, 1, 2, ... n−1 as F32 with the given shape. */
export function iota(shape: number[]): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  return tensor(
    "F32",
    shape,
    Array.from({ length: n }, (_, i) => i),
  );
}

/**
 * Writes a hand-made safetensors file: 8-byte length prefix (`headerLength`, default the header's
 * real length), the header (object → JSON, or raw bytes), then `data`.
 */
export function rawSafetensors(
  path: string,
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  headerLength?: bigint,
): void {
  const head = header instanceof Uint8Array ? header : new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, headerLength ?? BigInt(head.byteLength), true);
  const out = new Uint8Array(8 + head.byteLength + data.byteLength);
  out.set(prefix, 0);
  out.set(head, 8);
  out.set(data, 8 + head.byteLength);
  writeFileSync(path, out);
}

/** A small but complete Llama config.json object; `overrides` replace or add keys (undefined deletes). */
export function llamaConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 32,
    hidden_size: 16,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 128,
    rms_norm_eps: 1e-5,
    hidden_act: "silu",
    rope_theta: 10000,
    rope_scaling: null,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: "float32",
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

export function writeConfig(dir: string, config: unknown): void {
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
}
