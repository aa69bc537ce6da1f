// The engine format, version 2. An engine is a directory:
//
//   config.json     EngineConfig (below): model, build settings, target, library versions, mapping
//   rank0.engine    ┌──────────────┬─────────┬──────────┬─────────────┬──────────────────────────┐
//                   │ "KILNENG\0"  │ u32 ver │ u32 rsvd │ u64 hdr len │ header JSON (EngineHeader)│
//                   │ 8 bytes      │         │          │             │ then weights, each 256-B  │
//                   └──────────────┴─────────┴──────────┴─────────────┴ aligned, at header offsets┘
//   tokenizer.json, tokenizer_config.json, generation_config.json   copied from the checkpoint
//   kiln-engine.json  the integrity manifest (manifest.ts): xxhash64 of every other file, and of
//                     rank0.engine's preamble + header and each weight and blob region; written last
//
// The header holds the plan (the optimized network) and the weight table (quantized weights name their
// layout in `format`: weight_format.ts); nothing is inferred from file names. Readers reject other magics and versions with a message saying how to rebuild, and
// bytes that differ from the manifest with an EngineCorruptError.

import type { ModelConfig } from "../checkpoint/model_config.ts";
import type { QuantizationScheme } from "../checkpoint/quantization_scheme.ts";
import type { DType } from "../dtype.ts";
import type { Op } from "../models/network.ts";
import type { BuildConfig } from "./build_config.ts";
import type { WeightFormat, WeightFormatParams } from "./weight_format.ts";

export type { Op };

export const ENGINE_MAGIC = "KILNENG\0";
export const ENGINE_FORMAT_VERSION = 2;
export const WEIGHT_ALIGNMENT = 256;
export const PREAMBLE_BYTES = 24;

export interface EngineConfig {
  format: "kiln-engine";
  formatVersion: number;
  kilnVersion: string;
  createdAt: string;
  model: ModelConfig;
  build: BuildConfig;
  /** What the engine runs on; CUDA engines add the SM and library versions. */
  target: EngineTarget;
  /** Parallel mapping; one rank until tensor/pipeline parallelism lands. */
  mapping: { worldSize: number; tpSize: number; ppSize: number };
  /** The checkpoint built from; `quantization` is the scheme of a pre-quantized one (its quantized
   * linears are stored in the formats weight_format.ts names), absent for an unquantized one. */
  source: { checkpointHash: string; path: string; quantization?: QuantizationScheme };
  /** Longest sequence the engine accepts (prompt + generated tokens). */
  maxSeqLen: number;
  files: string[];
}

export interface EngineTarget {
  backend: BuildConfig["backend"];
  /** CUDA: the device's SM ("sm_90"), the arch the cubins were compiled for ("sm_90a"), its name,
   * and the driver / NVRTC / cuBLASLt versions at build time. */
  sm?: string;
  nvrtcArch?: string;
  deviceName?: string;
  driverVersion?: number;
  nvrtcVersion?: string;
  cublasLtVersion?: number;
}

export interface WeightEntry {
  name: string;
  /** The engine dtype; for a quantized weight, the dtype it stands in for (its bytes are `format`'s). */
  dtype: DType;
  /** Logical shape ([out, in] for a linear layer), quantized or not. */
  shape: number[];
  /** Absent: `dtype` values, row-major. Otherwise the quantized layout weight_format.ts defines.
   * Optional so unquantized engines stay format 2 byte for byte; a reader that predates it refuses a
   * quantized weight because its byte length does not match shape × dtype. */
  format?: WeightFormat;
  /** The format's settings for this weight (e.g. fp8's activation scaling); absent when it has none. */
  params?: WeightFormatParams;
  /** Absolute byte offset in the rank file. */
  offset: number;
  byteLength: number;
}

export interface Plan {
  ops: Op[];
  output: string;
}

/** Opaque bytes the target needs besides weights (CUDA: cubins compiled for the engine's SM). */
export interface BlobEntry {
  name: string;
  offset: number;
  byteLength: number;
}

export interface EngineHeader {
  plan: Plan;
  weights: WeightEntry[];
  blobs?: BlobEntry[];
}

/** Tokenizer-side files an engine carries so it runs without the checkpoint. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];
