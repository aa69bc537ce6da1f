// RoPE settings from a Hugging Face config, in either generation of the format:
//   today's Hub:     "rope_theta": 500000, "rope_scaling": {"rope_type" | "type": "llama3", "factor": 8, ...} | null
//   transformers 5:  "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000, "factor": 8, ...}
// Both normalize to the same RopeConfig. Semantics follow transformers' modeling_rope_utils.
import type { ConfigFields } from "./config_fields.ts";
import type { RopeConfig, RopeScaling } from "./model_config.ts";

export const SUPPORTED_ROPE_TYPES = ["default", "linear", "dynamic", "llama3"] as const;

const DEFAULT_ROPE_THETA = 10000;

/** Reads rope_theta / rope_scaling / rope_parameters / partial_rotary_factor from the top-level config. */
export function parseRope(f: ConfigFields, headDim: number, maxPositionEmbeddings: number): RopeConfig {
  let params: ConfigFields | null;
  let ropeType: string;
  let theta: number;
  if (f.has("rope_parameters")) {
    params = f.nested("rope_parameters")!;
    rejectPerLayerParams(params);
    // transformers 5 moves a top-level rope_theta into rope_parameters when it is missing there.
    theta = params.has("rope_theta")
      ? params.positiveNumber("rope_theta")
      : f.positiveNumber("rope_theta", DEFAULT_ROPE_THETA);
    ropeType = readRopeType(params, "default");
  } else {
    params = f.nested("rope_scaling");
    theta = f.positiveNumber("rope_theta", DEFAULT_ROPE_THETA);
    ropeType = params === null ? "default" : readRopeType(params, undefined);
  }

  const factorKey = "partial_rotary_factor";
  const partial =
    params?.has(factorKey) === true ? params.positiveNumber(factorKey) : f.positiveNumber(factorKey, 1);
  const owner = params?.has(factorKey) === true ? params : f;
  if (partial > 1) {
    throw owner.error(
      factorKey,
      `must be in (0, 1], got ${partial}`,
      "set it to the fraction of each head that rotates",
    );
  }
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw owner.error(
      factorKey,
      `head_dim ${headDim} × ${partial} gives ${rotaryDim} rotary dims, which must be even and ≥ 2`,
      "choose a partial_rotary_factor that makes head_dim × factor an even integer",
    );
  }

  return { theta, rotaryDim, scaling: parseScaling(params, ropeType, maxPositionEmbeddings) };
}

function parseScaling(
  params: ConfigFields | null,
  ropeType: string,
  maxPositionEmbeddings: number,
): RopeScaling {
  if (ropeType === "default") return { type: "default" };
  const p = params!; // non-default types only come from a rope_scaling / rope_parameters object
  switch (ropeType) {
    case "linear":
      return { type: "linear", factor: p.positiveNumber("factor") };
    case "dynamic":
      // transformers computes dynamic NTK against config.max_position_embeddings and ignores any
      // rope_scaling.original_max_position_embeddings; we do the same so logits match HF.
      return {
        type: "dynamic",
        factor: p.positiveNumber("factor"),
        originalMaxPositionEmbeddings: maxPositionEmbeddings,
      };
    case "llama3": {
      const lowFreqFactor = p.positiveNumber("low_freq_factor");
      const highFreqFactor = p.positiveNumber("high_freq_factor");
      if (highFreqFactor <= lowFreqFactor) {
        throw p.error(
          "high_freq_factor",
          `must be greater than low_freq_factor (${lowFreqFactor}), got ${highFreqFactor}`,
          "Llama 3.1 checkpoints use low_freq_factor 1 and high_freq_factor 4",
        );
      }
      return {
        type: "llama3",
        factor: p.positiveNumber("factor"),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings: p.positiveInt("original_max_position_embeddings"),
      };
    }
    default:
      throw p.error(
        p.has("rope_type") ? "rope_type" : "type",
        `RoPE type "${ropeType}" is not supported; kiln supports ${SUPPORTED_ROPE_TYPES.join(", ")}`,
        "use a checkpoint with one of those RoPE types (yarn, longrope and others are not implemented yet)",
      );
  }
}

/** `rope_type`, or the legacy `type` key; `fallback` when neither is set (undefined: required). */
function readRopeType(params: ConfigFields, fallback: string | undefined): string {
  if (params.has("rope_type")) return params.string("rope_type");
  if (params.has("type")) return params.string("type");
  return params.string("rope_type", fallback);
}

/** transformers 5 lets hybrid models key rope_parameters by layer type; none of our architectures do. */
function rejectPerLayerParams(params: ConfigFields): void {
  const values = Object.values(params.obj);
  const perLayer =
    values.length > 0 && values.every((v) => typeof v === "object" && v !== null && !Array.isArray(v));
  if (perLayer) {
    throw params.error(
      Object.keys(params.obj)[0],
      "per-layer-type rope_parameters (one object per attention type) are not supported",
      "use a single rope_parameters object {rope_type, rope_theta, ...}",
    );
  }
}
