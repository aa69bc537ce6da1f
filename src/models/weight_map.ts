// Which checkpoint tensor plays which role, as data (one table per architecture family). Patterns use
// `{i}` for the layer index; linear-layer entries name the module (".weight"/".bias" are appended).
export interface DecoderWeightMap {
  embed: string;
  finalNorm: string;
  lmHead: string;
  layer: {
    inputNorm: string;
    q: string;
    k: string;
    v: string;
    o: string;
    /** Per-head RMSNorm of queries and keys (Qwen3). */
    qNorm?: string;
    kNorm?: string;
    postAttentionNorm: string;
    gate: string;
    up: string;
    down: string;
  };
}

/** The Hugging Face names shared by Llama, Mistral, Qwen2 and Qwen3. */
export const HF_DECODER_WEIGHTS: DecoderWeightMap = {
  embed: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
  layer: {
    inputNorm: "model.layers.{i}.input_layernorm.weight",
    q: "model.layers.{i}.self_attn.q_proj",
    k: "model.layers.{i}.self_attn.k_proj",
    v: "model.layers.{i}.self_attn.v_proj",
    o: "model.layers.{i}.self_attn.o_proj",
    postAttentionNorm: "model.layers.{i}.post_attention_layernorm.weight",
    gate: "model.layers.{i}.mlp.gate_proj",
    up: "model.layers.{i}.mlp.up_proj",
    down: "model.layers.{i}.mlp.down_proj",
  },
};

/** Sibling linear modules the builder packs into one GEMM, and the packed module's name
 * (nano-vllm's packed_modules_mapping). */
export const PACKED_MODULES: Record<string, string> = {
  "q_proj,k_proj,v_proj": "qkv_proj",
  "gate_proj,up_proj": "gate_up_proj",
};

export function layerName(pattern: string, layer: number): string {
  return pattern.replaceAll("{i}", String(layer));
}
