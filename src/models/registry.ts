// Model definitions keyed by HF `architectures`. Adding an architecture = one file + one line here.
import type { ModelConfig } from "../checkpoint/model_config.ts";
import { UnsupportedArchitectureError } from "./errors.ts";
import { llama } from "./llama.ts";
import { mistral } from "./mistral.ts";
import type { Network } from "./network.ts";
import { qwen2 } from "./qwen2.ts";
import { qwen3 } from "./qwen3.ts";
import type { DecoderWeightMap } from "./weight_map.ts";

export interface Architecture {
  /** HF `architectures` entries this definition serves. */
  names: readonly string[];
  weightMap: DecoderWeightMap;
  build(config: ModelConfig): Network;
}

const ARCHITECTURES: readonly Architecture[] = [llama, mistral, qwen2, qwen3];

export function supportedArchitectures(): string[] {
  return ARCHITECTURES.flatMap((a) => a.names);
}

export function findArchitecture(name: string, source: string): Architecture {
  const arch = ARCHITECTURES.find((a) => a.names.includes(name));
  if (!arch) throw new UnsupportedArchitectureError(name, supportedArchitectures(), source);
  return arch;
}

/** The model definition of `config` as an unoptimized network with HF weight names. */
export function defineModel(config: ModelConfig, source: string): Network {
  return findArchitecture(config.architecture, source).build(config);
}
