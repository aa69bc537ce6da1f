// The normalized, typed model configuration every later stage reads. Produced from a Hugging Face
// config.json by `parseHfConfig` (hf_config.ts); field names are camelCase versions of HF's.

/** RoPE frequency scaling, normalized from either `rope_theta` + `rope_scaling` (configs on the Hub
 * today) or transformers 5's `rope_parameters`. */
export type RopeScaling =
  | { type: "default" }
  /** Positions divided by `factor` (HF "linear"). */
  | { type: "linear"; factor: number }
  /** Dynamic NTK: base grows once the sequence exceeds `originalMaxPositionEmbeddings` (HF "dynamic"). */
  | { type: "dynamic"; factor: number; originalMaxPositionEmbeddings: number }
  /** Llama 3.1 frequency-dependent scaling (HF "llama3"). */
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface RopeConfig {
  /** Base θ of the rotary frequencies (`rope_theta`). */
  theta: number;
  /** Number of dimensions of each head that rotate (headDim × partial_rotary_factor), even. */
  rotaryDim: number;
  scaling: RopeScaling;
}

export type HiddenAct = "silu" | "gelu" | "gelu_pytorch_tanh" | "gelu_new" | "relu";

export interface ModelConfig {
  /** HF `architectures[0]`, e.g. "LlamaForCausalLM"; the key of the model registry. */
  architecture: string;
  /** HF `model_type`, e.g. "llama". */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Context window in tokens (HF `max_position_embeddings`). */
  maxPositionEmbeddings: number;
  /** Epsilon of RMSNorm (or LayerNorm) layers. */
  normEps: number;
  hiddenAct: HiddenAct;
  rope: RopeConfig;
  tieWordEmbeddings: boolean;
  /** Bias on q/k/v/o projections (Llama `attention_bias`). */
  attentionBias: boolean;
  /** Bias on gate/up/down projections (Llama `mlp_bias`). */
  mlpBias: boolean;
  /** Attention only sees the last `slidingWindow` keys (Mistral); null = full causal attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  /** One or several end-of-sequence ids (Llama 3 lists several). */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** `torch_dtype` / `dtype` of the checkpoint, if given ("float32", "bfloat16", "float16"). */
  checkpointDtype: string | null;
  /** The config.json object as read, for architecture-specific fields. */
  raw: Record<string, unknown>;
}
