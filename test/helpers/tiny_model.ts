// Random tiny checkpoints of every supported architecture, written to a temp dir, for tests that
// need a model but not Hugging Face's numbers (fusion, batching, engine format, CLI errors).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseHfConfig } from "../../src/checkpoint/hf_config.ts";
import { writeSafetensors } from "../../src/checkpoint/safetensors_writer.ts";
import { defineModel } from "../../src/models/registry.ts";

/** Deterministic normal(0, 1) draws (mulberry32 + Box-Muller). */
export function randn(seed: number): () => number {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
}

export const TINY_CONFIGS: Record<string, Record<string, unknown>> = {
  llama: {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: 61,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    attention_bias: true,
    mlp_bias: true,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  mistral: {
    architectures: ["MistralForCausalLM"],
    model_type: "mistral",
    vocab_size: 61,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    max_position_embeddings: 64,
    sliding_window: 5,
    rope_theta: 10000,
  },
  qwen2: {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    vocab_size: 61,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    tie_word_embeddings: true,
    rope_theta: 1000000,
  },
  qwen3: {
    architectures: ["Qwen3ForCausalLM"],
    model_type: "qwen3",
    vocab_size: 61,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    max_position_embeddings: 64,
    rope_parameters: { rope_type: "default", rope_theta: 1000000 },
  },
};

export interface TinyModel {
  dir: string;
  cleanup: () => void;
}

/** Writes config.json and model.safetensors (F32) with every tensor the architecture reads: norms near 1,
 * the rest normal(0, std²). `nanIn`: one value of that tensor is NaN (a checkpoint whose weights are
 * damaged). `std` (0.3): wide models want less, or their activations grow until bf16 and fp32 part. */
export function writeTinyModel(
  arch: keyof typeof TINY_CONFIGS | Record<string, unknown>,
  seed = 1,
  { nanIn, std = 0.3 }: { nanIn?: string; std?: number } = {},
): TinyModel {
  const raw = typeof arch === "string" ? TINY_CONFIGS[arch] : arch;
  const dir = mkdtempSync(join(tmpdir(), "kiln-tiny-"));
  const config = parseHfConfig(raw, "tiny config");
  const net = defineModel(config, "tiny config");
  const r = randn(seed);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Uint8Array }> = {};
  for (const [name, spec] of Object.entries(net.weights)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm/.test(name);
    const values = Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * r() : std * r()));
    if (name === nanIn) values[3] = Number.NaN;
    tensors[name] = { dtype: "F32", shape: spec.shape, data: new Uint8Array(values.buffer) };
  }
  writeSafetensors(join(dir, "model.safetensors"), tensors);
  writeFileSync(join(dir, "config.json"), JSON.stringify(raw, null, 2));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function tempCache(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "kiln-cache-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
