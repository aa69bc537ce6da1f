// Rotary position embedding frequencies as Hugging Face computes them (transformers
// `modeling_rope_utils.py` init functions, used by LlamaRotaryEmbedding.forward).
//
// HF builds inv_freq with fp32 tensor ops; each such op is one Math.fround here, so inv_freq matches
// torch to the last bit except where torch's own fp32 pow/cos/sin (SLEEF, ≤ 1 ulp) round differently
// from the correctly rounded double result we use.
//
// The CPU kernel (backends/cpu/kernels/rope.ts) and the CUDA backend both take inv_freq from here.

import type { RopeConfig } from "../checkpoint/model_config.ts";

const f32 = Math.fround;
const TWO_PI_F32 = f32(2 * Math.PI);

export interface RopeFrequencies {
  invFreq: Float32Array; // [rotaryDim / 2]
  /** Multiplies cos and sin (HF `attention_scaling`); 1 for every type we support. */
  attentionScaling: number;
}

/**
 * HF's `1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))` in fp32:
 * exponent = fp32(2i / dim), pow in fp32 (base rounded to fp32 first), reciprocal in fp32.
 */
function defaultInvFreq(base: number, dim: number): Float32Array {
  const baseF = f32(base);
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = 1 / f32(baseF ** f32((2 * i) / dim));
  }
  return out;
}

/**
 * inv_freq and attention scaling for `rope`, as HF's ROPE_INIT_FUNCTIONS compute them.
 * `seqLen` is max(position) + 1 over the tokens of the current forward call; only "dynamic" uses it.
 */
export function ropeInvFreq(rope: RopeConfig, seqLen: number): RopeFrequencies {
  const dim = rope.rotaryDim;
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) {
    throw new RangeError(`rotaryDim must be a positive even integer, got ${dim}`);
  }
  const scaling = rope.scaling;
  switch (scaling.type) {
    case "default":
      return { invFreq: defaultInvFreq(rope.theta, dim), attentionScaling: 1 };

    case "linear": {
      // _compute_linear_scaling_rope_parameters: `inv_freq /= factor` (fp32 division).
      const invFreq = defaultInvFreq(rope.theta, dim);
      const factor = f32(scaling.factor);
      for (let i = 0; i < invFreq.length; i++) invFreq[i] = invFreq[i] / factor;
      return { invFreq, attentionScaling: 1 };
    }

    case "dynamic":
      return { invFreq: dynamicNtkInvFreq(rope.theta, dim, scaling, seqLen), attentionScaling: 1 };

    case "llama3":
      return { invFreq: llama3InvFreq(rope.theta, dim, scaling), attentionScaling: 1 };
  }
}

/**
 * _compute_dynamic_ntk_parameters as `dynamic_rope_update` calls it. Up to the original length the
 * model keeps the default inv_freq (computed at init with seq_len = max_position_embeddings, where
 * the base factor is exactly 1). Beyond it, seq_len is a torch int64 tensor (max(position_ids) + 1),
 * so the base is computed with fp32 tensor ops:
 *   base' = theta * ((factor * seqLen / origMax) - (factor - 1)) ** (dim / (dim - 2))
 * (the ** on a 1-element fp32 tensor with a Python-float exponent runs std::pow in double).
 * HF uses `config.max_position_embeddings` here and ignores rope_scaling's
 * original_max_position_embeddings: the config parser must put max_position_embeddings in
 * `originalMaxPositionEmbeddings` (checked against transformers 5.17 in hf_golden.test.ts).
 * HF keeps inv_freq as module state: it recomputes when seq_len exceeds the largest seen so far and
 * resets below max_position_embeddings, so between the two it keeps an older, larger seq_len's value.
 * This is the stateless function of the current seqLen; one generation from a fresh model agrees.
 */
function dynamicNtkInvFreq(
  theta: number,
  dim: number,
  scaling: { factor: number; originalMaxPositionEmbeddings: number },
  seqLen: number,
): Float32Array {
  const origMax = scaling.originalMaxPositionEmbeddings;
  if (seqLen <= origMax) return defaultInvFreq(theta, dim);
  const factor = f32(scaling.factor);
  const ratio = f32(f32(f32(factor * seqLen) / origMax) - f32(scaling.factor - 1));
  const grown = f32(ratio ** (dim / (dim - 2)));
  return defaultInvFreq(f32(f32(theta) * grown), dim);
}

/**
 * _compute_llama3_parameters (Llama 3.1): long wavelengths divided by `factor`, short ones kept,
 * the band between interpolated smoothly. Every tensor op is fp32; note torch evaluates
 * `scalar / tensor` as `tensor.reciprocal() * scalar`.
 */
function llama3InvFreq(
  theta: number,
  dim: number,
  scaling: {
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  },
): Float32Array {
  const invFreq = defaultInvFreq(theta, dim);
  const factor = f32(scaling.factor);
  const lowFreqFactor = f32(scaling.lowFreqFactor);
  const oldContextLen = f32(scaling.originalMaxPositionEmbeddings);
  const lowFreqWavelen = f32(scaling.originalMaxPositionEmbeddings / scaling.lowFreqFactor);
  const highFreqWavelen = f32(scaling.originalMaxPositionEmbeddings / scaling.highFreqFactor);
  const band = f32(scaling.highFreqFactor - scaling.lowFreqFactor);
  for (let i = 0; i < invFreq.length; i++) {
    const inv = invFreq[i];
    const wavelen = f32(f32(1 / inv) * TWO_PI_F32); // 2 * math.pi / inv_freq
    // torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    const llama = wavelen > lowFreqWavelen ? f32(inv / factor) : inv;
    const isMediumFreq = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (isMediumFreq) {
      // smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
      const smooth = f32(f32(f32(f32(1 / wavelen) * oldContextLen) - lowFreqFactor) / band);
      // (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
      invFreq[i] = f32(f32(f32(1 - smooth) * llama) / factor) + f32(smooth * llama);
    } else {
      invFreq[i] = llama;
    }
  }
  return invFreq;
}
