// A Session is an opened engine bound to a backend: the plan, its weights on the device, and the
// engine's tokenizer. It owns the backend's memory until dispose().
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ExecutionBackend } from "../backends/backend.ts";
import type { KvCacheDtype } from "../backends/kv_cache_dtype.ts";
import { type CudaTuning, openBackend } from "../backends/open_backend.ts";
import { DTYPE_BYTES } from "../dtype.ts";
import type { BackendName } from "../engine/build_config.ts";
import { EngineTargetMismatchError } from "../engine/errors.ts";
import type { EngineConfig } from "../engine/format.ts";
import { openEngine } from "../engine/reader.ts";
import { type GenerationDefaults, readGenerationDefaults } from "../sampling/generation_config.ts";
import { Tokenizer } from "../tokenizer/tokenizer.ts";

/** How Session.open opens an engine; every field is optional. */
export interface SessionOpenOptions {
  /** The backend to run on; the engine's own when absent (a mismatch is EngineTargetMismatchError). */
  backend?: BackendName;
  /** CUDA tuning switches (backends/cuda/tuning.ts); read from the environment when absent. */
  cudaTuning?: CudaTuning;
  /** How the KV cache stores keys and values: "auto" (the compute dtype) or "fp8" (CPU backend). */
  kvCacheDtype?: KvCacheDtype;
}

/** The engine's tokenizer (tokenizer.json in its directory; null without one), its special ids from
 * the generation defaults, else the model's config. */
export function engineTokenizer(
  engineDir: string,
  config: EngineConfig,
  defaults: GenerationDefaults = readGenerationDefaults(engineDir),
): Tokenizer | null {
  if (!existsSync(join(engineDir, "tokenizer.json"))) return null;
  const m = config.model;
  return Tokenizer.fromDir(engineDir, {
    bosTokenId: defaults.bosTokenId ?? m.bosTokenId,
    eosTokenIds: defaults.eosTokenIds.length ? defaults.eosTokenIds : m.eosTokenIds,
    padTokenId: defaults.padTokenId ?? m.padTokenId,
  });
}

export class Session {
  private constructor(
    readonly dir: string,
    readonly config: EngineConfig,
    readonly backend: ExecutionBackend,
    readonly tokenizer: Tokenizer | null,
    readonly generationDefaults: GenerationDefaults,
    /** Bytes of all weights in the engine dtype (what a decode step reads at least once); a quantized
     * weight counts as the dtype array it stands for, since the benches derive parameter counts from
     * this and the CPU backend reads it widened (docs/QUANTIZATION.md). */
    readonly weightBytes: number,
    /** Bytes of all weights as the engine stores them (a quantized weight: its q and scales), what the
     * CUDA backend holds and a decode step on it reads (the floors' bytes there). */
    readonly storedWeightBytes: number,
  ) {}

  /** Opens `engineDir` on `backend` (default: the engine's), its KV cache stored as `kvCacheDtype`
   * (default "auto"; backends/kv_cache_dtype.ts), a run-time choice the engine does not record. */
  static open(engineDir: string, options: SessionOpenOptions = {}): Session {
    const { backend, cudaTuning, kvCacheDtype = "auto" } = options;
    const engine = openEngine(engineDir);
    try {
      const config = engine.config;
      const want = backend ?? config.target.backend;
      if (want !== config.target.backend) {
        throw new EngineTargetMismatchError(
          `engine ${engineDir} was built for the ${config.target.backend} backend, not ${want}; ` +
            `rebuild it with kiln build --backend ${want}`,
        );
      }
      const exec = openBackend(engine, want, cudaTuning, kvCacheDtype);
      const defaults = readGenerationDefaults(engineDir);
      const tokenizer = engineTokenizer(engineDir, config, defaults);
      const weightBytes = engine.header.weights.reduce(
        (sum, w) =>
          sum + (w.format ? w.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[w.dtype] : w.byteLength),
        0,
      );
      const stored = engine.header.weights.reduce((sum, w) => sum + w.byteLength, 0);
      return new Session(engineDir, config, exec, tokenizer, defaults, weightBytes, stored);
    } finally {
      engine.close();
    }
  }

  /** End-of-sequence ids: generation_config.json, else config.json, plus the tokenizer's. */
  get eosTokenIds(): number[] {
    const ids = new Set<number>(
      this.generationDefaults.eosTokenIds.length
        ? this.generationDefaults.eosTokenIds
        : this.config.model.eosTokenIds,
    );
    for (const id of this.tokenizer?.eosTokenIds ?? []) ids.add(id);
    return [...ids];
  }

  dispose(): void {
    this.backend.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
