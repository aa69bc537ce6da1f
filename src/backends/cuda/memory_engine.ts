// An engine that exists only in memory: a plan, fp32 weights and compiled kernel modules, laid out as
// a LoadedEngine reads (each weight at a virtual offset of a rank file that is never written), so the
// CUDA backend loads it as it loads a file. The builder's calibration runs the network it is building
// this way, before any engine exists (cudaCalibrationBackend (calibration_backend.ts)).
import type { ModelConfig } from "../../checkpoint/model_config.ts";
import { resolveBuildConfig } from "../../engine/build_config.ts";
import {
  ENGINE_FORMAT_VERSION,
  type EngineConfig,
  type Plan,
  type WeightEntry,
} from "../../engine/format.ts";
import type { LoadedEngine } from "../../engine/reader.ts";
import { KILN_VERSION } from "../../version.ts";

export interface MemoryEngineSpec {
  model: ModelConfig;
  plan: Plan;
  /** fp32 values of every weight the plan reads, by name; only read. */
  weights: ReadonlyMap<string, Float32Array>;
  /** Blobs by name: the fp32 kernel modules (kernel_modules.ts cubinBlobName). */
  blobs: ReadonlyMap<string, Uint8Array>;
  kvBlockSize: number;
  /** Token rows of the largest step (the arena's size) and the longest sequence. */
  maxTokens: number;
}

/** `spec` as a LoadedEngine of dtype fp32 for the CUDA backend, one sequence at a time. */
export function memoryEngine(spec: MemoryEngineSpec): LoadedEngine {
  const entries: WeightEntry[] = [];
  const values: Float32Array[] = [];
  let offset = 0;
  for (const [name, v] of spec.weights) {
    entries.push({ name, dtype: "F32", shape: [v.length], offset, byteLength: v.byteLength });
    values.push(v);
    offset += v.byteLength;
  }
  const config: EngineConfig = {
    format: "kiln-engine",
    formatVersion: ENGINE_FORMAT_VERSION,
    kilnVersion: KILN_VERSION,
    createdAt: new Date(0).toISOString(),
    model: spec.model,
    build: resolveBuildConfig({
      backend: "cuda",
      dtype: "fp32",
      kvBlockSize: spec.kvBlockSize,
      maxNumTokens: spec.maxTokens,
      maxBatchSize: 1,
    }),
    target: { backend: "cuda" },
    mapping: { worldSize: 1, tpSize: 1, ppSize: 1 },
    source: { checkpointHash: "", path: "(in memory)" },
    maxSeqLen: spec.maxTokens,
    files: [],
  };
  /** The bytes of [at, at + length) of the virtual rank file: always inside one weight. */
  const bytesAt = (at: number, length: number): Uint8Array => {
    let lo = 0;
    let hi = entries.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (entries[mid].offset <= at) lo = mid;
      else hi = mid - 1;
    }
    const e = entries[lo];
    if (!e || at < e.offset || at + length > e.offset + e.byteLength)
      throw new Error(`internal: read of ${length} bytes at ${at} crosses an in-memory weight`);
    const v = values[lo];
    return new Uint8Array(v.buffer, v.byteOffset + at - e.offset, length);
  };
  return {
    dir: "(calibration, in memory)",
    config,
    header: { plan: spec.plan, weights: entries },
    readWeight: (entry) => bytesAt(entry.offset, entry.byteLength).slice(),
    readInto: (at, into) => into.set(bytesAt(at, into.byteLength)),
    checkRegions: () => ({ wait: () => {} }), // nothing on disk to be damaged
    readBlob: (name) => spec.blobs.get(name) ?? null,
    close: () => {},
  };
}
